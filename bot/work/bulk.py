"""Retrying many jobs at once: one parent message with progress, bounded concurrency toward RunPod, one
summary reply, every job followed to its end and counted; a run whose replica died is finished by another.

How one run's jobs are retried and summarised is bot/work/bulk_jobs.py; this module is where runs come from (a
command, a restart, a dead replica's inbox row) and how each is kept current until its jobs have ended."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import replace
from typing import Any

from bot.core import messages
from bot.core.groups import UNKNOWN, JobResult
from bot.core.outcome import RETRYABLE, Outcome
from bot.core.worker_errors import error_summary
from bot.infra.config import Settings
from bot.infra.logs import ctx
from bot.slack.pacing import Pacer
from bot.store import Queued
from bot.work.accepted import let_go
from bot.work.bulk_jobs import BulkJobs
from bot.work.bulk_run import (
    BulkRun,
    catch_up,
    cut_off,
    final_tally_via_response_url,
    mention_failed_again,
    post_progress,
    save_ending,
)
from bot.work.events import Ending, JobListener
from bot.work.retry import RetryService
from bot.work.who import Source, Who

log = logging.getLogger(__name__)

# Bulk retries older than this are not picked up again after a restart (their jobs' follows have long ended).
MEMORY_SECONDS = 24 * 3600.0
# The inbox row of a bulk retry: written before the command is acknowledged (`bulk_request`), so the replica that
# adopts it after a death carries the request out, however far the first one got (`resume`).
BULK_REQUEST = "bulk"


def bulk_request(who: Who, endpoint: str, jobs: tuple[str, ...], thread_ts: str | None = None) -> dict[str, Any]:
    """`thread_ts`: the message shortcut's run, whose place is that thread of `who.channel`."""
    where = {} if thread_ts is None else {"thread_ts": thread_ts}
    return {"request": {"who": who.to_json(), "endpoint": endpoint, "jobs": list(jobs), **where}}


def _parent_key(work_id: int) -> str:
    """The run's parent message in the outbox: posted once, whichever replica carries the request out."""
    return f"bulk-parent#{work_id}"


class BulkRunner(BulkJobs, JobListener):
    def __init__(self, service: RetryService, settings: Settings):
        super().__init__(service, settings)
        # Bulk runs this process keeps current, by run id: one object per run, whoever updates it.
        self._runs: dict[str, BulkRun] = {}
        # Other owners of runs (a grouped alert's Retry all): the run a job of theirs belongs to, by the run's ref
        # ("storm:…"), for a settled retry or a follow taken over from another process: `find(ref, job, user)`.
        # A grouped alert's Retry all, named by its ref ("storm:…"): `StormDesk.run_of`, set at wiring.
        self.storm_run: Callable[[str, str, str], Awaitable[BulkRun | None]] | None = None
        service.events.subscribe(self)  # its jobs' answers settled after a restart, and their endings

    # ---------------------------------------------------------------- the command

    async def from_command(self, who: Who, endpoint: str, jobs: tuple[str, ...], work_id: int | None = None, *,
                           thread_ts: str | None = None) -> None:
        """`/runpod-retry <endpoint> <job> <job> …` (already validated and de-duplicated by the parser), or the
        message shortcut's form with several jobs: its run's place is the thread `thread_ts` (its source stays the
        shortcut's). `work_id`: the request's inbox row (`bulk_request`), let go of when the run is done."""
        if thread_ts is None:
            who = replace(who, source=Source.BULK)
        if not await self.service.gate(who, endpoint, jobs):
            await let_go(self.store, work_id)
            return
        await self.with_parent(who, endpoint, jobs, work_id=work_id, thread_ts=thread_ts)

    async def with_parent(self, who: Who, endpoint: str, jobs: tuple[str, ...],
                           posted: Callable[[str | None], None] | None = None, *, work_id: int | None = None,
                           thread_ts: str | None = None) -> None:
        run, shown = await post_progress(self.out, who, endpoint, jobs, thread_ts,
                                         once=None if work_id is None else _parent_key(work_id))
        run.work_id, place = work_id, run.place
        if posted is not None:
            posted(messages.permalink(self.service.workspace_url, place.channel, shown) if shown else None)
        if shown:
            run.ref = f"bulk:{run.run_id}"
            self._runs[run.run_id] = run
            self._keep_parent_current(run)
            await self.own(run, "bulk", {"run": run.run_id})
        elif place.via_response_url:
            final_tally_via_response_url(run, self.out, self.service.background)
        try:
            await self.run(run)
        finally:
            if shown:
                # Saved now, not only at the next paced update: a restart a moment later must still find it.
                await self._save(run)
            self._let_go(run)

    async def own(self, run: BulkRun, kind: str, payload: dict[str, Any]) -> None:
        """An inbox row this replica holds while the run goes on (`_finish` lets it go): if the replica dies, the
        one that adopts the row finishes the run (`take_over`). `kind` says who resumes it: "bulk" (here) or
        "retry_all" (the grouped alert's storm desk)."""
        try:
            if kind == "bulk":
                await self._save(run, strict=True)  # what `resume` reads
            if run.work_id is None:  # a command's run has its row already: the request, written before the ack
                run.work_id = await self.store.accept(kind, payload, time.time())
        except Exception:  # the run goes on; only a death before its end would leave it unfinished
            log.exception("could not write the bulk retry down", extra=ctx(endpoint=run.endpoint))

    def _keep_parent_current(self, run: BulkRun) -> None:
        ts = run.progress_ts or run.place.thread_ts
        assert ts is not None

        async def write(part: str, turn: float | None) -> None:
            if self.store.shared:
                # Other replicas may report some of its jobs (follows they adopted): what they recorded counts too.
                await catch_up(self.store, run)
            if part == "summary":
                if run.summary_ts:
                    await self.out.update(run.place.channel, run.summary_ts, self.summary_message(run)[0], turn=turn)
                return
            await self.out.update(run.place.channel, ts,
                                  messages.bulk_parent(run.who.user, run.endpoint, run.tally(), run.again(),
                                                       threaded=run.progress_ts is None, unknown=run.unknown()),
                                  turn=turn)
            if run.tally().sent:
                await self._save(run)

        # The parent was just posted: its first update waits too.
        pacer = Pacer(write, self.service.background, f"bulk parent {run.endpoint}", self.service.timing.pacer_interval,
                      wait_first=True)

        def changed(job: str | None, *, turn: float | None = None) -> None:
            pacer.mark("parent", turn=turn)
            if job is not None and run.summary_ts and run.table:
                pacer.mark("summary", turn=turn)  # a job ended: its line in the summary says how

        run.changed = changed
        run.shown = pacer.written

    async def load(self) -> None:
        """After a restart: bulk retries whose jobs are still followed keep their parent's tally current. With
        replicas, other live replicas own their runs: a run is read when one of its jobs needs it (`_find`)."""
        if self.store.shared:
            return
        for data in await self.store.recent_bulks(time.time() - MEMORY_SECONDS):
            run = await self._loaded(data)
            if run.running:
                self._runs[run.run_id] = run
                self._keep_parent_current(run)
                self.adopt(run, run.running)

    async def _find(self, run_id: str) -> BulkRun | None:
        """The run, as this process keeps it, or as the store has it (a replica's run, adopted with its work)."""
        run = self._runs.get(run_id)
        if run is None:
            data = await self.store.load_bulk(run_id)
            loaded = await self._loaded(data) if data is not None else None
            # Looked again after the awaits: settles running alongside may have loaded it meanwhile, and the run must
            # be one object here, or the answers they give it are lost with the copy that is not kept.
            run = self._runs.get(run_id)
            if run is None and loaded is not None:
                run = self._runs[run_id] = loaded
                if run.place.thread_ts:
                    self._keep_parent_current(run)
        elif self.store.shared and run.work_id is None:
            # Another replica may own it and have moved on (its summary posted): take that in before writing it.
            data = await self.store.load_bulk(run_id)
            if data is not None:
                stored = BulkRun.from_json(data)
                run.summary_ts = run.summary_ts or stored.summary_ts
                run.summarized = run.summarized or stored.summarized
            await catch_up(self.store, run)
        return run

    async def _run_of(self, ref: str, job: str, user: str) -> BulkRun | None:
        """The run `ref` names, if `job` is one of its jobs: this runner's, or a grouped alert's Retry all."""
        if ref.startswith("bulk:"):
            run = await self._find(ref.removeprefix("bulk:"))
        else:
            run = await self.storm_run(ref, job, user) if self.storm_run is not None else None
        return run if run is not None and job in run.jobs else None

    async def _loaded(self, data: str) -> BulkRun:
        """A run as the store has it: its JSON row, with the job rows any replica wrote since."""
        run = BulkRun.from_json(data)
        await catch_up(self.store, run)
        return run

    async def resume(self, row: Queued) -> None:
        """A bulk run whose replica died (or stopped before its summary went out): the jobs it had not reached are
        retried here, once each; the retries it had sent are settled by whoever adopted them; the summary goes out
        and the parent's tally is completed as the jobs end."""
        request = row.payload.get("request")
        if isinstance(request, dict):
            run = await self._requested(row.id, request)
        else:  # a row written by an earlier version, once the run's parent was posted
            run = await self._find(str(row.payload.get("run") or ""))
        if run is None:
            await let_go(self.store, row.id)
            return
        await self.take_over(run, row.id)
        await self._save(run)
        self._let_go(run)

    async def _requested(self, work_id: int, request: dict[str, Any]) -> BulkRun | None:
        """The run a bulk request's row stands for, as far as its dead replica got with it; None when the run was
        carried out here from the start (its replica died before posting anything) or cannot be found."""
        who = Who.from_json(dict(request["who"]))
        thread_ts = request.get("thread_ts")  # the message shortcut's run: its place is that thread
        who = replace(who, source=Source.BULK) if thread_ts is None else who
        endpoint, jobs = str(request["endpoint"]), tuple(str(job) for job in request["jobs"])
        if await self.store.said(_parent_key(work_id)) is None:  # nothing of it happened yet: all of it happens here
            log.info("carrying out a bulk retry accepted before a restart", extra=ctx(endpoint=endpoint))
            await self.from_command(who, endpoint, jobs, work_id, thread_ts=thread_ts)
            return None
        # Queued already: this waits for that post and gives its ts (it is not posted again).
        posted, shown = await post_progress(self.out, who, endpoint, jobs, thread_ts, once=_parent_key(work_id))
        if not shown:
            log.warning("a bulk retry accepted before a restart has no message to report to; let go of",
                        extra=ctx(endpoint=endpoint))
            return None
        run = await self._find(posted.run_id)
        if run is None:  # its replica died between posting the parent and writing the run down
            run = posted
            run.ref = f"bulk:{run.run_id}"
            self._runs[run.run_id] = run
            self._keep_parent_current(run)
        return run

    async def take_over(self, run: BulkRun, work_id: int) -> None:
        """Finish a run another process started (a command's bulk retry, or a grouped alert's Retry all)."""
        run.work_id = work_id
        for job in await catch_up(self.store, run):
            run.changed(job)
        for job in run.running:
            self._following[(run.endpoint, job)] = run
        if not run.summarized and run.summary_key is not None:
            # The mark the run keeps may be lost (its replica died right after queueing the summary, or another
            # replica wrote the storm over it); the outbox is where the summary is, or is not.
            run.summarized = await self.store.said(run.summary_key) is not None
        if run.summarized:  # the run was finished, its summary queued: only its row was left to let go
            log.info("taking over a bulk retry whose summary is queued already: nothing left to do",
                     extra=ctx(endpoint=run.endpoint))
            await let_go(self.store, work_id)
            return
        settling = {str(r.payload.get("job")) for r in await self.store.open_work("retry")
                    if r.payload.get("run") == run.ref}
        todo = [job for job in run.unanswered if job not in settling]
        log.info("taking over a bulk retry: %d jobs still to retry, %d being settled", len(todo), len(settling),
                 extra=ctx(endpoint=run.endpoint))
        run.changed(None)
        if todo:
            await asyncio.gather(*(self._retry_one(run, job, taking_over=True) for job in todo))
            if any(job in run.unanswered for job in todo):  # stopping: handed on again, as `run` does
                return
        # How long to wait for the retries the dead replica had sent to be settled before the summary.
        timing = self.service.timing
        deadline = time.monotonic() + timing.bulk_settle_wait
        while run.unanswered and time.monotonic() < deadline:
            await asyncio.sleep(timing.bulk_settle_poll)
            for job in await catch_up(self.store, run):
                run.changed(job)
        for job in run.unanswered:  # still being settled: the summary says what is known, and the settle follows
            run.results[job] = cut_off(job)
        await self._finish(run)

    def _let_go(self, run: BulkRun) -> None:
        """A run whose jobs have all been answered and ended needs no keeping any more."""
        if run.tally().ended and self._runs.get(run.run_id) is run:
            del self._runs[run.run_id]

    async def settled(self, sent: dict[str, Any], outcome: Outcome) -> None:
        """After a restart, a retry of a bulk run whose answer was lost was settled by /status: its line and the
        parent's tally show the answer, and its follow reports its end to the run again."""
        ref = str(sent.get("run") or "")
        run = await self._run_of(ref, outcome.job, str((sent.get("who") or {}).get("user") or "")) if ref else None
        if run is None:
            return
        run.results[outcome.job] = JobResult.of(outcome)
        if outcome.ok:
            self._following[(run.endpoint, outcome.job)] = run
        await self._saved(run, outcome.job)
        run.changed(outcome.job)
        if ref.startswith("bulk:"):
            await self._save(run)
            self._let_go(run)

    def adopt(self, run: BulkRun, jobs: list[str]) -> None:
        """After a restart: the follows of these jobs resumed; report their ends to `run` again."""
        for job in jobs:
            self._following[(run.endpoint, job)] = run

    async def ended(self, ending: Ending) -> None:
        """A followed job ended (any follow, not only bulk ones). Each write here may be made twice (told again
        while the database is away, and by whoever resumes a follow cut off by a kill): each overwrites the job's
        own row."""
        final = ending.final or {}
        status = str(final.get("status") or UNKNOWN).upper()
        if status in RETRYABLE:
            # Seen failing again: `failed` offers it again.
            await self.store.record_failure(ending.endpoint, ending.job, status, error_summary(final.get("error")),
                                            time.time())
        run = self._following.get(ending.key)
        if run is None and ending.run:
            # A follow this replica took over from another process: its run is found by the ref the retry gave it.
            run = await self._run_of(ending.run, ending.job, ending.user)
        if run is None:
            return
        run.finals[ending.job] = status
        await save_ending(self.store, run, ending.job)  # what every replica's view of the run reads
        run.changed(ending.job, turn=ending.turn)
        await run.shown()  # on its way to Slack before the follow is let go of
        self._following.pop(ending.key, None)
        if status in RETRYABLE:
            await mention_failed_again(self.store, self.out, run, ending.job, final.get("error"))
        self._let_go(run)

