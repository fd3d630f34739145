"""Every retry-policy scenario of tests/app/test_auto_retry.py again, with the app and its durable-work engine on
PostgreSQL (a database of the test's own on the session's server) instead of SQLite."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.app import test_auto_retry as scenarios

globals().update({name: test for name, test in vars(scenarios).items() if name.startswith("test_")})
auto_app = scenarios.auto_app


@pytest.fixture
def auto_env(tmp_path: Path, pg_url: str) -> dict[str, str]:
    path = tmp_path / "policies.toml"
    path.write_text(scenarios.POLICIES)
    return {"RUNPOD_RETRY_POLICIES": str(path), "RUNPOD_RETRY_DB": pg_url}
