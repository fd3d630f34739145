"""What automatic retries (retry policies) remember: each attempt's result, the jobs people stopped, and the pauses
(a person's kill switch, or the breaker). The statements in each database's dialect, mixed into SqliteStore and
PostgresStore (the same storage tests cover both), and the migration that adds their tables."""

from __future__ import annotations

from typing import Any

from bot.core.policies import COMPLETED, FAILED_AGAIN, SENT, Pause
from bot.store.pg_shared import PostgresQueries

# One result per (job, attempt) for the results that say a retry went out or ended: whoever records one again (a
# replayed step, another replica) records nothing. Skips, dry runs and refusals may repeat.
_ONCE = f"result IN ('{SENT}', '{COMPLETED}', '{FAILED_AGAIN}')"

SQLITE_MIGRATION = f"""
CREATE TABLE auto_results (
    id INTEGER PRIMARY KEY AUTOINCREMENT, endpoint TEXT NOT NULL, job TEXT NOT NULL, attempt INTEGER NOT NULL,
    policy TEXT NOT NULL, result TEXT NOT NULL, at REAL NOT NULL
);
CREATE INDEX auto_results_recent ON auto_results (endpoint, at);
CREATE UNIQUE INDEX auto_results_once ON auto_results (endpoint, job, attempt, result) WHERE {_ONCE};
CREATE TABLE auto_stops (
    endpoint TEXT NOT NULL, job TEXT NOT NULL, user TEXT NOT NULL, at REAL NOT NULL, PRIMARY KEY (endpoint, job)
);
CREATE TABLE auto_pauses (
    scope TEXT PRIMARY KEY, until REAL, paused_by TEXT NOT NULL, reason TEXT NOT NULL, at REAL NOT NULL
);
"""

POSTGRES_MIGRATION = f"""
CREATE TABLE auto_results (
    id BIGSERIAL PRIMARY KEY, endpoint TEXT NOT NULL, job TEXT NOT NULL, attempt INTEGER NOT NULL,
    policy TEXT NOT NULL, result TEXT NOT NULL, at DOUBLE PRECISION NOT NULL
);
CREATE INDEX auto_results_recent ON auto_results (endpoint, at);
CREATE UNIQUE INDEX auto_results_once ON auto_results (endpoint, job, attempt, result) WHERE {_ONCE};
CREATE TABLE auto_stops (
    endpoint TEXT NOT NULL, job TEXT NOT NULL, "user" TEXT NOT NULL, at DOUBLE PRECISION NOT NULL,
    PRIMARY KEY (endpoint, job)
);
CREATE TABLE auto_pauses (
    scope TEXT PRIMARY KEY, until DOUBLE PRECISION, paused_by TEXT NOT NULL, reason TEXT NOT NULL,
    at DOUBLE PRECISION NOT NULL
);
"""

# One statement, so that among simultaneous pauses of one scope exactly one takes it: the row is new, or the pause
# it replaces had run out. (PostgreSQL re-checks the WHERE on the row a concurrent insert just committed.)
_PAUSE = ("INSERT INTO auto_pauses (scope, until, paused_by, reason, at) VALUES ({0}, {1}, {2}, {3}, {4})"
          " ON CONFLICT (scope) DO UPDATE SET until = excluded.until, paused_by = excluded.paused_by,"
          " reason = excluded.reason, at = excluded.at"
          " WHERE auto_pauses.until IS NOT NULL AND auto_pauses.until <= excluded.at"
          " RETURNING scope")
_COLUMNS = "scope, until, paused_by, reason, at"
_ACTIVE = f"SELECT {_COLUMNS} FROM auto_pauses WHERE until IS NULL OR until > {{0}} ORDER BY scope"
_PRUNE = ("DELETE FROM auto_results WHERE at < {0}", "DELETE FROM auto_stops WHERE at < {0}",
          "DELETE FROM auto_pauses WHERE until IS NOT NULL AND until < {0}")


def _pause(row: Any) -> Pause:
    until = row["until"]
    return Pause(str(row["scope"]), None if until is None else float(until), str(row["paused_by"]), str(row["reason"]),
                 float(row["at"]))


class SqliteAuto:
    """On SQLite (`?` parameters; one connection, so statements never interleave)."""

    async def _rows(self, sql: str, params: Any = (), *, commit: bool = False) -> list[Any]:
        raise NotImplementedError

    async def _write(self, sql: str, params: Any, many: bool = False) -> None:
        raise NotImplementedError

    async def _prune_auto(self, before: float) -> None:
        for sql in _PRUNE:
            await self._write(sql.format("?"), (before,))

    async def record_auto(self, endpoint: str, job: str, attempt: int, policy: str, result: str, at: float) -> bool:
        rows = await self._rows("INSERT OR IGNORE INTO auto_results (endpoint, job, attempt, policy, result, at)"
                                " VALUES (?, ?, ?, ?, ?, ?) RETURNING id",
                                (endpoint, job, attempt, policy, result, at), commit=True)
        return bool(rows)

    async def auto_results(self, endpoint: str, since: float) -> list[tuple[float, str]]:
        rows = await self._rows("SELECT at, result FROM auto_results WHERE endpoint = ? AND at >= ?"
                                " ORDER BY at DESC, id DESC", (endpoint, since))
        return [(float(r[0]), str(r[1])) for r in rows]

    async def stop_auto(self, endpoint: str, job: str, user: str, at: float) -> bool:
        rows = await self._rows("INSERT OR IGNORE INTO auto_stops (endpoint, job, user, at) VALUES (?, ?, ?, ?)"
                                " RETURNING endpoint", (endpoint, job, user, at), commit=True)
        return bool(rows)

    async def auto_stopped(self, endpoint: str, job: str) -> str | None:
        rows = await self._rows("SELECT user FROM auto_stops WHERE endpoint = ? AND job = ?", (endpoint, job))
        return str(rows[0][0]) if rows else None

    async def pause_auto(self, pause: Pause) -> bool:
        rows = await self._rows(_PAUSE.format("?", "?", "?", "?", "?"),
                                (pause.scope, pause.until, pause.by, pause.reason, pause.at), commit=True)
        return bool(rows)

    async def resume_auto(self, scope: str) -> Pause | None:
        rows = await self._rows(f"DELETE FROM auto_pauses WHERE scope = ? RETURNING {_COLUMNS}", (scope,),
                                commit=True)
        return _pause(rows[0]) if rows else None

    async def auto_pauses(self, now: float) -> list[Pause]:
        return [_pause(r) for r in await self._rows(_ACTIVE.format("?"), (now,))]


class PostgresAuto(PostgresQueries):
    """On PostgreSQL (`$n` parameters; `user` is a reserved word)."""

    async def _prune_auto(self, before: float) -> None:
        for sql in _PRUNE:
            await self._execute(sql.format("$1"), before)

    async def record_auto(self, endpoint: str, job: str, attempt: int, policy: str, result: str, at: float) -> bool:
        rows = await self._fetch("INSERT INTO auto_results (endpoint, job, attempt, policy, result, at)"
                                 " VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT DO NOTHING RETURNING id",
                                 endpoint, job, attempt, policy, result, at)
        return bool(rows)

    async def auto_results(self, endpoint: str, since: float) -> list[tuple[float, str]]:
        rows = await self._fetch("SELECT at, result FROM auto_results WHERE endpoint = $1 AND at >= $2"
                                 " ORDER BY at DESC, id DESC", endpoint, since)
        return [(float(r["at"]), str(r["result"])) for r in rows]

    async def stop_auto(self, endpoint: str, job: str, user: str, at: float) -> bool:
        rows = await self._fetch('INSERT INTO auto_stops (endpoint, job, "user", at) VALUES ($1, $2, $3, $4)'
                                 " ON CONFLICT DO NOTHING RETURNING endpoint", endpoint, job, user, at)
        return bool(rows)

    async def auto_stopped(self, endpoint: str, job: str) -> str | None:
        value = await self._fetchval('SELECT "user" FROM auto_stops WHERE endpoint = $1 AND job = $2', endpoint, job)
        return None if value is None else str(value)

    async def pause_auto(self, pause: Pause) -> bool:
        rows = await self._fetch(_PAUSE.format("$1", "$2", "$3", "$4", "$5"),
                                 pause.scope, pause.until, pause.by, pause.reason, pause.at)
        return bool(rows)

    async def resume_auto(self, scope: str) -> Pause | None:
        rows = await self._fetch(f"DELETE FROM auto_pauses WHERE scope = $1 RETURNING {_COLUMNS}", scope)
        return _pause(rows[0]) if rows else None

    async def auto_pauses(self, now: float) -> list[Pause]:
        return [_pause(r) for r in await self._fetch(_ACTIVE.format("$1"), now)]
