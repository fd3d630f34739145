"""Which replicas are alive, for the durable-execution engine (bot/work/engine.py): each replica beats in a row of
`app_executors`; a replica silent too long is dead, and one live replica has the engine resume its workflows.

PostgreSQL only: on SQLite there is one process, and the engine resumes its own workflows when it starts.
The database's clock decides who is silent, so replicas' clocks never have to agree."""

from __future__ import annotations

from typing import Any


class NoExecutors:
    """One process (SQLite): nobody else to watch."""

    async def beat(self, executor: str, generation: str, stale_after: float) -> list[str]:
        return []

    async def forget_executor(self, executor: str) -> None:
        return None

    async def retire_executor(self, executor: str) -> None:
        return None


class PostgresExecutors:
    async def _fetch(self, sql: str, *args: Any) -> list[Any]:
        raise NotImplementedError

    async def _execute(self, sql: str, *args: Any) -> None:
        raise NotImplementedError

    async def beat(self, executor: str, generation: str, stale_after: float) -> list[str]:
        """Say `executor` is alive; return the executors of this generation silent for `stale_after` seconds that
        this call took charge of. Taking charge re-arms their row, so for the next `stale_after` no other replica
        acts on them: one replica resumes a dead one's work, not all of them."""
        await self._execute("INSERT INTO app_executors (executor_id, generation) VALUES ($1, $2) "
                            "ON CONFLICT (executor_id) DO UPDATE SET beat_at = now()", executor, generation)
        rows = await self._fetch(
            "UPDATE app_executors SET beat_at = now() WHERE executor_id <> $1 AND generation = $2 "
            "AND beat_at < now() - make_interval(secs => $3) RETURNING executor_id", executor, generation,
            float(stale_after))
        return [str(row["executor_id"]) for row in rows]

    async def forget_executor(self, executor: str) -> None:
        await self._execute("DELETE FROM app_executors WHERE executor_id = $1", executor)

    async def retire_executor(self, executor: str) -> None:
        """A replica stopping cleanly: its row is made as old as can be, so a live one resumes its work at its
        next beat instead of waiting for it to look dead."""
        await self._execute("UPDATE app_executors SET beat_at = 'epoch' WHERE executor_id = $1", executor)
