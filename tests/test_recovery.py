"""Issue 13 at depth, beyond its reproductions (test_regressions.py): what the app records before it acts, and how
it settles what a stop, an outage or an error cut off."""

from __future__ import annotations

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
