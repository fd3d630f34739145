"""Loopback stand-ins for Slack and RunPod used by the integration tests."""

from .runpod import FakeRunPod, Job, RunPodCall, RunPodFault
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
)

__all__ = [
    "FakeRunPod",
    "FakeSlack",
    "Job",
    "RunPodCall",
    "RunPodFault",
    "SlackCall",
    "SlackFault",
    "block_actions_payload",
    "block_problems",
    "form_encode",
    "interaction_form_body",
    "sign",
    "slash_command_body",
]
