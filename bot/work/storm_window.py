"""Which failures of an endpoint make one grouped alert: its failures within the storm window, counted until the
threshold is reached, then the storm that collects the next ones. With a shared store, a storms-table row per
endpoint keeps its failures in the window and its open storm, read and written under the endpoint's lock, so every
replica groups as one would."""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import asdict

from bot.core.groups import Storm, StormJob
from bot.infra.config import Settings
from bot.store import Store

log = logging.getLogger(__name__)

MEMORY_SECONDS = 24 * 3600.0
# The storms-table row of an endpoint's window (shared store only), under this prefix and the endpoint's ID.
WINDOW = "window:"


class StormWindow:
    """The storms this replica knows, and for each endpoint its failures before a storm and the storm collecting
    them."""

    def __init__(self, store: Store, settings: Settings, forgotten: Callable[[str], object]):
        self.store = store
        self.settings = settings
        self.recent: dict[str, dict[str, StormJob]] = {}  # endpoint -> its failures in the window, before a storm
        self.open: dict[str, Storm] = {}                  # endpoint -> the storm collecting its failures
        self.storms: dict[str, Storm] = {}                # storm key -> storm, for the buttons
        self.forgotten = forgotten  # a storm left memory (`forget_old`): whatever else was kept for it goes too

    @asynccontextmanager
    async def shared(self, endpoint: str, storm_key: str | None = None) -> AsyncIterator[None]:
        """Alone: nothing. With a shared store: the endpoint's storm lock, holding the window and storms as the
        database has them (another replica may have changed them since)."""
        if not self.store.shared:
            yield
            return
        async with self.store.lock(f"storm:{endpoint}"):
            data = await self.store.load_storm(WINDOW + endpoint)
            window = json.loads(data) if data else {}
            self.recent[endpoint] = {job: StormJob(**f) for job, f in (window.get("recent") or {}).items()}
            for key in {k for k in (window.get("open"), storm_key) if k}:
                await self.refresh(key)
            opened = self.storms.get(window.get("open") or "")
            if opened is not None:
                self.open[endpoint] = opened
            else:
                self.open.pop(endpoint, None)
            yield

    async def refresh(self, key: str) -> Storm | None:
        """The storm as the store has it, merged into this replica's copy (kept: a Retry all may share it)."""
        data = await self.store.load_storm(key)
        if data is None:
            return self.storms.get(key)
        stored = Storm.from_json(data)
        mine = self.storms.get(key)
        if mine is None:
            self.storms[key] = mine = stored
        else:
            mine.merge(stored)
        return mine

    async def persist(self, endpoint: str) -> None:
        opened = self.open.get(endpoint)
        recent = {job: asdict(f) for job, f in self.recent.get(endpoint, {}).items()}
        await self.store.save_storm(WINDOW + endpoint, json.dumps({"window": endpoint, "recent": recent,
                                                                   "open": opened.key if opened else None}))
        if opened is not None:
            await self.store.save_storm(opened.key, opened.to_json())

    def collecting(self, endpoint: str, now: float) -> Storm | None:
        storm = self.open.get(endpoint)
        if storm is not None and not storm.is_open(now, self.settings.storm_window):
            del self.open[endpoint]
            return None
        return storm

    def count(self, endpoint: str, channel: str, job: str, failure: StormJob) -> Storm | None:
        """Remember the failure; a new storm once the threshold is reached within the window."""
        seen = self.recent.setdefault(endpoint, {})
        for old in [j for j, f in seen.items() if failure.at - f.at > self.settings.storm_window]:
            del seen[old]
        if job in seen or len(seen) + 1 < self.settings.storm_threshold:
            seen.setdefault(job, failure)
            return None
        self.recent[endpoint] = {}
        self.forget_old(failure.at)
        storm = Storm(endpoint, channel, started=failure.at, last_at=failure.at, jobs=dict(seen), singles=len(seen))
        self.open[endpoint] = storm
        self.storms[storm.key] = storm
        log.warning("%d jobs of endpoint %s failed within %.0f s: grouping their failures into one alert",
                    len(seen) + 1, endpoint, self.settings.storm_window)
        return storm

    def forget_old(self, now: float) -> None:
        """Storms idle for a day leave memory (RunPod forgot their jobs long ago); the store keeps them."""
        for key, storm in list(self.storms.items()):
            if now - storm.last_at > MEMORY_SECONDS and not storm.running:
                del self.storms[key]
                self.forgotten(key)
