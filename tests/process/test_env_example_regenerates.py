"""Issue 18: the regenerate line `.env.example` documents runs as written from a fresh checkout (it used to name a
module that no longer exists and fail with ModuleNotFoundError), and regenerates the file unchanged."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_the_documented_regenerate_command_works_from_a_fresh_checkout(tmp_path: Path) -> None:
    checkout = tmp_path / "checkout"
    shutil.copytree(ROOT / "bot", checkout / "bot", ignore=shutil.ignore_patterns("__pycache__"))
    for name in ("README.md", ".env.example"):
        shutil.copy(ROOT / name, checkout / name)
    before = {name: (checkout / name).read_text(encoding="utf-8") for name in ("README.md", ".env.example")}
    [line] = [ln for ln in before[".env.example"].splitlines() if ln.startswith("# Regenerate with:")]
    command = line.removeprefix("# Regenerate with:").strip()
    # `python` is this interpreter; nothing else of this tree is on the path (no PYTHONPATH): a fresh checkout.
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "python").symlink_to(sys.executable)
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env["PATH"] = f"{bin_dir}{os.pathsep}{env.get('PATH', '')}"

    done = subprocess.run(["bash", "-c", command], cwd=checkout, env=env, capture_output=True, text=True,
                          timeout=120, check=False)

    assert done.returncode == 0, done.stderr
    assert "ModuleNotFoundError" not in done.stderr
    after = {name: (checkout / name).read_text(encoding="utf-8") for name in before}
    assert after == before, "the generated files were current, so regenerating changes nothing"
