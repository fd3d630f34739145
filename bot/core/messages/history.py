"""`history` and the audit channel: past attempts, one line each."""

from __future__ import annotations

import time
from collections.abc import Iterable, Sequence
from typing import Any

from bot.core.messages.blocks import (
    JSON_CHUNK,
    MAX_SECTION_TEXT,
    Message,
    _chunks,
    clip,
    code,
    mention,
    message,
    plain,
    section,
)


def history_message(rows: Iterable[dict[str, Any]], limit: int) -> Message:
    rows = list(rows)
    if not rows:
        return message("No retry attempts recorded yet.", [section("No retry attempts recorded yet.")])
    lines = [f"{'when (UTC)':<11}  {'user':<11} {'channel':<11} {'how':<8} endpoint/job  {'outcome':<13} HTTP  "
             "job status or reason"]
    for row in rows:
        when = time.strftime("%m-%d %H:%M", time.gmtime(row["at"]))
        http = row.get("http_status") or "-"
        result = clip(plain(str(row.get("job_status") or row.get("detail") or "")), 120)
        lines.append(f"{when}  {row['user']:<11} {row['channel']:<11} {row['source']:<8} "
                     f"{row['endpoint']}/{row['job']}  {row['outcome']:<13} {http}  {result}")
    blocks = [section(f"*Last {len(rows)} retry attempts* (newest first, times UTC)")]
    blocks.extend(section(f"```{chunk}```") for chunk in _chunks("\n".join(lines), JSON_CHUNK)[:10])
    return message(f"Last {len(rows)} retry attempts", blocks)


def audit_text(entry: Any) -> str:
    """One attempt (an AuditEntry) as one line of the audit channel."""
    http = f" HTTP {entry.http_status}" if entry.http_status is not None else ""
    status = f" {entry.job_status}" if entry.job_status else ""
    return (f"{mention(entry.user)} · {entry.source} · {code(entry.endpoint)}/{code(entry.job)} · "
            f"{entry.outcome}{http}{status} · in <#{entry.channel}>")


def audit_lines(entries: Sequence[Any]) -> Message:
    """Several attempts, one line each, in as few sections as Slack's limits allow."""
    lines = [clip(audit_text(e), 500) for e in entries]
    sections: list[str] = []
    for line in lines:
        if sections and len(sections[-1]) + 1 + len(line) <= MAX_SECTION_TEXT:
            sections[-1] += "\n" + line
        else:
            sections.append(line)
    first = entries[0]
    text = f"{first.source} {first.endpoint}/{first.job}: {first.outcome}"
    if len(entries) > 1:
        text += f" (and {len(entries) - 1} more attempts)"
    return message(text, [section(chunk) for chunk in sections])
