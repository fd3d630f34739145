"""Talking to RunPod: one HTTP client with explicit timeouts and typed errors. Never imports Slack code."""

from bot.core.answers import (
    RunPodBadResponse,
    RunPodError,
    RunPodHTTPError,
    RunPodRateLimited,
    RunPodReply,
    RunPodTimeout,
    RunPodUnreachable,
    excerpt,
    redact,
)
from bot.runpod.client import RunPodClient

__all__ = [
    "RunPodBadResponse",
    "RunPodClient",
    "RunPodError",
    "RunPodHTTPError",
    "RunPodRateLimited",
    "RunPodReply",
    "RunPodTimeout",
    "RunPodUnreachable",
    "excerpt",
    "redact",
]
