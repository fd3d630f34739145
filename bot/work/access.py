"""Who may retry, where, and which endpoints: decided before RunPod is ever contacted."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable

from bot.infra.config import Settings
from bot.infra.timing import REAL, Timing

log = logging.getLogger(__name__)

GroupMembers = Callable[[str], Awaitable[list[str]]]


class AccessPolicy:
    def __init__(self, settings: Settings, group_members: GroupMembers, clock: Callable[[], float] = time.monotonic,
                 timing: Timing = REAL):
        self._group_cache = timing.group_cache
        self.users = frozenset(settings.allowed_users)
        self.groups = settings.allowed_usergroups
        self.channels = frozenset(settings.allowed_channels)
        self.endpoints = frozenset(settings.allowed_endpoints)
        self._members = group_members
        self._clock = clock
        self._cache: dict[str, tuple[float, frozenset[str]]] = {}
        # One usergroups.users.list per group at a time: a burst of clicks shares the answer.
        self._fetching: dict[str, asyncio.Task[frozenset[str] | None]] = {}

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

    async def _fetch(self, group: str) -> frozenset[str] | None:
        try:
            members = frozenset(await self._members(group))
        except Exception as exc:  # a Slack failure must refuse, not crash
            log.warning("could not list members of user group %s: %s", group, type(exc).__name__)
            return None
        self._cache[group] = (self._clock(), members)
        return members

    async def _group(self, group: str) -> frozenset[str] | None:
        """The group's members; a stale list when Slack fails; None when there is no list at all."""
        cached = self._cache.get(group)
        if cached and self._clock() - cached[0] < self._group_cache:
            return cached[1]
        task = self._fetching.get(group)
        if task is None:
            task = asyncio.ensure_future(self._fetch(group))
            self._fetching[group] = task
            task.add_done_callback(lambda _: self._fetching.pop(group, None))
        members = await asyncio.shield(task)
        if members is None and cached:
            return cached[1]
        return members

    async def may_act(self, user: str) -> bool | None:
        """True or False; None when membership could not be checked (Slack failed and nothing is cached)."""
        if self.open_to_everyone or user in self.users:
            return True
        unknown = False
        for group in self.groups:
            members = await self._group(group)
            if members is None:
                unknown = True
            elif user in members:
                return True
        return None if unknown else False

    def who_may(self) -> str:
        parts = [f"<@{u}>" for u in sorted(self.users)[:10]] + [f"<!subteam^{g}>" for g in self.groups[:10]]
        return ", ".join(parts)

    async def refusal(self, user: str, channel: str, endpoint: str | None, action: str = "retry") -> str | None:
        """Why `user` may not `action` ("retry", or "check" a job's status) here, for them to read; None when
        allowed."""
        doing = "Retries are" if action == "retry" else "Status checks are"
        if self.channels and channel not in self.channels:
            where = ", ".join(f"<#{c}>" for c in sorted(self.channels)[:10])
            return f"{doing} not enabled in this channel. Use one of: {where}."
        if endpoint is not None and self.endpoints and endpoint not in self.endpoints:
            return (f"This app is not set up to call endpoint `{endpoint}`. An admin can add it to "
                    "RUNPOD_RETRY_ENDPOINTS.")
        allowed = await self.may_act(user)
        if allowed is None:
            return ("I could not check your user-group membership with Slack just now, so nothing was done. Try "
                    f"again in a minute, or ask one of: {self.who_may()}.")
        if not allowed:
            verb = "retry RunPod jobs" if action == "retry" else "use this app, status checks included"
            return f"You are not on the list of people who may {verb}. Ask one of: {self.who_may()}."
        return None

    def enabled(self, endpoint: str) -> bool:
        """Whether the app may call RunPod about this endpoint at all (RUNPOD_RETRY_ENDPOINTS)."""
        return not self.endpoints or endpoint in self.endpoints
