"""The durable-execution engine: DBOS Transact, keeping its records in the app's own database.

Work that must survive a crash runs as a DBOS workflow: one function that reads top to bottom, whose steps are
checkpointed as they finish. After a crash it resumes after the last finished step: on the same process when it
starts again (SQLite, one instance), or on any live replica (PostgreSQL). Workflow IDs are idempotency keys: a
second start under the same ID (a webhook delivered twice, to two replicas) joins the first instead of running again.

DBOS's own service notices a dead replica and hands its workflows on; this app cannot rely on it, so each replica
beats in a table of its own (bot/store/executors.py) and the first live replica to see another silent asks DBOS to
resume that executor's workflows (`DBOS._recover_pending_workflows`, the same call DBOS makes at start-up for
itself). DBOS is one instance per process: one Engine per process, made by the runtime.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import secrets
import sqlite3
from collections.abc import Callable, Coroutine
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from bot.infra.timing import REAL, Timing
from bot.store import Store, StoreUnavailable, is_database_url

log = logging.getLogger(__name__)

# The workflows' step sequences, as DBOS records them. A replica resumes only workflows of its own generation, so
# this changes only when a workflow's steps change incompatibly (see the README's upgrade notes); it is not the
# package's version, which changes with every release. 2: auto_retry waits until its recorded time instead of a
# DBOS sleep, and checks and sends in one step.
GENERATION = "2"
# A replica taken for dead while it was only slow could act twice: never call one dead sooner than this.
MIN_STALE = 4.0
# DBOS runs each checkpoint and its own queries in a thread of its pool, unbounded by default: 200 workflows waking
# at once made 200 threads, which fought the event loop (and the store's thread) for the GIL and queued on DBOS's
# 20 database connections anyway. In the policy storm 20 threads left the last retry 0.4 s after its time, 4 and 8
# about 0.2 s; 8 keeps room for PostgreSQL, where checkpoints of several workflows do run at once.
THREADS = 8


def system_database_url(db: str) -> str:
    """Where DBOS keeps its records: PostgreSQL's own database (in schema `dbos`), or a SQLite file beside the
    app's (`runpod-retry.db` → `runpod-retry.db.engine`)."""
    if is_database_url(db):
        return "postgresql://" + db.split("://", 1)[1]
    return "sqlite:///" + os.path.abspath(db + ".engine")


def sqlite_engine_kwargs(db: str) -> dict[str, Any]:
    """DBOS's SQLite connections as the app's own (bot/store/sqlite.py): write-ahead log, and a commit waits for no
    disk flush (it survives the process dying, not the machine losing power). DBOS's defaults (a rollback journal,
    a flush per commit, a ping before each use) made every checkpoint cost about a millisecond of disk and let
    readers block the writer: a storm's 200 workflows queued behind each other's checkpoints."""
    path = os.path.abspath(db + ".engine")

    def connect() -> sqlite3.Connection:
        # DBOS's pool hands a connection from thread to thread; it sets its own isolation and busy timeout on top.
        conn = sqlite3.connect(path, check_same_thread=False)
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=NORMAL")
        return conn

    return {"creator": connect, "pool_pre_ping": False}


class Engine:
    """DBOS, launched in the app's event loop (so resumed workflows run there) and stopped with the app."""

    def __init__(self, db: str, store: Store, timing: Timing = REAL, *, executor: str | None = None):
        self.db = db
        self.store = store
        self.timing = timing
        # SQLite: one process, always "local", so a restart resumes what the last run left. PostgreSQL: one per
        # process start, never reused: a dead replica's workflows are then told apart from the live ones'.
        self.executor = executor or ("replica-" + secrets.token_hex(6) if store.shared else "local")
        self.stale_after = max(timing.executor_stale, MIN_STALE)
        self.resumed = 0  # workflows this replica resumed for dead ones (for /healthz and tests)
        self._beats: asyncio.Task[None] | None = None
        self._launched = False

    async def open(self) -> None:
        """Launch DBOS. Its recovery of this executor's unfinished workflows starts them on this loop."""
        from dbos import DBOS  # loaded only by an app that has durable work to run

        config: Any = {
            "name": "runpod-retry",
            "system_database_url": system_database_url(self.db),
            "executor_id": self.executor,
            "application_version": GENERATION,
            "log_level": "WARNING",
            "notification_listener_polling_interval_sec": min(1.0, self.timing.auto_poll),
            "max_executor_threads": THREADS,
        }
        if not is_database_url(self.db):
            config["db_engine_kwargs"] = sqlite_engine_kwargs(self.db)
        pause = self.timing.outbox_store_pause
        while True:
            DBOS(config=config)
            try:
                DBOS.launch()
                break
            except Exception as exc:
                # A failed launch leaves DBOS half made, and a second launch() would silently do nothing.
                await asyncio.to_thread(DBOS.destroy)
                log.error("the durable-work engine could not reach the database (%s); trying again",
                          type(exc).__name__)
                await asyncio.sleep(pause)
                pause = min(pause * 2, 10 * self.timing.outbox_store_pause)
        self._launched = True
        _quiet_dbos_logs()
        if self.store.shared:
            self._beats = asyncio.create_task(self._beat(), name="engine heartbeat")

    async def start(self, workflow_id: str, workflow: Callable[..., Coroutine[Any, Any, Any]], *args: Any) -> None:
        """Start `workflow(*args)` under `workflow_id`, or join the one already started under it."""
        from dbos import DBOS, SetWorkflowID

        if not self._launched:
            # Stopping: the caller's work stays accepted (a webhook stays in the inbox) and starts this workflow
            # on the next start, under the same ID.
            raise asyncio.CancelledError(f"the engine is stopped; {workflow_id} starts on the next start")
        with SetWorkflowID(workflow_id):
            await DBOS.start_workflow_async(workflow, *args)

    async def _beat(self) -> None:
        """Say this replica is alive; resume the workflows of replicas that went silent."""
        from dbos import DBOS

        alive_since: float | None = None  # our own beats went through continuously since then
        loop = asyncio.get_running_loop()
        while True:
            try:
                silent = await self.store.beat(self.executor, GENERATION, self.stale_after)
                alive_since = alive_since if alive_since is not None else loop.time()
                # After a database outage every replica's row looks old: only a replica whose own beats have gone
                # through for a whole stale period may call another dead.
                if loop.time() - alive_since >= self.stale_after:
                    for executor in silent:
                        handles = await asyncio.to_thread(DBOS._recover_pending_workflows, [executor])
                        self.resumed += len(handles)
                        if handles:
                            log.warning("replica %s stopped beating; resumed its %d unfinished workflows here",
                                        executor, len(handles))
                        left = await DBOS.list_workflows_async(status="PENDING", executor_id=executor,
                                                               load_input=False, limit=1)
                        if not left:  # a workflow of another generation waits for a replica of that generation
                            await self.store.forget_executor(executor)
            except StoreUnavailable as exc:
                alive_since = None
                log.warning("could not say this replica is alive: %s", exc)
            except asyncio.CancelledError:
                raise
            except Exception:
                alive_since = None
                log.exception("could not check which replicas are alive")
            await asyncio.sleep(self.timing.executor_beat)

    async def close(self) -> None:
        """Stop DBOS. Workflows cut off here resume on the next start, or at once on a live replica."""
        if self._beats is not None:
            self._beats.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._beats
        if not self._launched:
            return
        from dbos import DBOS, _dbos

        self._launched = False
        instance = _dbos._dbos_global_instance
        # DBOS retries a lost database forever, in its own threads, and the process cannot exit before they end: a
        # step finishing during shutdown while the database is away would hold the exit for good. From now on a
        # database error ends such a write (the workflow resumes from its last checkpoint elsewhere or next start).
        sys_db = getattr(instance, "_sys_db_field", None)
        if sys_db is not None:
            sys_db._retry_connection_errors = False
        # Workflows are tasks on this loop; DBOS's destroy() does not cancel them (checked on dbos 3.4).
        tasks = list(getattr(instance, "_workflow_tasks", ()) or ())
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.wait(tasks, timeout=1.0)
        await asyncio.to_thread(DBOS.destroy)
        # DBOS made its thread pool the loop's default one and has shut it down: later to_thread calls need another.
        asyncio.get_running_loop().set_default_executor(ThreadPoolExecutor())
        if self.store.shared:
            with contextlib.suppress(Exception):
                await self.store.retire_executor(self.executor)


def _quiet_dbos_logs() -> None:
    """DBOS logs through its own console handler; the app's handler (one line each, secrets scrubbed) takes over."""
    dbos_log = logging.getLogger("dbos")
    dbos_log.handlers.clear()
    dbos_log.propagate = True
    dbos_log.setLevel(logging.WARNING)


__all__ = ["GENERATION", "THREADS", "Engine", "sqlite_engine_kwargs", "system_database_url"]
