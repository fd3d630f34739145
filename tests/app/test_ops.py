"""Operating the app: Prometheus metrics that move when work happens, and structured logs without secrets."""

from __future__ import annotations

import asyncio
import json
import re
import signal
import sys
from pathlib import Path
from typing import Any

import aiohttp
from prometheus_client.parser import text_string_to_metric_families

from testkit.env import RUNPOD_KEY, SECRETS, SIGNING_SECRET, app_settings, process_env
from testkit.fakes import FakeRunPod, FakeSlack
from testkit.fakes.slack import form_encode, sign, slash_command_body
from testkit.harness import Harness, message_text

REQUIRED = {
    "runpod_retry_retries": "counter",
    "runpod_retry_refusals": "counter",
    "runpod_retry_duplicates_suppressed": "counter",
    "runpod_retry_runpod_latency_seconds": "histogram",
    "runpod_retry_ack_latency_seconds": "histogram",
    "runpod_retry_jobs_followed": "gauge",
    "runpod_retry_slack_connected": "gauge",
}


async def scrape(app: Harness) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    """GET /metrics, parsed as Prometheus text (a parse error fails the test): {(sample, labels): value}."""
    assert app.http is not None
    async with app.http.get(f"{app.url}/metrics") as response:
        assert response.status == 200
        assert response.headers["Content-Type"].startswith("text/plain")
        text = await response.text()
    families = {f.name: f for f in text_string_to_metric_families(text)}
    for name, kind in REQUIRED.items():
        assert name in families and families[name].type == kind, (name, sorted(families))
    return {(s.name, frozenset(s.labels.items())): s.value for f in families.values() for s in f.samples}


def value(samples: dict[tuple[str, frozenset[tuple[str, str]]], float], name: str, **labels: str) -> float:
    return samples.get((name, frozenset(labels.items())), 0.0)


async def test_metrics_count_retries_refusals_duplicates_latency_and_follows(make_app, slack, runpod):
    app = await make_app("http")
    # Still running after the retry, until RunPod's webhook says it completed: it stays followed meanwhile.
    runpod.add_job("ep1", "job-m", status="FAILED", after_retry=("IN_PROGRESS",) * 500)
    before = await scrape(app)
    assert value(before, "runpod_retry_retries_total", outcome="requeued", source="command") == 0
    assert value(before, "runpod_retry_slack_connected") == 1

    await app.command("ep1 job-m")
    await slack.wait_for(lambda s: any("back in the queue" in message_text(m) for m in s.messages.values()))
    duplicate = await app.command("ep1 job-m", user="U2")
    usage = await app.command("ep1 job;rm")
    await slack.wait_for(lambda s: s.responses.get(duplicate.response_url))

    during = await scrape(app)
    assert value(during, "runpod_retry_retries_total", outcome="requeued", source="command") == 1
    assert value(during, "runpod_retry_duplicates_suppressed_total", kind="command") == 1
    assert value(during, "runpod_retry_refusals_total", reason="usage") == 1
    assert "Nothing was retried" in usage.text
    assert value(during, "runpod_retry_jobs_followed") == 1
    assert value(during, "runpod_retry_runpod_latency_seconds_count", op="retry", outcome="200") == 1
    assert value(during, "runpod_retry_ack_latency_seconds_count", mode="http") == 3
    assert value(during, "runpod_retry_ack_latency_seconds_bucket", mode="http", le="1.0") == 3

    status, _ = await app.webhook("ep1", {"id": "job-m", "status": "COMPLETED", "output": {"ok": True}})
    assert status == 200
    await app.settle()
    after = await scrape(app)
    assert value(after, "runpod_retry_jobs_followed") == 0
    assert value(after, "runpod_retry_retries_total", outcome="requeued", source="command") == 1


async def test_private_answers_leave_no_lane_and_no_metric_series_per_command(make_app, slack, runpod):
    app = await make_app("http")
    acks = [await app.command("history 5", user=f"U{n}") for n in range(3)]  # answered privately
    for ack in acks:
        await slack.wait_for(lambda s, a=ack: s.responses.get(a.response_url))
    await app.settle()

    lanes = [labels for (name, labels) in await scrape(app) if name == "runpod_retry_outbox_depth"]
    assert all(dict(labels)["lane"] == "respond" or not dict(labels)["lane"].startswith("respond")
               for labels in lanes), lanes
    assert not [lane for lane in app.rt.outbox._lanes if lane.startswith("respond:")]


async def test_metrics_show_the_socket_mode_connection_going_down(make_app, slack):
    app = await make_app("socket")
    assert value(await scrape(app), "runpod_retry_slack_connected") == 1

    slack.refuse_sockets = True
    await slack.drop_sockets()

    for _ in range(250):
        if value(await scrape(app), "runpod_retry_slack_connected") == 0:
            break
        await asyncio.sleep(0.02)
    assert value(await scrape(app), "runpod_retry_slack_connected") == 0


# ---------------------------------------------------------------- logs of the real process


def bot_env(slack: FakeSlack, runpod: FakeRunPod, tmp_path: Path) -> dict[str, str]:
    return process_env(app_settings(slack, runpod, tmp_path / "bot.db", RUNPOD_FOLLOW_INTERVAL="0.05",
                                    LOG_FORMAT="json", LOG_LEVEL="INFO"))


async def send_command(http: aiohttp.ClientSession, port: int, slack: FakeSlack, text: str) -> None:
    body = form_encode(slash_command_body(text, user_id="U7", channel_id="C1",
                                          response_url=slack.new_response_url()))
    async with http.post(f"http://127.0.0.1:{port}/slack/events", data=body,
                         headers=sign(body, SIGNING_SECRET)) as response:
        assert response.status == 200


async def test_json_logs_name_user_endpoint_and_job_on_every_retry_line_and_never_a_secret(slack, runpod, tmp_path):
    runpod.add_job("ep1", "job-ok", status="FAILED", after_retry=("COMPLETED",))
    runpod.add_job("ep1", "job-401", status="FAILED")
    proc = await asyncio.create_subprocess_exec(sys.executable, "-m", "bot", cwd=tmp_path,
                                                env=bot_env(slack, runpod, tmp_path),
                                                stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    lines: list[str] = []

    async def read_log() -> None:
        assert proc.stderr is not None
        while line := await proc.stderr.readline():
            lines.append(line.decode())

    reader = asyncio.create_task(read_log())
    try:
        port_line = await slack.wait_for(lambda _: next((m for m in lines if "listening on port" in m), None),
                                         timeout=30)
        port = int(re.search(r"listening on port (\d+)", port_line).group(1))  # type: ignore[union-attr]
        async with aiohttp.ClientSession() as http:
            await send_command(http, port, slack, "ep1 job-ok")
            await slack.wait_for(lambda s: any("completed" in message_text(m) and "job-ok" in message_text(m)
                                               for m in s.messages.values()), timeout=10)
            # RunPod refuses the key and echoes it back in its answer.
            runpod.fault("retry", status=401, body=f"Unauthorized: the API key {RUNPOD_KEY} is not valid")
            await send_command(http, port, slack, "ep1 job-401")
            await slack.wait_for(lambda s: any("RUNPOD_API_KEY" in message_text(m) for m in s.messages.values()),
                                 timeout=10)
    finally:
        proc.send_signal(signal.SIGTERM)
        await asyncio.wait_for(proc.wait(), timeout=15)
        await asyncio.wait_for(reader, timeout=5)

    assert proc.returncode == 0, "".join(lines)
    entries: list[dict[str, Any]] = []
    for line in lines:
        entry = json.loads(line)  # one JSON object per line, nothing else
        assert isinstance(entry, dict) and {"ts", "level", "logger", "msg"} <= entry.keys(), line
        entries.append(entry)
    leaked = [line for line in lines if any(secret in line for secret in SECRETS)]
    assert leaked == []
    about_jobs = [e for e in entries if "job-ok" in json.dumps(e) or "job-401" in json.dumps(e)]
    for entry in about_jobs:
        assert entry.get("user") == "U7" and entry.get("endpoint") == "ep1", entry
        assert entry.get("job") in ("job-ok", "job-401"), entry
    retried = {(e["job"], e["msg"]) for e in about_jobs if e["msg"].startswith("retry ")}
    assert retried == {("job-ok", "retry requeued"), ("job-401", "retry unauthorized")}, about_jobs
