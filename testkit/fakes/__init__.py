"""Loopback stand-ins for Slack and RunPod used by the integration tests.

Both enforce the platforms' rate limits when switched on (`SlackLimits`, `RunPodLimits`; see `limits.py`):
    FakeSlack(limits=SlackLimits())            # Slack's real limits
    slack.limits = SlackLimits.off()           # nothing: no 429s, no response_url cap
    runpod.limits = RunPodLimits(window=0.5)   # the documented table, over half a second
"""

from .limits import OpLimit, Rate, RateLimitHit, RunPodLimits, SlackLimits
from .runpod import FakeRunPod, Job, RunPodCall, RunPodFault
from .runpod_health import HEALTH_PRESETS, Health
from .slack import (
    FakeSlack,
    SlackCall,
    SlackFault,
    block_actions_payload,
    block_problems,
    form_encode,
    interaction_form_body,
    sign,
    slash_command_body,
    view_problems,
)

__all__ = [
    "HEALTH_PRESETS",
    "FakeRunPod",
    "FakeSlack",
    "Health",
    "Job",
    "OpLimit",
    "Rate",
    "RateLimitHit",
    "RunPodCall",
    "RunPodFault",
    "RunPodLimits",
    "SlackCall",
    "SlackFault",
    "SlackLimits",
    "block_actions_payload",
    "block_problems",
    "form_encode",
    "interaction_form_body",
    "sign",
    "slash_command_body",
    "view_problems",
]
