"""`python -m bot retry` and `python -m bot status`: retry or check jobs from a shell or a runbook script, with the
same ID checks, endpoint allowlist, hourly budget and audit as in Slack (the person recorded as `cli:<login name>`).

Exit codes (bot/core/terminal.py): 0 requeued, 1 refused or not retried, 2 usage or settings, 3 outcome unknown (the
retry may have gone through). `--follow` waits for each requeued job's end and prints it.
"""

from __future__ import annotations

import argparse
import asyncio
import getpass
import json
import signal
import sys
import time
from collections.abc import Sequence
from dataclasses import replace
from typing import Any

from bot.core import terminal as words_of
from bot.core.commands import UsageError, parse_job_list
from bot.core.outcome import TERMINAL, Kind, Outcome
from bot.core.terminal import Exit, plain
from bot.infra.config import Settings
from bot.runpod import RunPodError
from bot.store import AuditEntry, StoreUnavailable
from bot.work.runtime import Runtime
from bot.work.who import Source

# Following from a terminal: the first wait, how it grows, and the longest (a person is watching).
FOLLOW_GROWTH = 1.5
FOLLOW_MAX_INTERVAL = 15.0


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
        else "Show a RunPod job's status, changing nothing.",
        epilog="Exit codes: 0 requeued (status: RunPod answered; --follow: and completed), 1 refused or not retried "
               "(--follow: or failed again), 2 usage or settings (nothing was called), 3 outcome unknown (the retry "
               "may have gone through: check its status before retrying).")
    parser.add_argument("endpoint", help="the endpoint ID")
    parser.add_argument("jobs", nargs="+" if verb == "retry" else 1, metavar="jobId",
                        help="job IDs (also endpoint/job or RunPod API links), separated by spaces or commas")
    parser.add_argument("--json", action="store_true", help="print one JSON object per job instead of words")
    if verb == "retry":
        parser.add_argument("--follow", action="store_true",
                            help="wait for each requeued job to end and print how it ended (at most "
                                 "RUNPOD_FOLLOW_MAX seconds; Ctrl-C stops following, the retry stays)")
    return parser.parse_args(argv[1:])


class Printer:
    """Words or JSON, with Slack user IDs shown as people's names where Slack can tell them."""

    def __init__(self, rt: Runtime, as_json: bool):
        self.rt = rt
        self.as_json = as_json
        self._names: dict[str, str] = {}

    async def name(self, user: str) -> str:
        """A person as a terminal reader knows them: `cli:dana` is dana at a terminal; a Slack user by their name
        (users.info, when the app's Slack token is set), else said to be someone in Slack."""
        if user.startswith("cli:"):
            return f"{user.removeprefix('cli:')} (from a terminal)"
        if user not in self._names:
            name = ""
            if self.rt.settings.slack_bot_token:
                try:
                    answer = await self.rt.client.users_info(user=user)
                    info = answer.get("user") or {}
                    profile = info.get("profile") or {}
                    name = profile.get("display_name") or profile.get("real_name") or info.get("real_name") or ""
                except Exception:  # a name is a nicety: the line is printed without it
                    name = ""
            self._names[user] = f"{name} (in Slack)" if name else "someone in Slack"
        return self._names[user]

    def outcome(self, outcome: Outcome, *, follow: bool = False, verb: str = "retry") -> None:
        if self.as_json:
            print(json.dumps(words_of.outcome_json(outcome, follow=follow), ensure_ascii=False), flush=True)
        else:
            print("\n".join(words_of.outcome_lines(outcome, follow=follow, verb=verb)), flush=True)

    def refused(self, endpoint: str, job: str, code: str, why: str) -> None:
        if self.as_json:
            print(json.dumps(words_of.refusal_json(endpoint, job, code, why), ensure_ascii=False), flush=True)
        else:
            print("\n".join(words_of.refusal_lines(code, why)), flush=True)

    def lines(self, lines: list[str], data: dict[str, Any]) -> None:
        print(json.dumps(data, ensure_ascii=False) if self.as_json else "\n".join(lines), flush=True)


async def _retry(rt: Runtime, endpoint: str, jobs: tuple[str, ...], printer: Printer, follow: bool) -> int:
    service, user = rt.service, who_am_i()
    codes: list[Exit] = []
    requeued: list[str] = []
    for job in jobs:
        held = await rt.store.claim(endpoint, job, user, time.time())
        if held is not None:
            by = "you, in another terminal" if held.user == user else await printer.name(held.user)
            why = f"job {job} on endpoint {endpoint} is being retried already (by {by}); nothing more was done"
            await service.record(AuditEntry(user, "", endpoint, job, Source.CLI, "refused:duplicate", detail=why))
            printer.refused(endpoint, job, "duplicate", why)
            codes.append(Exit.NOT_RETRIED)
            continue
        try:
            budget = await service.over_budget(endpoint, job)
            if budget is not None:
                await service.record(AuditEntry(user, "", endpoint, job, Source.CLI, "refused:budget",
                                                detail=plain(budget)[:300]))
                printer.refused(endpoint, job, "budget", budget)
                codes.append(Exit.NOT_RETRIED)
                continue
            outcome = await service.call_retry(endpoint, job)
            rt.metrics.retries.labels(outcome=outcome.kind.value, source=Source.CLI.value).inc()
            detail = None if outcome.ok else (outcome.excerpt or outcome.summary)[:300]
            await service.record(AuditEntry(user, "", endpoint, job, Source.CLI, outcome.kind.value,
                                            called=outcome.may_have_taken_effect,
                                            http_status=outcome.http_status, job_status=outcome.job_status,
                                            detail=detail))
            printer.outcome(outcome, follow=follow)
            codes.append(words_of.retry_exit(outcome))
            if outcome.kind is Kind.REQUEUED:
                requeued.append(job)
        finally:
            await rt.store.release(endpoint, job)
    if follow and requeued:
        endings = await _follow(rt, endpoint, requeued, printer)
        codes = [code for code in codes if code is not Exit.REQUEUED] + endings
    return int(words_of.overall(codes))


async def _follow(rt: Runtime, endpoint: str, jobs: list[str], printer: Printer) -> list[Exit]:
    """Poll /status (the app's RunPod client, its rate limits) until each job ends, RUNPOD_FOLLOW_MAX passes, or
    Ctrl-C: one line per change of state, then how it ended."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    try:
        loop.add_signal_handler(signal.SIGINT, stop.set)
    except (NotImplementedError, RuntimeError):  # no signals here (not the main thread): Ctrl-C ends the process
        pass
    deadline = time.monotonic() + rt.settings.follow_max
    interval = rt.settings.follow_interval
    last: dict[str, str | None] = {job: None for job in jobs}
    codes: list[Exit] = []
    try:
        pending = list(jobs)
        while pending:
            for job in list(pending):
                try:
                    reply = await rt.runpod.status(endpoint, job)
                except RunPodError:
                    continue  # a passing fault: asked again at the next turn
                status = (reply.job_status or "").upper()
                if status in TERMINAL:
                    lines, code = words_of.ending(endpoint, job, reply.body)
                    printer.lines(lines, {"endpoint": endpoint, "job": job, "ended": status, "body": reply.body})
                    codes.append(code)
                    pending.remove(job)
                elif status and status != last[job]:
                    last[job] = status
                    if not printer.as_json:
                        print(words_of.progress_line(job, status), flush=True)
            if not pending:
                break
            left = deadline - time.monotonic()
            if left <= 0 or stop.is_set():
                break
            try:
                await asyncio.wait_for(stop.wait(), timeout=min(interval, left))
            except TimeoutError:
                pass
            if stop.is_set():
                break
            interval = min(interval * FOLLOW_GROWTH, FOLLOW_MAX_INTERVAL)
        why = "you stopped it (Ctrl-C)" if stop.is_set() else \
            f"it had not ended after {rt.settings.follow_max:g} seconds (RUNPOD_FOLLOW_MAX)"
        for job in pending:
            printer.lines(words_of.stopped_following(endpoint, job, why, last[job]),
                          {"endpoint": endpoint, "job": job, "ended": None, "stopped": why})
            # Stopped by the person: the retry was requeued, as without --follow; out of time: its end is unknown.
            codes.append(Exit.REQUEUED if stop.is_set() else Exit.UNKNOWN)
    finally:
        try:
            loop.remove_signal_handler(signal.SIGINT)
        except (NotImplementedError, RuntimeError):
            pass
    return codes


async def _status(rt: Runtime, endpoint: str, job: str, printer: Printer) -> int:
    outcome = await rt.service.call_status(endpoint, job)
    printer.outcome(outcome, verb="status")
    return int(Exit.REQUEUED if outcome.ok else Exit.NOT_RETRIED)


async def run(settings: Settings, verb: str, endpoint: str, raw_jobs: Sequence[str], as_json: bool,
              follow: bool = False) -> int:
    """Check everything before anything is called, then retry (or check) each job in turn."""
    try:
        command = parse_job_list(endpoint, " ".join(raw_jobs))
    except UsageError as exc:
        # The problem may already say what was not done ("Nothing was retried. …"): said once.
        said = plain(exc.problem)
        print(said if said.startswith("Nothing was") else f"Nothing was done. {said}", file=sys.stderr)
        return int(Exit.USAGE)
    if verb == "status" and len(command.jobs) != 1:
        print("Nothing was done: status takes one job.", file=sys.stderr)
        return int(Exit.USAGE)
    if settings.allowed_endpoints and command.endpoint not in settings.allowed_endpoints:
        print(f"Nothing was done: this app is not set up to call endpoint {command.endpoint}. An admin can add it "
              "to RUNPOD_RETRY_ENDPOINTS.", file=sys.stderr)
        return int(Exit.USAGE)
    if not settings.slack_bot_token:
        settings = replace(settings, audit_channel="")  # without Slack, the audit trail is the database only
    rt = Runtime(settings)
    try:
        await rt.open()
    except StoreUnavailable as exc:
        print(f"Nothing was done: the database in RUNPOD_RETRY_DB cannot be used: {exc}", file=sys.stderr)
        await rt.close(0)
        return int(Exit.USAGE)
    printer = Printer(rt, as_json)
    try:
        if verb == "status":
            return await _status(rt, command.endpoint, command.jobs[0], printer)
        return await _retry(rt, command.endpoint, command.jobs, printer, follow)
    finally:
        await rt.close(5.0)
