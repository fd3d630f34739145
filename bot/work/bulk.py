"""Retrying many jobs at once: one parent message with progress, bounded concurrency toward RunPod, one
summary reply, every job followed to its end and counted. Also `failed`: retry what failed recently."""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from typing import Any

from bot.core import messages
from bot.core.commands import MAX_BULK_JOBS
from bot.core.groups import UNKNOWN, JobResult, Tally, failed_again
from bot.core.outcome import RETRYABLE, Kind, Outcome
from bot.infra.config import Settings
from bot.infra.logs import ctx
from bot.slack.out import Place
from bot.slack.pacing import Pacer
from bot.store import AuditEntry
from bot.work.follow import FollowTarget
from bot.work.health import EndpointHealth
from bot.work.retry import RetryService, Source, Who

log = logging.getLogger(__name__)

Key = tuple[str, str]
# Bulk retries older than this are not picked up again after a restart (their jobs' follows have long ended).
MEMORY_SECONDS = 24 * 3600.0
# A job whose retry was sent when a shutdown cut the run off; the next start settles it and updates the line.
CUT_OFF = "no answer before the app restarted (it may have gone through; checked with /status after the restart)"


def _quietly(_job: str | None) -> None:
    """A run whose progress nobody displays (its parent message could not be posted)."""


@dataclass
class BulkRun:
    """One bulk retry. A storm's Retry all shares `results` and `finals` with the storm, which keeps them."""

    who: Who
    endpoint: str
    jobs: tuple[str, ...]
    place: Place                                   # the thread the summary reply goes to
    changed: Callable[[str | None], None] = _quietly  # a job's answer or end arrived (None: the run as a whole)
    results: dict[str, JobResult] = field(default_factory=dict)
    finals: dict[str, str] = field(default_factory=dict)
    table: bool = True                    # the summary lists each job (a grouped alert's job list does instead)
    summary_ts: str | None = None         # the summary reply, kept current as jobs end
    summarized: bool = False              # the summary reply went out
    ref: str = ""   # what a retry settled after a restart reports to: "bulk:<run id>" or "storm:<storm key>"

    def tally(self) -> Tally:
        return Tally.of(self.jobs, self.results, self.finals)

    @property
    def running(self) -> list[str]:
        """Jobs RunPod requeued that have not ended yet."""
        return [job for job in self.jobs if job in self.results and self.results[job].requeued
                and job not in self.finals]

    @property
    def run_id(self) -> str:
        return f"{self.place.channel}/{self.place.thread_ts}"

    def to_json(self) -> str:
        """What a restart needs to keep the parent message's tally current (RunPod's JSON was already shown)."""
        return json.dumps({
            "who": {"user": self.who.user, "channel": self.who.channel, "source": self.who.source.value},
            "endpoint": self.endpoint, "jobs": list(self.jobs), "channel": self.place.channel,
            "thread_ts": self.place.thread_ts, "finals": self.finals, "summary_ts": self.summary_ts,
            "results": {job: asdict(replace(r, body=None)) for job, r in self.results.items()}})

    @classmethod
    def from_json(cls, text: str) -> BulkRun:
        data = json.loads(text)
        who = Who(data["who"]["user"], data["who"]["channel"], Source(data["who"]["source"]))
        run = cls(who, data["endpoint"], tuple(data["jobs"]), Place(data["channel"], thread_ts=data["thread_ts"]),
                  results={job: JobResult(**r) for job, r in data["results"].items()}, finals=data["finals"],
                  summary_ts=data.get("summary_ts"), summarized=True)
        run.ref = f"bulk:{run.run_id}"
        return run

    def again(self) -> list[str]:
        return failed_again(self.jobs, self.results, self.finals)


class BulkRunner:
    def __init__(self, service: RetryService, settings: Settings):
        self.service = service
        self.settings = settings
        self.out = service.out
        self.store = service.store
        self.follower = service.follower
        # One bound for every bulk run together: RunPod's rate limits are per account, not per command.
        self.slots = asyncio.Semaphore(settings.bulk_concurrency)
        self._following: dict[Key, BulkRun] = {}
        # `failed` confirmations under way, by endpoint: (who confirmed, when, how many jobs, link to the run).
        self._confirmed: dict[str, tuple[str, float, int, str | None]] = {}
        # Bulk runs this process keeps current, by run id: one object per run, whoever updates it.
        self._runs: dict[str, BulkRun] = {}
        self.health: EndpointHealth | None = None  # health snapshots for `failed` and the summary; set at wiring
        self.follower.on_end.append(self._ended)
        service.on_settled.append(self._settled)

    # ---------------------------------------------------------------- the command

    async def from_command(self, who: Who, endpoint: str, jobs: tuple[str, ...]) -> None:
        """`/runpod-retry <endpoint> <job> <job> …` (already validated and de-duplicated by the parser)."""
        who = replace(who, source=Source.BULK)
        if not await self.service.gate(who, endpoint, jobs):
            return
        await self._with_parent(who, endpoint, jobs)

    async def _with_parent(self, who: Who, endpoint: str, jobs: tuple[str, ...],
                           posted: Callable[[str | None], None] | None = None) -> None:
        place = Place(who.channel, response_url=who.response_url)
        place.thread_ts = await self.out.post(place, messages.bulk_parent(who.user, endpoint, Tally(len(jobs)), []))
        if posted is not None:
            posted(messages.permalink(self.service.workspace_url, place.channel, place.thread_ts)
                   if place.thread_ts else None)
        run = BulkRun(who, endpoint, jobs, place)
        if place.thread_ts:
            run.ref = f"bulk:{run.run_id}"
            self._runs[run.run_id] = run
            self._keep_parent_current(run)
        elif place.via_response_url:
            self._final_tally_via_response_url(run)
        try:
            await self.run(run)
        finally:
            if place.thread_ts:
                # Saved now, not only at the next paced update: a restart a moment later must still find it.
                await self._save(run)
            self._let_go(run)

    def _keep_parent_current(self, run: BulkRun) -> None:
        assert run.place.thread_ts is not None
        ts = run.place.thread_ts

        async def write(part: str) -> None:
            if part == "summary":
                if run.summary_ts:
                    await self.out.update(run.place.channel, run.summary_ts, self._summary_message(run)[0])
                return
            await self.out.update(run.place.channel, ts,
                                  messages.bulk_parent(run.who.user, run.endpoint, run.tally(), run.again()))
            if run.tally().sent:
                await self._save(run)

        # The parent was just posted: its first update waits too.
        pacer = Pacer(write, self.service.background, f"bulk parent {run.endpoint}", wait_first=True)

        def changed(job: str | None) -> None:
            pacer.mark("parent")
            if job is not None and run.summary_ts and run.table:
                pacer.mark("summary")  # a job ended: its line in the summary says how

        run.changed = changed

    def _final_tally_via_response_url(self, run: BulkRun) -> None:
        """Where the app cannot post (the run's messages went through the command's response_url), no message can
        be kept current: when every job has ended, the final tally is sent there too."""
        told = False

        def changed(_job: str | None) -> None:
            nonlocal told
            if told or not run.summarized or not run.tally().ended:
                return
            told = True
            final = messages.bulk_final(run.who.user, run.endpoint, run.tally(), run.again())
            self.service.background.spawn(self.out.respond(run.place, final, in_channel=True),
                                          name=f"bulk final tally {run.endpoint}")

        run.changed = changed

    async def _save(self, run: BulkRun) -> None:
        try:
            await self.store.save_bulk(run.run_id, run.to_json())
        except Exception:  # the tally in Slack is still right; only a restart would lose track of it
            log.exception("could not save the bulk retry's state", extra=ctx(endpoint=run.endpoint))

    async def load(self) -> None:
        """After a restart: bulk retries whose jobs are still followed keep their parent's tally current."""
        for data in await self.store.recent_bulks(time.time() - MEMORY_SECONDS):
            run = BulkRun.from_json(data)
            if run.running:
                self._runs[run.run_id] = run
                self._keep_parent_current(run)
                self.adopt(run, run.running)

    async def _find(self, run_id: str) -> BulkRun | None:
        """The run, as this process keeps it, or as the store has it (a replica's run, adopted with its work)."""
        run = self._runs.get(run_id)
        if run is None:
            data = await self.store.load_bulk(run_id)
            run = self._runs.get(run_id)  # loaded by a settle running alongside
            if run is None and data is not None:
                run = self._runs[run_id] = BulkRun.from_json(data)
                if run.place.thread_ts:
                    self._keep_parent_current(run)
        return run

    def _let_go(self, run: BulkRun) -> None:
        """A run whose jobs have all been answered and ended needs no keeping any more."""
        if run.tally().ended and self._runs.get(run.run_id) is run:
            del self._runs[run.run_id]

    async def _settled(self, sent: dict[str, Any], outcome: Outcome) -> None:
        """After a restart, a retry of a bulk run whose answer was lost was settled by /status: its line and the
        parent's tally show the answer, and its follow reports its end to the run again."""
        ref = str(sent.get("run") or "")
        if not ref.startswith("bulk:"):
            return
        run = await self._find(ref.removeprefix("bulk:"))
        if run is None or outcome.job not in run.jobs:
            return
        run.results[outcome.job] = JobResult.of(outcome)
        if outcome.ok:
            self._following[(run.endpoint, outcome.job)] = run
        run.changed(outcome.job)
        await self._save(run)
        self._let_go(run)

    # ---------------------------------------------------------------- the run

    async def run(self, run: BulkRun) -> None:
        """Retry every job (at most RUNPOD_BULK_CONCURRENCY at once), then post the one summary reply. Cut off by a
        shutdown (RunPod slower than the grace), every job still gets its line and the summary still goes out; the
        retries already sent are settled with /status by whoever takes the work on next."""
        if self.health is not None:
            self.health.warm(run.endpoint)  # ready for the summary by the time the retries are done
        try:
            await asyncio.gather(*(self._retry_one(run, job) for job in run.jobs))
        except asyncio.CancelledError:
            for job in run.jobs:
                run.results.setdefault(job, JobResult(job, "refused:shutdown",
                                                      detail="not retried: the app was restarting; retry it again"))
            await self._finish(run)
            raise
        await self._finish(run)

    async def _finish(self, run: BulkRun) -> None:
        settled = [job for job in run.jobs if run.results[job].settled]
        if settled:
            await self.store.mark_retried(run.endpoint, settled)
        await self._summary(run)
        run.summarized = True
        run.changed(None)

    def adopt(self, run: BulkRun, jobs: list[str]) -> None:
        """After a restart: the follows of these jobs resumed; report their ends to `run` again."""
        for job in jobs:
            self._following[(run.endpoint, job)] = run

    async def _retry_one(self, run: BulkRun, job: str) -> None:
        async with self.slots:
            try:
                if not self.service.background.accepting:
                    # Stopping: the jobs not reached yet get their outcome now, and the summary still goes out.
                    result = await self._refused(run.who, run.endpoint, job, "shutdown",
                                                 "the app was restarting; retry it again")
                else:
                    result = await self._retry(run, job)
            except Exception as exc:  # one job's trouble must not lose the others' outcomes
                log.exception("bulk retry of one job failed", extra=ctx(endpoint=run.endpoint, job=job))
                result = await self._refused(run.who, run.endpoint, job, "error",
                                             f"the app failed while retrying it ({type(exc).__name__}); check it "
                                             "with the status command")
        run.results[job] = result
        run.changed(job)

    async def _retry(self, run: BulkRun, job: str) -> JobResult:
        """Exactly once and the retry budget, per job, then the retry. A refusal is an outcome like any other:
        recorded, listed in the summary, never a silent skip (and not one private message per job)."""
        who, endpoint, key = run.who, run.endpoint, (run.endpoint, job)
        async with self.service.claims.hold(endpoint, job, who.user) as hold:
            if hold.taken_by is not None:
                self.service.metrics.duplicates.labels(kind=who.source.value).inc()
                by = "you, a moment ago" if hold.taken_by.user == who.user else "someone else"
                return await self._refused(who, endpoint, job, "duplicate", f"already being retried (by {by})",
                                           f"already being retried by {hold.taken_by.user}")
            budget = await self.service.over_budget(endpoint, job)
            if budget is not None:
                self.service.metrics.refusals.labels(reason="budget").inc()
                limit = self.settings.max_retries_per_job
                times = "once" if limit == 1 else f"{limit} times"
                return await self._refused(who, endpoint, job, "budget",
                                           f"retry limit reached: already retried {times} in the last hour", budget)
            # Registered before the call: a job that ends quickly may end before `attempt` returns.
            self._following[key] = run
            try:
                outcome = await self.service.attempt(who, endpoint, job, run.place, hold, post=False, run=run.ref)
            except asyncio.CancelledError:
                if hold.sent:
                    run.results[job] = JobResult(job, Kind.TIMEOUT.value, detail=CUT_OFF)
                raise
            finally:
                if self.follower.following(endpoint, job) is None:
                    self._following.pop(key, None)
        return JobResult.of(outcome)

    async def _refused(self, who: Who, endpoint: str, job: str, code: str, detail: str,
                       audit_detail: str | None = None) -> JobResult:
        await self.service.record(AuditEntry(who.user, who.channel, endpoint, job, who.source, f"refused:{code}",
                                             detail=(audit_detail or detail)[:300]))
        return JobResult(job, f"refused:{code}", detail=detail)

    def _summary_message(self, run: BulkRun) -> tuple[dict[str, Any], str | None, str]:
        results = [run.results[job] for job in run.jobs if job in run.results]
        filename = f"runpod-retry-{run.endpoint}-{len(results)}-jobs.json"
        msg, attachment = messages.bulk_summary(run.endpoint, results, filename,
                                                can_attach=not run.place.via_response_url, finals=run.finals,
                                                table=run.table,
                                                health=self.health.peek(run.endpoint) if self.health else None)
        return msg, attachment, filename

    async def _summary(self, run: BulkRun) -> None:
        if self.health is not None:
            await self.health.get(run.endpoint)  # a fresh snapshot for the summary, if RunPod answers in time
        msg, attachment, filename = self._summary_message(run)
        run.summary_ts = await self.out.post(run.place, msg)
        if attachment is not None:
            await self.out.attach(run.place, attachment, filename,
                                  f"RunPod's answers for the {len(run.jobs)} jobs retried on endpoint "
                                  f"`{run.endpoint}`")

    async def _ended(self, target: FollowTarget, final: dict[str, Any] | None) -> None:
        """A followed job ended (any follow, not only bulk ones)."""
        status = str((final or {}).get("status") or UNKNOWN).upper()
        try:
            if status in RETRYABLE:
                # Seen failing again: `failed` offers it again.
                error = str((final or {}).get("error") or "")[:500] or None
                await self.store.record_failure(target.endpoint, target.job, status, error, time.time())
        except Exception:
            log.exception("could not record the repeated failure", extra=ctx(endpoint=target.endpoint,
                                                                               job=target.job))
        run = self._following.pop(target.key, None)
        if run is not None:
            run.finals[target.job] = status
            run.changed(target.job)
            self._let_go(run)

    # ---------------------------------------------------------------- status of many jobs

    async def check_all(self, endpoint: str, jobs: tuple[str, ...]) -> list[Outcome]:
        """GET /status for every job, with the same bound on concurrency as retries."""
        async def one(job: str) -> Outcome:
            async with self.slots:
                return await self.service.call_status(endpoint, job)

        return list(await asyncio.gather(*(one(job) for job in jobs)))

    # ---------------------------------------------------------------- `failed`: what failed recently

    async def offer_recent(self, who: Who, endpoint: str, window: int) -> None:
        """`/runpod-retry failed <endpoint> [30m]`: privately, the count and a Confirm button; nothing runs yet."""
        who = replace(who, source=Source.BULK)
        if not await self.service.gate(who, endpoint, ()):
            return
        rows = await self.store.recent_failures(endpoint, time.time() - window)
        if not rows:
            msg = messages.failed_none(endpoint, window)
        else:
            health = await self.health.get(endpoint) if self.health is not None else None
            msg = messages.failed_offer(endpoint, window, rows[:MAX_BULK_JOBS], max(len(rows) - MAX_BULK_JOBS, 0),
                                        health=health)
        await self.out.ephemeral(who.channel, who.user, msg, who.response_url)

    async def confirm_recent(self, who: Who, endpoint: str, window: int) -> None:
        """Confirm clicked: the list is read again (it may have changed since), then it runs as a bulk retry.

        A second Confirm (a double click, or a colleague's) while that run is under way is told it is running and
        who started it: by then its jobs are being retried, and "nothing failed recently" would be wrong."""
        who = replace(who, source=Source.BULK)
        question = Place(who.channel, response_url=who.response_url)
        running = self._confirmed.get(endpoint)
        if running is not None:
            user, at, count, where = running
            self.service.metrics.duplicates.labels(kind="failed").inc()
            await self.out.respond(question, messages.failed_running(endpoint, count, user, at, viewer=who.user,
                                                                     where=where), replace_original=True)
            return
        # Taken before any await, so a second click arriving meanwhile sees it.
        self._confirmed[endpoint] = (who.user, time.time(), 0, None)
        try:
            if not await self.service.gate(who, endpoint, ()):
                return
            rows = await self.store.recent_failures(endpoint, time.time() - window)
            jobs = tuple(row["job"] for row in rows[:MAX_BULK_JOBS])
            if not jobs:
                await self.out.respond(question, messages.failed_none(endpoint, window), replace_original=True)
                return
            self._confirmed[endpoint] = (who.user, self._confirmed[endpoint][1], len(jobs), None)
            await self.out.respond(question, messages.failed_started(endpoint, len(jobs)), replace_original=True)

            def posted(where: str | None) -> None:
                user, at, count, _ = self._confirmed[endpoint]
                self._confirmed[endpoint] = (user, at, count, where)

            await self._with_parent(who, endpoint, jobs, posted)
        finally:
            self._confirmed.pop(endpoint, None)

    async def cancel_recent(self, who: Who, endpoint: str) -> None:
        await self.out.respond(Place(who.channel, response_url=who.response_url),
                               messages.failed_cancelled(endpoint), replace_original=True)
