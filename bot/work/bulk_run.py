"""One bulk retry's state (a command's list of jobs, or a grouped alert's Retry all) and how it is kept in the store:
the run as one JSON row, and each job's answer and ending as a row of its own, so that replicas reporting different
jobs of one run never overwrite each other, and a replica taking a dead one's run over knows what is left to do."""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import asdict, dataclass, field, replace
from typing import Any, Protocol

from bot.core import messages
from bot.core.groups import JobResult, Tally, failed_again, unknown_jobs
from bot.core.outcome import Kind
from bot.core.worker_errors import error_summary
from bot.infra.logs import ctx
from bot.infra.tasks import Background
from bot.slack.out import Place, SlackOut
from bot.store import Store
from bot.work.who import Source, Who

log = logging.getLogger(__name__)


# A job whose retry was sent when its run was cut off (a shutdown, or the run's replica died and the settle of the
# retry outlasted the wait for it): said until RunPod's answer, learnt with /status, replaces it (`catch_up`).
CUT_OFF = "no answer before the app restarted (it may have gone through; checked with /status after the restart)"


def cut_off(job: str) -> JobResult:
    return JobResult(job, Kind.TIMEOUT.value, detail=CUT_OFF)


def _provisional(result: JobResult) -> bool:
    return result.outcome == Kind.TIMEOUT.value and result.detail == CUT_OFF


class Changed(Protocol):
    def __call__(self, job: str | None, /, *, turn: float | None = None) -> None:
        """A job's answer or end arrived (None: the run as a whole). `turn`: an ending told late (its follow resumed
        after a restart or a takeover), whose redraw takes its place among Slack's calls from the retry's moment."""


def _quietly(_job: str | None, *, turn: float | None = None) -> None:
    """A run whose progress nobody displays (its parent message could not be posted)."""


async def _nothing_to_wait_for() -> None:
    """A run whose changes nobody writes to Slack."""


@dataclass
class BulkRun:
    """One bulk retry. A storm's Retry all shares `results` and `finals` with the storm, which keeps them."""

    who: Who
    endpoint: str
    jobs: tuple[str, ...]
    place: Place                                   # the thread the summary reply goes to
    changed: Changed = _quietly
    # Until what `changed` marked is queued for Slack (at the message's pace): a job's ending must be on its way
    # before its follow is let go of, or a kill -9 in between leaves it shown nowhere.
    shown: Callable[[], Awaitable[None]] = _nothing_to_wait_for
    results: dict[str, JobResult] = field(default_factory=dict)
    finals: dict[str, str] = field(default_factory=dict)
    table: bool = True                    # the summary lists each job (a grouped alert's job list does instead)
    summary_ts: str | None = None         # the summary reply, kept current as jobs end
    summarized: bool = False              # the summary reply went out
    ref: str = ""   # what a retry settled after a restart reports to: "bulk:<run id>" or "storm:<storm key>"
    started: float = field(default_factory=time.time)
    work_id: int | None = None            # the inbox row that makes this replica the run's owner until it is done
    mentioned: bool = False               # the person who asked was told (once) that jobs failed again
    # Once the summary is in the outbox: a grouped alert's storm writes down that this run's summary is out.
    on_summarized: Callable[[BulkRun], Awaitable[None]] | None = None
    # The progress message when it is a reply in `place`'s thread (the message shortcut's run: a thread has one
    # level); None: it is the thread's parent, `place.thread_ts` (a command's run).
    progress_ts: str | None = None

    def tally(self) -> Tally:
        return Tally.of(self.jobs, self.results, self.finals)

    @property
    def running(self) -> list[str]:
        """Jobs RunPod requeued that have not ended yet."""
        return [job for job in self.jobs if job in self.results and self.results[job].requeued
                and job not in self.finals]

    @property
    def unanswered(self) -> list[str]:
        return [job for job in self.jobs if job not in self.results]

    @property
    def run_id(self) -> str:
        """The progress message's: one per run, also where several runs share a thread (the message shortcut's)."""
        return f"{self.place.channel}/{self.progress_ts or self.place.thread_ts}"

    @property
    def summary_key(self) -> str | None:
        """The summary's key in the outbox, the same on every replica that finishes the run (its inbox row names it):
        whichever queues the summary first posts it, the others find it queued. None: no other replica can take the
        run over (it has no inbox row), so there is nothing to tell apart."""
        return f"summary:{self.ref}#{self.work_id}" if self.ref and self.work_id is not None else None

    def to_json(self) -> str:
        """What a restart needs to keep the parent message's tally current (RunPod's JSON was already shown)."""
        return json.dumps({
            "who": {"user": self.who.user, "channel": self.who.channel, "source": self.who.source.value},
            "endpoint": self.endpoint, "jobs": list(self.jobs), "channel": self.place.channel,
            "thread_ts": self.place.thread_ts, "finals": self.finals, "summary_ts": self.summary_ts,
            "summarized": self.summarized, "started": self.started, "mentioned": self.mentioned,
            "progress_ts": self.progress_ts,
            "results": {job: asdict(replace(r, body=None)) for job, r in self.results.items()}})

    @classmethod
    def from_json(cls, text: str) -> BulkRun:
        data = json.loads(text)
        who = Who(data["who"]["user"], data["who"]["channel"], Source(data["who"]["source"]))
        run = cls(who, data["endpoint"], tuple(data["jobs"]), Place(data["channel"], thread_ts=data["thread_ts"]),
                  results={job: JobResult(**r) for job, r in data["results"].items()}, finals=data["finals"],
                  summary_ts=data.get("summary_ts"), summarized=data.get("summarized", True),
                  started=data.get("started", 0.0), mentioned=data.get("mentioned", False),
                  progress_ts=data.get("progress_ts"))
        run.ref = f"bulk:{run.run_id}"
        return run

    def again(self) -> list[str]:
        return failed_again(self.jobs, self.results, self.finals)

    def unknown(self) -> list[str]:
        return unknown_jobs(self.jobs, self.results)


async def save_answer(store: Store, run: BulkRun, job: str) -> None:
    """The job's answer, in its own row (without RunPod's JSON: that was shown already)."""
    if run.ref and job in run.results:
        await store.save_bulk_job(run.ref, job, result=json.dumps(asdict(replace(run.results[job], body=None))))


async def save_ending(store: Store, run: BulkRun, job: str) -> None:
    if run.ref and job in run.finals:
        await store.save_bulk_job(run.ref, job, final=run.finals[job])


# The row that says a run's one mention went out: ":" is in no job ID, so no job's row is ever this one.
MENTIONED = ":mentioned"


async def mention_once(store: Store, run: BulkRun) -> bool:
    """True once per run (False after): whether this is the moment to mention the person who asked. Kept in the
    run's rows, so that replicas (and a grouped alert's runs, rebuilt per job) see that it went out."""
    if run.mentioned:
        return False
    run.mentioned = True
    if not run.ref:
        return True
    if MENTIONED in await store.bulk_jobs(run.ref):
        return False
    await store.save_bulk_job(run.ref, MENTIONED, final="posted")
    return True


async def mention_failed_again(store: Store, out: SlackOut, run: BulkRun, job: str, error: Any) -> None:
    """The first job of a run that fails again mentions the person who asked, once per run, in its thread (a single
    retry mentions its person the same way). Where the run has no thread (its messages go through the response_url),
    the final tally carries the mention instead."""
    if run.place.via_response_url or not run.place.thread_ts:
        return
    try:
        if await mention_once(store, run):
            said = error_summary(error)  # a traceback by its exception line, runpod-python's JSON by its message
            await out.post(run.place, messages.bulk_failed_again(run.who.user, run.endpoint, job, said))
    except Exception:  # the tally still names the job: only the notification is lost
        log.exception("could not mention who asked about a job that failed again",
                      extra=ctx(endpoint=run.endpoint, job=job))


async def post_progress(out: SlackOut, who: Who, endpoint: str, jobs: tuple[str, ...], thread_ts: str | None, *,
                        once: str | None) -> tuple[BulkRun, str | None]:
    """A new run and its progress message's ts (None: not posted). The message is the parent whose thread is the
    run's (a command), or a reply in the thread `thread_ts` (the message shortcut's run). Under a `once` key of the
    request's row, it is posted once: a replica carrying the request on after a death waits for the post queued."""
    place = Place(who.channel, thread_ts=thread_ts, response_url=who.response_url)
    ts = await out.post(place, messages.bulk_parent(who.user, endpoint, Tally(len(jobs)), [],
                                                    threaded=thread_ts is None), once=once)
    run = BulkRun(who, endpoint, jobs, place)
    if thread_ts is None:
        place.thread_ts = ts
    else:
        run.progress_ts = ts
    return run, ts


def final_tally_via_response_url(run: BulkRun, out: SlackOut, background: Background) -> None:
    """Where the app cannot post (the run's messages went through the command's response_url), no message can be
    kept current: when every job has ended, the final tally is sent there too."""
    told = False

    def changed(_job: str | None, *, turn: float | None = None) -> None:
        nonlocal told
        if told or not run.summarized or not run.tally().ended:
            return
        told = True
        final = messages.bulk_final(run.who.user, run.endpoint, run.tally(), run.again(), run.unknown())
        background.spawn(out.respond(run.place, final, in_channel=True), name=f"bulk final tally {run.endpoint}")

    run.changed = changed


async def catch_up(store: Store, run: BulkRun) -> list[str]:
    """Add what other replicas recorded for the run's jobs; returns the jobs that changed. What this process knows
    already is kept (it may hold RunPod's JSON, which the rows leave out), except a job's "cut off" line: a settle
    (here or on another replica) that learnt RunPod's answer after the summary went out replaces it."""
    changed = []
    for job, (result, final) in (await store.bulk_jobs(run.ref)).items():
        if job not in run.jobs:
            continue
        new = False
        if result and (job not in run.results or _provisional(run.results[job])):
            answer = JobResult(**json.loads(result))
            if job not in run.results or not _provisional(answer):
                run.results[job] = answer
                new = True
        if final and job not in run.finals:
            run.finals[job] = final
            new = True
        if new:
            changed.append(job)
    return changed
