"""Retry policies: which failures the app retries by itself, and the records of what it did.

The switch helper's part: `Pause` (a kill switch or a tripped breaker), the RESULTS an automatic retry records, and the
minimal `Policy` the `auto` listing and the Home tab render. Parsing, matching and validation are the policies
module's; this file is replaced by it when both branches meet.
"""

from __future__ import annotations

from dataclasses import dataclass

STATUSES = ("FAILED", "TIMED_OUT")

# What an automatic retry of one attempt recorded (store.record_auto).
SENT = "sent"                  # the retry went to RunPod
COMPLETED = "completed"        # the retried job then completed
FAILED_AGAIN = "failed_again"  # ... or failed (or timed out) again
SKIPPED = "skipped"            # not sent: paused, stopped, unhealthy, past retention or over the budget
DRY_RUN = "dry_run"            # the policy is in dry-run mode: said what it would do, did nothing
REFUSED = "refused"            # the app's own rules (access, budget) said no
RESULTS = (SENT, COMPLETED, FAILED_AGAIN, SKIPPED, DRY_RUN, REFUSED)


@dataclass(frozen=True)
class Policy:
    name: str
    endpoints: tuple[str, ...]        # ("*",) = every endpoint
    errors: tuple[str, ...]           # raw patterns as written: substring, or "re:<regex>"; () = any error
    statuses: tuple[str, ...] = STATUSES
    max_attempts: int = 1             # >= 1
    delay: float = 0.0                # seconds
    only_when_healthy: bool = True
    mode: str = "on"                  # "on" | "dry-run"

    @property
    def dry_run(self) -> bool:
        return self.mode == "dry-run"

    def covers(self, endpoint: str) -> bool:
        return "*" in self.endpoints or endpoint in self.endpoints


@dataclass(frozen=True)
class Pause:
    scope: str                    # an endpoint ID, or "*" for all
    until: float | None           # None = until resumed
    by: str                       # Slack user ID, or "breaker"
    reason: str                   # plain words shown in Slack
    at: float


def _seconds(delay: float) -> str:
    for size, unit in ((3600, "h"), (60, "min")):
        if delay >= size and delay % size == 0:
            return f"{int(delay // size)} {unit}"
    return f"{delay:g} s"


def describe(policy: Policy) -> str:
    """One line for `auto` and Home: "oom-once: CUDA out of memory on ep-a, ep-b, up to 2 retries 30 s apart"."""
    errors = " or ".join(policy.errors) if policy.errors else "any error"
    where = "every endpoint" if "*" in policy.endpoints else ", ".join(policy.endpoints)
    retries = "1 retry" if policy.max_attempts == 1 else f"{policy.max_attempts} retries"
    gap = "after" if policy.max_attempts == 1 else "apart"
    timing = f" {_seconds(policy.delay)} {gap}" if policy.delay else ""
    return f"{policy.name}: {errors} on {where}, up to {retries}{timing}"
