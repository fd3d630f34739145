"""Slack's pace shared by every replica: each replica takes its turn to call Slack in a lane (a channel's posts, a
method tier) from one row per lane, so three replicas together send at Slack's pace instead of each at it (three
times too fast: 429s, and lanes paused for Retry-After).

A turn is reserved with one statement (the generic cell rate algorithm): the row holds the lane's theoretical
arrival time, which each reservation moves on by one interval; a caller whose turn is ahead sleeps until then. A 429
moves it past the Retry-After, for every replica. PostgreSQL's clock decides, so replicas' clocks never have to agree.

PostgreSQL only: on SQLite there is one process, and its own buckets pace it (bot/infra/ratelimit.py)."""

from __future__ import annotations

from typing import Any

_NOW = "extract(epoch from clock_timestamp())"


class LocalPace:
    """One process (SQLite): nothing to share."""

    shares_pace = False

    async def pace(self, lane: str, interval: float, burst: float) -> float:
        return 0.0

    async def pace_pause(self, lane: str, seconds: float, interval: float, burst: float) -> None:
        return None


class PostgresPace:
    shares_pace = True

    async def _fetchval(self, sql: str, *args: Any) -> Any:
        raise NotImplementedError

    async def _execute(self, sql: str, *args: Any) -> None:
        raise NotImplementedError

    async def pace(self, lane: str, interval: float, burst: float) -> float:
        """Reserve this replica's next call in `lane` (at most one per `interval` seconds, `burst` at once after a
        quiet spell, across every replica); returns how many seconds to wait before making it."""
        wait = await self._fetchval(
            f"INSERT INTO slack_pace (lane, tat) VALUES ($1, {_NOW} + $2) ON CONFLICT (lane) DO UPDATE"
            f" SET tat = greatest(slack_pace.tat, {_NOW}) + $2 RETURNING tat - $3 - {_NOW}",
            lane, float(interval), float(burst) * interval)
        return max(0.0, float(wait))

    async def pace_pause(self, lane: str, seconds: float, interval: float, burst: float) -> None:
        """Slack said wait (a 429): no replica's call in `lane` goes for `seconds`, and the burst is spent."""
        hold = float(seconds) + (float(burst) - 1.0) * interval
        await self._execute(
            f"INSERT INTO slack_pace (lane, tat) VALUES ($1, {_NOW} + $2) ON CONFLICT (lane) DO UPDATE"
            f" SET tat = greatest(slack_pace.tat, {_NOW} + $2)", lane, hold)
