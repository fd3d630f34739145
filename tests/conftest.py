"""Shared fixtures, and each test's tier marker, given by the folder it is in."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

# The stand-ins, the app (testkit/fixtures.py) and PostgreSQL (testkit/pg.py): pg_server (one per session, so one
# per xdist worker) and pg_url (a fresh database per test).
pytest_plugins = ["testkit.fixtures", "testkit.pg"]


# ---- tiers: what a test starts decides its folder, and its folder its marker -----------------------------

HERE = Path(__file__).resolve().parent
TIERS = {
    "unit": "unit",            # pure functions and single classes, fakes at their edges: `pytest -m unit`
    "app": "app",              # the app in-process against the loopback stand-ins
    "stand_ins": "app",        # the stand-ins' own tests: loopback servers, no app
    "process": "process",      # real processes: python -m bot, replicas, PostgreSQL
    "limits": "limits",        # the platforms' real limits, at their real rates
}


# How many xdist workers `-n auto` (pyproject's addopts) starts. The app, process and limits tiers mostly wait on
# sockets and timers, not on the CPU, so they run six at a time even on two cores (on this 2-core machine, the
# whole suite: four workers 4 min 38 s; six 4 min 11 s; eight 3 min 47 s, but beside a CPU-bound process eight
# starved the kill -9 and takeover tests past their waits, twice in two runs). The unit tier is CPU-bound and
# done in seconds: starting workers would cost more than they save, so a run of only unit tests gets none.
# PYTEST_XDIST_AUTO_NUM_WORKERS=n overrides, and `-n 0` (or `-p no:xdist`) runs everything in one process.
WORKERS = 6


def pytest_xdist_auto_num_workers(config: pytest.Config) -> int | None:
    if os.environ.get("PYTEST_XDIST_AUTO_NUM_WORKERS"):
        return None  # xdist's own hook reads it
    only_units = config.option.markexpr.strip() == "unit" or (
        bool(config.args) and all(_folder(Path(arg.split("::")[0])) == "unit" for arg in config.args))
    return 0 if only_units else WORKERS


def _folder(path: Path) -> str:
    """The tier folder a path is in ("" outside tests/)."""
    try:
        parts = path.resolve().relative_to(HERE).parts
    except ValueError:
        return ""
    return parts[0] if parts else ""


# The longest tests go out first, so that they run beside the many short ones instead of alone at the end: the chaos
# run (minutes, one worker: its invariants share one run), then the real-limits tier, then real processes.
FIRST = ("chaos", "limits", "process")


def _order(item: pytest.Item) -> int:
    return next((i for i, name in enumerate(FIRST) if item.get_closest_marker(name)), len(FIRST))


def pytest_ignore_collect(collection_path: Path, config: pytest.Config) -> bool | None:
    """`pytest -m unit` (the inner loop) does not import the other tiers only to deselect them: their modules pull in
    the whole app and the stand-ins, seconds of collection the loop would wait on every time."""
    if config.option.markexpr.strip() != "unit":
        return None
    folder = _folder(collection_path)
    return True if folder and folder != "unit" and folder in TIERS else None


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        folder = _folder(item.path)
        if folder not in TIERS:
            raise pytest.UsageError(f"{item.nodeid}: a test lives in a tier's folder ({', '.join(TIERS)})")
        item.add_marker(TIERS[folder])
    items.sort(key=_order)  # stable: within a rank, the files' own order
