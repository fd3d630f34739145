"""The README's pictures of health answers and of a traceback's alert say what the builders say."""

from __future__ import annotations

import re
from pathlib import Path

from bot.core import messages
from bot.core.alerts import new_alert
from bot.core.health import parse_health, read_health
from testkit.fakes.worker_shapes import RUNPOD_DOCS_HEALTH, TORCH_OOM_TRACEBACK

README = " ".join((Path(__file__).resolve().parents[2] / "README.md").read_text(encoding="utf-8").split())
ZERO = {"idle": 0, "initializing": 0, "ready": 0, "running": 0, "throttled": 0, "unhealthy": 0}


def flat(text: str) -> str:
    return " ".join(text.split())


def test_health_pictures_lead_with_the_builders_verdicts():
    for body in ({"jobs": {"inQueue": 0}, "workers": ZERO}, RUNPOD_DOCS_HEALTH,
                 {"jobs": {"inQueue": 6}, "workers": ZERO | {"throttled": 3}}):
        reading = read_health(parse_health("abc123xyz4567", body, 0.0))
        assert f"{reading.headline}." in README
        if reading.advice:
            assert flat(reading.advice) in README


def test_the_traceback_alert_picture_says_what_the_alert_says():
    alert = new_alert("abc123xyz4567", {"id": "60902e6c-08a1-426e-9cb9-9eaec90f5e2b-u1", "status": "FAILED",
                                        "error": TORCH_OOM_TRACEBACK}, "C1", 0.0)
    msg = messages.alert_message(alert, 60.0)
    notification = re.sub(r"60902e6c-\S+-u1", "60902e6c-…-u1", msg["text"]).split(" Retry before")[0]
    assert flat(notification) in README
    assert "The worker's whole error (its traceback) is in the thread." in README
