"""Operating the app: Prometheus metrics that move when work happens (the real process's logs are in
tests/process/test_json_logs.py)."""

from __future__ import annotations

import asyncio

from prometheus_client.parser import text_string_to_metric_families

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
    await slack.wait_for(lambda s: any("was requeued" in message_text(m) for m in s.messages.values()))
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
