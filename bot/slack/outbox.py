"""The outbox: every message the app posts, updates or shows privately goes through here, stored first.

A call is written to the database before it is sent, so a restart or a replica's death does not lose it (the next
owner sends it). Calls wait in lanes: one per channel for posts and files (Slack allows about one post a second
per channel, so that is where order and pace matter), one per method family for updates, private messages and
views, and one per response_url. A lane sends one call at a time, paced by its Slack limit: oldest first, except that
in a channel the top-level news nobody asked for (alerts) and everything else take turns (`_next`). A 429 pauses
the lane for its Retry-After and the same call goes again: a rate limit never drops a message. A network error or
a 5xx is tried again with backoff. Only an answer that can never succeed (`not_in_channel`, `invalid_blocks`, …)
ends a call unsent, and the caller is told so it can fall back.

Pending updates of one message coalesce in the database: only its newest state is sent.
"""

from __future__ import annotations

import asyncio
import bisect
import contextlib
import logging
import math
import time
from collections.abc import Awaitable, Callable
from typing import Any

from slack_sdk.web.async_client import AsyncWebClient

from bot.infra.metrics import Metrics
from bot.infra.ratelimit import Bucket
from bot.infra.timing import REAL, Timing
from bot.slack.calls import METHODS, Again, Delivery, SlackCall
from bot.slack.lanes import RESPOND, lane_of, lane_rate
from bot.store import Queued, Store, StoreUnavailable

log = logging.getLogger(__name__)

__all__ = ["SET_ASIDE", "AfterHook", "Delivery", "Outbox"]

# In a channel where both wait, posts someone asked for go this many to one news post (`_next`). In the chaos run
# (100 alerts in a minute into one channel, clicks and commands meanwhile) turn and turn about left a retry's ending
# behind half the alert backlog; asked-for posts are bounded by what people do, news by what fails.
ASKED_PER_NEWS = 2
SET_ASIDE = "set_aside"  # the error code of a call set aside (see Timing.outbox_set_aside)

AfterHook = Callable[[dict[str, Any], Delivery], Awaitable[None]]


class Outbox:
    def __init__(self, store: Store, client: AsyncWebClient, metrics: Metrics, *,
                 clock: Callable[[], float] = time.time, timing: Timing = REAL):
        self.store = store
        self.timing = timing
        self.client = client
        self._call = SlackCall(client, metrics, timing)
        self.metrics = metrics
        self.clock = clock
        self._lanes: dict[str, list[int]] = {}
        self._workers: dict[str, asyncio.Task[None]] = {}
        self._buckets: dict[str, Bucket] = {}
        self._waiting: dict[int, asyncio.Future[Delivery]] = {}
        self._queued_at: dict[int, tuple[str, float]] = {}
        self._not_before: dict[int, float] = {}
        self._failed: set[int] = set()  # calls Slack answered with an error (not a 429) at least once
        self._unexpected_since: dict[int, float] = {}  # calls failing in a way `_call` does not expect, since when
        # A call that keeps failing in a way nobody foresaw (a bug of ours or of a library) is set aside after this
        # long, so the lane behind it goes on; the caller is told it was not sent and falls back as for any refusal.
        self.set_aside_after = timing.outbox_set_aside
        self.set_aside = 0  # calls set aside since start (/healthz)
        self._after: dict[str, AfterHook] = {}
        self._watchers: set[asyncio.Task[Delivery]] = set()  # waits on calls queued once before (`_ended`)
        self._sending: set[str] = set()  # lanes whose head call has been taken to be sent
        self._news: set[int] = set()  # queued top-level posts nobody here asked for or waits on (see `_next`)
        self._asked_run: dict[str, int] = {}  # by lane: calls other than news sent in a row since the last news
        self._closing = False

    # ---------------------------------------------------------------- putting calls in

    def on_sent(self, name: str, hook: AfterHook) -> None:
        """Run `hook(after, delivery)` once a call queued with `after={"hook": name, …}` has ended, whichever
        replica sends it (the hook must only touch the database and Slack, never this process's memory)."""
        self._after[name] = hook

    async def submit(self, kind: str, payload: dict[str, Any], *, coalesce: str | None = None,
                     after: dict[str, Any] | None = None,
                     once: str | None = None, news: bool = False,
                     turn: float | None = None) -> tuple[int, asyncio.Future[Delivery]]:
        """Store the call, then queue it. The future resolves when it has been sent (or can never be).

        `news`: a top-level post or an edit nobody asked for (an alert, a notice, an alert redrawn); it takes turns
        with what people wait for in its lane instead of keeping its place in line (see `_next`).

        `turn`: the moment its place in the lane counts from, when that is earlier than now (a followed job's
        ending said by the replica that took the follow over: its turn is the retry's, not the takeover's).

        With `once`, a call already queued under that key (by any replica, however long ago) is not queued again:
        the future resolves as that call ends, with `Delivery.again` set."""
        lane = lane_of(kind, payload)
        news = news and _paced_news(kind, payload)
        message_id, merged = await self.store.enqueue(kind, lane, payload, self.clock(), coalesce=coalesce,
                                                      after=after, once=once, news=news, turn=turn)
        if merged and message_id in self._waiting:
            if turn is not None:  # a late edit merged into a waiting one: that one moves up to the earlier turn
                self._place(lane, message_id, turn)
            return message_id, self._waiting[message_id]
        if merged and once is not None:
            watcher = asyncio.create_task(self._ended(once), name=f"outbox watch {message_id}")
            self._watchers.add(watcher)
            watcher.add_done_callback(self._watchers.discard)
            return message_id, watcher
        future: asyncio.Future[Delivery] = asyncio.get_running_loop().create_future()
        self._waiting[message_id] = future
        self._queue(lane, message_id, turn, news=news)
        return message_id, future

    async def send(self, kind: str, payload: dict[str, Any], **options: Any) -> Delivery:
        _, future = await self.submit(kind, payload, **options)
        return await future

    async def _ended(self, once: str) -> Delivery:
        """How the call queued under `once` ended, whoever sent it (this replica, once it adopted the call, or
        another); waits until it has."""
        while True:
            try:
                state, result = await self.store.said(once) or ("withdrawn", None)
            except StoreUnavailable:
                state, result = "queued", None  # the call is safe in the database: look again later
            if state == "sent":
                return _answer(result, again=True)
            if state not in ("queued", "sending"):
                return Delivery(ok=False, error=state, again=True)
            await asyncio.sleep(self.timing.outbox_store_pause)

    def failing(self, message_id: int) -> bool:
        """Slack has answered this call with an error (5xx, a dropped connection), not just asked it to wait."""
        return message_id in self._failed

    async def withdraw(self, message_id: int) -> bool:
        """Take a call back before it is sent. False when it is being sent already (or was)."""
        if not await self.store.withdraw(message_id):
            return False
        lane = self._queued_at.get(message_id, ("", 0.0))[0]
        with contextlib.suppress(ValueError):
            self._lanes.get(lane, []).remove(message_id)
        self._queued_at.pop(message_id, None)
        self._not_before.pop(message_id, None)
        self._news.discard(message_id)
        self._failed.discard(message_id)
        future = self._waiting.pop(message_id, None)
        if future is not None and not future.done():
            future.set_result(Delivery(ok=False, error="withdrawn"))
        return True

    def resume(self, rows: list[Queued]) -> None:
        """Calls this replica now owns that no one in this process is waiting for (restart, adoption)."""
        for row in sorted(rows, key=lambda r: r.id):
            if row.id not in self._queued_at:
                self._not_before[row.id] = row.not_before
                # A call left by a restart or a dead replica keeps its kind: someone may still wait on an answer or
                # a tally (handed over at a SIGTERM, it used to queue behind every alert redraw as news).
                self._queue(row.lane, row.id, row.created, news=row.news)

    def _queue(self, lane: str, message_id: int, created: float | None = None, *, news: bool = False) -> None:
        self._place(lane, message_id, self.clock() if created is None else created)
        if news:
            self._news.add(message_id)
        self._observe(lane)
        if self._closing:
            return
        worker = self._workers.get(lane)
        if worker is None or worker.done():
            self._workers[lane] = asyncio.create_task(self._drain(lane), name=f"outbox {lane}")

    def _place(self, lane: str, message_id: int, at: float) -> None:
        """Put the call in its lane by when it was queued (or its earlier turn), not by when this replica took it: a
        dead replica's reply adopted here (or an ending with an earlier `turn`) used to wait behind everything this
        replica had queued since, and in the chaos run's alert channel that put an ending 45 s after its job's end."""
        at = min(at, self.clock(), self._queued_at.get(message_id, (lane, math.inf))[1])
        ids = self._lanes.setdefault(lane, [])
        with contextlib.suppress(ValueError):
            ids.remove(message_id)
        self._queued_at[message_id] = (lane, at)
        ids.insert(bisect.bisect_right(ids, at, key=lambda i: self._queued_at.get(i, (lane, 0.0))[1]), message_id)

    # ---------------------------------------------------------------- what is waiting

    def depth(self) -> int:
        return sum(len(ids) for ids in self._lanes.values())

    def oldest_age(self, lane: str | None = None) -> float:
        now = self.clock()
        if lane is not None:
            ids = self._lanes.get(lane) or []
            return max((now - self._queued_at[i][1] for i in ids if i in self._queued_at), default=0.0)
        return max((now - at for _lane, at in self._queued_at.values()), default=0.0)

    def _observe(self, lane: str) -> None:
        if lane.startswith(RESPOND):  # one series for all commands' response_urls, not one per command
            lanes = [name for name in self._lanes if name.startswith(RESPOND)]
            self.metrics.outbox_depth.labels(lane="respond").set(sum(len(self._lanes[name]) for name in lanes))
            self.metrics.outbox_oldest.labels(lane="respond").set(max(map(self.oldest_age, lanes), default=0.0))
            return
        self.metrics.outbox_depth.labels(lane=lane).set(len(self._lanes.get(lane, ())))
        self.metrics.outbox_oldest.labels(lane=lane).set(self.oldest_age(lane))

    async def idle(self, timeout: float = 30.0) -> None:  # noqa: ASYNC109
        """Wait until every queued call has been sent (tests, the benchmark, a clean shutdown)."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while any(self._lanes.values()) and loop.time() < deadline:  # noqa: ASYNC110 - tests and shutdown only
            await asyncio.sleep(0.02)

    # ---------------------------------------------------------------- sending

    def bucket(self, lane: str) -> Bucket:
        if lane not in self._buckets:
            self._buckets[lane] = Bucket(*lane_rate(lane, self.timing))
        return self._buckets[lane]

    def _next(self, lane: str) -> int:
        """The call whose turn it is. Oldest first, except in a channel where news (alerts, at one a second in a
        storm) and other posts (a command's message, a retry's result, how the job ended: someone asked and is
        waiting) both wait: then the others go first, and news takes one turn in every ASKED_PER_NEWS + 1, so a flood
        of alerts neither holds back what people are waiting for nor stops. Order within each is kept, and so within
        a thread. A burst of commands with no news keeps strict order: their parents and results are not held back
        by the endings that come in between."""
        ids = self._lanes[lane]
        if self._news.isdisjoint(ids) or self._news.issuperset(ids):
            return ids[0]
        want_news = self._asked_run.get(lane, 0) >= ASKED_PER_NEWS
        return next(i for i in ids if (i in self._news) == want_news)

    async def _drain(self, lane: str) -> None:
        ids = self._lanes[lane]
        attempts, counting = 0, None  # tries of the message at the head of the lane
        while ids and not self._closing:
            self._sending.discard(lane)
            message_id = self._next(lane)
            if counting != message_id:
                attempts, counting = 0, message_id
            row: Queued | None = None
            try:
                # Waits happen before the call is taken, so it can still be withdrawn while it waits.
                wait = self._not_before.get(message_id, 0.0) - self.clock()
                if wait > 0:
                    await asyncio.sleep(wait)
                await self.bucket(lane).acquire()
                if not ids:
                    continue  # withdrawn while waiting
                if (now_next := self._next(lane)) != message_id:  # withdrawn while waiting, or another's turn
                    if self._not_before.get(now_next, 0.0) > self.clock():
                        continue
                    message_id = counting = now_next
                    attempts = 0
                self._sending.add(lane)
                row = await self.store.take(message_id)
                if row is None:  # sent by someone else, withdrawn, or merged away
                    self._finish(lane, message_id, None)
                    continue
                # Sent before a stop cut its hook short: the hook runs now, the call does not go twice.
                delivery = _answer(row.result) if row.after and row.result else await self._call(row)
            except Again as retry:
                attempts += 1
                await self._again(lane, message_id, retry, attempts)
                continue
            except StoreUnavailable:
                await asyncio.sleep(self.timing.outbox_store_pause)  # the database is away: the call is safe in it
                continue
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                since = self._unexpected_since.setdefault(message_id, self.clock())
                if row is not None and self.clock() - since >= self.set_aside_after:
                    delivery = self._set_aside(row, lane, exc)
                else:
                    log.exception("unexpected failure sending Slack call %s; it stays queued", message_id)
                    attempts += 1
                    wait = min(self.timing.slack_max_backoff,
                               2 * self.timing.slack_backoff_base * 2.0 ** min(attempts, 6))
                    await self._again(lane, message_id, Again(wait, type(exc).__name__), attempts)
                    continue
            await self._settle(row, delivery)
            self._finish(lane, message_id, delivery)
        self._sending.discard(lane)
        if lane.startswith(RESPOND) and not ids:
            # A response_url lane is one command's: once drained it is let go, or every command would leave one.
            del self._lanes[lane]
            self._buckets.pop(lane, None)
            self._workers.pop(lane, None)
            self._asked_run.pop(lane, None)

    async def _again(self, lane: str, message_id: int, retry: Again, attempts: int) -> None:
        """The call goes back to `queued` in the store (so that it is taken again, here or after a restart) and
        waits; a 429 pauses its whole lane."""
        if retry.throttled:
            self.bucket(lane).pause(retry.wait)
        else:
            self._failed.add(message_id)
        log.warning("Slack call %s (%s) will be tried again in %.1f s: %s", message_id, lane, retry.wait,
                    retry.reason)
        not_before = self.clock() + (0 if retry.throttled else retry.wait)
        self._not_before[message_id] = not_before
        while not self._closing:
            try:
                await self.store.later(message_id, not_before, attempts)
                return
            except StoreUnavailable:  # left "sending", the next take would not find it: wait for the database
                await asyncio.sleep(self.timing.outbox_store_pause)

    def _set_aside(self, row: Queued, lane: str, exc: Exception) -> Delivery:
        method = METHODS.get(row.kind, row.kind)
        log.error("Slack call %s (%s, lane %s) kept failing unexpectedly for %.0f s (%s); it is set aside so the "
                  "lane goes on", row.id, method, lane, self.set_aside_after, type(exc).__name__)
        self.set_aside += 1
        self.metrics.outbox_set_aside.labels(method=method).inc()
        return Delivery(ok=False, error=SET_ASIDE)

    def _finish(self, lane: str, message_id: int, delivery: Delivery | None) -> None:
        with contextlib.suppress(ValueError):
            self._lanes.get(lane, []).remove(message_id)
        self._asked_run[lane] = 0 if message_id in self._news else self._asked_run.get(lane, 0) + 1
        self._news.discard(message_id)
        self._queued_at.pop(message_id, None)
        self._not_before.pop(message_id, None)
        self._failed.discard(message_id)
        self._unexpected_since.pop(message_id, None)
        self._observe(lane)
        future = self._waiting.pop(message_id, None)
        if future is not None and not future.done():
            future.set_result(delivery or Delivery(ok=True))

    async def _settle(self, row: Queued, delivery: Delivery) -> None:
        """Keep Slack's answer, run the call's hook, then write down that the call went, each once the database
        takes it. A row left 'sending' is taken over by whoever adopts it after this replica stops: with the answer
        kept, it runs the hook and does not send the call again (a hook waiting on a slow database at a SIGTERM used
        to leave an alert to be posted twice). A death before the answer is kept still sends it twice (the hooks take
        the first delivery and ignore a second) rather than losing where it went (an alert nobody could update)."""
        result = delivery.ts or (f"error:{delivery.error}" if delivery.error else None)
        if row.after:
            hook = self._after.get(str(row.after.get("hook")))
            if hook is not None:
                after = row.after
                if row.result is None:
                    await self._stored("keep Slack's answer", lambda: self.store.delivered(row.id, result))
                try:
                    await self._stored(f"record where a Slack message went ({after.get('hook')})",
                                       lambda: hook(after, delivery))
                except Exception:
                    log.exception("could not record where a Slack message went (%s)", row.after.get("hook"))
        await self._stored("mark a Slack message sent", lambda: self.store.sent(row.id, result))

    async def _stored(self, what: str, step: Callable[[], Awaitable[Any]]) -> None:
        wait = self.timing.outbox_store_pause
        while True:
            try:
                await step()
                return
            except StoreUnavailable as exc:
                if self._closing:
                    log.warning("could not %s before stopping: %s", what, exc)
                    return
                log.warning("could not %s yet, trying again in %g s: %s", what, wait, exc)
                await asyncio.sleep(wait)
                wait = min(wait * 2, 10 * self.timing.outbox_store_pause)

    # ---------------------------------------------------------------- stopping

    async def close(self, grace: float = 2.0) -> None:
        """Stop sending. What is still queued stays in the database for the next owner.

        A call already on its way to Slack is given `outbox_finish_grace` to be answered and marked sent: cut off
        there, it would stay 'sending' and the next owner would post it a second time."""
        await self.idle(grace)
        self._closing = True
        sending = [worker for lane, worker in self._workers.items() if lane in self._sending and not worker.done()]
        for worker in [*self._workers.values(), *self._watchers]:
            if worker not in sending:
                worker.cancel()
        if sending:
            _done, late = await asyncio.wait(sending, timeout=self.timing.outbox_finish_grace)
            for worker in late:
                worker.cancel()
        for worker in self._workers.values():
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await worker
        for future in self._waiting.values():
            if not future.done():
                future.cancel()


def _paced_news(kind: str, payload: dict[str, Any]) -> bool:
    """What can be news: a top-level post (a reply belongs to what it answers) or an edit (an alert redrawn)."""
    return kind == "update" or (kind in ("post", "file") and not payload.get("thread_ts"))


def _answer(result: str | None, *, again: bool = False) -> Delivery:
    """A delivery as the outbox row keeps it: the message's ts, or `error:<code>`."""
    if result and result.startswith("error:"):
        return Delivery(ok=False, error=result.removeprefix("error:"), again=again)
    return Delivery(ok=True, ts=result, again=again)
