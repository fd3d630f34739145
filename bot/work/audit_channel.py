"""The optional audit channel: one line per attempt, batched so a bulk retry of hundreds of jobs becomes a
few messages a second apart instead of hundreds of posts that Slack would throttle.

People are named without notifying them on every attempt: each batch is posted with plain names, then edited to
mentions (Slack does not notify a mention added by an edit)."""

from __future__ import annotations

from bot.core import messages
from bot.infra.tasks import Background
from bot.slack.out import Place, SlackOut
from bot.slack.pacing import Pacer
from bot.store import AuditEntry

LINES_PER_MESSAGE = 40  # 40 lines of at most ~150 characters fit a handful of sections


class AuditChannel:
    def __init__(self, out: SlackOut, channel: str, background: Background, interval: float):
        self.out = out
        self.interval = interval  # one post at most this often (Timing.pacer_interval)
        self.channel = channel
        self.background = background
        self._pending: list[AuditEntry] = []
        self._pacer: Pacer | None = None  # made on first use, inside the running loop

    def add(self, entry: AuditEntry) -> None:
        self._pending.append(entry)
        if self._pacer is None:
            self._pacer = Pacer(self._write, self.background, "audit channel", self.interval)
        self._pacer.mark("lines")

    async def _write(self, _part: str, _turn: float | None) -> None:
        batch, self._pending = self._pending[:LINES_PER_MESSAGE], self._pending[LINES_PER_MESSAGE:]
        if batch:
            ts = await self.out.post(Place(self.channel), messages.audit_lines(batch, mentions=False), news=True)
            if ts:
                await self.out.update(self.channel, ts, messages.audit_lines(batch), news=True)
        if self._pending and self._pacer is not None:
            self._pacer.mark("lines")
