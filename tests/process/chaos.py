"""The chaos scenario of issue 17: an operator's worst hour, compressed into about a minute and a half.

3 real `python -m bot` replicas on one real PostgreSQL (tests/pg.py), HTTP mode behind a "load balancer" that sends
each request to a random live replica (tests/replicas.py). Over ~75 s: 120 RunPod failure webhooks (a third
delivered twice, to two different replicas; a delivery that is not answered 2xx is delivered again), Retry clicks by
1-4 people at once, slash-command retries, two bulk retries of 15 jobs, a Retry all on a grouped alert; every 8-12 s
one replica is killed (kill -9 or SIGTERM) and started again; PostgreSQL frozen for 5 s (SIGSTOP of the postmaster
and its children) or restarted once; one burst of Slack 503s and HTML 502s. Then everything heals and the run
settles (bounded wait). `run(seed)` returns a `Record` of what was asked, what RunPod and Slack saw, and the logs;
`tests/process/test_chaos.py` checks issue 17's invariants on it.

Every choice comes from `random.Random(seed)`; the stand-ins' and the app's timing is real, so a replay follows the
same script, not the same interleaving. Each job is asked to be retried by at most one request (clicks at the same
moment on one alert count as one request): RunPod requeuing a job twice is always a defect.

RunPod's jobs end by the clock, not by being polled: a requeued job runs for a planned time from its requeue and
then completes (output carrying a token of its own) or fails again (an error that is a token of its own), whether or
not anyone is watching. So "the ending was shown" is the token reaching Slack, whatever the words around it.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import random
import re
import signal
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aiohttp import web

from bot.core import actions, messages
from testkit.env import BOT_TOKEN, RUNPOD_KEY
from testkit.fakes import FakeRunPod, FakeSlack, SlackFault, SlackLimits
from testkit.fakes.runpod import RunPodCall
from testkit.harness import button_value, message_text
from testkit.pg import PostgresServer
from testkit.replicas import Replicas

ALERTS = "CALERTS"
COMMANDS = "CCMD"       # where slash-command retries are typed
BULK = "CBULK"          # where the bulk retries are typed
STORM_EP = "epstorm00001"
BULK_EPS = ("epbulk000001", "epbulk000002")
SINGLE_EPS = tuple(f"epsingle{n:04d}" for n in range(25))   # 4 failures each: under the storm threshold (5)
PER_SINGLE_EP = 4
STORM_JOBS = 20
BULK_JOBS = 15
CHAOS_FOR = 75.0        # seconds of webhooks, clicks, kills and outages
SETTLE_FOR = 60.0       # then at most this long for every retried job's ending, summary and alert to land
ENDING_WITHIN = 45.0    # issue 17: every accepted retry's ending shown within 45 s of the job's end
TERMINAL = ("COMPLETED", "FAILED")
# What the app says when it takes nothing on (restarting, or without its database): the person tries again.
# The app's words for "not taken, ask again": a Retry all refused while the database is away says it its own way.
TURNED_AWAY = (messages.shutting_down(), messages.database_unreachable(), messages.retry_all_not_taken("ep", None))


def seed_from_env() -> int:
    """`CHAOS_SEED` replays a run; else a fresh seed (printed by the test)."""
    raw = os.environ.get("CHAOS_SEED")
    return int(raw) if raw else random.SystemRandom().randrange(1, 1_000_000)


# ---------------------------------------------------------------- RunPod whose jobs end by the clock


@dataclass
class Plan:
    queue_for: float        # seconds IN_QUEUE after a requeue
    run_for: float          # then IN_PROGRESS for this long
    final: str              # COMPLETED or FAILED
    token: str              # in the output (COMPLETED) or the error (FAILED)
    requeued_at: float | None = None

    @property
    def ends_at(self) -> float | None:
        return None if self.requeued_at is None else self.requeued_at + self.queue_for + self.run_for


class ChaosRunPod(FakeRunPod):
    """FakeRunPod whose requeued jobs move by the clock (see `Plan`), so an ending does not wait for a poll."""

    def __init__(self) -> None:
        super().__init__(default_key=RUNPOD_KEY)
        self.plans: dict[tuple[str, str], Plan] = {}

    def plan(self, endpoint: str, job: str, error: str, plan: Plan) -> None:
        self.add_job(endpoint, job, status="FAILED", error=error, after_retry=())
        self.plans[(endpoint, job)] = plan

    def _answer(self, call: RunPodCall) -> web.Response:
        key = (call.endpoint, call.job or "")
        plan = self.plans.get(key)
        job = self.jobs.get(key)
        if call.op == "status" and plan is not None and job is not None and plan.requeued_at is not None \
                and job.status not in TERMINAL:
            self._move(job, plan, time.monotonic())
        response = super()._answer(call)
        if call.op == "retry" and plan is not None and response.status == 200:
            plan.requeued_at = call.at
        return response

    @staticmethod
    def _move(job: Any, plan: Plan, now: float) -> None:
        assert plan.requeued_at is not None
        if now < plan.requeued_at + plan.queue_for:
            job.status = "IN_QUEUE"
        elif now < plan.requeued_at + plan.queue_for + plan.run_for:
            job.status = "IN_PROGRESS"
        elif plan.final == "COMPLETED":
            job.status, job.output = "COMPLETED", {"chaos": plan.token}
        else:
            job.status, job.error = "FAILED", f"worker crashed: {plan.token}"


# ---------------------------------------------------------------- what happened


@dataclass
class Request:
    kind: str               # "click" | "command" | "bulk" | "retry_all"
    jobs: list[tuple[str, str]]
    at: float
    acks: list[int] = field(default_factory=list)
    people: int = 1
    where: str = ""         # bulk / retry_all: the channel (and the grouped alert's ts)


@dataclass
class Record:
    seed: int
    started: float = 0.0
    chaos_ended: float = 0.0
    settled: float = 0.0
    webhooks: dict[tuple[str, str], list[int]] = field(default_factory=dict)   # job -> statuses of every delivery
    accepted_at: dict[tuple[str, str], float] = field(default_factory=dict)     # job -> when a delivery got 2xx
    requests: list[Request] = field(default_factory=list)
    kills: list[tuple[float, str, str]] = field(default_factory=list)          # (at, replica, "kill -9"/"SIGTERM")
    takeovers: list[float] = field(default_factory=list)
    outage: tuple[str, float, float] | None = None                              # ("freeze"/"restart", from, to)
    slack_fault_at: float = 0.0
    slack: FakeSlack | None = None
    runpod: ChaosRunPod | None = None
    logs: dict[str, str] = field(default_factory=dict)                          # replica -> whole log
    outage_logs: dict[str, str] = field(default_factory=dict)                   # replica -> log during the outage
    notes: list[str] = field(default_factory=list)

    def t(self, at: float) -> float:
        return at - self.started

    def kill9_times(self) -> list[float]:
        return [at for at, _, how in self.kills if how == "kill -9"]


# ---------------------------------------------------------------- PostgreSQL outages


def _children(pid: int) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with contextlib.suppress(OSError, IndexError, ValueError):
                stat = (entry / "stat").read_text()
                if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
                    found.append(int(entry.name))
    return found


async def freeze(server: PostgresServer, seconds: float) -> None:
    """SIGSTOP the postmaster and every backend for `seconds`, then SIGCONT: connections hang, nothing fails."""
    assert server.root is not None
    postmaster = int((server.root / "data" / "postmaster.pid").read_text().split()[0])
    frozen = [*_children(postmaster), postmaster]
    for pid in frozen:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGSTOP)
    try:
        await asyncio.sleep(seconds)
    finally:
        for pid in reversed(frozen):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGCONT)


async def restart(server: PostgresServer, down_for: float) -> None:
    """Stop PostgreSQL ("fast": every connection is cut), wait, start it again on the same port."""
    await asyncio.to_thread(server.halt, "fast")
    await asyncio.sleep(down_for)
    await asyncio.to_thread(server.resume)


# ---------------------------------------------------------------- the scenario


class Scenario:
    def __init__(self, seed: int, workdir: Path) -> None:
        self.seed = seed
        self.rng = random.Random(seed)
        self.workdir = workdir
        self.rec = Record(seed)
        self.slack = FakeSlack(valid_tokens={BOT_TOKEN}, limits=SlackLimits.off())
        self.runpod = ChaosRunPod()
        self.rec.slack, self.rec.runpod = self.slack, self.runpod
        self.cluster: Replicas | None = None
        self.server: PostgresServer | None = None
        self.tasks: list[asyncio.Task[Any]] = []
        self.users = iter(f"U{n:03d}" for n in range(1, 10_000))
        self.log_marks: dict[str, int] = {}
        self._plan_jobs()

    # ---- the jobs and what will be asked about them

    def _plan_jobs(self) -> None:
        rng = self.rng
        self.singles = [(ep, f"s{n:02d}{k}-{rng.randrange(16**6):06x}-u1") for n, ep in enumerate(SINGLE_EPS)
                        for k in range(PER_SINGLE_EP)]
        self.storm = [(STORM_EP, f"storm{n:02d}-{rng.randrange(16**6):06x}-u1") for n in range(STORM_JOBS)]
        self.bulks = [[(ep, f"b{b}j{n:02d}-{rng.randrange(16**6):06x}-u1") for n in range(BULK_JOBS)]
                      for b, ep in enumerate(BULK_EPS)]
        for ep, job in [*self.singles, *self.storm, *(j for run in self.bulks for j in run)]:
            plan = Plan(queue_for=rng.uniform(0.2, 2.0), run_for=rng.uniform(0.5, 14.0),
                        final="COMPLETED" if rng.random() < 0.8 else "FAILED",
                        token=f"chaos-{rng.randrange(16**10):010x}")
            self.runpod.plan(ep, job, self._error(ep, job), plan)
        # Of the single alerts: ~40 retried by clicks, ~15 by commands, the rest left alone.
        shuffled = list(self.singles)
        rng.shuffle(shuffled)
        self.by_click = set(shuffled[:40])
        self.by_command = set(shuffled[40:55])
        # A third of the failures delivered twice at once, to two different replicas.
        failures = [*self.singles, *self.storm]
        self.twice = {j: rng.sample(range(3), 2) for j in rng.sample(failures, len(failures) // 3)}
        # Who retries each single alert, after how long, through which replicas.
        self.asks = {j: self._ask(j in self.by_click) for j in sorted(self.by_click | self.by_command)}
        # The killer's script: (wait before, which live replica by index, how).
        self.kill_script = [(rng.uniform(4.0, 8.0) if n == 0 else rng.uniform(8.0, 12.0), rng.randrange(3),
                             rng.choice(["kill -9", "SIGTERM"])) for n in range(12)]
        # The order failures arrive in: the storm's 20 early (so that Retry all can come mid-chaos), the rest spread.
        self.arrivals: list[tuple[float, tuple[str, str]]] = []
        self.arrivals += [(1.0 + n * 0.4 + rng.uniform(0, 0.2), j) for n, j in enumerate(self.storm)]
        self.arrivals += [(rng.uniform(2.0, 55.0), j) for j in self.singles]
        self.arrivals.sort()
        self.bulk_at = [rng.uniform(8.0, 25.0), rng.uniform(30.0, 50.0)]
        self.group_users = [next(self.users) for _ in range(3)]
        self.retry_all_at = rng.uniform(18.0, 45.0)
        self.outage_kind = rng.choice(["freeze", "restart"])
        self.outage_at = rng.uniform(20.0, 50.0)
        # Slack's burst away from the database's outage (and the 10 s after it whose logs are the outage's).
        self.slack_fault_at = rng.choice([t for t in range(10, 61) if not -5 <= t - self.outage_at <= 20])

    @staticmethod
    def _error(ep: str, job: str) -> str:
        """A single alert's error names its job (it reads as that job's); a storm's are the few a storm has."""
        if ep == STORM_EP:
            return ("CUDA out of memory", "Worker lost", "Handler timed out")[int(job[5:7]) % 3]
        return f"CUDA out of memory ({job})"

    def _ask(self, by_click: bool) -> tuple[float, list[int], list[str]]:
        people = self.rng.randint(1, 4) if by_click else 1
        return (self.rng.uniform(0.5, 5.0), [self.rng.randrange(3) for _ in range(people)],
                [next(self.users) for _ in range(people)])

    # ---- running it

    async def run(self) -> Record:
        await self.slack.start()
        await self.runpod.start()
        self.server = PostgresServer()
        try:
            await asyncio.to_thread(self.server.start)
            url = await asyncio.to_thread(self.server.create_database, "chaos")
            self.cluster = Replicas(self.slack, self.runpod, url, self.workdir, n=3, seed=self.seed,
                                    RUNPOD_FOLLOW_INTERVAL="0.5", RUNPOD_FOLLOW_MAX="300", RUNPOD_TIMEOUT="3")
            await self.cluster.start_all()
            self.rec.started = time.monotonic()
            await self._chaos()
            self.rec.chaos_ended = time.monotonic()
            await self._heal()
            self.rec.settled = await self._settle()
        finally:
            for task in self.tasks:
                task.cancel()
            await asyncio.gather(*self.tasks, return_exceptions=True)
            if self.cluster is not None:
                await self.cluster.close()
                self.rec.logs = {r.name: r.text() for r in self.cluster.replicas}
            await self.slack.stop()
            await self.runpod.stop()
            await asyncio.to_thread(self.server.stop)
        return self.rec

    def _at(self, offset: float, work: Any) -> None:
        async def later() -> None:
            await asyncio.sleep(max(0.0, self.rec.started + offset - time.monotonic()))
            await work

        self.tasks.append(asyncio.create_task(later()))

    async def _chaos(self) -> None:
        for offset, (ep, job) in self.arrivals:
            self._at(offset, self._fail(ep, job))
        for offset, run in zip(self.bulk_at, self.bulks, strict=True):
            self._at(offset, self._bulk(run))
        self._at(self.retry_all_at, self._retry_all())
        self._at(self.outage_at, self._outage())
        self._at(self.slack_fault_at, self._slack_faults())
        killer = asyncio.create_task(self._killer())
        await asyncio.sleep(CHAOS_FOR)
        killer.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await killer

    async def _fail(self, ep: str, job: str) -> None:
        """RunPod's webhook for a failure: delivered again after a non-2xx (3 tries, 3 s apart); a third of them
        delivered twice at once, to two different replicas."""
        assert self.cluster is not None
        body = {"id": job, "status": "FAILED", "error": self._error(ep, job), "executionTime": 4100,
                "delayTime": 800}
        statuses = self.rec.webhooks.setdefault((ep, job), [])

        async def deliver(replica: int | None) -> None:
            for attempt in range(3):
                if attempt:
                    await asyncio.sleep(3.0)
                live = self.cluster.live if self.cluster else []
                target = replica if replica in live else None
                try:
                    status = await self.cluster.webhook(ep, body, replica=target)  # type: ignore[union-attr]
                except RuntimeError:  # no live replica at this instant
                    status = 0
                statuses.append(status)
                if 200 <= status < 300:
                    self.rec.accepted_at.setdefault((ep, job), time.monotonic())
                    return

        if (ep, job) in self.twice:
            first, second = self.twice[(ep, job)]
            await asyncio.gather(deliver(first), deliver(second))
        else:
            await deliver(None)
        if (ep, job) in self.by_click or (ep, job) in self.by_command:
            await self._retry_single(ep, job)

    async def _retry_single(self, ep: str, job: str) -> None:
        assert self.cluster is not None
        by_click = (ep, job) in self.by_click
        wait, replicas, users = self.asks[(ep, job)]
        people = len(users)
        if not any(200 <= s < 300 for s in self.rec.webhooks[(ep, job)]):
            return  # RunPod gave up delivering it: nobody saw an alert to click
        alert = await self._alert_of(job, 25.0)
        await asyncio.sleep(wait)
        if by_click:
            if alert is None:
                self.rec.notes.append(f"no alert for {job} to click within 25 s")
                return
            value = button_value(alert, actions.RETRY)
            request = Request("click", [(ep, job)], time.monotonic(), people=people)
            self.rec.requests.append(request)
            cluster = self.cluster

            async def clicks() -> list[int]:
                return list(await asyncio.gather(*(
                    self._ack(cluster.click(actions.RETRY, value, message_ts=alert["ts"], user=u,
                                            replica=self._live_or_any(r)))
                    for u, r in zip(users, replicas, strict=True))))

            await self._asking(request, clicks)
        else:
            request = Request("command", [(ep, job)], time.monotonic())
            self.rec.requests.append(request)
            cluster = self.cluster
            await self._asking(request, lambda: self._one(cluster.command(
                f"{ep} {job}", user=users[0], channel=COMMANDS, replica=self._live_or_any(replicas[0]))))

    async def _one(self, request: Any) -> list[int]:
        return [await self._ack(request)]

    def _live_or_any(self, replica: int) -> int | None:
        assert self.cluster is not None
        return replica if replica in self.cluster.live else None

    async def _ack(self, request: Any) -> int:
        """200: the app took the request; -1: it told the person to try again (restarting, or its database away:
        in the app's own words); else the HTTP status (0: no answer, the replica died under it)."""
        try:
            ack = await request
        except Exception:  # a replica killed under the request: Slack shows the person an error
            return 0
        if ack.status != 200:
            return int(ack.status)
        await asyncio.sleep(2.5)  # the database's absence is found after the ack, and said through response_url
        said = json.dumps(ack.body) + json.dumps(self.slack.responses.get(ack.response_url, []))
        return -1 if any(m["text"] in said for m in TURNED_AWAY) else 200

    async def _asking(self, request: Request, send: Any) -> None:
        """As a person does: asked again a few seconds later while the app says to try again or did not answer."""
        for attempt in range(4):
            if attempt:
                await asyncio.sleep(3.0)
            request.acks.extend(await send())
            if 200 in request.acks:
                return

    async def _alert_of(self, job: str, timeout: float) -> dict[str, Any] | None:  # noqa: ASYNC109
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for (channel, _), msg in list(self.slack.messages.items()):
                if channel == ALERTS and not msg.get("thread_ts") and job in message_text(msg):
                    with contextlib.suppress(AssertionError):
                        button_value(msg, actions.RETRY)
                        return msg
            await asyncio.sleep(0.2)
        return None

    async def _bulk(self, run: list[tuple[str, str]]) -> None:
        assert self.cluster is not None
        ep = run[0][0]
        request = Request("bulk", run, time.monotonic(), where=BULK)
        self.rec.requests.append(request)
        text = f"{ep} {' '.join(job for _, job in run)}"
        user = self.group_users[BULK_EPS.index(ep)]
        cluster = self.cluster
        await self._asking(request, lambda: self._one(cluster.command(text, user=user, channel=BULK)))

    async def _retry_all(self) -> None:
        """Once the grouped alert offers Retry all for the whole storm, one person clicks it."""
        assert self.cluster is not None
        storm = None
        deadline = time.monotonic() + 30.0
        while time.monotonic() < deadline:
            grouped = [m for (c, _), m in list(self.slack.messages.items())
                       if c == ALERTS and not m.get("thread_ts") and _has_button(m, actions.RETRY_ALL)]
            listed = "\n".join(message_text(m) for (c, _), m in list(self.slack.messages.items())
                               if c == ALERTS and grouped and m.get("thread_ts") == grouped[0]["ts"])
            if grouped and all(job in listed for _, job in self.storm):
                storm = grouped[0]
                break
            await asyncio.sleep(0.3)
        if storm is None:
            self.rec.notes.append("the grouped alert never listed all the storm's jobs: no Retry all")
            return
        await asyncio.sleep(2.5)  # every replica's redraw has landed: the button carries the whole storm
        storm = self.slack.messages[(ALERTS, storm["ts"])]
        request = Request("retry_all", list(self.storm), time.monotonic(), where=f"{ALERTS}/{storm['ts']}")
        self.rec.requests.append(request)
        cluster, value = self.cluster, button_value(storm, actions.RETRY_ALL)
        await self._asking(request, lambda: self._one(cluster.click(actions.RETRY_ALL, value, message_ts=storm["ts"],
                                                                    user=self.group_users[2])))

    async def _killer(self) -> None:
        """Every 8-12 s one live replica dies (kill -9 or SIGTERM) and is started again."""
        assert self.cluster is not None
        due = time.monotonic()
        for wait, pick, how in self.kill_script:
            due += wait  # on the clock: a SIGTERM's shutdown and a restart do not push the next kill back
            await asyncio.sleep(max(0.0, due - time.monotonic()))
            live = self.cluster.live
            victim = live[pick % len(live)] if len(live) >= 2 else None
            if victim is not None:
                name = self.cluster[victim].name
                self.rec.kills.append((time.monotonic(), name, how))
                if how == "kill -9":
                    await self.cluster.kill(victim)
                else:
                    await self.cluster.term(victim)
                await self._start(victim)

    async def _start(self, i: int) -> None:
        """Start replica i again; while PostgreSQL is away it may not become healthy in time, and stays running."""
        assert self.cluster is not None
        try:
            await self.cluster.start(i)
        except RuntimeError as exc:
            self.rec.notes.append(f"{self.cluster[i].name} slow to start again: {str(exc).splitlines()[0]}")

    async def _outage(self) -> None:
        assert self.server is not None and self.cluster is not None
        self._mark_logs()
        began = time.monotonic()
        if self.outage_kind == "freeze":
            await freeze(self.server, 5.0)
        else:
            await restart(self.server, self.rng.uniform(2.0, 4.0))
        self.rec.outage = (self.outage_kind, began, time.monotonic())
        # What the replicas log while the database is away and just after (reconnecting) is the outage's.
        await asyncio.sleep(10.0)
        self.rec.outage_logs = self._logs_since_mark()

    async def _slack_faults(self) -> None:
        """One burst: Slack answers 503 (service_unavailable) or a proxy's HTML 502 to the next posts and edits."""
        self.rec.slack_fault_at = time.monotonic()
        faults = [SlackFault(503), SlackFault(502, body="<html><body>502 Bad Gateway</body></html>"),
                  SlackFault(503, body="upstream connect error or disconnect/reset before headers")]
        for method in ("chat.postMessage", "chat.update"):
            self.slack.script(method, *(self.rng.choice(faults) for _ in range(self.rng.randint(6, 12))))

    def _mark_logs(self) -> None:
        assert self.cluster is not None
        self.log_marks = {r.name: len(r.text()) for r in self.cluster.replicas}

    def _logs_since_mark(self) -> dict[str, str]:
        assert self.cluster is not None
        return {r.name: r.text()[self.log_marks.get(r.name, 0):] for r in self.cluster.replicas}

    # ---- healing and settling

    async def _heal(self) -> None:
        assert self.cluster is not None
        for i in range(len(self.cluster)):
            if not self.cluster[i].alive:
                await self._start(i)
        await asyncio.gather(*self.tasks, return_exceptions=True)  # deliveries and clicks still under way

    async def _settle(self) -> float:
        """Until every accepted failure is alerted, every requeued job's ending shown and every run's summary
        posted, at most SETTLE_FOR. Returns the moment of the last look: a job that ends after it is not judged
        (looking takes a while: a fresh-clone run stamped the end 0.3 s after the look, and counted two jobs that
        ended in between as never shown)."""
        deadline = time.monotonic() + SETTLE_FOR

        def settled() -> bool:
            return not pending_endings(self.rec) and not unalerted(self.rec) and not unanswered(self.rec) \
                and all(summary_posts(self.rec, r) for r in group_requests(self.rec))

        while time.monotonic() < deadline:
            if settled():
                await asyncio.sleep(3.0)  # anything doubled or late would land now
                looked = time.monotonic()
                if settled():  # a job that ended meanwhile counts (seed 1: ended 1.4 s before the end): wait for it
                    return looked
            await asyncio.sleep(0.5)
        return time.monotonic()


def _has_button(msg: dict[str, Any], action_id: str) -> bool:
    return any(el.get("action_id") == action_id for b in msg.get("blocks") or [] for el in b.get("elements") or [])


# ---------------------------------------------------------------- reading the record


def call_text(call: Any) -> str:
    """What a Slack call showed: its text and every text in its blocks (or a response_url body's)."""
    return message_text(call.args)


def shown_calls(rec: Record) -> list[Any]:
    """Every Slack call that put words in front of people: posts, edits, private replies."""
    assert rec.slack is not None
    return [c for c in rec.slack.calls if c.ok and c.method in ("chat.postMessage", "chat.update", "response_url",
                                                                 "chat.postEphemeral")]


def group_requests(rec: Record) -> list[Request]:
    return [r for r in rec.requests if r.kind in ("bulk", "retry_all") and 200 in r.acks]


def single_requests(rec: Record) -> list[Request]:
    return [r for r in rec.requests if r.kind in ("click", "command")]


def unanswered(rec: Record) -> list[Request]:
    """Clicks and commands acknowledged whose job RunPod has not requeued (yet: a request whose replica died after
    its ack is carried out by the replica adopting it, a lease later)."""
    assert rec.runpod is not None
    requeued = rec.runpod.requeued()
    return [r for r in single_requests(rec) if 200 in r.acks and not requeued[r.jobs[0]]]


def _final_words(final: str) -> str:
    from bot.core.messages.bulk import FINAL_WORDS  # the words a run's line uses for how a job ended

    return FINAL_WORDS[final]


def ending_shown_at(rec: Record, ep: str, job: str, in_group: bool) -> float | None:
    """When Slack first showed how the job ended after its requeue: its token (a single retry's ending quotes
    RunPod's final answer), or, for a member of a bulk run or Retry all, its line saying how it ended."""
    assert rec.runpod is not None
    plan = rec.runpod.plans[(ep, job)]
    words = _final_words(plan.final)
    for call in shown_calls(rec):
        if plan.requeued_at is None or call.at < plan.requeued_at:
            continue
        text = call_text(call)
        if plan.token in text:
            return float(call.at)
        if in_group and any(job in line and words in line for line in text.splitlines()):
            return float(call.at)
    return None


def grouped_jobs(rec: Record) -> set[tuple[str, str]]:
    return {j for r in group_requests(rec) for j in r.jobs}


def alert_posts(rec: Record) -> list[Any]:
    """The alert channel's top-level posts (single alerts and grouped alerts)."""
    assert rec.slack is not None
    return [c for c in rec.slack.accepted("chat.postMessage", ALERTS) if not c.args.get("thread_ts")]


def grouped_list(rec: Record) -> str:
    """The grouped alerts' job lists: replies in their threads, edited as failures join (edits carry no
    thread_ts), as they stand now."""
    assert rec.slack is not None
    return "\n".join(message_text(m) for (channel, _), m in rec.slack.messages.items()
                     if channel == ALERTS and m.get("thread_ts"))


def unalerted(rec: Record) -> list[str]:
    """Accepted failures with no alert yet: neither a top-level post naming them nor a line in a grouped list."""
    posts = "\n".join(call_text(c) for c in alert_posts(rec))
    listed = grouped_list(rec)
    return [job for (_, job), statuses in rec.webhooks.items()
            if any(200 <= s < 300 for s in statuses) and job not in posts and job not in listed]


def pending_endings(rec: Record) -> list[tuple[str, str]]:
    """Requeued jobs that have ended whose ending Slack has not shown yet."""
    assert rec.runpod is not None
    now = time.monotonic()
    grouped = grouped_jobs(rec)
    return [(ep, job) for (ep, job) in rec.runpod.requeued()
            if (plan := rec.runpod.plans.get((ep, job))) and plan.ends_at is not None and plan.ends_at < now
            and ending_shown_at(rec, ep, job, (ep, job) in grouped) is None]


def summaries_of(rec: Record, request: Request) -> list[dict[str, Any]]:
    """The summaries a bulk run or Retry all posted: each attaches RunPod's answer for every job as one JSON file,
    read here (no words involved). One dict per upload: {"endpoint", "results": [{"job", "outcome", ...}]}."""
    assert rec.slack is not None
    ep = request.jobs[0][0]
    found = []
    for call in rec.slack.accepted("files.completeUploadExternal"):
        for f in call.args.get("files") or []:
            raw = rec.slack.uploads.get(str(f.get("id")))
            with contextlib.suppress(ValueError, TypeError):
                body = json.loads(raw or b"")
                if body.get("endpoint") == ep and call.at >= request.at:
                    found.append({**body, "at": call.at})
    return found


def summary_posts(rec: Record, request: Request) -> list[Any]:
    """The summary replies a run posted: their text begins as the app's summary for that many jobs on that
    endpoint does (computed with the app's own renderer, whatever its words)."""
    from bot.core.groups import JobResult

    assert rec.slack is not None
    ep = request.jobs[0][0]
    msg, _ = messages.bulk_summary(ep, [JobResult(job, "requeued") for _, job in request.jobs], "x.json")
    head = msg["text"].split(":")[0]
    channel = request.where.partition("/")[0]
    return [c for c in rec.slack.accepted("chat.postMessage", channel)
            if c.args.get("thread_ts") and str(c.args.get("text") or "").startswith(head) and c.at >= request.at]


def not_retried_words() -> str:
    """How a run's line begins for a job that was not retried, in the app's own words."""
    from bot.core.groups import JobResult
    from bot.core.messages.bulk import job_outcome_words

    return job_outcome_words(JobResult("j", "refused:x", detail="x"), None).split(":")[0]


def shown_not_retried(rec: Record, request: Request) -> list[str]:
    """The jobs of a run that its thread shows, as it stands at the end, as not retried."""
    assert rec.slack is not None
    channel, _, storm_ts = request.where.partition("/")
    words = not_retried_words()
    text = "\n".join(message_text(m) for (c, _), m in rec.slack.messages.items()
                     if c == channel and m.get("thread_ts") and (not storm_ts or m.get("thread_ts") == storm_ts))
    lines = [line for line in text.splitlines() if words in line]
    return [job for _, job in request.jobs if any(job in line for line in lines)]


def doubled_posts(rec: Record) -> list[tuple[tuple[Any, ...], list[float]]]:
    """Posts that reached Slack more than once (same channel, thread and words), as (key, arrival times)."""
    assert rec.slack is not None
    seen: dict[tuple[Any, ...], list[float]] = {}
    for c in rec.slack.accepted("chat.postMessage"):
        seen.setdefault((c.channel, c.args.get("thread_ts"), c.args.get("text")), []).append(c.at)
    return [(k, v) for k, v in seen.items() if len(v) > 1]


# The stand-in Slack runs on the harness's event loop, which stamps a kill and sends SIGKILL in one step: a request the
# replica wrote just before it died is read, and stamped, when the loop next gets to it (seed 43: 0.0x s later).
READ_LATE = 0.25


def cut_by_kill9(rec: Record, at: float, within: float = 1.0) -> bool:
    """A send cut by a kill -9 at that instant: Slack took it at most `within` s before a replica was killed (or
    read it at most READ_LATE s after: the dead process cannot have sent it then). Or the same cut held open by the
    database: Slack took it just before or during an outage, and a replica was killed before the outage ended, so the
    record that it went could not be written before the kill (seed 145: posted 1.1 s before the kill, PostgreSQL
    restarting in between; the replica that adopted the call sent it again)."""
    kills = rec.kill9_times()
    if any(-READ_LATE <= k - at <= within for k in kills):
        return True
    if rec.outage is None:
        return False
    _, began, ended = rec.outage
    return began - within <= at <= ended and any(at <= k <= ended + within for k in kills)


TRACEBACK = re.compile(r"Traceback \(most recent call last\):\n((?:[ \t].*\n?)+)(.*)")


def app_tracebacks(text: str) -> list[str]:
    """Tracebacks whose frames include the app's own code (bot/): the last frame of bot/ and the error."""
    found = []
    for match in TRACEBACK.finditer(text):
        frames = re.findall(r'File "([^"]+)", line (\d+), in (\S+)', match.group(1))
        ours = [f for f in frames if "/bot/" in f[0]]
        if ours:
            path, line, func = ours[-1]
            found.append(f"{path.split('/bot/')[-1]}:{line} {func}: {match.group(2).strip()[:160]}")
    return found


def summary(rec: Record) -> str:
    """Figures for the report."""
    assert rec.slack is not None and rec.runpod is not None
    accepted = sum(any(200 <= s < 300 for s in v) for v in rec.webhooks.values())
    deliveries = Counter(s for v in rec.webhooks.values() for s in v)
    lines = [
        f"chaos seed {rec.seed}: chaos {rec.chaos_ended - rec.started:.0f} s, settled "
        f"{rec.settled - rec.chaos_ended:.0f} s after",
        f"  webhooks: {len(rec.webhooks)} failures, {sum(deliveries.values())} deliveries {dict(deliveries)}, "
        f"{accepted} accepted",
        f"  requests: {Counter(r.kind for r in rec.requests)}; "
        f"acks {Counter(a for r in rec.requests for a in r.acks)}",
        "  kills: " + ", ".join(f"{rec.t(at):.0f}s {name} {how}" for at, name, how in rec.kills),
        f"  outage: {rec.outage[0]} at {rec.t(rec.outage[1]):.0f}s for {rec.outage[2] - rec.outage[1]:.1f} s"
        if rec.outage else "  outage: none",
        f"  slack faults at {rec.t(rec.slack_fault_at):.0f}s",
        f"  runpod: {len(rec.runpod.calls_to('retry'))} /retry calls, {sum(rec.runpod.requeued().values())} "
        f"requeues of {len(rec.runpod.requeued())} jobs, {len(rec.runpod.calls_to('status'))} /status",
        f"  slack: {len(rec.slack.accepted('chat.postMessage'))} posts, {len(rec.slack.accepted('chat.update'))} "
        f"edits, {len(rec.slack.accepted('files.completeUploadExternal'))} files, "
        f"{sum(1 for c in rec.slack.calls if not c.ok)} failed calls",
        f"  posts per channel: {dict(Counter(c.channel for c in rec.slack.accepted('chat.postMessage')))}",
        f"  alert after the webhook's 200 (s): {_spread(alert_delays(rec))}",
        f"  ending shown after the job ended (s): {_spread(ending_delays(rec))}",
        f"  slowest endings: {slowest_endings(rec)}",
        *(f"  note: {n}" for n in rec.notes),
    ]
    return "\n".join(lines)


def _spread(values: list[float]) -> str:
    if not values:
        return "none"
    values = sorted(values)
    return (f"n={len(values)} p50 {values[len(values) // 2]:.1f}, p90 {values[int(len(values) * 0.9)]:.1f}, "
            f"max {values[-1]:.1f}")


def alert_delays(rec: Record) -> list[float]:
    assert rec.slack is not None
    posts = [c for c in rec.slack.accepted("chat.postMessage", ALERTS) if not c.args.get("thread_ts")]
    delays = []
    for (_, job), at in rec.accepted_at.items():
        first = next((c.at for c in posts if job in call_text(c)), None)
        if first is not None:
            delays.append(first - at)
    return delays


def ending_delays(rec: Record) -> list[float]:
    return [delay for delay, _ in _endings(rec)]


def slowest_endings(rec: Record, n: int = 3) -> str:
    """The jobs whose endings took longest, to say where a slow run's time went (with the kills' times above)."""
    return ", ".join(f"{job} {delay:.1f} s (ended at {rec.t(ended):.0f}s)"
                     for delay, (job, ended) in sorted(_endings(rec), reverse=True)[:n]) or "none"


def _endings(rec: Record) -> list[tuple[float, tuple[str, float]]]:
    assert rec.runpod is not None
    grouped = grouped_jobs(rec)
    delays = []
    for ep, job in rec.runpod.requeued():
        plan = rec.runpod.plans[(ep, job)]
        shown = ending_shown_at(rec, ep, job, (ep, job) in grouped)
        if shown is not None and plan.ends_at is not None:
            delays.append((shown - plan.ends_at, (job, plan.ends_at)))
    return delays
