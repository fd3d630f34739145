"""A failed job's `error`, as the worker put it, turned into one line a person can read at a glance.

Most RunPod workers are Python. Their `error` is one of:
- runpod-python's JSON string: `{"error_type": "<class 'KeyError'>", "error_message": "'prompt'",
  "error_traceback": "Traceback (most recent call last): …", "hostname": …, "worker_id": …}`;
- a whole traceback as plain text, whose cause is its exception line, near the end, not its first line;
- a plain sentence.
Pure: text (or JSON) in, words out.
"""

from __future__ import annotations

import json
import re
from collections import Counter
from collections.abc import Iterable
from typing import Any

SUMMARY_CHARS = 200          # a summary at most this long (a notification cuts it shorter)
FAMILY_CHARS = 120           # what failures are grouped by, at most this long
MAX_DETAILS_CHARS = 8000     # the whole error, kept for the thread; a longer one keeps its end (where the cause is)

_CLASS = re.compile(r"<class '([\w.]+)'>")
_FRAME = re.compile(r'^\s+File "')
_TRACEBACK = "Traceback (most recent call last):"
_CUT = re.compile(r"^… \(\d+ earlier lines? cut\)$")
# runpod-python's keys, read one by one from a string that may have been cut short (and is no JSON any more).
_JSON_FIELD = r'"{name}"\s*:\s*"((?:[^"\\]|\\.)*)"'


def _unescaped(raw: str) -> str:
    try:
        return str(json.loads(f'"{raw}"'))
    except ValueError:
        return raw


def _runpod_fields(error: Any) -> dict[str, str] | None:
    """runpod-python's error fields, from its JSON (a string, or already a dict); None for any other error."""
    data: Any = error
    if isinstance(error, str):
        text = error.strip()
        if not text.startswith("{"):
            return None
        try:
            data = json.loads(text)
        except ValueError:
            # Cut short somewhere upstream: its first fields (type, message) usually survive.
            found = {name: _unescaped(m.group(1)) for name in ("error_type", "error_message", "error_traceback",
                                                               "worker_id")
                     if (m := re.search(_JSON_FIELD.format(name=name), text))}
            return found if "error_type" in found or "error_message" in found else None
    if not isinstance(data, dict) or not ("error_type" in data or "error_message" in data):
        return None
    return {k: str(v) for k, v in data.items() if isinstance(v, str | int | float) and not isinstance(v, bool)}


def _as_text(error: Any) -> str:
    if isinstance(error, str):
        if not error.lstrip().startswith("{"):
            return error
        try:
            parsed = json.loads(error)
        except ValueError:  # cut short: its message field, when it survived
            said = next((m.group(1) for name in ("message", "error", "detail")
                         if (m := re.search(_JSON_FIELD.format(name=name), error))), None)
            return _unescaped(said) if said else error
        return _as_text(parsed) if isinstance(parsed, dict) else error
    if isinstance(error, dict):
        for name in ("message", "error", "detail"):
            if isinstance(error.get(name), str) and error[name].strip():
                return str(error[name])
    return json.dumps(error, ensure_ascii=False)


def _pretty(error: Any) -> str:
    """Any other error as readable text: JSON indented, text as it is."""
    data = error
    if isinstance(error, str):
        try:
            data = json.loads(error) if error.lstrip().startswith(("{", "[")) else error
        except ValueError:
            data = error
    return data.strip() if isinstance(data, str) else json.dumps(data, ensure_ascii=False, indent=2)


def is_runpod_error(error: Any) -> bool:
    """runpod-python's JSON error (whole or cut short)."""
    return _runpod_fields(error) is not None


def _cut(text: str, limit: int) -> str:
    """`text` within `limit` characters, cut at a word where one is near, marked with "…"."""
    if len(text) <= limit:
        return text
    head = text[: limit - 1]
    space = head.rfind(" ")
    if space >= limit * 2 // 3:
        head = head[:space]
    return head.rstrip(" ,;:.") + "…"


def _one_line(text: str) -> str:
    return _CLASS.sub(r"\1", " ".join(text.split()))


def _exception_line(lines: list[str]) -> str | None:
    """The exception a traceback ends with: the first unindented line after its last frame. A message that goes on
    over several lines (torch's CUDA errors do) is read from its first line, which names the error."""
    frames = [i for i, line in enumerate(lines) if _FRAME.match(line)]
    if not frames:
        headers = [i for i, line in enumerate(lines) if line.strip() == _TRACEBACK]
        if not headers:
            return None
        frames = [headers[-1]]
    after = [line for line in lines[frames[-1] + 1:] if line.strip() and not line[:1].isspace()]
    if not after:
        return None
    first = after[0].strip()
    if first.endswith(":") and len(after) > 1:  # "SomeError:" with its message on the next line
        first = f"{first} {after[1].strip()}"
    return first


def _meaningful(line: str) -> bool:
    text = line.strip()
    return (bool(text) and not text.startswith(_TRACEBACK) and not _CUT.match(text)
            and any(c.isalnum() for c in text))


def error_summary(error: Any, limit: int = SUMMARY_CHARS) -> str | None:
    """One line saying what went wrong: `KeyError: 'prompt'`, `torch.OutOfMemoryError: CUDA out of memory. …`.
    None when the job carried no error."""
    if error is None or error == "" or error == {}:
        return None
    fields = _runpod_fields(error)
    if fields is not None:
        kind = _CLASS.sub(r"\1", fields.get("error_type", "")).strip()
        said = next((line.strip() for line in fields.get("error_message", "").splitlines() if line.strip()), "")
        if not said and fields.get("error_traceback"):
            return error_summary(fields["error_traceback"], limit)
        if kind and said:
            return _cut(_one_line(f"{kind}: {said}"), limit)
        return _cut(_one_line(kind or said), limit) or None
    lines = _as_text(error).strip().splitlines()
    line = _exception_line(lines) or next((line for line in reversed(lines) if _meaningful(line)), None)
    return _cut(_one_line(line), limit) if line else None


def error_details(error: Any) -> str | None:
    """The whole error, readable, for a thread: runpod-python's traceback as lines (not one escaped JSON string),
    with the worker it ran on; a plain error as it was. None when the summary already says everything."""
    if error is None or error == "":
        return None
    fields = _runpod_fields(error)
    if fields is not None:
        trace = fields.get("error_traceback", "").strip()
        worker = ", ".join(f"{label} {fields[name]}" for name, label in (
            ("worker_id", "worker"), ("hostname", "host"), ("runpod_version", "runpod-python"))
            if fields.get(name))
        text = "\n".join(part for part in (f"Reported by {worker}." if worker else "",
                                           trace or error_summary(error, 10**6) or "") if part)
    else:
        text = _pretty(error)
        if len(text.splitlines()) <= 1 and error_summary(text) == text:
            return None
    if len(text) > MAX_DETAILS_CHARS:
        lines, size = text.splitlines(), 0
        kept: list[str] = []
        for line in reversed(lines):
            if size + len(line) + 1 > MAX_DETAILS_CHARS - 40:
                break
            kept.insert(0, line)
            size += len(line) + 1
        text = (f"… ({len(lines) - len(kept)} earlier lines cut)\n" + "\n".join(kept)) if kept \
            else "…" + text[-(MAX_DETAILS_CHARS - 1):]
    return text


def error_family(summary: str) -> str:
    """What failures are grouped by: the summary's first sentence, so the same out-of-memory error with other
    sizes in its message counts as one ("torch.OutOfMemoryError: CUDA out of memory.")."""
    end = re.search(r"[.!?](?=\s)", summary)
    family = summary[: end.end()] if end else summary
    return _cut(family, FAMILY_CHARS)


def common_errors(summaries: Iterable[str], n: int = 3) -> list[tuple[str, int]]:
    """The `n` most common errors with their counts, grouped by family: a family whose members all read the same
    is shown whole; one whose messages differ is shown by its first sentence and "…"."""
    members: dict[str, Counter[str]] = {}
    for summary in summaries:
        members.setdefault(error_family(summary), Counter())[summary] += 1
    ranked = sorted(members.items(), key=lambda item: -sum(item[1].values()))[:n]
    shown = []
    for family, seen in ranked:
        label = next(iter(seen)) if len(seen) == 1 else (family if family.endswith("…") else f"{family} …")
        shown.append((label, sum(seen.values())))
    return shown
