"""The README and .env.example document every setting, exactly as bot/infra/config.py defines them."""

from __future__ import annotations

from pathlib import Path

from bot.app.docs import render_readme
from bot.infra.config import SETTINGS, env_example

ROOT = Path(__file__).resolve().parents[3]


def test_readme_settings_table_is_current():
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    assert render_readme(readme) == readme, "run `python -m bot.app.docs` to regenerate the settings table"
    for setting in SETTINGS:
        assert f"`{setting.name}`" in readme


def test_env_example_is_current_and_lists_every_setting():
    text = (ROOT / ".env.example").read_text(encoding="utf-8")
    assert text == env_example(), "run `python -m bot.app.docs` to regenerate .env.example"
    names = {line.split("=", 1)[0] for line in text.splitlines() if line and not line.startswith("#")}
    assert names == {s.name for s in SETTINGS}


def test_readme_shows_the_two_commands_a_newcomer_needs():
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    assert "python -m pip install . && python -m bot" in readme
    assert "python -m pip install -e '.[test]' && pytest" in readme
