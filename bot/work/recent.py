"""`/runpod-retry failed <endpoint> [30m]`: what failed recently, offered privately with a Confirm button, then
retried as one bulk retry; a second Confirm while that runs is told who started it."""

from __future__ import annotations

import time
from dataclasses import replace

from bot.core import messages
from bot.core.commands import MAX_BULK_JOBS
from bot.slack.out import Place
from bot.work.bulk import BulkRunner
from bot.work.who import Source, Who

# The claim that makes one `failed` Confirm per endpoint run at a time, across replicas: ":" is in no job ID.
CONFIRMING = "failed:confirm"


class RecentFailures:
    def __init__(self, bulk: BulkRunner):
        self.bulk = bulk
        # Confirmations under way, by endpoint: (who confirmed, when, how many jobs, link to the run).
        self._confirmed: dict[str, tuple[str, float, int, str | None]] = {}

    async def offer(self, who: Who, endpoint: str, window: int) -> None:
        """`/runpod-retry failed <endpoint> [30m]`: privately, the count and a Confirm button; nothing runs yet."""
        who = replace(who, source=Source.BULK)
        if not await self.bulk.service.gate(who, endpoint, ()):
            return
        rows = await self.bulk.store.recent_failures(endpoint, time.time() - window)
        if not rows:
            msg = messages.failed_none(endpoint, window)
        else:
            health = await self.bulk.health.get(endpoint) if self.bulk.health is not None else None
            msg = messages.failed_offer(endpoint, window, rows[:MAX_BULK_JOBS], max(len(rows) - MAX_BULK_JOBS, 0),
                                        health=health)
        await self.bulk.out.ephemeral(who.channel, who.user, msg, who.response_url)

    async def confirm(self, who: Who, endpoint: str, window: int) -> None:
        """Confirm clicked: the list is read again (it may have changed since), then it runs as a bulk retry.

        A second Confirm (a double click, or a colleague's) while that run is under way is told it is running and
        who started it: by then its jobs are being retried, and "nothing failed recently" would be wrong."""
        who = replace(who, source=Source.BULK)
        question = Place(who.channel, response_url=who.response_url)
        running = self._confirmed.get(endpoint)
        if running is not None:
            await self._running(who, question, endpoint, *running)
            return
        # Taken before any await, so a second click arriving meanwhile sees it.
        self._confirmed[endpoint] = (who.user, time.time(), 0, None)
        try:
            # Other replicas: a claim in the database on a name no job ID can have, held while the run goes on.
            async with self.bulk.service.claims.hold(endpoint, CONFIRMING, who.user) as hold:
                if hold.taken_by is not None:
                    await self._running(who, question, endpoint, hold.taken_by.user, hold.taken_by.at, 0, None)
                    return
                await self._confirmed_run(who, question, endpoint, window)
        finally:
            self._confirmed.pop(endpoint, None)

    async def _confirmed_run(self, who: Who, question: Place, endpoint: str, window: int) -> None:
        if not await self.bulk.service.gate(who, endpoint, ()):
            return
        rows = await self.bulk.store.recent_failures(endpoint, time.time() - window)
        jobs = tuple(row["job"] for row in rows[:MAX_BULK_JOBS])
        if not jobs:
            await self.bulk.out.respond(question, messages.failed_none(endpoint, window), replace_original=True)
            return
        self._confirmed[endpoint] = (who.user, self._confirmed[endpoint][1], len(jobs), None)
        await self.bulk.out.respond(question, messages.failed_started(endpoint, len(jobs)), replace_original=True)

        def posted(where: str | None) -> None:
            user, at, count, _ = self._confirmed[endpoint]
            self._confirmed[endpoint] = (user, at, count, where)

        await self.bulk.with_parent(who, endpoint, jobs, posted)

    async def _running(self, who: Who, question: Place, endpoint: str, user: str, at: float, count: int,
                       where: str | None) -> None:
        self.bulk.service.metrics.duplicates.labels(kind="failed").inc()
        await self.bulk.out.respond(question, messages.failed_running(endpoint, count, user, at, viewer=who.user,
                                                                      where=where), replace_original=True)

    async def cancel(self, who: Who, endpoint: str) -> None:
        await self.bulk.out.respond(Place(who.channel, response_url=who.response_url),
                                    messages.failed_cancelled(endpoint), replace_original=True)
