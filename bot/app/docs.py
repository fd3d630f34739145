"""Keeps the generated parts of README.md and .env.example in step with the code: the settings table from
bot/infra/config.py, the code-layout table from each package's and module's docstring, and the picture of a bulk
retry from the real message builders.

Run `python -m bot.app.docs` after changing either; a test fails while the README is behind.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path
from typing import Any

from bot.core import messages
from bot.core.answers import RunPodHTTPError, RunPodReply
from bot.core.groups import JobResult, Tally, failed_again, unknown_jobs
from bot.core.outcome import classify_retry
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


_EMOJI = {":white_check_mark:": "✅", ":red_circle:": "🔴", ":hourglass_flowing_sand:": "⏳", ":warning:": "⚠️",
          ":grey_question:": "❔", ":arrows_counterclockwise:": "🔄", ":clock3:": "🕒", ":no_entry_sign:": "🚫"}
_PICTURE_USER = "U0DANA"


def _as_text(msg: dict[str, Any], indent: str = "") -> list[str]:
    """A message as a reader sees it, in plain text: what the README's pictures show."""
    lines: list[str] = []
    for block in msg["blocks"]:
        texts = [block["text"]["text"]] if "text" in block else [e["text"] for e in block.get("elements", [])]
        for text in texts:
            for emoji, shown in _EMOJI.items():
                text = text.replace(emoji, shown)
            text = text.replace(f"<@{_PICTURE_USER}>", "@dana").replace("*", "").replace("```", "")
            lines.extend(indent + line for line in text.splitlines() if line.strip())
    return lines


def bulk_picture() -> str:
    """A bulk retry with every kind of row, drawn by the real message builders (messages.bulk_parent and
    messages.bulk_summary), for the README."""
    ep = "abc123xyz4567"

    def requeued(job: str) -> JobResult:
        return JobResult.of(classify_retry(ep, job, RunPodReply(200, {"id": job, "status": "IN_QUEUE"}, 0.2)))

    def error(job: str, status: int, body: str, probe: RunPodReply | RunPodHTTPError) -> JobResult:
        return JobResult.of(classify_retry(ep, job, RunPodHTTPError(body, op="retry", status=status,
                                                                    body_excerpt=body), probe))

    results = [requeued("job-1"), requeued("job-2"), requeued("job-7"), requeued("job-9"), requeued("job-11"),
               error("job-12", 404, "request does not exist", RunPodHTTPError("404", op="status", status=404)),
               error("job-13", 502, "502 Bad Gateway", RunPodHTTPError("502", op="status", status=502)),
               JobResult("job-14", "refused:budget", detail="Retry limit reached (3 retries per job per hour); "
                                                            "next allowed at 04:02 UTC.")]
    finals = {"job-1": "COMPLETED", "job-2": "COMPLETED", "job-7": "FAILED", "job-11": "CANCELLED"}
    jobs = [r.job for r in results]
    by_job = {r.job: r for r in results}
    tally = Tally.of(jobs, by_job, finals)
    parent = messages.bulk_parent(_PICTURE_USER, ep, tally, failed_again(jobs, by_job, finals),
                                  unknown=unknown_jobs(jobs, by_job))
    summary, _ = messages.bulk_summary(ep, results, f"runpod-retry-{ep}-{len(results)}-jobs.json", finals=finals)
    lines = _as_text(parent)
    lines[1:] = ["   " + line for line in lines[1:]]
    summary_lines = _as_text(summary, "      ")
    summary_lines[0] = "   └─ " + summary_lines[0].lstrip()
    mention = _as_text(messages.bulk_failed_again(_PICTURE_USER, ep, "job-7", "torch.OutOfMemoryError: CUDA out of "
                                                                              "memory"), "      ")
    mention[0] = "   └─ " + mention[0].lstrip()
    return "```\n" + "\n".join(lines + summary_lines + mention) + "\n```"


def _replace(text: str, name: str, block: str) -> str:
    start, end = f"<!-- {name}:start -->", f"<!-- {name}:end -->"
    return re.sub(re.escape(start) + r".*?" + re.escape(end), lambda _: f"{start}\n{block}\n{end}", text,
                  flags=re.S)


def render_readme(text: str) -> str:
    text = _replace(_replace(text, "settings-table", settings_table()), "layout-table", layout_table())
    return _replace(text, "bulk-picture", bulk_picture())


def main(root: Path = Path(".")) -> None:
    readme = root / "README.md"
    readme.write_text(render_readme(readme.read_text(encoding="utf-8")), encoding="utf-8")
    (root / ".env.example").write_text(env_example(), encoding="utf-8")


if __name__ == "__main__":
    main()
