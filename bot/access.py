"""Who may retry, where, and which endpoints: decided before RunPod is ever contacted."""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable

from .config import Settings

log = logging.getLogger(__name__)

GROUP_CACHE_SECONDS = 60.0

GroupMembers = Callable[[str], Awaitable[list[str]]]


class AccessPolicy:
    def __init__(self, settings: Settings, group_members: GroupMembers, clock: Callable[[], float] = time.monotonic):
        self.users = frozenset(settings.allowed_users)
        self.groups = settings.allowed_usergroups
        self.channels = frozenset(settings.allowed_channels)
        self.endpoints = frozenset(settings.allowed_endpoints)
        self._members = group_members
        self._clock = clock
        self._cache: dict[str, tuple[float, frozenset[str]]] = {}

    @property
    def open_to_everyone(self) -> bool:
        return not self.users and not self.groups

    def describe(self) -> str:
        """One line for the start-up log."""
        who = ("everyone in the workspace may retry (set RUNPOD_RETRY_ALLOWED_USERS or "
               "RUNPOD_RETRY_ALLOWED_USERGROUPS to restrict)" if self.open_to_everyone
               else f"{len(self.users)} users and {len(self.groups)} user groups may retry")
        where = f"in {len(self.channels)} channels" if self.channels else "in any channel"
        which = f"on {len(self.endpoints)} endpoints" if self.endpoints else "on any endpoint"
        return f"Access: {who}, {where}, {which}."

    async def _group(self, group: str) -> frozenset[str]:
        now = self._clock()
        cached = self._cache.get(group)
        if cached and now - cached[0] < GROUP_CACHE_SECONDS:
            return cached[1]
        try:
            members = frozenset(await self._members(group))
        except Exception as exc:  # a Slack failure must refuse, not crash; a stale list beats none
            log.warning("could not list members of user group %s: %s", group, type(exc).__name__)
            return cached[1] if cached else frozenset()
        self._cache[group] = (now, members)
        return members

    async def may_act(self, user: str) -> bool:
        if self.open_to_everyone or user in self.users:
            return True
        for group in self.groups:
            if user in await self._group(group):
                return True
        return False

    def who_may(self) -> str:
        parts = [f"<@{u}>" for u in sorted(self.users)[:10]] + [f"<!subteam^{g}>" for g in self.groups[:10]]
        return ", ".join(parts)

    async def refusal(self, user: str, channel: str, endpoint: str | None) -> str | None:
        """Why `user` may not retry here, for them to read; None when allowed."""
        if self.channels and channel not in self.channels:
            where = ", ".join(f"<#{c}>" for c in sorted(self.channels)[:10])
            return f"Retries are not enabled in this channel. Use one of: {where}."
        if endpoint is not None and self.endpoints and endpoint not in self.endpoints:
            return (f"This app is not set up to call endpoint `{endpoint}`. An admin can add it to "
                    "RUNPOD_RETRY_ENDPOINTS.")
        if not await self.may_act(user):
            return f"You are not on the list of people who may retry RunPod jobs. Ask one of: {self.who_may()}."
        return None
