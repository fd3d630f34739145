"""Carrying one bulk run's jobs out: each job claimed, checked against its retry budget and retried, at most
RUNPOD_BULK_CONCURRENCY RunPod calls at once across every run, each answer written down as it comes (a refusal is an
outcome like any other); then the one summary reply, posted once whichever replica gets there.

Where runs come from, and how each is kept current and taken over after a replica's death, is bot/work/bulk.py."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from bot.core import messages
from bot.core.groups import JobResult
from bot.core.outcome import Outcome
from bot.infra.config import Settings
from bot.infra.logs import ctx
from bot.store import AuditEntry, StoreUnavailable
from bot.work.accepted import let_go
from bot.work.bulk_run import BulkRun, cut_off, save_answer, save_ending
from bot.work.claims import Hold
from bot.work.health import EndpointHealth
from bot.work.retry import RetryService
from bot.work.who import Who

log = logging.getLogger(__name__)

# A job of a run whose retry the database stopped before it was sent is tried again after these pauses (about a
# minute: a PostgreSQL restart or failover), instead of being summarised "not retried" for an outage the run outlives.
UNSENT_PAUSES = (1.0, 2.0, 4.0, 8.0, 15.0, 30.0)


class NotSentYet(StoreUnavailable):
    """The database failed before the job's retry was written down as sent: nothing reached RunPod."""

Key = tuple[str, str]


class BulkJobs:
    """What every bulk run shares, whoever started it; BulkRunner (bot/work/bulk.py) adds the runs' sources."""

    def __init__(self, service: RetryService, settings: Settings):
        self.service = service
        self.settings = settings
        self.out = service.out
        self.store = service.store
        self.follower = service.follower
        # One bound for every bulk run together: RunPod's rate limits are per account, not per command.
        self.slots = asyncio.Semaphore(settings.bulk_concurrency)
        # The run a followed job's end is reported to (`BulkRunner.ended`): registered before the retry is sent.
        self._following: dict[Key, BulkRun] = {}
        self.health: EndpointHealth | None = None  # health snapshots for the summary (and `failed`); set at wiring

    # ---------------------------------------------------------------- the run

    async def run(self, run: BulkRun) -> None:
        """Retry every job (at most RUNPOD_BULK_CONCURRENCY at once), then post the one summary reply.

        Stopped by a shutdown half way, a run that is written down (`work_id`: its request's row) is handed over:
        its row stays, and whoever takes it (another replica at once, or this app's next start) retries the jobs
        not reached and settles those sent (`BulkRunner.resume`), with one summary. A run nobody could take over
        gives every job its line and posts the summary now ("not retried: the app was restarting")."""
        if self.health is not None:
            self.health.warm(run.endpoint)  # ready for the summary by the time the retries are done
        try:
            await asyncio.gather(*(self._retry_one(run, job) for job in run.jobs))
        except asyncio.CancelledError:
            if not _can_be_taken_over(run):
                for job in run.jobs:
                    run.results.setdefault(job, JobResult(job, "refused:shutdown",
                                                          detail="the app was restarting; retry it again"))
                await self._finish(run, fresh_health=False)  # the drain's grace is short: no wait on /health
            raise
        if run.unanswered:  # stopping: handed over (see above)
            log.info("stopping: a bulk retry is handed over with %d jobs not reached", len(run.unanswered),
                     extra=ctx(endpoint=run.endpoint))
            return
        await self._finish(run)

    async def _finish(self, run: BulkRun, *, fresh_health: bool = True) -> None:
        settled = [job for job in run.jobs if run.results[job].settled]
        if settled:
            await self.store.mark_retried(run.endpoint, settled)
        await self._summary(run, fresh_health=fresh_health)
        run.summarized = True
        run.changed(None)
        if run.work_id is not None:
            if run.ref.startswith("bulk:"):  # a grouped alert's Retry all is kept by its storm
                await self._save(run)
            await let_go(self.store, run.work_id)
            run.work_id = None

    async def _retry_one(self, run: BulkRun, job: str, *, taking_over: bool = False) -> None:
        try:
            result = await self._retry_through_outages(run, job, taking_over)
            if result is None:
                return  # stopping: the job is left to whoever takes the run over (see `run`)
        except Exception as exc:  # one job's trouble must not lose the others' outcomes
            if isinstance(exc, StoreUnavailable):  # an outage: one line, not a traceback
                log.warning("bulk retry of one job failed: %s", exc, extra=ctx(endpoint=run.endpoint, job=job))
                why = "the app's database was unreachable"
            else:
                log.exception("bulk retry of one job failed", extra=ctx(endpoint=run.endpoint, job=job))
                why = f"the app failed while retrying it ({type(exc).__name__})"
            result = await self._refused(run.who, run.endpoint, job, "error",
                                         f"{why}; check it with the status command")
        if run.results.get(job) is not result:  # RunPod's answers were saved as they came (`answered`)
            run.results[job] = result
            await self._saved(run, job)
        run.changed(job)

    async def _retry_through_outages(self, run: BulkRun, job: str, taking_over: bool) -> JobResult | None:
        """`_retry` in one of the RUNPOD_BULK_CONCURRENCY slots, tried again while the database fails it before
        anything was sent (never after: RunPod may have taken it); the pauses leave the slot to other jobs. None:
        stopping, and the job is left to whoever takes the run over."""
        for pause in (*UNSENT_PAUSES, None):
            async with self.slots:
                if taking_over:  # a job the dead replica claimed and never sent: its claim runs out first
                    await self.service.claims.outlive_the_dead(run.endpoint, job)
                    taking_over = False
                if not self.service.background.accepting:
                    if _can_be_taken_over(run):
                        return None
                    # Stopping, and nobody can take the run over: the job gets its outcome now, and the summary
                    # still goes out.
                    return await self._refused(run.who, run.endpoint, job, "shutdown",
                                               "the app was restarting; retry it again")
                try:
                    return await self._retry(run, job)
                except NotSentYet as exc:
                    if pause is None:
                        raise
                    log.warning("the database stopped a bulk job's retry before it was sent; trying again in %g s:"
                                " %s", pause, exc, extra=ctx(endpoint=run.endpoint, job=job))
            await asyncio.sleep(pause)
        raise AssertionError("unreachable: the last try returns or raises")

    async def _retry(self, run: BulkRun, job: str) -> JobResult:
        """Exactly once and the retry budget, per job, then the retry. A refusal is an outcome like any other:
        recorded, listed in the summary, never a silent skip (and not one private message per job). The database
        failing before the retry was sent is `NotSentYet`."""
        who, endpoint, key = run.who, run.endpoint, (run.endpoint, job)
        held: Hold | None = None
        try:
            async with self.service.claims.hold(endpoint, job, who.user) as hold:
                held = hold
                if hold.taken_by is not None:
                    self.service.metrics.duplicates.labels(kind=who.source.value).inc()
                    by = "you, a moment ago" if hold.taken_by.user == who.user else "someone else"
                    return await self._refused(who, endpoint, job, "duplicate", f"already being retried (by {by})",
                                               f"already being retried by {hold.taken_by.user}")
                budget = await self.service.over_budget(endpoint, job)
                if budget is not None:
                    self.service.metrics.refusals.labels(reason="budget").inc()
                    # The limit's words with the next allowed time, as "HH:MM UTC": the summary's table is a code
                    # block.
                    reached = await self.service.retry_limit(endpoint, job, plain=True) or budget
                    return await self._refused(who, endpoint, job, "budget", reached, budget)
                # Registered before the call: a job that ends quickly may end before `attempt` returns.
                self._following[key] = run
                async def answered(outcome: Outcome) -> None:
                    run.results[job] = JobResult.of(outcome)
                    await self._saved(run, job)

                try:
                    outcome = await self.service.attempt(who, endpoint, job, run.place, hold, post=False,
                                                         run=run.ref, answered=answered)
                except asyncio.CancelledError:
                    if hold.sent:
                        run.results[job] = cut_off(job)
                    raise
                finally:
                    if self.follower.following(endpoint, job) is None:
                        self._following.pop(key, None)
        except StoreUnavailable as exc:
            if (held is not None and held.sent) or isinstance(exc, NotSentYet):
                raise
            raise NotSentYet(str(exc)) from exc
        return run.results.get(job) or JobResult.of(outcome)

    async def _refused(self, who: Who, endpoint: str, job: str, code: str, detail: str,
                       audit_detail: str | None = None) -> JobResult:
        await self.service.record(AuditEntry(who.user, who.channel, endpoint, job, who.source, f"refused:{code}",
                                             detail=(audit_detail or detail)[:300]))
        return JobResult(job, f"refused:{code}", detail=detail)

    def summary_message(self, run: BulkRun) -> tuple[dict[str, Any], str | None, str]:
        results = [run.results[job] for job in run.jobs if job in run.results]
        filename = f"runpod-retry-{run.endpoint}-{len(results)}-jobs.json"
        msg, attachment = messages.bulk_summary(run.endpoint, results, filename,
                                                can_attach=not run.place.via_response_url, finals=run.finals,
                                                table=run.table,
                                                health=self.health.peek(run.endpoint) if self.health else None)
        return msg, attachment, filename

    async def _summary(self, run: BulkRun, *, fresh_health: bool = True) -> None:
        if self.health is not None and fresh_health:
            await self.health.get(run.endpoint)  # a fresh snapshot for the summary, if RunPod answers in time
        msg, attachment, filename = self.summary_message(run)
        # Once per run, whichever replica gets here first (one that took the run over from a replica that was only
        # slow, or stopped with the summary queued): the others wait for that summary and keep it current.
        key = run.summary_key
        run.summary_ts = await self.out.post(run.place, msg, queued=lambda: self._summary_queued(run), once=key)
        if attachment is not None:
            await self.out.attach(run.place, attachment, filename,
                                  f"RunPod's answers for the {len(run.jobs)} jobs retried on endpoint "
                                  f"`{run.endpoint}`", advice=f"Each job's answer is also what `/runpod-retry status "
                                  f"{run.endpoint} <jobId>` shows.", once=key and f"{key}:file")

    async def _summary_queued(self, run: BulkRun) -> None:
        """The summary is in the outbox (it goes out whoever sends it): written down at once, so that a replica
        taking the run over after this one dies does not post it again."""
        run.summarized = True
        try:
            if run.ref.startswith("bulk:"):
                await self._save(run)
            elif run.on_summarized is not None:
                await run.on_summarized(run)
        except Exception as exc:  # the summary still goes out; a takeover may post it again
            log.warning("could not write down that a summary was posted: %s", exc, extra=ctx(endpoint=run.endpoint))


    # ---------------------------------------------------------------- writing it down

    async def _save(self, run: BulkRun, *, strict: bool = False) -> None:
        try:
            await self.store.save_bulk(run.run_id, run.to_json())
        except Exception:  # the tally in Slack is still right; only a restart would lose track of it
            if strict:
                raise
            log.exception("could not save the bulk retry's state", extra=ctx(endpoint=run.endpoint))

    async def _saved(self, run: BulkRun, job: str, *, ending: bool = False) -> None:
        """One job's answer (or ending) in its own row: what another replica taking the run over reads."""
        try:
            await (save_ending if ending else save_answer)(self.store, run, job)
        except StoreUnavailable as exc:  # an outage: one line, not a traceback
            log.warning("could not save a bulk retry's job: %s", exc, extra=ctx(endpoint=run.endpoint, job=job))
        except Exception:
            log.exception("could not save a bulk retry's job", extra=ctx(endpoint=run.endpoint, job=job))


    # ---------------------------------------------------------------- status of many jobs

    async def check_all(self, endpoint: str, jobs: tuple[str, ...]) -> list[Outcome]:
        """GET /status for every job, with the same bound on concurrency as retries."""
        async def one(job: str) -> Outcome:
            async with self.slots:
                return await self.service.call_status(endpoint, job)

        return list(await asyncio.gather(*(one(job) for job in jobs)))


def _can_be_taken_over(run: BulkRun) -> bool:
    """Its request's row is kept and names a run another process can find (its progress message was posted)."""
    return run.work_id is not None and bool(run.ref)
