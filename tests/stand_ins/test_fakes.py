"""Sanity checks of the loopback stand-ins themselves (testkit/fakes)."""

from __future__ import annotations

import asyncio
import json

import aiohttp
import httpx
import pytest
from slack_bolt.request.async_request import AsyncBoltRequest
from slack_sdk.errors import SlackApiError
from slack_sdk.signature import SignatureVerifier
from slack_sdk.socket_mode.aiohttp import SocketModeClient
from slack_sdk.socket_mode.request import SocketModeRequest
from slack_sdk.socket_mode.response import SocketModeResponse
from slack_sdk.web.async_client import AsyncWebClient

from testkit.env import APP_TOKEN, BOT_TOKEN, RUNPOD_KEY
from testkit.fakes import (
    FakeRunPod,
    FakeSlack,
    SlackFault,
    block_actions_payload,
    form_encode,
    interaction_form_body,
    sign,
    slash_command_body,
)

AUTH = {"Authorization": f"Bearer {RUNPOD_KEY}"}


def section(text: str) -> dict[str, object]:
    return {"type": "section", "text": {"type": "mrkdwn", "text": text}}


def web_client(slack: FakeSlack, token: str = BOT_TOKEN) -> AsyncWebClient:
    return AsyncWebClient(token=token, base_url=slack.api_url)


# ---- Slack: signing and payloads ------------------------------------------------------------------------


def test_sign_round_trips_through_bolt_verifier() -> None:
    body = form_encode(slash_command_body("retry ep1 job-1", response_url="http://127.0.0.1:1/respond/x"))
    headers = sign(body, "s3cret")
    verifier = SignatureVerifier("s3cret")
    assert verifier.is_valid_request(body, headers)
    assert not SignatureVerifier("other").is_valid_request(body, headers)
    stale = sign(body, "s3cret", timestamp=1_000_000)
    assert not verifier.is_valid_request(body, stale)


def test_interaction_body_parses_like_bolt_does() -> None:
    payload = block_actions_payload("retry", "ep1:job-1", thread_ts="1700000000.000050",
                                    response_url="http://127.0.0.1:1/respond/x")
    req = AsyncBoltRequest(body=interaction_form_body(payload), headers=sign("", "s"))
    assert req.body["actions"][0]["value"] == "ep1:job-1"
    assert req.body["container"]["thread_ts"] == "1700000000.000050"
    assert req.context.channel_id == "C1"
    assert req.context.user_id == "U1"


# ---- Slack: Web API -------------------------------------------------------------------------------------


async def test_web_api_through_slack_sdk(slack: FakeSlack) -> None:
    client = web_client(slack)
    auth = await client.auth_test()
    assert (auth["user_id"], auth["bot_id"]) == ("UBOT", "BBOT")

    first = await client.chat_postMessage(channel="C1", text="hi", blocks=[section("hi")])
    second = await client.chat_postMessage(channel="C1", text="in thread", thread_ts=first["ts"])
    assert float(second["ts"]) > float(first["ts"])
    assert second["message"]["thread_ts"] == first["ts"]
    await client.chat_update(channel="C1", ts=first["ts"], text="edited", blocks=[section("edited")])
    assert slack.messages[("C1", first["ts"])]["text"] == "edited"

    with pytest.raises(SlackApiError) as err:
        await client.chat_update(channel="C1", ts="1.000001", text="x")
    assert err.value.response["error"] == "message_not_found"
    with pytest.raises(SlackApiError) as err:
        await web_client(slack, "xoxb-wrong").auth_test()
    assert err.value.response["error"] == "invalid_auth"

    slack.usergroups["S1"] = ["U1", "U2"]
    assert (await client.usergroups_users_list(usergroup="S1"))["users"] == ["U1", "U2"]
    assert [c.method for c in slack.calls][:2] == ["auth.test", "chat.postMessage"]
    assert slack.rejected() == []


async def test_block_kit_and_text_limits_are_enforced(slack: FakeSlack) -> None:
    client = web_client(slack)
    for kwargs, error in [
        ({"blocks": [section("x" * 3001)]}, "invalid_blocks"),
        ({"blocks": [section("x")] * 51}, "invalid_blocks"),
        ({"blocks": [{"type": "header", "text": {"type": "plain_text", "text": "h" * 151}}]},
         "invalid_blocks"),
        ({"blocks": [{"type": "nonsense"}]}, "invalid_blocks"),
        ({"text": "x" * 40_001}, "msg_too_long"),
    ]:
        with pytest.raises(SlackApiError) as err:
            await client.chat_postMessage(channel="C1", text=kwargs.pop("text", "fallback"), **kwargs)
        assert err.value.response["error"] == error
    assert [c.error for c in slack.rejected()] == ["invalid_blocks"] * 4 + ["msg_too_long"]
    assert "3001 > 3000" in (slack.rejected()[0].detail or "")

    # form-encoded bodies carry blocks as a JSON string: parsed and validated the same way
    async with httpx.AsyncClient() as http:
        form = {"channel": "C1", "text": "t", "blocks": json.dumps([section("y" * 3001)])}
        headers = {"Authorization": f"Bearer {BOT_TOKEN}"}
        resp = await http.post(f"{slack.api_url}chat.postMessage", data=form, headers=headers)
    assert resp.json() == {"ok": False, "error": "invalid_blocks"}


async def test_channel_membership_errors(slack: FakeSlack) -> None:
    slack.not_in_channel.add("CPRIV")
    slack.missing_channels.add("CGONE")
    client = web_client(slack)
    for channel, error in [("CPRIV", "not_in_channel"), ("CGONE", "channel_not_found")]:
        with pytest.raises(SlackApiError) as err:
            await client.chat_postMessage(channel=channel, text="x")
        assert err.value.response["error"] == error
    assert slack.rejected() == []  # environment errors, not malformed requests
    assert len(slack.errors()) == 2


async def test_scripted_faults_answer_in_order(slack: FakeSlack) -> None:
    slack.script("chat.postMessage", SlackFault(status=429, headers={"Retry-After": "1"}),
                 SlackFault(error="cant_update_message"))
    client = web_client(slack)
    with pytest.raises(SlackApiError) as err:
        await client.chat_postMessage(channel="C1", text="x")
    assert err.value.response.status_code == 429
    assert err.value.response.headers["Retry-After"] == "1"
    assert err.value.response["error"] == "ratelimited"
    with pytest.raises(SlackApiError) as err:
        await client.chat_postMessage(channel="C1", text="x")
    assert err.value.response["error"] == "cant_update_message"
    assert (await client.chat_postMessage(channel="C1", text="x"))["ok"]
    assert [(c.status, c.fault is not None) for c in slack.calls] == [(429, True), (200, True), (200, False)]


async def test_files_upload_v2_round_trip(slack: FakeSlack) -> None:
    client = web_client(slack)
    await client.files_upload_v2(content=b"x" * 5000, filename="output.json", channel="C1",
                                 thread_ts="1700000000.000101", initial_comment="full output")
    (complete,) = slack.calls_to("files.completeUploadExternal")
    assert complete.args["channel_id"] == "C1"
    assert complete.args["thread_ts"] == "1700000000.000101"
    assert complete.args["initial_comment"] == "full output"
    assert slack.uploads[complete.args["files"][0]["id"]] == b"x" * 5000


# ---- Slack: response_url --------------------------------------------------------------------------------


async def test_response_url_takes_five_posts(slack: FakeSlack) -> None:
    url = slack.new_response_url()
    async with httpx.AsyncClient() as http:
        statuses = [(await http.post(url, json={"text": f"#{i}"})).status_code for i in range(5)]
        sixth = await http.post(url, json={"text": "#6"})
        bad = await http.post(slack.new_response_url(), json={"text": "t", "blocks": [section("z" * 3001)]})
    assert statuses == [200] * 5
    assert (sixth.status_code, sixth.text) == (404, "used_url")
    assert [r["text"] for r in slack.responses[url]] == ["#0", "#1", "#2", "#3", "#4"]
    assert bad.json()["error"] == "invalid_blocks"
    assert [c.error for c in slack.rejected()] == ["invalid_blocks"]
    assert len(slack.all_responses()) == 5


# ---- Slack: Socket Mode ---------------------------------------------------------------------------------


async def test_socket_hello_and_ack_round_trip(slack: FakeSlack) -> None:
    opened = await web_client(slack, APP_TOKEN).apps_connections_open(app_token=APP_TOKEN)
    async with aiohttp.ClientSession() as session, session.ws_connect(opened["url"]) as ws:
        hello = await ws.receive_json(timeout=2)
        assert hello["type"] == "hello"
        assert await slack.wait_socket() == 1
        payload = slash_command_body("retry ep1 job-1", response_url=slack.new_response_url())
        envelope_id = await slack.socket_send("slash_commands", payload)
        envelope = await ws.receive_json(timeout=2)
        assert envelope["envelope_id"] == envelope_id
        assert envelope["payload"]["text"] == "retry ep1 job-1"
        await ws.send_json({"envelope_id": envelope_id, "payload": {"text": "on it"}})
        ack = await slack.wait_ack(envelope_id)
        assert ack["payload"] == {"text": "on it"}
        assert 0 <= ack["latency"] < 1

        await slack.drop_sockets()
        assert (await ws.receive(timeout=2)).type in (aiohttp.WSMsgType.CLOSED, aiohttp.WSMsgType.ERROR)
    assert slack.live_sockets == 0
    assert slack.socket_connections == 1


async def test_socket_mode_app_token_and_outage(slack: FakeSlack) -> None:
    with pytest.raises(SlackApiError) as err:
        await web_client(slack).apps_connections_open(app_token=BOT_TOKEN)
    assert err.value.response["error"] == "invalid_auth"
    slack.refuse_sockets = True
    opened = await web_client(slack, APP_TOKEN).apps_connections_open(app_token=APP_TOKEN)
    async with aiohttp.ClientSession() as session:
        with pytest.raises(aiohttp.WSServerHandshakeError) as handshake:
            await session.ws_connect(opened["url"])
    assert handshake.value.status == 503
    assert slack.socket_connections == 0


async def test_slack_sdk_socket_mode_client_acks_and_reconnects(slack: FakeSlack) -> None:
    client = SocketModeClient(app_token=APP_TOKEN, web_client=web_client(slack), ping_interval=0.2)

    async def ack(client: SocketModeClient, req: SocketModeRequest) -> None:
        response = SocketModeResponse(req.envelope_id, {"text": req.payload["text"]})
        await client.send_socket_mode_response(response)

    client.socket_mode_request_listeners.append(ack)
    await client.connect()
    try:
        await slack.wait_socket()
        envelope_id = await slack.socket_send("slash_commands", slash_command_body("x", response_url="u"))
        assert (await slack.wait_ack(envelope_id))["payload"] == {"text": "x"}
        await slack.drop_sockets()
        await slack.wait_for(lambda f: f.socket_connections == 2 and f.live_sockets, timeout=5)
        envelope_id = await slack.socket_send("slash_commands", slash_command_body("y", response_url="u"))
        assert (await slack.wait_ack(envelope_id))["payload"] == {"text": "y"}
    finally:
        await client.close()


# ---- RunPod ---------------------------------------------------------------------------------------------


async def test_retry_then_status_progression(runpod: FakeRunPod) -> None:
    runpod.add_job("ep1", "job-1", output={"images": 3})
    async with httpx.AsyncClient(base_url=runpod.url, headers=AUTH) as http:
        failed = (await http.get("/ep1/status/job-1")).json()
        assert (failed["status"], failed["error"]) == ("FAILED", "CUDA out of memory")
        assert (await http.post("/ep1/retry/job-1")).json() == {"id": "job-1", "status": "IN_QUEUE"}
        again = await http.post("/ep1/retry/job-1")
        assert again.status_code == 400
        assert again.json()["error"] == "Job is not in a retryable state (status: IN_QUEUE)"
        steps = [(await http.get("/ep1/status/job-1")).json() for _ in range(3)]
        assert [s["status"] for s in steps] == ["IN_PROGRESS", "COMPLETED", "COMPLETED"]
        assert "error" not in steps[0] and "output" not in steps[0]
        assert steps[1]["output"] == {"images": 3}
        assert "executionTime" in steps[1]
        assert (await http.get("/ep1/status/nope")).status_code == 404
        assert (await http.get("/nope/status/job-1")).status_code == 404
        unauthorized = await http.get("/ep1/status/job-1", headers={"Authorization": "Bearer wrong"})
        assert (unauthorized.status_code, unauthorized.text) == (401, "Unauthorized")
        runpod.expire("ep1", "job-1")
        assert (await http.post("/ep1/retry/job-1")).status_code == 404
    assert runpod.job("ep1", "job-1").retries == 1
    assert [c.op for c in runpod.calls].count("retry") == 3


async def test_retry_that_fails_again(runpod: FakeRunPod) -> None:
    runpod.add_job("ep1", "job-2", "TIMED_OUT", after_retry=("FAILED",), final_error="still broken")
    async with httpx.AsyncClient(base_url=runpod.url, headers=AUTH) as http:
        assert (await http.post("/ep1/retry/job-2")).status_code == 200
        body = (await http.get("/ep1/status/job-2")).json()
    assert (body["status"], body["error"], body["retries"]) == ("FAILED", "still broken", 1)


async def test_fault_queue_order(runpod: FakeRunPod) -> None:
    runpod.add_job("ep1", "job-1")
    runpod.fault("*", status=503, body="<html>bad gateway</html>")
    runpod.fault("status", status=429, headers={"Retry-After": "1"})
    runpod.fault("status", garbage=True)
    async with httpx.AsyncClient(base_url=runpod.url, headers=AUTH) as http:
        answers = [await http.get("/ep1/status/job-1") for _ in range(4)]
    assert [a.status_code for a in answers] == [429, 200, 503, 200]
    assert answers[0].headers["Retry-After"] == "1"
    assert answers[1].text == "<html>oops</html>"
    assert answers[2].headers["Content-Type"].startswith("text/html")
    assert answers[3].json()["status"] == "FAILED"
    assert [c.fault is not None for c in runpod.calls] == [True, True, True, False]


async def test_reset_drops_the_connection(runpod: FakeRunPod) -> None:
    runpod.add_job("ep1", "job-1")
    runpod.fault("retry", reset=True)
    async with httpx.AsyncClient(base_url=runpod.url, headers=AUTH) as http:
        with pytest.raises(httpx.TransportError):
            await http.post("/ep1/retry/job-1")
        assert (await http.post("/ep1/retry/job-1")).status_code == 200
    assert [c.status for c in runpod.calls] == [None, 200]


async def test_delay_and_in_flight_high_water_mark(runpod: FakeRunPod) -> None:
    runpod.add_job("ep1", "job-1")
    runpod.latency = 0.05
    runpod.fault("status", delay=1.0)
    async with httpx.AsyncClient(base_url=runpod.url, headers=AUTH) as http:
        with pytest.raises(httpx.ReadTimeout):
            await http.get("/ep1/status/job-1", timeout=0.2)
        await asyncio.gather(*(http.get("/ep1/status/job-1") for _ in range(4)))
    assert runpod.max_in_flight >= 4
    await runpod.wait_calls("status", 5)
