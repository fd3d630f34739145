"""What the app keeps as JSON between messages and restarts: each alert, each storm (grouped alert) and each bulk
run, and a bulk run's jobs a row each. The statements in each database's dialect, mixed into SqliteStore and
PostgresStore (the same storage tests cover both)."""

from __future__ import annotations

import time
from typing import Any

from bot.store.pg_shared import PostgresQueries


class SqliteBlobs:
    """On SQLite (`?` parameters; writes go through the store's one connection)."""

    async def _rows(self, sql: str, params: Any = (), *, commit: bool = False) -> list[Any]:
        raise NotImplementedError

    async def _write(self, sql: str, params: Any, many: bool = False) -> None:
        raise NotImplementedError

    async def save_alert(self, endpoint: str, job: str, data: str) -> None:
        await self._write("INSERT OR REPLACE INTO alerts (endpoint, job, data, updated) VALUES (?, ?, ?, ?)",
                          (endpoint, job, data, time.time()))

    async def load_alert(self, endpoint: str, job: str) -> str | None:
        rows = await self._rows("SELECT data FROM alerts WHERE endpoint = ? AND job = ?", (endpoint, job))
        return rows[0][0] if rows else None

    async def recent_alerts(self, since: float) -> list[str]:
        return [row[0] for row in await self._rows("SELECT data FROM alerts WHERE updated >= ?", (since,))]

    async def save_storm(self, storm_id: str, data: str) -> None:
        await self._write("INSERT OR REPLACE INTO storms (id, data, updated) VALUES (?, ?, ?)",
                          (storm_id, data, time.time()))

    async def load_storm(self, storm_id: str) -> str | None:
        rows = await self._rows("SELECT data FROM storms WHERE id = ?", (storm_id,))
        return rows[0][0] if rows else None

    async def recent_storms(self, since: float) -> list[str]:
        return [row[0] for row in await self._rows("SELECT data FROM storms WHERE updated >= ? ORDER BY updated",
                                                   (since,))]

    async def save_bulk(self, run_id: str, data: str) -> None:
        await self._write("INSERT OR REPLACE INTO bulk_runs (id, data, updated) VALUES (?, ?, ?)",
                          (run_id, data, time.time()))

    async def load_bulk(self, run_id: str) -> str | None:
        rows = await self._rows("SELECT data FROM bulk_runs WHERE id = ?", (run_id,))
        return rows[0][0] if rows else None

    async def recent_bulks(self, since: float) -> list[str]:
        return [row[0] for row in await self._rows("SELECT data FROM bulk_runs WHERE updated >= ?", (since,))]

    async def save_bulk_job(self, run_id: str, job: str, *, result: str | None = None,
                            final: str | None = None) -> None:
        await self._write("INSERT INTO bulk_jobs (run_id, job, result, final, updated) VALUES (?, ?, ?, ?, ?)"
                          " ON CONFLICT (run_id, job) DO UPDATE SET result = COALESCE(excluded.result, result),"
                          " final = COALESCE(excluded.final, final), updated = excluded.updated",
                          (run_id, job, result, final, time.time()))

    async def bulk_jobs(self, run_id: str) -> dict[str, tuple[str | None, str | None]]:
        rows = await self._rows("SELECT job, result, final FROM bulk_jobs WHERE run_id = ?", (run_id,))
        return {row[0]: (row[1], row[2]) for row in rows}


class PostgresBlobs(PostgresQueries):
    """On PostgreSQL (`$n` parameters, upserts with ON CONFLICT)."""

    async def save_alert(self, endpoint: str, job: str, data: str) -> None:
        await self._execute("INSERT INTO alerts (endpoint, job, data, updated) VALUES ($1, $2, $3, $4)"
                            " ON CONFLICT (endpoint, job) DO UPDATE SET data = excluded.data,"
                            " updated = excluded.updated",
                            endpoint, job, data, time.time())

    async def load_alert(self, endpoint: str, job: str) -> str | None:
        value = await self._fetchval("SELECT data FROM alerts WHERE endpoint = $1 AND job = $2", endpoint, job)
        return str(value) if value is not None else None

    async def recent_alerts(self, since: float) -> list[str]:
        return [r["data"] for r in await self._fetch("SELECT data FROM alerts WHERE updated >= $1", since)]

    async def save_storm(self, storm_id: str, data: str) -> None:
        await self._execute("INSERT INTO storms (id, data, updated) VALUES ($1, $2, $3) ON CONFLICT (id)"
                            " DO UPDATE SET data = excluded.data, updated = excluded.updated",
                            storm_id, data, time.time())

    async def load_storm(self, storm_id: str) -> str | None:
        value = await self._fetchval("SELECT data FROM storms WHERE id = $1", storm_id)
        return str(value) if value is not None else None

    async def recent_storms(self, since: float) -> list[str]:
        return [r["data"] for r in await self._fetch("SELECT data FROM storms WHERE updated >= $1 ORDER BY updated",
                                                     since)]

    async def save_bulk(self, run_id: str, data: str) -> None:
        await self._execute("INSERT INTO bulk_runs (id, data, updated) VALUES ($1, $2, $3) ON CONFLICT (id)"
                            " DO UPDATE SET data = excluded.data, updated = excluded.updated",
                            run_id, data, time.time())

    async def load_bulk(self, run_id: str) -> str | None:
        value = await self._fetchval("SELECT data FROM bulk_runs WHERE id = $1", run_id)
        return str(value) if value is not None else None

    async def recent_bulks(self, since: float) -> list[str]:
        return [r["data"] for r in await self._fetch("SELECT data FROM bulk_runs WHERE updated >= $1", since)]

    async def save_bulk_job(self, run_id: str, job: str, *, result: str | None = None,
                            final: str | None = None) -> None:
        await self._execute("INSERT INTO bulk_jobs (run_id, job, result, final, updated) VALUES ($1, $2, $3, $4, $5)"
                            " ON CONFLICT (run_id, job) DO UPDATE SET"
                            " result = COALESCE(excluded.result, bulk_jobs.result),"
                            " final = COALESCE(excluded.final, bulk_jobs.final), updated = excluded.updated",
                            run_id, job, result, final, time.time())

    async def bulk_jobs(self, run_id: str) -> dict[str, tuple[str | None, str | None]]:
        rows = await self._fetch("SELECT job, result, final FROM bulk_jobs WHERE run_id = $1", run_id)
        return {r["job"]: (r["result"], r["final"]) for r in rows}
