"""Shared fixtures, and each test's tier marker, given by the folder it is in."""

from __future__ import annotations

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


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        folder = item.path.resolve().relative_to(HERE).parts[0]
        if folder not in TIERS:
            raise pytest.UsageError(f"{item.nodeid}: a test lives in a tier's folder ({', '.join(TIERS)})")
        item.add_marker(TIERS[folder])
