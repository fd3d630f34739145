"""Issue 13 at depth, beyond its reproductions (test_regressions.py): what the app records before it acts, and how
it settles what a stop, an outage or an error cut off."""

from __future__ import annotations

import asyncio
import sqlite3
from typing import Any

from bot.core import actions
from tests.harness import button_value, message_text

EP = "ep1"
ALERTS = "CALERTS"
FAILED_BODY = {"status": "FAILED", "error": "CUDA out of memory", "delayTime": 567, "executionTime": 1234}


def inbox_rows(app: Any) -> list[tuple[str, int]]:
    with sqlite3.connect(app.env["RUNPOD_RETRY_DB"]) as db:
        return [(kind, done) for kind, done in db.execute("SELECT kind, done FROM inbox ORDER BY id")]


def told(app: Any, ack: Any) -> str:
    return "\n".join(message_text(r) for r in app.responses(ack.response_url))


async def post_alert(app: Any, runpod: Any, job: str, **opts: Any) -> dict[str, Any]:
    runpod.add_job(EP, job, status="FAILED", **opts)
    status, answer = await app.webhook(EP, {"id": job, **FAILED_BODY})
    assert status == 200, answer
    await app.settle()
    [alert] = [m for m in app.top_level(ALERTS) if job in message_text(m)]
    return alert


# ---------------------------------------------------------------- follows, stale alerts, grouped alerts


async def test_a_follow_that_hits_an_unexpected_error_still_ends_and_lets_go_of_the_job(make_app, runpod, slack):
    app = await make_app()
    alert = await post_alert(app, runpod, "job-8", after_retry=("IN_QUEUE",))
    real_status = app.rt.runpod.status

    async def broken(*_args: Any, **_kwargs: Any) -> Any:
        raise KeyError("a bug while following")

    app.rt.follower.runpod.status = broken
    await app.click(actions.RETRY, button_value(alert, actions.RETRY), message_ts=alert["ts"], user="U1")
    await app.settle()
    app.rt.follower.runpod.status = real_status
    assert "unexpected error while following" in app.thread_text(ALERTS, alert["ts"])
    assert len(app.rt.follower) == 0 and await app.rt.store.follows() == []
    assert await app.rt.store.claimed(EP, "job-8") is None


# ---------------------------------------------------------------- start-up


def test_the_slack_client_retries_a_dropped_connection_twice_not_once():
    from slack_sdk.http_retry.builtin_async_handlers import AsyncConnectionErrorRetryHandler

    from bot.slack.out import make_client

    client = make_client("xoxb-test", "http://127.0.0.1:9/api/")
    handlers = [h for h in client.retry_handlers if isinstance(h, AsyncConnectionErrorRetryHandler)]
    assert [h.max_retry_count for h in handlers] == [2]


async def test_a_port_in_use_is_still_named_at_start_up(runpod, slack, tmp_path, capsys):
    import socket

    from bot.app.server import serve
    from bot.infra.config import load_settings
    from tests.harness import Harness

    with socket.socket() as taken:
        taken.bind(("0.0.0.0", 0))
        taken.listen()
        port = taken.getsockname()[1]
        env = Harness(slack, runpod, tmp_path).env | {"PORT": str(port)}
        code = await asyncio.wait_for(serve(load_settings(env)), timeout=20)
    err = capsys.readouterr().err
    assert code == 2 and f"could not listen on port {port}" in err and "Set PORT to a free port" in err
