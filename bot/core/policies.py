"""Retry policies: which failures the app retries by itself, read from the RUNPOD_RETRY_POLICIES file, and the
pure data of pausing them (the kill switch).

A policy file is TOML, validated whole before the app starts: every problem is collected and named by its policy
and field, so one run of the app shows everything to fix.
"""

from __future__ import annotations

import difflib
import json
import re
import tomllib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from bot.core.ids import id_problem
from bot.core.outcome import RETENTION_SECONDS
from bot.core.words import state

STATUSES = ("FAILED", "TIMED_OUT")
MODES = ("on", "dry-run")
MAX_ATTEMPTS_LIMIT = 10     # more automatic retries of one job than this is a typo or a loop, not a policy
MAX_NAME_LENGTH = 60
EVERY_ENDPOINT = "*"
REGEX_PREFIX = "re:"

# What became of one automatic retry, as the store records it (store.record_auto).
SENT = "sent"                   # the retry reached RunPod and was accepted
COMPLETED = "completed"         # the retried job then completed
FAILED_AGAIN = "failed_again"   # the retried job failed (or timed out) again
SKIPPED = "skipped"             # not sent: stopped, paused, health warning, budget or retention
DRY_RUN = "dry_run"             # a dry-run policy said what it would have done
REFUSED = "refused"             # sent, and RunPod or the app's rules refused it
RESULTS = (SENT, COMPLETED, FAILED_AGAIN, SKIPPED, DRY_RUN, REFUSED)

# The fields of a [[policy]] table, in the order the README shows them; problems are reported in this order.
FIELDS = ("name", "endpoints", "errors", "statuses", "max_attempts", "delay", "only_when_healthy", "mode")
OPTIONAL = frozenset({"statuses", "only_when_healthy"})

_DURATION = re.compile(r"(\d+(?:\.\d+)?)\s*([smhd])")
_UNIT_SECONDS = {"s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}


@dataclass(frozen=True)
class Policy:
    name: str
    endpoints: tuple[str, ...]        # ("*",) = every endpoint
    errors: tuple[str, ...]           # as written: a substring, or "re:<regex>"; () = any error
    statuses: tuple[str, ...] = STATUSES
    max_attempts: int = 1
    delay: float = 0.0                # seconds before each automatic retry
    only_when_healthy: bool = True
    mode: str = "on"
    # Regexes are compiled once, here; a substring is kept as is.
    _patterns: tuple[str | re.Pattern[str], ...] = field(init=False, repr=False, compare=False, default=())

    def __post_init__(self) -> None:
        patterns = tuple(re.compile(p[len(REGEX_PREFIX):]) if p.startswith(REGEX_PREFIX) else p
                         for p in self.errors)
        object.__setattr__(self, "_patterns", patterns)

    @property
    def dry_run(self) -> bool:
        return self.mode == "dry-run"

    def covers(self, endpoint: str) -> bool:
        return EVERY_ENDPOINT in self.endpoints or endpoint in self.endpoints

    def matches(self, endpoint: str, status: str, summary: str | None, text: str | None) -> bool:
        """Whether a failure of `endpoint` with `status` and this error (its one-line summary and its whole text) is
        this policy's to retry. Substrings are case-sensitive; a regex is searched for anywhere."""
        if status not in self.statuses or not self.covers(endpoint):
            return False
        if not self._patterns:
            return True
        texts = [t for t in (summary, text) if t]
        for pattern in self._patterns:
            for t in texts:
                if pattern in t if isinstance(pattern, str) else pattern.search(t):
                    return True
        return False


@dataclass(frozen=True)
class Pause:
    """Automatic retries paused on one endpoint, or on all of them (scope "*"), by a person or by the breaker."""

    scope: str                    # an endpoint ID, or "*" for all
    until: float | None           # None = until resumed
    by: str                       # Slack user ID, or "breaker"
    reason: str                   # plain words shown in Slack
    at: float


class PolicyFileError(ValueError):
    """The policy file cannot be used; `problems` holds one line each, naming the policy and the field."""

    def __init__(self, problems: Iterable[str]):
        self.problems = tuple(problems)
        super().__init__("\n".join(self.problems))


def first_match(policies: Sequence[Policy], endpoint: str, status: str, summary: str | None,
                text: str | None) -> Policy | None:
    """The policy that applies to a failure: the first in the file that matches it."""
    return next((p for p in policies if p.matches(endpoint, status, summary, text)), None)


def parse_duration(text: str) -> float:
    """Seconds in "90s", "2m", "1h", "1d" or "0s"; raises ValueError saying what a duration looks like."""
    found = _DURATION.fullmatch(text.strip().lower()) if isinstance(text, str) else None
    if found is None:
        raise ValueError(f"{_shown(text)} is not a duration such as 90s or 2m")
    return float(found.group(1)) * _UNIT_SECONDS[found.group(2)]


def span(seconds: float) -> str:
    """A duration as people say it: "30 s", "2 min", "1 min 30 s", "1 h", "1 h 30 min"."""
    whole = round(seconds)
    if whole < 60:
        return f"{whole} s"
    if whole < 3600:
        minutes, rest = divmod(whole, 60)
        return f"{minutes} min" + (f" {rest} s" if rest else "")
    hours, rest = divmod(whole, 3600)
    return f"{hours} h" + (f" {rest // 60} min" if rest // 60 else "")


def describe(policy: Policy) -> str:
    """One line for `/runpod-retry auto` and the Home tab: what the policy retries, where, how often, how soon."""
    errors = " or ".join(f"/{e[len(REGEX_PREFIX):]}/" if e.startswith(REGEX_PREFIX) else e for e in policy.errors)
    where = "every endpoint" if EVERY_ENDPOINT in policy.endpoints else ", ".join(policy.endpoints)
    line = f"{policy.name}: {errors or 'any error'} on {where}"
    if set(policy.statuses) != set(STATUSES):
        line += f", {' or '.join(state(s) for s in policy.statuses)} jobs only"
    if policy.max_attempts == 1:
        line += ", 1 retry " + (f"after {span(policy.delay)}" if policy.delay else "right away")
    else:
        line += f", up to {policy.max_attempts} retries " + (f"{span(policy.delay)} apart" if policy.delay
                                                              else "right away")
    if not policy.only_when_healthy:
        line += ", even while the endpoint's health warns"
    if policy.dry_run:
        line += " (dry run: says what it would do, retries nothing)"
    return line


# ---------------------------------------------------------------- reading a policy file


def parse_policies(text: str, source: str = "policy file") -> tuple[Policy, ...]:
    """The policies in a TOML policy file, in file order; raises PolicyFileError listing every problem, each line
    starting with `source` (how the reader knows the file, e.g. "RUNPOD_RETRY_POLICIES (/etc/policies.toml)")."""
    try:
        document = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise PolicyFileError([f"{source}: it is not valid TOML: {exc}"]) from None
    problems: list[str] = []
    for key in document:
        if key != "policy":
            problems.append(f"{source}: {_shown(key)} is not something a policy file can set; it holds only "
                            "[[policy]] tables")
    tables = document.get("policy")
    if tables is None or tables == []:
        problems.append(f"{source}: it has no policy; each one starts with a [[policy]] line (see the README's "
                        "\"Retry policies\")")
        raise PolicyFileError(problems)
    if not isinstance(tables, list) or not all(isinstance(t, dict) for t in tables):
        problems.append(f"{source}: policy must be a list of tables: start each policy with [[policy]], in double "
                        "brackets")
        raise PolicyFileError(problems)
    policies: list[Policy] = []
    first_of: dict[str, int] = {}
    for number, table in enumerate(tables, 1):
        name = table.get("name")
        label = f"policy #{number}"
        if isinstance(name, str) and name.strip():
            # Two policies of one name are told apart by their place in the file.
            label = f"policy {_shown(name)}" + (f" (#{number})" if name in first_of else "")
        reader = _TableReader(table, f"{source}: {label}")
        policy = reader.policy()
        problems += reader.problems
        if isinstance(name, str) and name.strip():
            if name in first_of:
                problems.append(f"{source}: {label}: name: policy #{first_of[name]} already has this name; "
                                "give each policy its own")
            else:
                first_of[name] = number
        if policy is not None:
            policies.append(policy)
    if problems:
        raise PolicyFileError(problems)
    return tuple(policies)


class _TableReader:
    """Reads one [[policy]] table, collecting a problem per bad field instead of stopping at the first."""

    def __init__(self, table: dict[str, Any], label: str):
        self.table = table
        self.label = label
        self.problems: list[str] = []

    def problem(self, key: str, says: str) -> None:
        self.problems.append(f"{self.label}: {key}: {says}")

    def policy(self) -> Policy | None:
        for key in self.table:
            if key not in FIELDS:
                close = difflib.get_close_matches(key, FIELDS, n=1)
                hint = f"did you mean {close[0]}? " if close else ""
                self.problem(key, f"it is not a field of a policy; {hint}the fields are {', '.join(FIELDS)}")
        for key in FIELDS:
            if key not in self.table and key not in OPTIONAL:
                self.problem(key, "it is missing; every policy needs one (see the README's \"Retry policies\")")
        values = {key: getattr(self, f"_{key}")(self.table[key]) for key in FIELDS if key in self.table}
        if self.problems:
            return None
        return Policy(**values)

    def _name(self, value: Any) -> str | None:
        if not isinstance(value, str):
            self.problem("name", f"it must be text in quotes, such as \"oom-once\", not {_shown(value)}")
        elif not value.strip():
            self.problem("name", "it is empty; people see it in Slack, the audit log and history")
        elif len(value) > MAX_NAME_LENGTH or not value.isprintable():
            self.problem("name", f"{_shown(value)} is too long or not on one line; people see it in Slack, so keep it "
                                 f"short (at most {MAX_NAME_LENGTH} characters), such as \"oom-once\"")
        return value if isinstance(value, str) else None

    def _strings(self, key: str, value: Any, example: str) -> list[str] | None:
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            self.problem(key, f"it must be a list of texts in quotes, such as {example}, not {_shown(value)}")
            return None
        return list(dict.fromkeys(value))

    def _endpoints(self, value: Any) -> tuple[str, ...] | None:
        endpoints = self._strings("endpoints", value, '["ep-a", "ep-b"] or ["*"]')
        if endpoints is None:
            return None
        if not endpoints:
            self.problem("endpoints", 'it is empty; list endpoint IDs, or ["*"] for every endpoint')
        elif EVERY_ENDPOINT in endpoints and len(endpoints) > 1:
            self.problem("endpoints", '"*" already means every endpoint; list either "*" alone or endpoint IDs')
        for endpoint in endpoints:
            if endpoint != EVERY_ENDPOINT and (why := id_problem(endpoint)) is not None:
                self.problem("endpoints", f"{_shown(endpoint)} is not an endpoint ID: {why}")
        return tuple(endpoints)

    def _errors(self, value: Any) -> tuple[str, ...] | None:
        errors = self._strings("errors", value, '["CUDA out of memory", "re:Worker .* died"]')
        if errors is None:
            return None
        for pattern in errors:
            if pattern.startswith(REGEX_PREFIX):
                regex = pattern[len(REGEX_PREFIX):]
                if not regex:
                    self.problem("errors", f"{_shown(pattern)} has no regular expression after re:")
                    continue
                try:
                    re.compile(regex)
                except re.error as exc:
                    self.problem("errors", f"{_shown(pattern)} is not a valid regular expression ({exc})")
            elif not pattern:
                self.problem("errors", '"" would match every error; write errors = [] to match any error')
        return tuple(errors)

    def _statuses(self, value: Any) -> tuple[str, ...] | None:
        statuses = self._strings("statuses", value, '["FAILED", "TIMED_OUT"]')
        if statuses is None:
            return None
        if not statuses:
            self.problem("statuses", 'it is empty, so the policy would never apply; leave it out for both '
                                     '"FAILED" and "TIMED_OUT"')
        for status in statuses:
            if status not in STATUSES:
                self.problem("statuses", f"{_shown(status)} is not a status a failed job can have; use \"FAILED\" "
                                         "or \"TIMED_OUT\"")
        return tuple(statuses)

    def _max_attempts(self, value: Any) -> int | None:
        if not isinstance(value, int) or isinstance(value, bool):
            self.problem("max_attempts", f"it must be a whole number such as 2, not {_shown(value)}")
            return None
        if value < 1:
            self.problem("max_attempts", f"{value} would never retry; use at least 1")
        elif value > MAX_ATTEMPTS_LIMIT:
            self.problem("max_attempts", f"{value} is too many automatic retries of one job; use at most "
                                         f"{MAX_ATTEMPTS_LIMIT}")
        return value

    def _delay(self, value: Any) -> float | None:
        if not isinstance(value, str):
            self.problem("delay", f"it must be a duration in quotes, such as \"30s\" or \"2m\", not {_shown(value)}")
            return None
        try:
            seconds = parse_duration(value)
        except ValueError as exc:
            self.problem("delay", str(exc))
            return None
        if seconds >= RETENTION_SECONDS:
            self.problem("delay", f"{_shown(value)} is too long: RunPod forgets a failed job {span(RETENTION_SECONDS)} "
                                  f"after it ends, so the retry could never happen; use less than "
                                  f"{RETENTION_SECONDS // 60}m")
        return seconds

    def _only_when_healthy(self, value: Any) -> bool | None:
        if not isinstance(value, bool):
            self.problem("only_when_healthy", f"it must be true or false, not {_shown(value)}")
            return None
        return value

    def _mode(self, value: Any) -> str | None:
        if value not in MODES:
            self.problem("mode", f"it must be \"on\" or \"dry-run\" (says what it would do, does nothing), not "
                                 f"{_shown(value)}")
            return None
        return str(value)


def _shown(value: Any, limit: int = 60) -> str:
    """A value quoted back as it would be written in the file, on one line and cut short."""
    try:
        shown = json.dumps(value, ensure_ascii=False)
    except (TypeError, ValueError):
        shown = str(value)
    shown = shown.replace("\n", " ")
    return shown if len(shown) <= limit else shown[: limit - 1] + "…"
