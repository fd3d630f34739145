"""Retrying jobs into the thread of a message the app did not post (the message shortcut; a grouped alert's job
retried from the Home tab): the same rules, budget and audit as everywhere, the results in that thread."""

from __future__ import annotations

from bot.core import messages
from bot.core.groups import Tally
from bot.slack.out import Place
from bot.slack.pacing import Pacer
from bot.work.bulk import BulkRun, BulkRunner
from bot.work.bulk_run import final_tally_via_response_url
from bot.work.retry import RetryService
from bot.work.who import Who


async def retry_in_thread(service: RetryService, who: Who, endpoint: str, job: str, channel: str,
                          thread_ts: str) -> None:
    """One job: who asked, then RunPod's answer and how the retried job ends, in the thread of `thread_ts`."""
    if not await service.gate(who, endpoint, (job,)):
        return
    async with service.claims.hold(endpoint, job, who.user) as hold:
        if not await service.admitted(who, endpoint, job, hold):
            return
        place = Place(channel, thread_ts=thread_ts, response_url=who.response_url)
        await service.out.post(place, messages.thread_request(who.user, endpoint, [job]))
        await service.attempt(who, endpoint, job, place, hold, announce=True)


async def bulk_in_thread(bulk: BulkRunner, who: Who, endpoint: str, jobs: tuple[str, ...], channel: str,
                         thread_ts: str) -> None:
    """Several jobs, as a bulk retry whose progress message and summary are replies in the thread of `thread_ts`
    (a thread has one level: the progress message cannot have a thread of its own)."""
    service = bulk.service
    if not await service.gate(who, endpoint, jobs):
        return
    place = Place(channel, thread_ts=thread_ts, response_url=who.response_url)
    progress_ts = await service.out.post(place, messages.bulk_parent(who.user, endpoint, Tally(len(jobs)), [],
                                                                     threaded=False))
    run = BulkRun(who, endpoint, jobs, place)
    if progress_ts:
        async def write(part: str) -> None:
            if part == "summary":
                if run.summary_ts:
                    await service.out.update(channel, run.summary_ts, bulk.summary_message(run)[0])
                return
            await service.out.update(channel, progress_ts, messages.bulk_parent(
                who.user, endpoint, run.tally(), run.again(), threaded=False, unknown=run.unknown()))

        pacer = Pacer(write, service.background, f"bulk progress {endpoint}", service.timing.pacer_interval,
                      wait_first=True)

        def changed(job: str | None) -> None:
            pacer.mark("progress")
            if job is not None and run.summary_ts:
                pacer.mark("summary")  # a job ended: its line in the summary says how

        run.changed = changed
    elif place.via_response_url:
        # As for a command: the tally, once every job ended.
        final_tally_via_response_url(run, service.out, service.background)
    await bulk.run(run)
