"""Issue 17's chaos run and its invariants (the scenario: tests/process/chaos.py).

The run happens once per module (about 2.5 minutes: PostgreSQL, 3 replicas, ~75 s of chaos, then settling); each
invariant is its own test on its record. The seed is printed (`chaos seed: N`); `CHAOS_SEED=N` replays it.
`pytest -m chaos` selects these tests.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any

import pytest

from testkit.harness import message_text
from tests.process.chaos import (
    ENDING_WITHIN,
    Record,
    Scenario,
    alert_posts,
    app_tracebacks,
    cut_by_kill9,
    doubled_posts,
    ending_shown_at,
    group_requests,
    grouped_jobs,
    grouped_list,
    seed_from_env,
    shown_not_retried,
    summaries_of,
    summary,
    summary_posts,
    unanswered,
)

# One run for all the invariants: every test of this module on the same xdist worker (pyproject: --dist loadgroup),
# or each worker that got one would run the whole scenario again.
pytestmark = [pytest.mark.chaos, pytest.mark.xdist_group("chaos")]


@pytest.fixture(scope="module")
def chaos(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Record]:
    seed = seed_from_env()
    print(f"\nchaos seed: {seed}", flush=True)
    record = asyncio.run(Scenario(seed, tmp_path_factory.mktemp("chaos")).run())
    print(summary(record), flush=True)
    yield record


def where(rec: Record, at: float) -> str:
    return f"at {rec.t(at):.1f}s (seed {rec.seed})"


def test_every_accepted_failure_alerted_exactly_once(chaos: Record) -> None:
    """A failure RunPod got a 200 for has one alert: one top-level post naming it, or (once the endpoint's storm
    was recognised) a line in the grouped alert's job list, however many replicas its deliveries reached."""
    posts = alert_posts(chaos)
    listed = grouped_list(chaos)
    wrong = []
    for (_, job), statuses in chaos.webhooks.items():
        if not any(200 <= s < 300 for s in statuses):
            continue
        alerts = [c for c in posts if job in message_text(c.args)]
        extra = [c for c in alerts[1:] if not cut_by_kill9(chaos, c.at) and not cut_by_kill9(chaos, alerts[0].at)]
        grouped = job in listed
        if extra or (not alerts and not grouped):
            wrong.append(f"{job}: {len(alerts)} alerts {[where(chaos, c.at) for c in alerts]}, in a grouped "
                         f"alert's list: {grouped}, deliveries {statuses}")
    assert not wrong, "\n".join(wrong)


def test_no_job_is_requeued_twice(chaos: Record) -> None:
    """Each job was asked to be retried by one request at most (clicks on one alert at one moment are one request),
    so RunPod requeuing a job twice is a retry nobody asked for."""
    assert chaos.runpod is not None
    twice = {job: n for job, n in chaos.runpod.requeued().items() if n > 1}
    detail = [f"{job}: /retry answered 200 at " + ", ".join(
        f"{chaos.t(c.at):.1f}s" for c in chaos.runpod.calls_to("retry") if (c.endpoint, c.job) == job
        and c.status == 200) for job in twice]
    assert not twice, "\n".join(detail)


def test_every_requeued_job_has_its_ending_shown_within_45_s(chaos: Record) -> None:
    """Every retry RunPod took shows how the job ended: a single retry quotes RunPod's final answer (its token), a
    run's member gets a line saying how it ended, within 45 s of the job's end. And every acknowledged click or
    command reached RunPod."""
    assert chaos.runpod is not None
    grouped = grouped_jobs(chaos)
    late = []
    for ep, job in chaos.runpod.requeued():
        plan = chaos.runpod.plans[(ep, job)]
        assert plan.ends_at is not None
        if plan.ends_at > chaos.settled:
            continue
        shown = ending_shown_at(chaos, ep, job, (ep, job) in grouped)
        if shown is None or shown - plan.ends_at > ENDING_WITHIN:
            took = "never" if shown is None else f"{shown - plan.ends_at:.1f} s after"
            late.append(f"{job} ({plan.final}, ended {where(chaos, plan.ends_at)}): shown {took}")
    never = [f"{r.kind} of {r.jobs[0][1]} {where(chaos, r.at)}, acks {r.acks}" for r in unanswered(chaos)]
    assert not late and not never, "\n".join(["endings late or lost:", *late, "acknowledged, never retried:", *never])


def test_each_bulk_run_and_retry_all_posts_one_summary_covering_all_its_jobs(chaos: Record) -> None:
    """One summary per run, listing every job, none of them "not retried" when RunPod took its retry; and every job
    of the run (all failed when it was asked) retried, whichever replica finished the run."""
    assert chaos.runpod is not None
    runs = group_requests(chaos)
    assert len(runs) == 3, [(r.kind, r.acks) for r in chaos.requests if r.kind in ("bulk", "retry_all")]
    wrong: list[str] = []
    requeued = chaos.runpod.requeued()
    for run in runs:
        name = f"{run.kind} on {run.jobs[0][0]} {where(chaos, run.at)}"
        posts = summary_posts(chaos, run)
        if len(posts) != 1:
            wrong.append(f"{name}: {len(posts)} summaries posted " + ", ".join(where(chaos, c.at) for c in posts))
        found = summaries_of(chaos, run)  # the JSON file each summary attaches: every job's answer, no words
        for body in found:
            results = {r["job"]: r for r in body.get("results", [])}
            missing = {job for _, job in run.jobs} - set(results)
            if missing:
                wrong.append(f"{name}: summary misses {sorted(missing)}")
            for ep, job in run.jobs:
                result: dict[str, Any] = results.get(job, {})
                if requeued[(ep, job)] and result and result.get("outcome") != "requeued":
                    wrong.append(f"{name}: {job} requeued by RunPod but summarised {result.get('outcome')}: "
                                 f"{result.get('detail')}")
        said_not = [job for job in shown_not_retried(chaos, run) if requeued[(run.jobs[0][0], job)]]
        if said_not:
            wrong.append(f"{name}: its thread still says 'not retried' for jobs RunPod requeued: {said_not}")
        never = [job for ep, job in run.jobs if not requeued[(ep, job)]]
        if never:
            said = {r["job"]: r.get("detail") or r.get("outcome") for s in found for r in s.get("results", [])}
            wrong.append(f"{name}: never retried: " + ", ".join(f"{j} ({said.get(j)})" for j in never))
    assert not wrong, "\n".join(wrong)


def test_no_message_is_posted_twice(chaos: Record) -> None:
    """The same words in the same place twice is a double post, unless Slack took the first one at the instant a
    replica was killed -9 (then the replica could not write down that it went)."""
    doubled = [(key, times) for key, times in doubled_posts(chaos) if not any(cut_by_kill9(chaos, t) for t in times)]
    kills = ", ".join(f"{chaos.t(at):.1f}s {how}" for at, _, how in chaos.kills)
    assert not doubled, "\n".join(
        [f"{channel} thread {thread}: {str(text)[:120]!r} at " + ", ".join(f"{chaos.t(t):.1f}s" for t in times)
         for (channel, thread, text), times in doubled] + [f"kills: {kills}"])


def test_no_traceback_from_the_app_during_the_database_outage(chaos: Record) -> None:
    """While PostgreSQL is frozen or restarting (and 10 s after), an expected error is one log line, not a
    traceback through the app's code."""
    assert chaos.outage is not None
    found = {name: app_tracebacks(text) for name, text in chaos.outage_logs.items()}
    found = {name: tbs for name, tbs in found.items() if tbs}
    kind, began, ended = chaos.outage
    assert not found, f"{kind} {where(chaos, began)}-{chaos.t(ended):.1f}s:\n" + "\n".join(
        f"{name}: {len(tbs)} tracebacks, e.g. " + " | ".join(sorted(set(tbs))[:5]) for name, tbs in found.items())
