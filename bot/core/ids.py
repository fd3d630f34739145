"""The ID grammar: what RunPod accepts as an endpoint or job ID, plus a length bound."""

from __future__ import annotations

import re

MAX_ID_LENGTH = 128
ID_RE = re.compile(rf"[A-Za-z0-9_-]{{1,{MAX_ID_LENGTH}}}")


def id_problem(value: str) -> str | None:
    """Why `value` is not a valid endpoint or job ID, in plain words; None when it is valid."""
    if not value:
        return "it is empty"
    if len(value) > MAX_ID_LENGTH:
        return f"it is {len(value)} characters long; IDs are at most {MAX_ID_LENGTH}"
    if ID_RE.fullmatch(value):
        return None
    bad = sorted({ch for ch in value if not ID_RE.fullmatch(ch)})
    shown = ", ".join(_CHARACTER_NAMES.get(ch, repr(ch)) for ch in bad[:5])
    return f"it contains {shown}; only letters, digits, '-' and '_' are allowed"


# Characters a reader cannot see when quoted ("it contains ' '"), by name.
_CHARACTER_NAMES = {" ": "a space", "\t": "a tab", "\n": "a line break", "\r": "a line break",
                    "\u00a0": "a non-breaking space", "\u200b": "an invisible space"}


def is_valid_id(value: str) -> bool:
    return ID_RE.fullmatch(value) is not None


def shorten(value: str, limit: int = 40) -> str:
    """An untrusted value cut down for quoting back to a user."""
    return value if len(value) <= limit else value[: limit - 1] + "…"
