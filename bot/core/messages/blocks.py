"""Block Kit building blocks and limits: sections, buttons, JSON in code blocks, times and mentions."""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from typing import Any

from bot.core.words import POLICY_ACTOR, without_dates

# Re-exported for the message modules; the vocabulary itself lives in bot.core.words.
from bot.core.words import count as count
from bot.core.words import slack_time as slack_time

Message = dict[str, Any]


MAX_BLOCKS = 50


MAX_SECTION_TEXT = 3000


MAX_HEADER_TEXT = 150


MAX_BUTTON_TEXT = 75


MAX_FALLBACK_TEXT = 3000  # far under Slack's 40,000: it is a notification preview


JSON_CHUNK = 2900         # escaped characters per code-block section, fences excluded


MAX_JSON_SECTIONS = 8     # past this much JSON, it goes into a file instead of the message


def escape(text: str) -> str:
    """Slack mrkdwn escaping: the three characters Slack treats as markup, and ``` (a zero-width space splits
    it) so text from RunPod can never close the code block it is shown in."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;").replace("```", "``\u200b`")


def clip(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def section(text: str) -> dict[str, Any]:
    return {"type": "section", "text": {"type": "mrkdwn", "text": clip(text, MAX_SECTION_TEXT)}}


def header(text: str) -> dict[str, Any]:
    return {"type": "header", "text": {"type": "plain_text", "text": clip(text, MAX_HEADER_TEXT), "emoji": True}}


def context(text: str) -> dict[str, Any]:
    return {"type": "context", "elements": [{"type": "mrkdwn", "text": clip(text, MAX_SECTION_TEXT)}]}


def fields(pairs: Sequence[tuple[str, str]]) -> dict[str, Any]:
    # A section takes at most 10 fields of at most 2000 characters.
    return {"type": "section",
            "fields": [{"type": "mrkdwn", "text": clip(f"*{k}*\n{v}", 2000)} for k, v in pairs[:10]]}


def button(text: str, action_id: str, value: str, *, style: str | None = None,
           confirm: dict[str, Any] | None = None) -> dict[str, Any]:
    element: dict[str, Any] = {"type": "button", "text": {"type": "plain_text", "text": clip(text, MAX_BUTTON_TEXT)},
                               "action_id": action_id, "value": value}
    if style:
        element["style"] = style
    if confirm:
        element["confirm"] = confirm
    return element


def confirm_dialog(title: str, text: str, yes: str, no: str = "Cancel") -> dict[str, Any]:
    return {"title": {"type": "plain_text", "text": clip(title, 100)},
            "text": {"type": "mrkdwn", "text": clip(text, 300)},
            "confirm": {"type": "plain_text", "text": clip(yes, 30)},
            "deny": {"type": "plain_text", "text": clip(no, 30)},
            "style": "primary"}


def message(text: str, blocks: list[dict[str, Any]]) -> Message:
    # The fallback text feeds notifications, where date tokens may show raw: keep their plain UTC fallback.
    return {"text": clip(without_dates(text), MAX_FALLBACK_TEXT), "blocks": blocks[:MAX_BLOCKS]}


def mention(user: str | None) -> str:
    """A Slack user as a mention; a retry policy (`policy:oom-once`) and someone outside Slack (`cli:dana`, from a
    terminal) by name."""
    if user and user.startswith(POLICY_ACTOR):
        return f"policy `{escape(user.removeprefix(POLICY_ACTOR))}`"
    if user and ":" in user:
        return f"`{escape(user)}`"
    return f"<@{user}>" if user else "someone"


def who(user: str | None, viewer: str | None) -> str:
    """The person as the viewer reads it: "you" when it is the viewer themself, else a mention."""
    return "you" if user and user == viewer else mention(user)


def permalink(workspace_url: str | None, channel: str, ts: str, thread_ts: str | None = None) -> str:
    """A link to a message (`ts`), opened in its thread when it is a reply. `workspace_url` is auth.test's `url`;
    without it, slack.com's own address, which Slack sends on to the reader's workspace."""
    root = (workspace_url or "https://slack.com/").rstrip("/")
    url = f"{root}/archives/{channel}/p{ts.replace('.', '')}"
    if thread_ts and thread_ts != ts:
        url += f"?thread_ts={thread_ts}&cid={channel}"
    return url


def link(url: str | None, label: str) -> str:
    """A mrkdwn link, or the bare label when there is no address."""
    return f"<{url}|{label}>" if url else label


def code(text: str) -> str:
    return f"`{escape(text)}`"


# ---------------------------------------------------------------- JSON


def render_json(body: Any) -> str:
    return json.dumps(body, indent=2, ensure_ascii=False, sort_keys=False)


def _chunks(text: str, size: int) -> list[str]:
    """Escaped text cut at line ends where possible, never inside an `&…;` entity."""
    escaped = escape(text)
    chunks: list[str] = []
    while escaped:
        if len(escaped) <= size:
            chunks.append(escaped)
            break
        cut = escaped.rfind("\n", 0, size)
        if cut <= 0:
            cut = size
            amp = escaped.rfind("&", cut - 5, cut)
            if amp != -1:
                cut = amp
        chunks.append(escaped[:cut])
        escaped = escaped[cut:].lstrip("\n")
    return chunks


def json_sections(body: Any, max_sections: int = MAX_JSON_SECTIONS) -> list[dict[str, Any]] | None:
    """The JSON as code-block sections, or None when it is too long for a message (attach it instead)."""
    chunks = _chunks(render_json(body), JSON_CHUNK)
    if len(chunks) > max_sections:
        return None
    return [section(f"```{chunk}```") for chunk in chunks]


def json_preview(body: Any, limit: int = 1500) -> str:
    text = render_json(body)
    return text if len(text) <= limit else text[:limit] + "\n…"


# ---------------------------------------------------------------- the command


_MARKUP = re.compile(r"<([@#]|!subteam\^)([A-Z0-9]+)(?:\|[^>]*)?>")


def plain(text: str) -> str:
    """Slack markup (mentions, channel links) as plain text, for code blocks where Slack shows it raw."""
    return _MARKUP.sub(lambda m: ("#" if m.group(1) == "#" else "@") + m.group(2), text)


NAMED_JOBS = 15          # job IDs named in a sentence before "and N more"


def window_text(seconds: float) -> str:
    seconds = int(seconds)
    for size, unit in ((3600, "hour"), (60, "minute")):
        if seconds >= size and seconds % size == 0:
            return count(seconds // size, unit)
    return count(seconds, "second")


def job_list(jobs: Sequence[str], limit: int = NAMED_JOBS) -> str:
    named = ", ".join(code(job) for job in jobs[:limit])
    return named + (f" and {len(jobs) - limit} more" if len(jobs) > limit else "")
