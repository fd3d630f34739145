"""What the Home tab reads: failures not retried yet, jobs followed now, and how retries ended, per endpoint. The
queries in each database's dialect, mixed into SqliteStore and PostgresStore (the same storage tests cover both)."""

from __future__ import annotations

from typing import Any

# Retries sent to RunPod and RunPod's takes come from the audit trail; how the retried jobs ended, from retry_ends.
_STATS = ("SELECT endpoint, SUM(sent) AS sent, SUM(requeued) AS requeued, SUM(completed) AS completed,"
          " SUM(failed_again) AS failed_again FROM ("
          " SELECT endpoint, 1 AS sent, {requeued} AS requeued, 0 AS completed, 0 AS failed_again"
          " FROM audit WHERE at >= {since} AND called = 1"
          " UNION ALL SELECT endpoint, 0, 0, {completed}, {failed} FROM retry_ends WHERE at >= {since}) AS t"
          " GROUP BY endpoint ORDER BY endpoint")
_UNRETRIED = ("SELECT endpoint, job, status, error, seen_at FROM failures WHERE seen_at >= {since} AND retried = 0"
              # A retry RunPod took since the failure was seen (by any route) counts, as in `recent_failures`.
              " AND NOT EXISTS (SELECT 1 FROM audit WHERE audit.endpoint = failures.endpoint"
              " AND audit.job = failures.job AND audit.outcome = 'requeued' AND audit.at >= failures.seen_at)"
              " ORDER BY seen_at DESC LIMIT {limit}")
_INSERT_END = "INSERT INTO retry_ends (endpoint, job, status, at) VALUES ({}, {}, {}, {})"


def _stats_rows(rows: list[Any]) -> list[dict[str, Any]]:
    return [{"endpoint": r["endpoint"], **{k: int(r[k] or 0) for k in ("sent", "requeued", "completed",
                                                                         "failed_again")}} for r in rows]


class SqliteReports:
    """The Home tab's queries on SQLite (`?` parameters, booleans as 0/1)."""

    async def _rows(self, sql: str, params: Any = (), *, commit: bool = False) -> list[Any]:
        raise NotImplementedError

    async def _write(self, sql: str, params: Any, many: bool = False) -> None:
        raise NotImplementedError

    async def unretried_failures(self, since: float, limit: int) -> list[dict[str, Any]]:
        return [dict(r) for r in await self._rows(_UNRETRIED.format(since="?", limit="?"), (since, limit))]

    async def followed_jobs(self, limit: int) -> list[str]:
        return [r[0] for r in await self._rows("SELECT data FROM follows LIMIT ?", (limit,))]

    async def record_retry_end(self, endpoint: str, job: str, status: str, at: float) -> None:
        await self._write(_INSERT_END.format("?", "?", "?", "?"), (endpoint, job, status, at))

    async def retry_stats(self, since: float) -> list[dict[str, Any]]:
        sql = _STATS.format(requeued="outcome = 'requeued'", completed="status = 'COMPLETED'",
                            failed="status IN ('FAILED', 'TIMED_OUT')", since="?")
        return _stats_rows(await self._rows(sql, (since, since)))


class PostgresReports:
    """The Home tab's queries on PostgreSQL (`$n` parameters, booleans cast to integers)."""

    async def _fetch(self, sql: str, *args: Any) -> list[Any]:
        raise NotImplementedError

    async def _execute(self, sql: str, *args: Any) -> None:
        raise NotImplementedError

    async def unretried_failures(self, since: float, limit: int) -> list[dict[str, Any]]:
        return [dict(r) for r in await self._fetch(_UNRETRIED.format(since="$1", limit="$2"), since, limit)]

    async def followed_jobs(self, limit: int) -> list[str]:
        return [r["data"] for r in await self._fetch("SELECT data FROM follows LIMIT $1", limit)]

    async def record_retry_end(self, endpoint: str, job: str, status: str, at: float) -> None:
        await self._execute(_INSERT_END.format("$1", "$2", "$3", "$4"), endpoint, job, status, at)

    async def retry_stats(self, since: float) -> list[dict[str, Any]]:
        sql = _STATS.format(requeued="(outcome = 'requeued')::int", completed="(status = 'COMPLETED')::int",
                            failed="(status IN ('FAILED', 'TIMED_OUT'))::int", since="$1")
        return _stats_rows(await self._fetch(sql, since))
