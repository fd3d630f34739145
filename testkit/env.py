"""The settings of every app the tests and the benchmark start, built in one place.

`app_settings(slack, runpod, db)` is what any app against the stand-ins needs (tokens, the stand-ins' URLs, a port
the system picks, its database), plus the overrides a caller names. `TEST_PACE` is how fast an app under test
follows jobs and talks to Slack: everything that sets the pace of time for tests goes there, and only there. The
benchmark measures the app as deployed and leaves it out. `process_env(settings)` is the environment of a real
`python -m bot` process: the runner's own, without any of the app's settings it may have, plus `settings`.

`TEST_TIME_SCALE` is the clock the stand-ins run on in tests (their `time_scale`), and every app built here runs on
its stand-ins' clock (`RUNPOD_RETRY_TIME_SCALE`, bot/infra/timing.py): both assume the same limits, met sooner.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from bot.infra.config import SETTING_NAMES

ROOT = Path(__file__).resolve().parents[1]

BOT_TOKEN = "xoxb-test-bot-token"
APP_TOKEN = "xapp-test-app-token"
RUNPOD_KEY = "rp-test-key"
SIGNING_SECRET = "test-signing-secret-0123456789"
WEBHOOK_SECRET = "test-webhook-secret-abcdef"
SECRETS = (BOT_TOKEN, APP_TOKEN, RUNPOD_KEY, SIGNING_SECRET, WEBHOOK_SECRET)

# The clock of the stand-ins in tests, and so of the apps against them: every wait the app assumes (pacing, Slack's and
# RunPod's limits, leases, sweeps, caches) a tenth as long, every rate ten times as high. The limits tier and tests
# marked `real_time` run at 1 (testkit/fixtures.py); the benchmark's stand-ins are built at 1.
TEST_TIME_SCALE = 0.1

# The pace of an app under test: follows every 0.05 s instead of every few seconds, RunPod given 2 s to answer,
# Socket Mode pinged every 0.2 s. Tests that measure the platforms' real limits override what they measure.
TEST_PACE: dict[str, str] = {
    "RUNPOD_FOLLOW_INTERVAL": "0.05",
    "RUNPOD_FOLLOW_MAX": "20",
    "RUNPOD_TIMEOUT": "2",
    "SLACK_PING_INTERVAL": "0.2",
}


def app_settings(slack: Any, runpod: Any, db: str | Path, *, mode: str = "http", **overrides: str) -> dict[str, str]:
    """The settings of an app against the loopback stand-ins (`mode`: "http" or "socket"), then `overrides`."""
    settings = {
        "SLACK_BOT_TOKEN": BOT_TOKEN,
        "SLACK_SIGNING_SECRET": SIGNING_SECRET,
        "RUNPOD_API_KEY": RUNPOD_KEY,
        "SLACK_API_URL": slack.api_url,
        "RUNPOD_API_URL": runpod.url,
        "PORT": "0",
        "RUNPOD_RETRY_DB": str(db),
        **time_scale_settings(slack, runpod),
    }
    if mode == "socket":
        settings["SLACK_APP_TOKEN"] = APP_TOKEN
    settings.update(overrides)
    return settings


def time_scale_settings(*stand_ins: Any) -> dict[str, str]:
    """An app runs on its stand-ins' clock (`time_scale`: TEST_TIME_SCALE, or 1 for real time)."""
    scales = {fake.time_scale for fake in stand_ins}
    if len(scales) != 1:
        raise ValueError(f"the stand-ins run on different clocks: {sorted(scales)}")
    return {"RUNPOD_RETRY_TIME_SCALE": repr(scales.pop())}


def process_env(settings: dict[str, str]) -> dict[str, str]:
    """The environment of a `python -m bot` process: this one's, less the app's settings, able to import `bot` from
    this checkout, plus `settings`."""
    env = {k: v for k, v in os.environ.items() if k not in SETTING_NAMES}
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH", "")) if p)
    env.update(settings)
    return env
