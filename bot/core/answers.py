"""What RunPod answered: a 2xx JSON reply, or a typed error carrying the status and a short excerpt.

Plain data with no I/O, so the pure core can classify answers and the client can raise them.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

EXCERPT_LENGTH = 200

_TAGS = re.compile(r"<(script|style)[^>]*>.*?</\1>|<[^>]+>", re.S | re.I)
_SPACE = re.compile(r"\s+")


def excerpt(body: str, secrets: tuple[str, ...] = (), limit: int = EXCERPT_LENGTH) -> str:
    """A short, single-line, tag-free excerpt of a response body, safe to show a human."""
    text = _SPACE.sub(" ", _TAGS.sub(" ", body)).strip()
    for secret in secrets:
        text = text.replace(secret, "[redacted]")
    return text if len(text) <= limit else text[: limit - 1] + "…"


def redact(value: Any, secrets: tuple[str, ...]) -> Any:
    """`value` (parsed JSON) with every secret replaced, keys included: error bodies can echo the API key."""
    if isinstance(value, str):
        for secret in secrets:
            value = value.replace(secret, "[redacted]")
        return value
    if isinstance(value, dict):
        return {redact(k, secrets): redact(v, secrets) for k, v in value.items()}
    if isinstance(value, list):
        return [redact(v, secrets) for v in value]
    return value


class RunPodError(Exception):
    """A RunPod call that did not give a usable answer. `status` is None when no HTTP answer came."""

    def __init__(self, message: str, *, op: str, status: int | None = None, body_excerpt: str = "",
                 body: Any = None, elapsed: float = 0.0):
        super().__init__(message)
        self.op = op
        self.status = status
        self.excerpt = body_excerpt
        self.body = body  # parsed JSON when the answer was JSON, else None
        self.elapsed = elapsed


class RunPodHTTPError(RunPodError):
    """RunPod answered with a non-2xx status."""


class RunPodRateLimited(RunPodHTTPError):
    """RunPod kept answering 429 after every allowed attempt."""


class RunPodTimeout(RunPodError):
    """No answer within the timeout."""


class RunPodUnreachable(RunPodError):
    """The connection failed or was dropped."""


class RunPodBadResponse(RunPodError):
    """A 2xx answer whose body is not a JSON object."""


@dataclass(frozen=True)
class RunPodReply:
    """A 2xx JSON answer."""

    http_status: int
    body: dict[str, Any]
    elapsed: float

    @property
    def job_status(self) -> str | None:
        value = self.body.get("status")
        return value if isinstance(value, str) else None
