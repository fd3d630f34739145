"""Retrying one job into the thread of a message the app did not post (the message shortcut; a grouped alert's job
retried from the Home tab): the same rules, budget and audit as everywhere, the results in that thread. Several jobs
from the shortcut are a bulk retry whose place is that thread (`BulkRunner.from_command` with its `thread_ts`)."""

from __future__ import annotations

from bot.core import messages
from bot.slack.out import Place
from bot.work.retry import RetryService
from bot.work.who import Who


async def retry_in_thread(service: RetryService, who: Who, endpoint: str, job: str, channel: str,
                          thread_ts: str, *, once: str | None = None) -> None:
    """One job: who asked, then RunPod's answer and how the retried job ends, in the thread of `thread_ts`. `once`:
    the request's key for its first reply, posted once whoever carries it out (bot/work/single.py)."""
    if not await service.gate(who, endpoint, (job,)):
        return
    async with service.claims.hold(endpoint, job, who.user) as hold:
        if not await service.admitted(who, endpoint, job, hold):
            return
        place = Place(channel, thread_ts=thread_ts, response_url=who.response_url)
        await service.out.post(place, messages.thread_request(who.user, endpoint, [job]), once=once)
        await service.attempt(who, endpoint, job, place, hold, announce=True)
