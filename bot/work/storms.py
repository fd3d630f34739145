"""Alert storms: when many jobs of one endpoint fail within a short window, one grouped alert instead of one
per job, kept current as failures keep arriving, with Retry all and Status.

The failures alerted one by one before the threshold was reached keep their own alerts (people may already be
acting on them; rewriting or deleting them would pull the rug). They are counted and listed in the grouped alert
too, and Retry all covers them; the exactly-once claim keeps a job from being retried twice either way.
"""

from __future__ import annotations

import functools
import logging
import time
from collections.abc import Callable
from dataclasses import replace
from typing import Any

from bot.core import messages
from bot.core.alerts import parse_job_body
from bot.core.groups import Storm, StormJob
from bot.core.health import Health
from bot.core.worker_errors import error_summary
from bot.infra.config import Settings
from bot.infra.logs import ctx
from bot.slack.out import Place
from bot.slack.pacing import Pacer
from bot.store import Queued
from bot.work.accepted import RETRY_ALL_REQUEST, let_go
from bot.work.alert_desk import AlertDesk
from bot.work.bulk import BulkRun, BulkRunner
from bot.work.storm_window import MEMORY_SECONDS, StormWindow
from bot.work.who import Source, Who

log = logging.getLogger(__name__)

MAIN = "main"
EXAMPLES = "examples"  # the thread's message with one whole error of each kind
PAGE_SIZE = 200  # jobs per message of the job list in the thread (about a dozen sections at most)


class StormDesk:
    def __init__(self, bulk: BulkRunner, desk: AlertDesk, settings: Settings,
                 clock: Callable[[], float] = time.time):
        self.bulk = bulk
        self.service = bulk.service
        self.desk = desk
        self.store = bulk.store
        self.out = bulk.out
        self.metrics = bulk.service.metrics
        self.settings = settings
        self.clock = clock
        self._pacers: dict[str, Pacer] = {}
        self.window = StormWindow(self.store, settings, forgotten=lambda key: self._pacers.pop(key, None))
        # The endpoint's latest health snapshot (cached, no I/O) for the grouped alert; set at wiring.
        self.health: Callable[[str], Health | None] = lambda _endpoint: None

    async def load(self) -> None:
        """After a restart: storms come back, an open one keeps collecting, Retry all's follows report again."""
        now = self.clock()
        for data in await self.store.recent_storms(now - MEMORY_SECONDS):
            if '"window"' in data[:20]:  # an endpoint's window (shared store), read under its lock when needed
                continue
            storm = Storm.from_json(data)
            # Jobs whose retry never got an answer before the stop: offer them to Retry all again.
            storm.requested = [job for job in storm.requested if job in storm.results]
            self.window.storms[storm.key] = storm
            if storm.is_open(now, self.settings.storm_window):
                self.window.open[storm.endpoint] = storm
            running = [job for job in storm.requested if storm.results[job].requeued and job not in storm.finals]
            if running:
                who = Who(storm.retry_by or "", storm.channel, Source.RETRY_ALL)
                self.bulk.adopt(self._run(storm, who, tuple(running)), running)

    # ---------------------------------------------------------------- failures arriving

    async def failure(self, endpoint: str, body: dict[str, Any], channel: str) -> tuple[str, Any]:
        """A job failed. Returns what the alert desk returns, or ("grouped" | "duplicate", storm).

        Decides without awaiting, so hundreds of webhooks arriving together give exactly one grouped alert; with a
        shared store, under the endpoint's lock with the window read from and written back to the database, so
        webhooks spread over replicas are grouped exactly as on one.
        """
        job, status = parse_job_body(body)
        error = error_summary(body.get("error"))  # grouped and listed by its one line
        async with self.window.shared(endpoint):
            now = self.clock()
            storm = (self.window.collecting(endpoint, now)
                     or self.window.count(endpoint, channel, job, StormJob(status, error, now)))
            added = storm is not None and storm.add(job, status, error, now)
            # The first job of each kind of error keeps its whole error, for the thread.
            example = added and storm is not None and storm.add_example(job, body.get("error"))
            if self.store.shared:
                await self.window.persist(endpoint)
        if storm is None:
            return await self.desk.failure(endpoint, body, channel)
        if not added:
            self.metrics.duplicates.labels(kind="webhook").inc()
            return "duplicate", storm
        self._mark(storm, job, joined=True)
        if example and storm.ts:
            self._pacer(storm).mark(EXAMPLES)
        # Stored before the webhook counts as handled: a restart before the paced redraw still knows the job.
        await self.store.save_storm(storm.key, storm.to_json())
        return "grouped", storm

    async def sweep_expired(self) -> int:
        """Grouped alerts whose last job passed its retry deadline are redrawn once, without Retry all (run by the
        app's periodic sweep, after the single alerts: `Runtime.sweep_expired`)."""
        now = self.clock()
        stale = [storm for storm in self.window.storms.values()
                 if storm.ts and not storm.running and not storm.expired and now >= storm.last_deadline]
        for storm in stale:
            storm.expired = True
            self._mark(storm, None)
        return len(stale)

    # ---------------------------------------------------------------- keeping Slack current, gently

    def _pacer(self, storm: Storm) -> Pacer:
        pacer = self._pacers.get(storm.key)
        if pacer is None:
            pacer = Pacer(functools.partial(self._write, storm), self.service.background, f"storm {storm.key}",
                          self.service.timing.pacer_interval)
            self._pacers[storm.key] = pacer
        return pacer

    def _mark(self, storm: Storm, job: str | None, *, joined: bool = False, turn: float | None = None) -> None:
        pacer = self._pacer(storm)
        pacer.mark(MAIN, turn=turn)
        if job is not None:
            pacer.mark(f"page:{storm.page_of(job, PAGE_SIZE)}", turn=turn)
            if joined:
                # A new failure: every page's title counts the jobs ("1–200 of 300"), so earlier pages change too.
                for page in range(storm.page_count(PAGE_SIZE)):
                    pacer.mark(f"page:{page}")

    async def _write(self, storm: Storm, part: str, turn: float | None) -> None:
        """One Slack call: the grouped alert, or one page of its job list. Then the state is saved. With a shared
        store under the endpoint's lock, from the stored state: one replica posts the grouped alert and each page,
        and whichever replica redraws it draws every failure any replica added."""
        async with self.window.shared(storm.endpoint, storm.key):
            await self._write_part(storm, part, turn)

    async def _write_part(self, storm: Storm, part: str, turn: float | None) -> None:
        if part == MAIN:
            msg = messages.storm_alert(storm, self.clock(), enabled=self.service.access.enabled(storm.endpoint),
                                       health=self.health(storm.endpoint), channels=self.service.access.channels)
            if storm.ts is None:
                storm.ts = await self.out.post(Place(storm.channel), msg, news=True)
                if storm.ts:
                    self.metrics.alerts.labels(kind="storm").inc()
                    for page in range(storm.page_count(PAGE_SIZE)):
                        self._pacer(storm).mark(f"page:{page}")
                    if storm.examples:
                        self._pacer(storm).mark(EXAMPLES)
                else:
                    first = next(iter(storm.jobs.values()))
                    await self.desk.tell_undelivered(storm.channel, storm.endpoint, next(iter(storm.jobs)),
                                                     first.status, first.error, len(storm.jobs))
            else:
                await self.out.update(storm.channel, storm.ts, msg, news=_news(storm), turn=turn)
        elif part == EXAMPLES and storm.ts is not None:
            msg = messages.storm_examples(storm)
            if storm.examples_ts:
                await self.out.update(storm.channel, storm.examples_ts, msg, news=_news(storm), turn=turn)
            else:
                storm.examples_ts = await self.out.post(Place(storm.channel, thread_ts=storm.ts), msg,
                                                        once=f"storm-examples:{storm.key}")
        elif storm.ts is not None:
            await self._write_page(storm, int(part.partition(":")[2]), turn)
        await self.store.save_storm(storm.key, storm.to_json())

    async def _write_page(self, storm: Storm, page: int, turn: float | None) -> None:
        msg = messages.storm_jobs_page(storm, page, PAGE_SIZE)
        storm.pages.extend([""] * (page + 1 - len(storm.pages)))
        if storm.pages[page]:
            await self.out.update(storm.channel, storm.pages[page], msg, news=_news(storm), turn=turn)
        else:
            # Under a key: a replica that died after posting the page and before saving where it went leaves the
            # next one its ts in the outbox, instead of the page posted twice.
            storm.pages[page] = await self.out.post(Place(storm.channel, thread_ts=storm.ts), msg,
                                                    once=f"storm-page:{storm.key}:{page}") or ""

    # ---------------------------------------------------------------- the buttons

    def holding(self, endpoint: str, job: str) -> Storm | None:
        """The posted grouped alert that lists this job, if one is in memory (for a retry asked elsewhere)."""
        return next((storm for storm in self.window.storms.values()
                     if storm.endpoint == endpoint and job in storm.jobs and storm.ts), None)

    async def find(self, endpoint: str, storm_id: str) -> Storm | None:
        key = f"{endpoint}/{storm_id}"
        if self.store.shared:
            return await self.window.refresh(key)
        if key not in self.window.storms:
            data = await self.store.load_storm(key)
            if data is not None:
                self.window.storms[key] = Storm.from_json(data)
        return self.window.storms.get(key)

    def pending(self, endpoint: str, storm_id: str) -> int | None:
        """How many jobs of the grouped alert Retry all would take on, as far as this replica knows without I/O."""
        storm = self.window.storms.get(f"{endpoint}/{storm_id}")
        return len(storm.unretried()) if storm is not None else None

    async def resume(self, row: Queued) -> None:
        """A Retry all whose replica died (or stopped before it ended): finished here (see BulkRunner.take_over); a
        click acknowledged before its replica took any job on is carried out here from the start."""
        endpoint, storm_id = str(row.payload.get("endpoint")), str(row.payload.get("storm"))
        storm = await self.find(endpoint, storm_id)
        who = Who.from_json(dict(row.payload.get("who") or {}))
        taken = storm.taken.get(str(row.id)) if storm is not None else None
        jobs = tuple(str(job) for job in row.payload.get("jobs") or taken or ())
        if storm is not None and not jobs and row.payload.get("request") and row.id not in storm.summarized:
            log.info("carrying out a Retry all clicked before a restart", extra=ctx(endpoint=endpoint))
            await self.retry_all(who, endpoint, storm_id, row.id)
            return
        if storm is None or not jobs:
            await self.store.done(row.id)
            return
        # A restart's `load` offers jobs never answered to Retry all again: this run takes them back.
        storm.requested.extend(job for job in jobs if job not in storm.requested)
        storm.running, storm.retry_by = True, storm.retry_by or who.user
        run = self._run(storm, who, jobs)
        run.summarized = row.id in storm.summarized
        try:
            await self.bulk.take_over(run, row.id)
        finally:
            storm.running = False
            self._mark(storm, None)

    async def run_of(self, ref: str, job: str, user: str) -> BulkRun | None:
        """The grouped alert's Retry all `ref` ("storm:<endpoint>/<id>") names, for a job of it settled or followed
        here after another process stopped."""
        if not ref.startswith("storm:"):
            return None
        endpoint, _, storm_id = ref.removeprefix("storm:").partition("/")
        storm = await self.find(endpoint, storm_id)
        if storm is None or job not in storm.jobs:
            return None
        if job not in storm.requested:
            storm.requested.append(job)
        return self._run(storm, Who(storm.retry_by or user, storm.channel, Source.RETRY_ALL), (job,))

    def _run(self, storm: Storm, who: Who, jobs: tuple[str, ...]) -> BulkRun:
        # No table in the summary: the grouped alert's job list already says what happened to each job, live.
        return BulkRun(who, storm.endpoint, jobs, Place(storm.channel, thread_ts=storm.ts,
                                                        response_url=who.response_url),
                       changed=functools.partial(self._mark, storm), shown=self._pacer(storm).written,
                       results=storm.results, finals=storm.finals,
                       table=False, ref=f"storm:{storm.key}", on_summarized=lambda run: self._summarized(storm, run))

    async def _summarized(self, storm: Storm, run: BulkRun) -> None:
        if run.work_id is not None and run.work_id not in storm.summarized:
            storm.summarized.append(run.work_id)
        await self.store.save_storm(storm.key, storm.to_json())

    async def retry_all(self, who: Who, endpoint: str, storm_id: str, work_id: int | None = None) -> None:
        """Retry every job of the grouped alert not retried yet, as one bulk retry reported in its thread. `work_id`:
        the click's inbox row (`retry_all_request`), let go of when the run is done or nothing is to be done."""
        if not await self._retry_all(replace(who, source=Source.RETRY_ALL), endpoint, storm_id, work_id):
            await let_go(self.store, work_id)

    async def _retry_all(self, who: Who, endpoint: str, storm_id: str, work_id: int | None) -> bool:
        storm = await self.find(endpoint, storm_id)
        if storm is None:
            await self.out.ephemeral(who.channel, who.user, messages.storm_unknown(), who.response_url)
            return False
        if not await self.service.gate(who, endpoint, storm.unretried()):
            return False
        if self.clock() >= storm.last_deadline:
            # A message drawn before the deadline (its redraw has not run yet): RunPod has forgotten the jobs.
            storm.expired = True
            self._mark(storm, None)
            await self.out.ephemeral(who.channel, who.user, messages.storm_expired(endpoint), who.response_url)
            return False
        async with self.window.shared(endpoint, storm.key):
            # Another replica's Retry all took every job and some have not ended: it is running, there.
            elsewhere = self.store.shared and not storm.unretried() and not storm.tally().ended
            busy = (storm.running or elsewhere) and storm.retry_by and storm.retry_at
            jobs = () if busy else storm.unretried()
            if jobs:
                # No await since the check above: a second click sees `running` (other replicas: the store).
                storm.running, storm.retry_by, storm.retry_at = True, who.user, self.clock()
                storm.requested.extend(jobs)
                if work_id is not None:  # with the jobs it took: a replica adopting the row carries out this run
                    storm.taken[str(work_id)] = list(jobs)
                if self.store.shared:
                    await self.store.save_storm(storm.key, storm.to_json())
                elif work_id is not None:
                    try:
                        await self.store.save_storm(storm.key, storm.to_json())
                    except Exception as exc:  # the run goes on; a death before its end would start it again
                        log.warning("could not write down the jobs Retry all took: %s", exc,
                                    extra=ctx(endpoint=endpoint))
        if busy and storm.retry_by and storm.retry_at:
            self.metrics.duplicates.labels(kind=who.source.value).inc()
            await self.out.ephemeral(who.channel, who.user,
                                     messages.retry_all_running(storm.retry_by, storm.retry_at, viewer=who.user),
                                     who.response_url)
            return False
        if not jobs:
            await self.out.ephemeral(who.channel, who.user, messages.nothing_to_retry(endpoint), who.response_url)
            return False
        self._mark(storm, None)
        run = self._run(storm, who, jobs)
        run.work_id = work_id  # a click's run has its row already: `own` writes one only without it
        await self.bulk.own(run, RETRY_ALL_REQUEST, {"endpoint": endpoint, "storm": storm_id, "who": who.to_json(),
                                                     "jobs": list(jobs)})
        try:
            await self.bulk.run(run)
        finally:
            storm.running = False
            self._mark(storm, None)
        return True

    async def status(self, who: Who, endpoint: str, storm_id: str) -> None:
        """What RunPod says now about every job of the grouped alert, as a tally in its thread."""
        storm = await self.find(endpoint, storm_id)
        if storm is None:
            await self.out.ephemeral(who.channel, who.user, messages.storm_unknown(), who.response_url)
            return
        jobs = tuple(storm.jobs)
        if not await self.service.gate(who, endpoint, jobs, "check"):
            return
        outcomes = await self.bulk.check_all(endpoint, jobs)
        await self.out.post(Place(storm.channel, thread_ts=storm.ts, response_url=who.response_url),
                            messages.group_status(endpoint, outcomes, who.user))


def _news(storm: Storm) -> bool:
    """A grouped alert redrawn is news until someone clicks its Retry all: from then on its job list shows what
    that person asked for (each job's answer and ending), and goes ahead of other alerts' redraws."""
    return not storm.requested
