"""Keeps the generated parts of README.md and .env.example in step with bot/config.py."""

from __future__ import annotations

import re
from pathlib import Path

from bot.infra.config import env_example, settings_table

START, END = "<!-- settings-table:start -->", "<!-- settings-table:end -->"


def render_readme(text: str) -> str:
    block = f"{START}\n{settings_table()}\n{END}"
    return re.sub(re.escape(START) + r".*?" + re.escape(END), lambda _: block, text, flags=re.S)


def main(root: Path = Path(".")) -> None:
    readme = root / "README.md"
    readme.write_text(render_readme(readme.read_text(encoding="utf-8")), encoding="utf-8")
    (root / ".env.example").write_text(env_example(), encoding="utf-8")


if __name__ == "__main__":
    main()
