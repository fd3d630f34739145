"""The storage interface: everything the app must remember, whichever database holds it.

Two implementations: SQLite (one instance, the embedded default) and PostgreSQL (several replicas sharing the work).
The same storage tests run against both.

Work that outlives one request (accepted webhooks and clicks, messages queued for Slack, followed jobs, claims on a
job) belongs to one replica at a time: its `owner` row holds a lease that the replica renews with `renew()`. When a
replica dies its leases run out and `adopt()` hands the work to a live one; a replica that stops cleanly calls
`hand_over()` so the others take it at once.
"""

from __future__ import annotations

import abc
import json
import re
import secrets
from collections.abc import Callable
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from bot.core.policies import Pause
from bot.infra.timing import REAL

# A lease this long survives a busy event loop and a slow database; a dead replica's work moves on within it.
# A store is given its lease (`Timing.lease`, shorter in tests); this is the real one.
LEASE_SECONDS = REAL.lease


def new_owner_id() -> str:
    """A replica's identity for leases: unique per process start."""
    return secrets.token_hex(6)


@dataclass(frozen=True)
class AuditEntry:
    user: str
    channel: str
    endpoint: str
    job: str
    source: str       # command | button | bulk | retry_all | shortcut | cli
    outcome: str      # requeued, not_found, …, or refused:<reason>
    called: bool = False  # RunPod took the retry, or may have (counts toward the budget)
    http_status: int | None = None
    job_status: str | None = None
    detail: str | None = None
    at: float = 0.0


@dataclass(frozen=True)
class Claim:
    """Who holds a job for a retry (from the click or command until the retried job ends)."""

    user: str
    at: float
    owner: str = ""
    until: float = field(default=0.0, compare=False)  # when its lease runs out, unless its owner renews it


@dataclass(frozen=True)
class Queued:
    """A row of the outbox (messages for Slack) or of the inbox (accepted work not yet done)."""

    id: int
    kind: str
    payload: dict[str, Any]
    lane: str = ""
    attempts: int = 0
    not_before: float = 0.0
    created: float = 0.0
    after: dict[str, Any] | None = field(default=None)
    news: bool = False  # outbox: queued as news (see bot/slack/outbox.py), kept for whoever resumes it
    result: str | None = None  # outbox: Slack's answer, once kept by `delivered` (the call must not go again)

    @staticmethod
    def decode(value: Any) -> dict[str, Any]:
        return json.loads(value) if isinstance(value, str) else dict(value or {})


@dataclass(frozen=True)
class Adopted:
    """Work another replica left (it died, or stopped and handed it over), now this replica's."""

    outbox: list[Queued] = field(default_factory=list)
    inbox: list[Queued] = field(default_factory=list)
    follows: list[str] = field(default_factory=list)


def mask_url(url: str) -> str:
    """A database URL fit for a message or a log: the password (in the authority or the query) shown as `***`.

    `postgresql://user:secret@host:5432/db` -> `postgresql://user:***@host:5432/db`. Anything else passes unchanged.
    """
    try:
        parts = urlsplit(url)
    except ValueError:
        return "<unparsable database URL>"
    netloc = parts.netloc
    userinfo, at, hostport = netloc.rpartition("@")
    if at and ":" in userinfo:
        netloc = f"{userinfo.split(':', 1)[0]}:***@{hostport}"
    query = re.sub(r"(?i)(^|&)(password=)[^&]*", r"\1\2***", parts.query)
    return urlunsplit((parts.scheme, netloc, parts.path, query, parts.fragment))


class StoreUnavailable(Exception):
    """The database cannot be reached right now (PostgreSQL down, a network blip). Work is not lost: what was
    accepted is in the database; the person is told to try again shortly."""

    expected = True  # logged as one line, never a traceback (bot/infra/logs.py)


class Store(abc.ABC):
    """One database, as the app sees it. `owner` identifies this replica for leases."""

    owner: str
    shared: bool  # several replicas may use it at once (PostgreSQL)
    lease: float = LEASE_SECONDS  # how long this replica's hold on its work lasts unless renewed

    # ---------------------------------------------------------------- life

    @abc.abstractmethod
    async def open(self) -> None:
        """Connect and bring the schema up to date (migrations, safe when replicas start together)."""

    @abc.abstractmethod
    async def close(self) -> None: ...

    @abc.abstractmethod
    async def ping(self) -> bool:
        """True when the database answers now (for /healthz)."""

    @abc.abstractmethod
    async def prune(self, before: float) -> None:
        """Forget alerts, storms, seen failures, sent messages and done work last touched before `before`.
        The audit trail is kept: it is the team's record."""

    # ---------------------------------------------------------------- between replicas

    @abc.abstractmethod
    async def beat(self, executor: str, generation: str, stale_after: float) -> list[str]:
        """The engine's executor `executor` is alive; returns the silent ones it now takes charge of
        (bot/store/executors.py)."""

    @abc.abstractmethod
    async def forget_executor(self, executor: str) -> None: ...

    @abc.abstractmethod
    async def retire_executor(self, executor: str) -> None: ...

    @abc.abstractmethod
    def lock(self, name: str) -> AbstractAsyncContextManager[None]:
        """Mutual exclusion for `name` across every replica (one alert per job, one grouped alert per storm)."""

    @abc.abstractmethod
    async def publish(self, topic: str, message: str) -> None:
        """Tell every replica, this one included, through `subscribe` callbacks (PostgreSQL: NOTIFY)."""

    @abc.abstractmethod
    def subscribe(self, topic: str, callback: Callable[[str], None]) -> None: ...

    # ---------------------------------------------------------------- leases

    @abc.abstractmethod
    async def renew(self, now: float) -> None:
        """Extend the leases on everything this replica owns."""

    @abc.abstractmethod
    async def adopt(self, now: float, *, everything: bool = False) -> Adopted:
        """Take over work whose owner's lease ran out (`everything`: all of it, for a lone instance's start)."""

    @abc.abstractmethod
    async def hand_over(self) -> None:
        """Stopping cleanly: let the other replicas adopt this one's unfinished work at once."""

    # ---------------------------------------------------------------- claims (exactly once)

    @abc.abstractmethod
    async def claim(self, endpoint: str, job: str, user: str, now: float) -> Claim | None:
        """Take the job for one retry. None: it is ours now. Otherwise the claim someone else holds."""

    @abc.abstractmethod
    async def release(self, endpoint: str, job: str, at: float | None = None) -> None:
        """End the job's claim. With `at`: only this replica's claim taken at that moment, so a late release never
        ends a newer claim on the job."""

    @abc.abstractmethod
    async def claimed(self, endpoint: str, job: str) -> Claim | None: ...

    # ---------------------------------------------------------------- inbox: accepted work

    @abc.abstractmethod
    async def accept(self, kind: str, payload: dict[str, Any], now: float) -> int:
        """Record work that was (or is about to be) acknowledged, before acting on it."""

    @abc.abstractmethod
    async def accept_by(self, kind: str, payload: dict[str, Any], now: float, by: float) -> int | None:
        """As `accept`, for a request the person is told was taken only if it is written by `by` (this app's clock).
        A row the database writes later than that is written as done already, and None is answered: the person was
        told to try again by then, so nobody may carry it out, not even a replica adopting it after this one died."""

    @abc.abstractmethod
    async def done(self, work_id: int) -> None: ...

    @abc.abstractmethod
    async def open_work(self, kind: str) -> list[Queued]:
        """Accepted work of this kind not finished yet, whoever holds it, oldest first."""

    # ---------------------------------------------------------------- outbox: messages for Slack

    @abc.abstractmethod
    async def enqueue(self, kind: str, lane: str, payload: dict[str, Any], now: float, *,
                      coalesce: str | None = None, after: dict[str, Any] | None = None,
                      once: str | None = None, news: bool = False, turn: float | None = None) -> tuple[int, bool]:
        """Queue a Slack call (`news`: kept with it, for whoever resumes it; `turn`: the moment its place in the
        lane counts from, when earlier than now, see `Outbox.submit`). With `coalesce`, a queued, unsent call
        with the same key is replaced instead (only the newest state of a message is sent). With `once`, the call is
        queued only if no call was ever queued under that key (whatever became of it, whichever replica queued it):
        one statement, so of any number of replicas queueing it at once exactly one does. Returns (row id, whether
        it merged into an older row or found one queued under `once`)."""

    @abc.abstractmethod
    async def said(self, once: str) -> tuple[str, str | None] | None:
        """The call queued under `once`, if any: its state (queued, sending, sent, withdrawn) and its result."""

    @abc.abstractmethod
    async def take(self, message_id: int) -> Queued | None:
        """Mark a queued call as being sent and return it as it is now (None: already sent or gone)."""

    @abc.abstractmethod
    async def delivered(self, message_id: int, result: str | None) -> None:
        """Keep Slack's answer to a call whose hook has yet to run: whoever takes the row over after a stop runs
        the hook with it instead of sending the call a second time."""

    @abc.abstractmethod
    async def sent(self, message_id: int, result: str | None) -> None: ...

    @abc.abstractmethod
    async def later(self, message_id: int, not_before: float, attempts: int) -> None:
        """Put a call back in the queue, to be tried again at `not_before`."""

    @abc.abstractmethod
    async def withdraw(self, message_id: int) -> bool:
        """Take back a call not yet being sent (the caller found another way to say it). False: too late."""

    @abc.abstractmethod
    async def queued(self) -> list[Queued]:
        """This replica's unsent calls, oldest first (to resume after a restart or an adoption)."""

    # ---------------------------------------------------------------- audit

    @abc.abstractmethod
    async def audit(self, entry: AuditEntry) -> None: ...

    @abc.abstractmethod
    async def history(self, limit: int) -> list[dict[str, Any]]: ...

    @abc.abstractmethod
    async def retries_since(self, endpoint: str, job: str, since: float) -> int:
        """Retries RunPod took (or may have taken) for the job since `since`: the budget counts these."""

    @abc.abstractmethod
    async def asked_since(self, endpoint: str, job: str, user: str, since: float) -> bool:
        """Whether anything was recorded for the job at `user`'s asking since `since`: a retry, or a refusal they
        were told of (a request taken over from a replica that died: it got that far)."""

    @abc.abstractmethod
    async def retry_times(self, endpoint: str, job: str, since: float) -> list[float]:
        """When each of those retries was sent, oldest first: the next allowed retry is told from them."""

    # ---------------------------------------------------------------- alerts, follows, storms, bulk runs

    @abc.abstractmethod
    async def save_alert(self, endpoint: str, job: str, data: str) -> None: ...

    @abc.abstractmethod
    async def load_alert(self, endpoint: str, job: str) -> str | None: ...

    @abc.abstractmethod
    async def recent_alerts(self, since: float) -> list[str]: ...

    @abc.abstractmethod
    async def save_follow(self, endpoint: str, job: str, data: str) -> None:
        """Remember a followed job, owned (leased) by this replica."""

    @abc.abstractmethod
    async def drop_follow(self, endpoint: str, job: str) -> None: ...

    @abc.abstractmethod
    async def follows(self) -> list[str]:
        """The followed jobs this replica owns."""

    @abc.abstractmethod
    async def save_storm(self, storm_id: str, data: str) -> None: ...

    @abc.abstractmethod
    async def load_storm(self, storm_id: str) -> str | None: ...

    @abc.abstractmethod
    async def recent_storms(self, since: float) -> list[str]: ...

    @abc.abstractmethod
    async def save_bulk(self, run_id: str, data: str) -> None: ...

    @abc.abstractmethod
    async def load_bulk(self, run_id: str) -> str | None: ...

    @abc.abstractmethod
    async def recent_bulks(self, since: float) -> list[str]: ...

    @abc.abstractmethod
    async def save_bulk_job(self, run_id: str, job: str, *, result: str | None = None,
                            final: str | None = None) -> None:
        """One job's answer (JSON) or ending (a status) in a bulk run; what is None is left as it was. A row per job,
        so replicas reporting different jobs of one run never overwrite each other."""

    @abc.abstractmethod
    async def bulk_jobs(self, run_id: str) -> dict[str, tuple[str | None, str | None]]:
        """Every job of the run recorded so far: job -> (answer JSON, ending)."""

    # ---------------------------------------------------------------- failures seen (for `failed`)

    @abc.abstractmethod
    async def record_failure(self, endpoint: str, job: str, status: str, error: str | None, at: float) -> None: ...

    @abc.abstractmethod
    async def mark_retried(self, endpoint: str, jobs: list[str]) -> None: ...

    @abc.abstractmethod
    async def recent_failures(self, endpoint: str, since: float) -> list[dict[str, Any]]: ...

    # ---------------------------------------------------------------- the Home tab: what is going on

    @abc.abstractmethod
    async def unretried_failures(self, since: float, limit: int) -> list[dict[str, Any]]:
        """Failures seen since `since` on any endpoint and not retried since (the same rule as `recent_failures`),
        newest first, at most `limit`: endpoint, job, status, error, seen_at."""

    @abc.abstractmethod
    async def followed_jobs(self, limit: int) -> list[str]:
        """Jobs being followed now by any replica (as saved by `save_follow`), at most `limit`."""

    @abc.abstractmethod
    async def record_retry_end(self, endpoint: str, job: str, status: str, at: float) -> None:
        """A retried job ended: `status` is RunPod's last word (COMPLETED, FAILED, …) or UNKNOWN when following
        stopped first. Counted by `retry_stats`."""

    @abc.abstractmethod
    async def retry_stats(self, since: float) -> list[dict[str, Any]]:
        """Per endpoint with retries since `since`, by endpoint ID: `sent` (retries RunPod got), `requeued` (it took
        them), `completed` and `failed_again` (how the retried jobs ended)."""

    # ---------------------------------------------------------------- automatic retries (retry policies)

    @abc.abstractmethod
    async def record_auto(self, endpoint: str, job: str, attempt: int, policy: str, result: str, at: float) -> bool:
        """What one automatic retry attempt came to (bot.core.policies RESULTS). An attempt is sent, and ends, at most
        once: a second SENT, COMPLETED or FAILED_AGAIN for the same job and attempt (a replayed step, another
        replica) is not recorded, and this returns False."""

    @abc.abstractmethod
    async def auto_results(self, endpoint: str, since: float) -> list[tuple[float, str]]:
        """(at, result) of the endpoint's automatic retries recorded since `since`, newest first: the breaker's
        input."""

    @abc.abstractmethod
    async def stop_auto(self, endpoint: str, job: str, user: str, at: float) -> bool:
        """Stop automatic retries of the job (an alert's Stop). True for the first click only."""

    @abc.abstractmethod
    async def auto_stopped(self, endpoint: str, job: str) -> str | None:
        """Who stopped automatic retries of the job, if anyone."""

    @abc.abstractmethod
    async def pause_auto(self, pause: Pause) -> bool:
        """Pause automatic retries on `pause.scope` when no pause of that scope is active at `pause.at`: True then,
        for exactly one of any number of callers at once on any replica (the breaker's notice is posted once).
        False, and nothing changed, when one is active."""

    @abc.abstractmethod
    async def resume_auto(self, scope: str) -> Pause | None:
        """Lift the pause of `scope`: the pause removed, if there was one. It may have run out already: the caller
        compares its `until` with the time."""

    @abc.abstractmethod
    async def auto_pauses(self, now: float) -> list[Pause]:
        """The pauses active at `now` (no end, or an end after `now`), by scope."""
