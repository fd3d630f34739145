"""Keeps the generated parts of README.md and .env.example in step with the code: the settings table from
bot/infra/config.py, the code-layout table from each package's and module's docstring.

Run `python -m bot.app.docs` after changing either; a test fails while the README is behind.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

from bot.infra.config import env_example, settings_table

PACKAGE = Path(__file__).resolve().parents[1]
# The layers, top to bottom, as pyproject.toml's import contracts enforce them.
LAYERS = ("app", "listeners", "work", "slack", "runpod", "store", "infra", "core")


def _docstring(path: Path) -> str:
    doc = ast.get_docstring(ast.parse(path.read_text(encoding="utf-8"))) or ""
    first_paragraph = doc.split("\n\n")[0]
    return " ".join(first_paragraph.split()).replace("|", "\\|")


def layout_table(package: Path = PACKAGE) -> str:
    """One row per layer (its package docstring), then one per module in it (the module's docstring)."""
    rows = ["| where | what it is |", "| --- | --- |"]
    for layer in LAYERS:
        folder = package / layer
        rows.append(f"| **`bot/{layer}/`** | **{_docstring(folder / '__init__.py')}** |")
        for path in sorted(folder.rglob("*.py")):
            if path.name == "__init__.py" and path.parent == folder:
                continue
            shown = path.parent if path.name == "__init__.py" else path
            rows.append(f"| `{shown.relative_to(package.parent).as_posix()}` | {_docstring(path)} |")
    return "\n".join(rows)


def _replace(text: str, name: str, block: str) -> str:
    start, end = f"<!-- {name}:start -->", f"<!-- {name}:end -->"
    return re.sub(re.escape(start) + r".*?" + re.escape(end), lambda _: f"{start}\n{block}\n{end}", text,
                  flags=re.S)


def render_readme(text: str) -> str:
    return _replace(_replace(text, "settings-table", settings_table()), "layout-table", layout_table())


def main(root: Path = Path(".")) -> None:
    readme = root / "README.md"
    readme.write_text(render_readme(readme.read_text(encoding="utf-8")), encoding="utf-8")
    (root / ".env.example").write_text(env_example(), encoding="utf-8")


if __name__ == "__main__":
    main()
