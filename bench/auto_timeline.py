"""Where an automatic retry's time goes between its failure webhook and its `/retry` at RunPod, read from what the
app stored (its outbox, and the durable engine's records of each workflow and step) once a storm is over."""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass, field
from pathlib import Path

from bench.one_channel import pct

STAGES = (
    ("alert", "webhook → its alert queued"),
    ("workflow", "webhook → its workflow's first step started"),
    ("checked", "webhook + delay → woke and checked: its attempt recorded as sent (the last write before the call)"),
    ("retry", "recorded as sent → `/retry` at RunPod"),
)


@dataclass
class Timeline:
    stages: dict[str, list[float]] = field(default_factory=dict)  # per stage, one value per job seen
    error: str = ""                                               # why the records could not be read

    def row(self, key: str) -> tuple[int, float, float, float]:
        values = self.stages.get(key) or [float("nan")]
        return len(self.stages.get(key, [])), pct(values, 0.5), pct(values, 0.99), max(values)


def timeline(db: Path, sent: dict[str, float], retried: dict[str, float], delay: float,
             wall_minus_mono: float) -> Timeline:
    """`sent`: when each job's webhook left (monotonic); `retried`: its first `/retry` at RunPod (monotonic)."""
    out = Timeline({key: [] for key, _ in STAGES})

    try:
        with sqlite3.connect(f"file:{db}?mode=ro", uri=True) as conn:
            queued = conn.execute("SELECT payload, created FROM outbox ORDER BY id").fetchall()
            # The send step's own record is written when it ends, which waits for the alert to be in Slack; the
            # attempt's `sent` record is written after the step's checks, right before the call.
            recorded = dict(conn.execute("SELECT job, MIN(at) FROM auto_results WHERE result = 'sent' AND attempt = 1"
                                         " GROUP BY job").fetchall())
        with sqlite3.connect(f"file:{db}.engine?mode=ro", uri=True) as conn:
            steps = conn.execute("SELECT workflow_uuid, started_at_epoch_ms FROM operation_outputs"
                                 " WHERE workflow_uuid LIKE 'auto:%' ORDER BY function_id").fetchall()
    except sqlite3.Error as exc:
        out.error = str(exc)
        return out
    # The workflow's own created_at is stored in whole seconds on SQLite: its first step's start is to the ms.
    began_at: dict[str, float] = {}
    for uuid, started in steps:
        if started is not None:
            began_at.setdefault(str(uuid).split(":")[2], float(started))
    for job, at in sent.items():
        alert = next((created for payload, created in queued if job in str(payload)), None)
        if alert is not None:
            out.stages["alert"].append(float(alert) - wall_minus_mono - at)
        if job in began_at:
            out.stages["workflow"].append(began_at[job] / 1000.0 - wall_minus_mono - at)
        if job in recorded:
            checked = float(recorded[job]) - wall_minus_mono
            out.stages["checked"].append(checked - at - delay)
            if job in retried:
                out.stages["retry"].append(retried[job] - checked)
    return out


def timeline_lines(tl: Timeline) -> list[str]:
    if tl.error:
        return [f"(where the time goes could not be read: {tl.error})", ""]
    lines = ["Where the lateness goes, per job, from the app's own records (outbox, engine's workflows and steps):",
             "", "| stage | jobs | p50 | p99 | max |", "| --- | --- | --- | --- | --- |"]
    for key, words in STAGES:
        n, p50, p99, top = tl.row(key)
        lines.append(f"| {words} | {n} | {p50:.2f} s | {p99:.2f} s | {top:.2f} s |")
    return [*lines, ""]




def steps_of(db: Path, job: str) -> list[tuple[str, float | None, float | None]]:
    """A job's automatic-retry steps in order: (name, started, completed), wall clock seconds."""
    with sqlite3.connect(f"file:{db}.engine?mode=ro", uri=True) as conn:
        rows = conn.execute("SELECT function_name, started_at_epoch_ms, completed_at_epoch_ms FROM operation_outputs "
                            "WHERE workflow_uuid LIKE ? ORDER BY workflow_uuid, function_id",
                            (f"auto:%:{job}:%",)).fetchall()
    return [(str(name), None if s is None else s / 1000.0, None if c is None else c / 1000.0) for name, s, c in rows]


def around(db: Path, job: str, retry_wall: float) -> tuple[float | None, float | None]:
    """For the /retry that reached RunPod at `retry_wall`: when the send step that made it began (its checks come
    first) and when it finished (wall clock); None where the records lack it."""
    checked = done = None
    for name, started, completed in steps_of(db, job):
        if name == "send" and started is not None and started <= retry_wall:
            checked, done = started, completed
    return checked, done


__all__ = ["Timeline", "around", "steps_of", "timeline", "timeline_lines"]
