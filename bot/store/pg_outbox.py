"""The outbox's rows on PostgreSQL, for `PostgresStore`: queueing a Slack call (merged into a waiting update of the
same message, or once under a key however many replicas queue it), taking it to send, and how it ended."""

from __future__ import annotations

import json
from contextlib import AbstractAsyncContextManager
from typing import Any

from bot.store.base import Queued
from bot.store.pg_shared import PostgresQueries, lock_key


def _queued(row: Any) -> Queued:
    after = row.get("after")
    return Queued(id=row["id"], kind=row["kind"], payload=Queued.decode(row["payload"]), lane=row.get("lane", ""),
                  attempts=row["attempts"], not_before=row.get("not_before", 0.0), created=row["created"],
                  after=Queued.decode(after) if after else None, news=bool(row.get("news", False)),
                  result=row.get("result"))


class PostgresOutbox(PostgresQueries):
    owner: str
    lease: float
    timeout: float

    def _transaction(self) -> AbstractAsyncContextManager[Any]:
        raise NotImplementedError

    async def enqueue(self, kind: str, lane: str, payload: dict[str, Any], now: float, *,
                      coalesce: str | None = None, after: dict[str, Any] | None = None,
                      once: str | None = None, news: bool = False, turn: float | None = None) -> tuple[int, bool]:
        text = json.dumps(payload)
        created = now if turn is None else min(turn, now)
        async with self._transaction() as conn:
            if coalesce is not None:
                # Replicas enqueueing the same key together take turns, so they don't both insert a row.
                await conn.execute("SELECT pg_advisory_xact_lock($1)", lock_key(f"outbox coalesce: {coalesce}"),
                                   timeout=self.timeout)
                merged = await conn.fetch("UPDATE outbox SET payload = $1 WHERE coalesce_key = $2"
                                          " AND state = 'queued' RETURNING id", text, coalesce, timeout=self.timeout)
                if merged:
                    return min(int(r["id"]) for r in merged), True
            row_id = await conn.fetchval(
                "INSERT INTO outbox (kind, lane, payload, after, coalesce_key, once_key, created, owner, lease_until,"
                " news) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10) ON CONFLICT DO NOTHING RETURNING id",
                kind, lane, text, json.dumps(after) if after else None, coalesce, once, created, self.owner,
                now + self.lease, news, timeout=self.timeout)
            if row_id is None:  # queued under `once` before (a conflict waits for the other insert to commit)
                return int(await conn.fetchval("SELECT id FROM outbox WHERE once_key = $1", once,
                                               timeout=self.timeout)), True
        return int(row_id), False

    async def said(self, once: str) -> tuple[str, str | None] | None:
        rows = await self._fetch("SELECT state, result FROM outbox WHERE once_key = $1", once)
        return (str(rows[0]["state"]), rows[0]["result"]) if rows else None

    async def take(self, message_id: int) -> Queued | None:
        rows = await self._fetch("UPDATE outbox SET state = 'sending' WHERE id = $1 AND state = 'queued'"
                                 " AND owner = $2 RETURNING *", message_id, self.owner)
        return _queued(rows[0]) if rows else None

    async def delivered(self, message_id: int, result: str | None) -> None:
        await self._execute("UPDATE outbox SET result = $1 WHERE id = $2 AND state = 'sending'", result, message_id)

    async def sent(self, message_id: int, result: str | None) -> None:
        await self._execute("UPDATE outbox SET state = 'sent', result = $1 WHERE id = $2", result, message_id)

    async def later(self, message_id: int, not_before: float, attempts: int) -> None:
        # Only while still ours: a replica that was slow, not dead, must not requeue a row another one adopted.
        await self._execute("UPDATE outbox SET state = 'queued', not_before = $1, attempts = $2 WHERE id = $3"
                            " AND owner = $4 AND state = 'sending'", not_before, attempts, message_id, self.owner)

    async def withdraw(self, message_id: int) -> bool:
        rows = await self._fetch("UPDATE outbox SET state = 'withdrawn' WHERE id = $1 AND state = 'queued'"
                                 " RETURNING id", message_id)
        return bool(rows)

    async def queued(self) -> list[Queued]:
        rows = await self._fetch("SELECT * FROM outbox WHERE owner = $1 AND state IN ('queued', 'sending')"
                                 " ORDER BY id", self.owner)
        return [_queued(r) for r in rows]
