"""The stand-ins enforce the platform limits they claim (testkit/fakes/limits.py), over real loopback HTTP.

No app here: plain aiohttp / httpx clients (and slack_sdk's own retry handler once) against FakeSlack and
FakeRunPod. Windows are shortened and Slack's clock is scaled so the whole file runs in a few seconds.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import httpx
import pytest
from slack_sdk.http_retry.builtin_async_handlers import AsyncRateLimitErrorRetryHandler
from slack_sdk.web.async_client import AsyncWebClient

from testkit.fakes import FakeRunPod, FakeSlack, OpLimit, Rate, RunPodLimits, SlackLimits

BOT = "xoxb-limits-bot"
KEY = "rp-limits-key"
AUTH = {"Authorization": f"Bearer {KEY}"}
SLOW_CLOCK = 1000.0  # a thousand real seconds per Slack second: buckets do not refill during a test


@pytest.fixture
async def slack() -> AsyncIterator[FakeSlack]:
    async with FakeSlack(valid_tokens={BOT}, limits=SlackLimits()) as fake:
        yield fake


@pytest.fixture
async def runpod() -> AsyncIterator[FakeRunPod]:
    async with FakeRunPod(default_key=KEY, limits=RunPodLimits()) as fake:
        yield fake


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession(headers={"Authorization": f"Bearer {BOT}"}) as session:
        yield session


async def call(http: aiohttp.ClientSession, slack: FakeSlack, method: str, **args: Any) -> tuple[int, Any, Any]:
    async with http.post(f"{slack.api_url}{method}", json=args) as response:
        return response.status, await response.json(), response.headers


def section(text: str) -> dict[str, Any]:
    return {"type": "section", "text": {"type": "mrkdwn", "text": text}}


# ---- Slack: chat.postMessage per channel and per workspace -----------------------------------------------


async def test_burst_to_one_channel_is_cut_off_with_retry_after_and_other_channels_are_not(slack, http) -> None:
    slack.limits.time_scale = SLOW_CLOCK
    answers = [await call(http, slack, "chat.postMessage", channel="C1", text=f"#{i}") for i in range(7)]
    assert [status for status, _, _ in answers] == [200] * 5 + [429] * 2  # the burst is 5
    _, body, headers = answers[5]
    assert body == {"ok": False, "error": "ratelimited"}
    assert headers["Retry-After"].isdigit() and int(headers["Retry-After"]) >= 1
    assert (await call(http, slack, "chat.postMessage", channel="C2", text="elsewhere"))[0] == 200

    hits = slack.rate_limited("chat.postMessage")
    assert [(h.channel, h.scope) for h in hits] == [("C1", "channel")] * 2
    assert hits[0].retry_after == int(headers["Retry-After"])
    assert len(slack.accepted("chat.postMessage", "C1")) == 5
    assert len(slack.accepted("chat.postMessage")) == 6
    assert [c.status for c in slack.calls_to("chat.postMessage")] == [200] * 5 + [429] * 2 + [200]
    assert slack.peak("chat.postMessage", 1.0, "C1") == 5
    assert len(slack.messages) == 6  # what was refused was not stored


async def test_one_per_second_per_channel_refills_in_real_time(slack, http) -> None:
    # "1 per second", twice as fast: long enough that a busy machine still sends "b" before the token is back.
    slack.limits.post_per_channel = Rate(1, per=0.5, burst=1)
    assert (await call(http, slack, "chat.postMessage", channel="C1", text="a"))[0] == 200
    assert (await call(http, slack, "chat.postMessage", channel="C1", text="b"))[0] == 429
    await asyncio.sleep(0.55)
    assert (await call(http, slack, "chat.postMessage", channel="C1", text="c"))[0] == 200


async def test_workspace_wide_limit_spans_channels(slack, http) -> None:
    slack.limits = SlackLimits(post_workspace=Rate(3, per=60), time_scale=SLOW_CLOCK)
    statuses = [(await call(http, slack, "chat.postMessage", channel=f"C{i}", text="x"))[0] for i in range(4)]
    assert statuses == [200, 200, 200, 429]
    assert [h.scope for h in slack.limit_hits] == ["workspace"]


async def test_refused_posts_do_not_use_up_the_limit(slack, http) -> None:
    slack.limits.time_scale = SLOW_CLOCK
    slack.not_in_channel.add("C1")
    for _ in range(6):
        assert (await call(http, slack, "chat.postMessage", channel="C1", text="x"))[1]["error"] == "not_in_channel"
    slack.not_in_channel.clear()
    assert (await call(http, slack, "chat.postMessage", channel="C1", text="x"))[0] == 200


# ---- Slack: per-method tiers ----------------------------------------------------------------------------


@pytest.mark.parametrize(("method", "allowed"), [("chat.update", 50), ("usergroups.users.list", 20),
                                                 ("chat.postEphemeral", 100)])
async def test_method_tiers(slack, http, method: str, allowed: int) -> None:
    slack.limits.time_scale = SLOW_CLOCK
    ts = slack.seed_message("C1", text="original")
    slack.usergroups["S1"] = ["U1"]
    args = {"chat.update": {"channel": "C1", "ts": ts, "text": "edited"}, "usergroups.users.list": {"usergroup": "S1"},
            "chat.postEphemeral": {"channel": "C1", "user": "U1", "text": "psst"}}[method]
    answers = await asyncio.gather(*(call(http, slack, method, **args) for _ in range(allowed + 1)))
    assert sorted(status for status, _, _ in answers) == [200] * allowed + [429]
    [hit] = slack.limit_hits
    assert (hit.method, hit.scope) == (method, slack.limits.method_tiers[method])
    # per method: another method of the same app is not affected
    assert (await call(http, slack, "chat.postMessage", channel="C1", text="still fine"))[0] == 200


# ---- Slack: Retry-After variants, switching off, slack_sdk compatibility -----------------------------------


@pytest.mark.parametrize(("setting", "header"), [(None, None), (7, "7")])
async def test_retry_after_can_be_absent_or_fixed(slack, http, setting: Any, header: str | None) -> None:
    slack.limits = SlackLimits(post_per_channel=Rate(1, burst=1), retry_after=setting, time_scale=SLOW_CLOCK)
    await call(http, slack, "chat.postMessage", channel="C1", text="a")
    status, body, headers = await call(http, slack, "chat.postMessage", channel="C1", text="b")
    assert (status, body["error"], headers.get("Retry-After")) == (429, "ratelimited", header)
    assert slack.limit_hits[0].retry_after == setting


async def test_limits_off(slack, http) -> None:
    slack.limits = SlackLimits.off()
    statuses = [(await call(http, slack, "chat.postMessage", channel="C1", text="x"))[0] for _ in range(20)]
    assert statuses == [200] * 20
    url = slack.new_response_url()
    async with httpx.AsyncClient() as client:
        assert [(await client.post(url, json={"text": "x"})).status_code for _ in range(7)] == [200] * 7
    assert slack.limit_hits == []


async def test_slack_sdk_retry_handler_waits_out_the_fakes_429(slack) -> None:
    slack.limits = SlackLimits(post_per_channel=Rate(1, per=1.0, burst=1))  # a token a second
    client = AsyncWebClient(token=BOT, base_url=slack.api_url)
    client.retry_handlers.append(AsyncRateLimitErrorRetryHandler(max_retry_count=1))
    await client.chat_postMessage(channel="C1", text="first")
    started = time.monotonic()
    second = await client.chat_postMessage(channel="C1", text="second")
    assert second["ok"] and time.monotonic() - started >= 1  # it slept Retry-After (1 s) and retried
    assert [c.status for c in slack.calls_to("chat.postMessage")] == [200, 429, 200]


# ---- Slack: response_url ---------------------------------------------------------------------------------


async def test_response_url_sixth_use_is_refused(slack) -> None:
    url = slack.new_response_url()
    async with httpx.AsyncClient() as client:
        statuses = [(await client.post(url, json={"text": f"#{i}"})).status_code for i in range(5)]
        sixth = await client.post(url, json={"text": "#6"})
    assert statuses == [200] * 5
    assert (sixth.status_code, sixth.text) == (404, "used_url")
    assert len(slack.responses[url]) == 5


async def test_response_url_expires_after_30_minutes(slack) -> None:
    slack.limits.time_scale = 1 / 1800  # half an hour a second: 30 minutes is a second
    url = slack.new_response_url()
    async with httpx.AsyncClient() as client:
        assert (await client.post(url, json={"text": "in time"})).status_code == 200
        await asyncio.sleep(1.1)
        late = await client.post(url, json={"text": "too late"})
    assert (late.status_code, late.text) == (404, "expired_url")
    assert [c.error for c in slack.calls_to("response_url")] == [None, "expired_url"]


# ---- Slack: views ----------------------------------------------------------------------------------------


def modal(title: str = "Retry jobs", **extra: Any) -> dict[str, Any]:
    return {"type": "modal", "title": {"type": "plain_text", "text": title}, "blocks": [section("hello")],
            "callback_id": "retry_modal", **extra}


async def test_views_open_update_publish(slack, http) -> None:
    status, opened, _ = await call(http, slack, "views.open", trigger_id="T.1", view=modal(private_metadata="C1"))
    assert status == 200 and opened["ok"], opened
    view = opened["view"]
    assert (view["type"], view["private_metadata"], view["callback_id"]) == ("modal", "C1", "retry_modal")
    assert slack.open_views("retry_modal") == [view]

    _, updated, _ = await call(http, slack, "views.update", view_id=view["id"], hash=view["hash"],
                               view=modal("Retrying"))
    assert updated["ok"] and updated["view"]["id"] == view["id"]
    assert slack.views[view["id"]]["title"]["text"] == "Retrying"
    _, stale, _ = await call(http, slack, "views.update", view_id=view["id"], hash=view["hash"], view=modal())
    assert stale["error"] == "hash_conflict"
    _, missing, _ = await call(http, slack, "views.update", view_id="V404", view=modal())
    assert missing["error"] == "not_found"

    home = {"type": "home", "blocks": [section("your retries")]}
    _, published, _ = await call(http, slack, "views.publish", user_id="U1", view=home)
    assert published["ok"] and slack.home("U1")["blocks"] == home["blocks"]
    _, wrong, _ = await call(http, slack, "views.publish", user_id="U1", view=modal())
    assert wrong["error"] == "invalid_arguments"

    slack.expired_triggers.add("T.old")
    _, expired, _ = await call(http, slack, "views.open", trigger_id="T.old", view=modal())
    assert expired["error"] == "expired_trigger_id"


@pytest.mark.parametrize("bad", [
    modal("a title much longer than twenty-four characters"),
    modal(blocks=[]),
    modal(blocks=[section("x")] * 101),
    modal(blocks=[section("x" * 3001)]),
    modal(private_metadata="m" * 3001),
    {"type": "popup", "blocks": [section("x")]},
    {"type": "modal", "blocks": [section("no title")]},
])
async def test_invalid_views_are_refused_like_slack(slack, http, bad: dict[str, Any]) -> None:
    status, body, _ = await call(http, slack, "views.open", trigger_id="T.1", view=bad)
    assert (status, body["ok"], body["error"]) == (200, False, "invalid_arguments")
    assert body["response_metadata"]["messages"]
    [refused] = slack.rejected()
    assert refused.detail
    assert slack.views == {}


# ---- RunPod: concurrency and window ----------------------------------------------------------------------


async def test_retry_21_concurrent_gets_exactly_one_429(runpod) -> None:
    for i in range(21):
        runpod.add_job("ep1", f"job-{i}")
    runpod.latency = 0.5  # every accepted retry stays in flight while the others arrive
    async with httpx.AsyncClient(base_url=runpod.url, headers=AUTH) as client:
        answers = await asyncio.gather(*(client.post(f"/ep1/retry/job-{i}") for i in range(21)))
    refused = [a for a in answers if a.status_code == 429]
    assert len(refused) == 1 and sum(a.status_code == 200 for a in answers) == 20
    assert "Retry-After" not in refused[0].headers  # RunPod does not promise one; off by default
    assert "20 concurrent" in refused[0].json()["error"]
    [hit] = runpod.rate_limited("retry")
    assert (hit.scope, hit.endpoint, hit.retry_after) == ("concurrency", "ep1", None)
    assert runpod.peak_concurrency("retry", "ep1") == 20
    requeued = runpod.requeued("ep1")
    assert len(requeued) == 20 and set(requeued.values()) == {1}
    assert runpod.job("ep1", hit.job or "").retries == 0  # the refused one was not requeued


async def test_retry_101_in_a_window_gets_a_429_and_the_window_slides(runpod) -> None:
    runpod.limits.window = 10.0  # RunPod's own: 101 calls fit in it even on a busy machine
    runpod.add_job("ep1", "job-1", after_retry=("FAILED",))
    async with httpx.AsyncClient(base_url=runpod.url, headers=AUTH) as client:
        answers = [await client.post("/ep1/retry/job-1") for _ in range(101)]
        assert [a.status_code for a in answers[:100]] == [200] + [400] * 99  # accepted (not retryable again)
        assert answers[100].status_code == 429
        assert "100 per 10s" in answers[100].json()["error"]
        assert (await client.post("/ep2/retry/job-1")).status_code == 404  # another endpoint: its own window

        runpod.limits = RunPodLimits(ops={"status": OpLimit(3)}, window=1.0, retry_after="auto")
        statuses = [(await client.get("/ep1/status/job-1")).status_code for _ in range(4)]
        assert statuses == [200, 200, 200, 429]
        await asyncio.sleep(1.05)
        assert (await client.get("/ep1/status/job-1")).status_code == 200
    assert [h.scope for h in runpod.limit_hits] == ["window", "window"]
    assert runpod.limit_hits[1].retry_after == 1  # "auto": whole seconds, at least 1
    assert runpod.peak("retry", 10.0, "ep1") == 100
    assert runpod.requeued() == {("ep1", "job-1"): 1}


async def test_runpod_retry_after_modes(runpod) -> None:
    runpod.add_job("ep1", "job-1")
    seen: dict[str, list[str | None]] = {}
    async with httpx.AsyncClient(base_url=runpod.url, headers=AUTH) as client:
        for mode in (None, "auto", 5, "random"):
            runpod.limits = RunPodLimits(ops={"status": OpLimit(1)}, retry_after=mode, seed=3)
            await client.get("/ep1/status/job-1")
            answers = [await client.get("/ep1/status/job-1") for _ in range(12)]
            assert {a.status_code for a in answers} == {429}
            seen[str(mode)] = [a.headers.get("Retry-After") for a in answers]
    assert set(seen["None"]) == {None}
    assert {int(v) for v in seen["auto"] if v} and None not in seen["auto"]
    assert set(seen["5"]) == {"5"}
    assert None in seen["random"] and any(v is not None for v in seen["random"])


async def test_runpod_limits_off_and_run(runpod) -> None:
    runpod.limits = RunPodLimits.off()
    runpod.endpoints.add("ep1")
    async with httpx.AsyncClient(base_url=runpod.url, headers=AUTH) as client:
        created = await asyncio.gather(*(client.post("/ep1/run", json={"input": {}}) for _ in range(30)))
        assert {r.status_code for r in created} == {200}
        job_id = created[0].json()["id"]
        assert created[0].json()["status"] == "IN_QUEUE"
        assert (await client.get(f"/ep1/status/{job_id}")).json()["status"] == "IN_PROGRESS"

        runpod.limits = RunPodLimits(ops={"run": OpLimit(2, concurrent=None)})
        assert [(await client.post("/ep1/run", json={})).status_code for _ in range(3)] == [200, 200, 429]
    assert runpod.limit_hits[0].method == "run"


# ---- RunPod: /health -------------------------------------------------------------------------------------

WORKER_KEYS = {"idle", "initializing", "ready", "running", "throttled", "unhealthy"}


async def test_health_counts_come_from_the_job_table(runpod) -> None:
    runpod.add_job("ep1", "a", "FAILED")
    runpod.add_job("ep1", "b", "TIMED_OUT")
    runpod.add_job("ep1", "c", "COMPLETED")
    runpod.add_job("ep1", "d", "IN_PROGRESS")
    runpod.add_job("ep2", "e", "IN_QUEUE")
    async with httpx.AsyncClient(base_url=runpod.url, headers=AUTH) as client:
        await client.post("/ep1/retry/a")
        body = (await client.get("/ep1/health")).json()
    assert body["jobs"] == {"completed": 1, "failed": 1, "inProgress": 1, "inQueue": 1, "retried": 1}
    assert set(body["workers"]) == WORKER_KEYS
    assert body["workers"]["running"] == 1 and body["workers"]["unhealthy"] == 0


async def test_health_presets_and_overrides(runpod) -> None:
    runpod.add_job("ep1", "a", "IN_QUEUE")
    async with httpx.AsyncClient(base_url=runpod.url, headers=AUTH) as client:

        async def health() -> httpx.Response:
            return await client.get("/ep1/health")

        runpod.set_health("ep1", "no_workers")
        assert set((await health()).json()["workers"].values()) == {0}
        runpod.set_health("ep1", "mostly_unhealthy")
        workers = (await health()).json()["workers"]
        assert workers["unhealthy"] > workers["idle"] + workers["ready"] + workers["running"]
        runpod.set_health("ep1", "legacy")
        assert set((await health()).json()["workers"]) == {"idle", "running"}
        runpod.set_health("ep1", jobs={"inQueue": 5000}, workers={"throttled": 2})
        body = (await health()).json()
        assert (body["jobs"]["inQueue"], body["workers"]["throttled"], body["workers"]["idle"]) == (5000, 2, 1)

        runpod.set_health("ep1", "error")
        assert ((await health()).status_code, (await health()).text) == (500, "Internal Server Error")
        runpod.set_health("ep1", "unauthorized")
        assert (await health()).status_code == 401
        runpod.set_health("ep1", "garbage")
        garbage = await health()
        assert garbage.status_code == 200 and garbage.headers["Content-Type"].startswith("text/html")
        with pytest.raises(ValueError):
            garbage.json()
        runpod.set_health("ep1", "empty")
        assert (await health()).json() == {}

        assert (await client.get("/nope/health")).status_code == 404
        assert (await client.get("/ep1/health", headers={"Authorization": "Bearer wrong"})).status_code == 401
