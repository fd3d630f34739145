"""Who asks for a retry, and from where: the person, their channel, the surface, the command's response_url."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Any


class Source(StrEnum):
    COMMAND = "command"
    BUTTON = "button"
    BULK = "bulk"
    RETRY_ALL = "retry_all"
    MODAL = "modal"         # the retry form opened by `/runpod-retry` with no text
    SHORTCUT = "shortcut"   # the message shortcut "Retry RunPod jobs"
    HOME = "home"           # a Retry button on the Home tab
    CLI = "cli"             # `python -m bot retry` from a shell
    POLICY = "policy"       # a retry policy, automatically (RUNPOD_RETRY_POLICIES)


@dataclass(frozen=True)
class Who:
    """The person asking and where they asked."""

    user: str
    channel: str
    source: Source
    response_url: str | None = None

    def to_json(self) -> dict[str, Any]:
        return {"user": self.user, "channel": self.channel, "source": self.source.value,
                "response_url": self.response_url}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Who:
        return cls(data["user"], data["channel"], Source(data["source"]), data.get("response_url"))
