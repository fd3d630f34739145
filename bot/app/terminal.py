"""`python -m bot retry` and `python -m bot status`: retry or check jobs from a shell or a runbook script, with the
same ID checks, endpoint allowlist, hourly budget and audit as in Slack (the person recorded as `cli:<login name>`).

Exit codes: 0 every job was requeued (`status`: RunPod answered); 1 RunPod refused or failed for any job, or the
app's rules did (budget, a retry already under way); 2 usage or configuration errors (nothing was called).
"""

from __future__ import annotations

import argparse
import getpass
import json
import re
import sys
import time
from collections.abc import Sequence
from dataclasses import replace

from bot.core.commands import UsageError, parse_job_list
from bot.core.outcome import Kind, Outcome
from bot.core.words import without_dates
from bot.infra.config import Settings
from bot.store import AuditEntry, StoreUnavailable
from bot.work.retry import Source
from bot.work.runtime import Runtime

_LINK = re.compile(r"<([^|>]+)\|([^>]+)>")


def _plain(text: str) -> str:
    """Slack's markup for a terminal: times as "HH:MM UTC", links as "label (address)", no backticks."""
    return _LINK.sub(r"\2 (\1)", without_dates(text)).replace("`", "")


def who_am_i() -> str:
    try:
        return f"cli:{getpass.getuser()}"
    except (KeyError, OSError):  # no login name (a container with an arbitrary UID)
        return "cli:unknown"


def parse(argv: Sequence[str]) -> argparse.Namespace:
    verb = argv[0] if argv else "retry"
    parser = argparse.ArgumentParser(
        prog=f"python -m bot {verb}",
        description="Retry failed RunPod jobs (FAILED or TIMED_OUT, same job ID)." if verb == "retry"
        else "Show a RunPod job's status, changing nothing.")
    parser.add_argument("endpoint", help="the endpoint ID")
    parser.add_argument("jobs", nargs="+" if verb == "retry" else 1, metavar="jobId",
                        help="job IDs (also endpoint/job or RunPod API links), separated by spaces or commas")
    parser.add_argument("--json", action="store_true", help="print one JSON object per job instead of words")
    return parser.parse_args(argv[1:])


def _print(outcome: Outcome, as_json: bool) -> None:
    if as_json:
        print(json.dumps({"endpoint": outcome.endpoint, "job": outcome.job, "outcome": outcome.kind.value,
                          "http_status": outcome.http_status, "job_status": outcome.job_status,
                          "body": outcome.body}, ensure_ascii=False))
        return
    print(f"{outcome.kind.value}: {_plain(outcome.headline)}.")
    print(f"  {_plain(outcome.advice)}")
    if outcome.body is not None:
        print(f"{outcome.answer_label}:")
        print(json.dumps(outcome.body, indent=2, ensure_ascii=False))
    elif outcome.excerpt:
        print(f"{outcome.answer_label}, not JSON: {outcome.excerpt}")


def _refused(endpoint: str, job: str, code: str, why: str, as_json: bool) -> None:
    if as_json:
        print(json.dumps({"endpoint": endpoint, "job": job, "outcome": f"refused:{code}", "http_status": None,
                          "job_status": None, "body": None}))
    else:
        print(f"refused:{code}: {_plain(why)}")


async def _retry(rt: Runtime, endpoint: str, jobs: tuple[str, ...], as_json: bool) -> int:
    service, user = rt.service, who_am_i()
    failures = 0
    for job in jobs:
        held = await rt.store.claim(endpoint, job, user, time.time())
        if held is not None:
            why = f"job {job} on endpoint {endpoint} is being retried already (by {held.user}); nothing more was done"
            await service.record(AuditEntry(user, "", endpoint, job, Source.CLI, "refused:duplicate", detail=why))
            _refused(endpoint, job, "duplicate", why, as_json)
            failures += 1
            continue
        try:
            budget = await service.over_budget(endpoint, job)
            if budget is not None:
                await service.record(AuditEntry(user, "", endpoint, job, Source.CLI, "refused:budget",
                                                detail=_plain(budget)[:300]))
                _refused(endpoint, job, "budget", budget, as_json)
                failures += 1
                continue
            outcome = await service.call_retry(endpoint, job)
            rt.metrics.retries.labels(outcome=outcome.kind.value, source=Source.CLI.value).inc()
            detail = None if outcome.ok else (outcome.excerpt or outcome.summary)[:300]
            await service.record(AuditEntry(user, "", endpoint, job, Source.CLI, outcome.kind.value,
                                            called=outcome.may_have_taken_effect,
                                            http_status=outcome.http_status, job_status=outcome.job_status,
                                            detail=detail))
            _print(outcome, as_json)
            failures += outcome.kind is not Kind.REQUEUED
        finally:
            await rt.store.release(endpoint, job)
    return 1 if failures else 0


async def _status(rt: Runtime, endpoint: str, job: str, as_json: bool) -> int:
    outcome = await rt.service.call_status(endpoint, job)
    _print(outcome, as_json)
    return 0 if outcome.ok else 1


async def run(settings: Settings, verb: str, endpoint: str, raw_jobs: Sequence[str], as_json: bool) -> int:
    """Check everything before anything is called, then retry (or check) each job in turn."""
    try:
        command = parse_job_list(endpoint, " ".join(raw_jobs))
    except UsageError as exc:
        # The problem may already say what was not done ("Nothing was retried. …"): said once.
        said = _plain(exc.problem)
        print(said if said.startswith("Nothing was") else f"Nothing was done. {said}", file=sys.stderr)
        return 2
    if verb == "status" and len(command.jobs) != 1:
        print("Nothing was done: `status` takes one job.", file=sys.stderr)
        return 2
    if settings.allowed_endpoints and command.endpoint not in settings.allowed_endpoints:
        print(f"Nothing was done: this app is not set up to call endpoint {command.endpoint}. An admin can add it "
              "to RUNPOD_RETRY_ENDPOINTS.", file=sys.stderr)
        return 2
    if not settings.slack_bot_token:
        settings = replace(settings, audit_channel="")  # without Slack, the audit trail is the database only
    rt = Runtime(settings)
    try:
        await rt.open()
    except StoreUnavailable as exc:
        print(f"Nothing was done: the database in RUNPOD_RETRY_DB cannot be used: {exc}", file=sys.stderr)
        await rt.close(0)
        return 2
    try:
        if verb == "status":
            return await _status(rt, command.endpoint, command.jobs[0], as_json)
        return await _retry(rt, command.endpoint, command.jobs, as_json)
    finally:
        await rt.close(5.0)
