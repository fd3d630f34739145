"""Jobs handled as a group: what a bulk retry did to each job, the tally, and an alert storm. Pure data."""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import asdict, dataclass, field, replace
from http import HTTPStatus
from typing import Any

from bot.core.outcome import RETENTION_SECONDS, RETRYABLE, UNCERTAIN, Kind, Outcome, state_sentence
from bot.core.worker_errors import common_errors, error_details, error_family, error_summary

# RunPod's answers after which retrying the same job again makes no sense (for `failed`: not offered again).
SETTLED = frozenset({Kind.REQUEUED.value, Kind.NOT_FOUND.value, Kind.NOT_RETRYABLE.value})
# Outcomes after which RunPod may or may not have requeued the job (its answer was lost or garbled).
UNCERTAIN_VALUES = frozenset(kind.value for kind in UNCERTAIN)
# A followed job that stopped being followed without a terminal status.
UNKNOWN = "UNKNOWN"
MAX_EXAMPLES = 3      # kinds of error whose whole error a grouped alert's thread shows, one job each
EXAMPLE_CHARS = 2500  # of each, its end (where the cause is): one message stays within Slack's limits

# Why a job was not retried, or why its retry's outcome is unknown, in a few plain words (a table row reads
# "not retried: <this>" or "unknown, may have gone through: <this>").
_SHORT = {
    Kind.NOT_RETRYABLE: "the job {state}",
    Kind.NOT_FOUND: "RunPod does not know it (wrong ID, or its result expired)",
    Kind.UNAUTHORIZED: "RunPod refused the API key",
    Kind.REFUSED: "RunPod refused the retry",
    Kind.RATE_LIMITED: "RunPod kept limiting requests until the job's retry window had closed",
    Kind.SERVER_ERROR: "RunPod had a server error",
    Kind.TIMEOUT: "RunPod did not answer in time",
    Kind.UNREACHABLE: "RunPod could not be reached",
    Kind.BAD_RESPONSE: "RunPod's answer was not JSON",
}
REASON_CHARS = 120


def plain_reason(outcome: Outcome) -> str | None:
    """What RunPod said, as a short plain phrase: its JSON `error`, else the HTTP status in words. A page that is
    not JSON (a gateway's `<html>502 Bad Gateway</html>`) is never shown as it came, not even stripped of tags."""
    body = outcome.body
    said = body.get("error") if isinstance(body, dict) else None
    if isinstance(said, str) and said.strip():
        line = " ".join(said.split())
        return line if len(line) <= REASON_CHARS else line[: REASON_CHARS - 1] + "…"
    status = outcome.http_status
    if status is None or status < 400:
        return None
    try:
        return f"HTTP {status} {HTTPStatus(status).phrase}"
    except ValueError:
        return f"HTTP {status}"


def _may_have_gone_through(outcome: str, job_status: str | None) -> bool:
    """RunPod's answer to the retry was lost or garbled and no /status check showed the job still failed."""
    return outcome in UNCERTAIN_VALUES and job_status not in RETRYABLE


@dataclass(frozen=True)
class JobResult:
    """One job's answer in a bulk retry: RunPod's, or the app's reason for not asking RunPod."""

    job: str
    outcome: str                 # an outcome Kind value, "refused:<reason>" (the app's rules) or "error"
    http_status: int | None = None
    job_status: str | None = None
    detail: str | None = None    # why it was not retried (or why its outcome is unknown), in a few plain words
    body: Any = None             # the JSON RunPod returned

    @classmethod
    def of(cls, outcome: Outcome) -> JobResult:
        detail = None
        if not outcome.ok:
            already = "already " if outcome.job_status == "COMPLETED" else ""
            detail = _SHORT.get(outcome.kind, outcome.kind.value).format(
                state=already + state_sentence(outcome.job_status))
            said = plain_reason(outcome)
            if said and outcome.kind not in (Kind.NOT_RETRYABLE, Kind.NOT_FOUND):  # their words say it all
                detail += f" ({said})"
        return cls(outcome.job, outcome.kind.value, outcome.http_status, outcome.job_status, detail, outcome.body)

    @property
    def requeued(self) -> bool:
        return self.outcome == Kind.REQUEUED.value

    @property
    def unknown(self) -> bool:
        """Not known to be requeued nor known not to be: the retry may have gone through (check its status)."""
        return _may_have_gone_through(self.outcome, self.job_status)

    @property
    def settled(self) -> bool:
        return self.outcome in SETTLED

    def describe(self) -> str:
        """RunPod's status, or the error, as one short phrase."""
        if self.requeued:
            return self.job_status or "IN_QUEUE"
        return self.detail or self.outcome

    def as_json(self) -> dict[str, Any]:
        data: dict[str, Any] = {"job": self.job, "outcome": self.outcome, "http_status": self.http_status}
        if self.job_status:
            data["status"] = self.job_status
        if self.detail:
            data["error"] = self.detail
        if self.unknown:
            data["may_have_gone_through"] = True
        if self.body is not None:
            data["runpod"] = self.body
        return data


@dataclass(frozen=True)
class Tally:
    """What happened to the jobs of a bulk retry. Every job is in exactly one count, so they add up to `total`:
    waiting (no answer yet) + not_retried + unknown + the requeued ones (running, completed, failed_again, other)."""

    total: int
    answered: int = 0      # jobs with a result (RunPod's answer or the app's refusal)
    not_retried: int = 0   # refused by the app, or by RunPod (known not to have been requeued)
    unknown: int = 0       # RunPod's answer was lost or garbled: the retry may have gone through
    running: int = 0       # requeued and still being followed
    completed: int = 0
    failed_again: int = 0
    other: int = 0         # cancelled, or stopped being followed before it ended

    @classmethod
    def of(cls, jobs: Any, results: dict[str, JobResult], finals: dict[str, str]) -> Tally:
        counts: Counter[str] = Counter()
        jobs = list(jobs)
        for job in jobs:
            result = results.get(job)
            if result is None:
                continue
            counts["answered"] += 1
            final = finals.get(job)
            if result.unknown:
                counts["unknown"] += 1
            elif not result.requeued:
                counts["not_retried"] += 1
            elif final is None:
                counts["running"] += 1
            elif final == "COMPLETED":
                counts["completed"] += 1
            elif final in RETRYABLE:
                counts["failed_again"] += 1
            else:
                counts["other"] += 1
        return cls(total=len(jobs), **counts)

    @property
    def requeued(self) -> int:
        return self.answered - self.not_retried - self.unknown

    @property
    def waiting(self) -> int:
        """Jobs with no answer yet (their turn has not come, or RunPod has not answered)."""
        return self.total - self.answered

    @property
    def sent(self) -> bool:
        """Every job has its answer."""
        return self.answered >= self.total

    @property
    def ended(self) -> bool:
        """Every job has its answer and every requeued job has ended."""
        return self.sent and self.running == 0


def failed_again(jobs: Any, results: dict[str, JobResult], finals: dict[str, str]) -> list[str]:
    return [job for job in jobs if job in results and results[job].requeued and finals.get(job) in RETRYABLE]


def unknown_jobs(jobs: Any, results: dict[str, JobResult]) -> list[str]:
    """The jobs whose retry may have gone through (RunPod's answer was lost): each needs a status check."""
    return [job for job in jobs if job in results and results[job].unknown]


# ---------------------------------------------------------------- alert storms


def error_key(status: str, error: str | None) -> str:
    """A failure's error in one line (a traceback by its exception, runpod-python's JSON by its type and message),
    for a job list and for grouping; a failure without one is named by its status."""
    return error_summary(error) or f"{status} without an error message"


@dataclass(frozen=True)
class StormJob:
    status: str
    error: str | None
    at: float


@dataclass
class Storm:
    """Many failures of one endpoint in a short time, shown as one grouped alert."""

    endpoint: str
    channel: str
    started: float
    last_at: float
    jobs: dict[str, StormJob] = field(default_factory=dict)   # in arrival order
    singles: int = 0           # failures alerted one by one before the storm was recognised
    ts: str | None = None      # the grouped alert
    pages: list[str] = field(default_factory=list)            # the job list, in the alert's thread
    requested: list[str] = field(default_factory=list)        # jobs a Retry all took on
    results: dict[str, JobResult] = field(default_factory=dict)
    finals: dict[str, str] = field(default_factory=dict)
    retry_by: str | None = None
    retry_at: float | None = None
    running: bool = False      # a Retry all is under way (not persisted: a restart ends it)
    summarized: list[int] = field(default_factory=list)       # Retry all runs (inbox rows) whose summary is queued
    # Retry all runs (inbox rows, by id) and the jobs each took on: written as a run takes its jobs, so the replica
    # adopting a row whose replica died carries out that run, not a second one.
    taken: dict[str, list[str]] = field(default_factory=dict)
    expired: bool = False      # redrawn without Retry all once its last job's retry deadline passed
    # One job's whole error for each kind of error (its family), shown in the thread: the traceback one click away.
    examples: dict[str, tuple[str, str]] = field(default_factory=dict)   # family -> (job, whole error)
    examples_ts: str | None = None

    @property
    def storm_id(self) -> str:
        """When it started, in ms: with the endpoint, the grouped alert's identity (buttons, store)."""
        return str(int(self.started * 1000))

    @property
    def key(self) -> str:
        return f"{self.endpoint}/{self.storm_id}"

    def is_open(self, now: float, window: float) -> bool:
        """Still collecting: the last failure came within the storm window."""
        return now - self.last_at <= window

    def add(self, job: str, status: str, error: str | None, at: float) -> bool:
        """False when the job is already in the storm (RunPod redelivers webhooks)."""
        if job in self.jobs:
            return False
        self.jobs[job] = StormJob(status, error, at)
        self.last_at = max(self.last_at, at)
        return True

    def merge(self, stored: Storm) -> None:
        """Take in what another replica saved (shared store): its jobs, its grouped alert and pages, its Retry all.
        In place, so a Retry all running here keeps sharing `results` and `finals`; what this replica knows too
        (its own run's results) wins over the stored copy."""
        for job, failure in stored.jobs.items():
            self.jobs.setdefault(job, failure)
        self.jobs = {job: self.jobs[job] for job in [*stored.jobs, *[j for j in self.jobs if j not in stored.jobs]]}
        self.last_at = max(self.last_at, stored.last_at)
        self.singles = max(self.singles, stored.singles)
        self.ts = self.ts or stored.ts
        pages = max(len(self.pages), len(stored.pages))
        self.pages = [(self.pages[i] if i < len(self.pages) else "") or
                      (stored.pages[i] if i < len(stored.pages) else "") for i in range(pages)]
        self.requested.extend(job for job in stored.requested if job not in self.requested)
        # Which Retry all runs have their summary queued: a replica that takes one over must not post it again.
        self.summarized.extend(run for run in stored.summarized if run not in self.summarized)
        for run_id, jobs in stored.taken.items():
            self.taken.setdefault(run_id, jobs)
        for job, result in stored.results.items():
            self.results.setdefault(job, result)
        for job, final in stored.finals.items():
            self.finals.setdefault(job, final)
        self.retry_by = self.retry_by or stored.retry_by
        self.retry_at = self.retry_at or stored.retry_at
        for family, example in stored.examples.items():
            if len(self.examples) < MAX_EXAMPLES:
                self.examples.setdefault(family, example)
        self.examples_ts = self.examples_ts or stored.examples_ts

    def add_example(self, job: str, error: Any) -> bool:
        """Keep `job`'s whole error when it is the first of its kind (up to MAX_EXAMPLES kinds); True when kept."""
        summary, details = error_summary(error), error_details(error)
        if summary is None or details is None or len(self.examples) >= MAX_EXAMPLES:
            return False
        family = error_family(summary)
        if family in self.examples:
            return False
        self.examples[family] = (job, details[-EXAMPLE_CHARS:])
        return True

    def unretried(self) -> tuple[str, ...]:
        taken = set(self.requested)
        return tuple(job for job in self.jobs if job not in taken)

    def top_errors(self, n: int = 3) -> list[tuple[str, int]]:
        """The most common errors, grouped by what went wrong (see worker_errors.common_errors)."""
        return common_errors((error_key(j.status, j.error) for j in self.jobs.values()), n)

    @property
    def first_at(self) -> float:
        return min((j.at for j in self.jobs.values()), default=self.started)

    @property
    def first_deadline(self) -> float:
        return self.first_at + RETENTION_SECONDS

    @property
    def last_deadline(self) -> float:
        return self.last_at + RETENTION_SECONDS

    def tally(self) -> Tally:
        return Tally.of(self.requested, self.results, self.finals)

    def page_of(self, job: str, page_size: int) -> int:
        return list(self.jobs).index(job) // page_size

    def page_count(self, page_size: int) -> int:
        return max(1, -(-len(self.jobs) // page_size))

    def to_json(self) -> str:
        data = asdict(self)
        data.pop("running")
        # RunPod's JSON was shown in the summary; the tally needs only the outcome.
        data["results"] = {job: asdict(replace(r, body=None)) for job, r in self.results.items()}
        return json.dumps(data)

    @classmethod
    def from_json(cls, text: str) -> Storm:
        data = json.loads(text)
        data["jobs"] = {job: StormJob(**j) for job, j in data["jobs"].items()}
        data["results"] = {job: JobResult(**r) for job, r in data["results"].items()}
        data["examples"] = {family: tuple(e) for family, e in (data.get("examples") or {}).items()}
        return cls(**data)
