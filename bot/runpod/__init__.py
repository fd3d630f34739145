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
from bot.runpod.client import MAX_RETRY_AFTER, RunPodClient

__all__ = [
    "MAX_RETRY_AFTER",
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
