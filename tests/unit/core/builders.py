"""What the unit tests of bot/core share: valid RunPod IDs to generate, what Slack would accept, a RunPod refusal."""

from __future__ import annotations

import json
from typing import Any

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st

from bot.core.ids import MAX_ID_LENGTH
from bot.runpod import RunPodHTTPError
from testkit.harness import assert_valid

ID_CHARS = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_"
ids = st.text(alphabet=ID_CHARS, min_size=1, max_size=MAX_ID_LENGTH)
FAST = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def readable(msg: dict[str, Any]) -> str:
    return msg["text"] + "\n" + json.dumps(msg["blocks"], ensure_ascii=False)


def http_error(status: int, body: Any = None, short: str = "") -> RunPodHTTPError:
    return RunPodHTTPError(f"RunPod answered {status}", op="retry", status=status, body=body, body_excerpt=short)


__all__ = ["FAST", "ID_CHARS", "assert_valid", "http_error", "ids", "readable"]
