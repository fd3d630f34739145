"""Finding RunPod jobs named in a Slack message (its text, blocks and attachments), for the message shortcut.
Pure: a message as Slack sends it in, the jobs found and where they were found out.

Three shapes are recognised, as other monitors (Datadog, Grafana, Sentry, a pasted log line) write them:
  - RunPod API links: `https://api.runpod.ai/v2/<endpoint>/status/<job>` (also `/retry`, `/cancel`, `/stream`);
  - `<endpoint>/<job>` where the job has RunPod's job-ID shape (`60902e6c-08a1-…-u1`, `sync-…`);
  - job IDs near an endpoint ID: "endpoint abc123 … job 60902e6c-…", "Endpoint: abc123", an attachment field
    titled "Endpoint" beside one titled "Job ID". A job ID whose endpoint is named nowhere near it takes the
    message's endpoint when the message names exactly one.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

from bot.core.ids import is_valid_id

MAX_SCAN = 100_000       # characters read from one message: a pasted log can be huge
MAX_REFERENCES = 1000    # as many jobs as one bulk retry takes

_ID = r"[A-Za-z0-9_-]{1,128}"
# RunPod's job IDs: a UUID, sometimes `sync-` first, sometimes a short suffix such as `-u1` or `-e1`.
JOB_SHAPE = r"(?:sync-)?[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}(?:-[a-z0-9]{1,8})?"
_API_JOB_URL = re.compile(rf"https?://[^\s/<>|]+/v2/({_ID})/(?:status|retry|cancel|stream)/({_ID})", re.I)
_API_ENDPOINT_URL = re.compile(rf"https?://[^\s/<>|]+/v2/({_ID})/(?:health|run|runsync|purge-queue)\b", re.I)
_PAIR = re.compile(rf"(?<![\w/.:-])({_ID})/({JOB_SHAPE})(?![\w-])", re.I)
_JOB_SHAPED = re.compile(rf"(?<![\w/-])({JOB_SHAPE})(?![\w-])", re.I)
# "endpoint abc123", "Endpoint ID: `abc123`", "endpoint_id=abc123"; likewise "job 41-a", "Job ID: …".
# The word must stand alone: in `job-10` or `endpoint_2` it is part of an ID, not a label (`-10` is no job ID).
_ENDPOINT_WORD = re.compile(rf"(?<![\w-])endpoint(?:[ _-]?id)?(?![\w-])[\s:=`'\"*]*({_ID})", re.I)
_JOB_WORD = re.compile(rf"(?<![\w-])job(?:[ _-]?id)?(?![\w-])[\s:=`'\"*#]*({_ID})", re.I)
_SLACK_LINK = re.compile(r"<((?:https?|mailto):[^|>\s]*)(?:\|([^>]*))?>")


@dataclass(frozen=True)
class Reference:
    endpoint: str
    job: str
    where: str  # where in the message it was found, in words ("the message text", "attachment 1's field “Job”")


@dataclass(frozen=True)
class Findings:
    references: tuple[Reference, ...] = ()
    loose_jobs: tuple[tuple[str, str], ...] = ()  # (job, where): job IDs with no endpoint to pair them with
    endpoints: tuple[str, ...] = ()              # every endpoint named, first seen first

    @property
    def empty(self) -> bool:
        return not self.references and not self.loose_jobs and not self.endpoints

    def by_endpoint(self) -> dict[str, list[Reference]]:
        found: dict[str, list[Reference]] = {}
        for ref in self.references:
            found.setdefault(ref.endpoint, []).append(ref)
        return found

    @property
    def main_endpoint(self) -> str | None:
        """The endpoint with the most jobs found (the first seen wins a tie); else the first endpoint named."""
        groups = self.by_endpoint()
        if groups:
            return max(groups, key=lambda ep: len(groups[ep]))  # max keeps the first of equals
        return self.endpoints[0] if self.endpoints else None

    def jobs_of(self, endpoint: str | None) -> tuple[str, ...]:
        if endpoint is None:
            return tuple(job for job, _ in self.loose_jobs)
        return tuple(ref.job for ref in self.references if ref.endpoint == endpoint)

    def places_of(self, endpoint: str | None) -> tuple[str, ...]:
        where = (ref.where for ref in self.references if ref.endpoint == endpoint) if endpoint is not None \
            else (w for _, w in self.loose_jobs)
        return tuple(dict.fromkeys(where))


def _clean(text: str) -> str:
    """Slack's markup as plain text: links become "url label", entities their characters."""
    text = _SLACK_LINK.sub(lambda m: f"{m.group(1)} {m.group(2) or ''}", text)
    return text.replace("&lt;", "<").replace("&gt;", ">").replace("&amp;", "&")


def _strings(node: Any) -> Iterator[str]:
    """Every text and link address inside a block element, in order."""
    if isinstance(node, dict):
        for key, value in node.items():
            if key in ("text", "url") and isinstance(value, str):
                yield value
            elif isinstance(value, dict | list):
                yield from _strings(value)
    elif isinstance(node, list):
        for item in node:
            yield from _strings(item)


_BLOCK_WORDS = {"section": "a section", "context": "a context line", "header": "the header",
                "rich_text": "the formatted text"}


def _block_pieces(blocks: Any, owner: str) -> Iterator[tuple[str, str]]:
    for block in blocks if isinstance(blocks, list) else []:
        if not isinstance(block, dict):
            continue
        kind = str(block.get("type") or "block")
        label = f"{_BLOCK_WORDS.get(kind, f'a {kind} block')} in {owner}"
        if kind == "section":
            yield label, " ".join(_strings(block.get("text")))
            if block.get("fields"):
                yield f"{owner}'s fields", " \n".join(_strings(block.get("fields")))
            if block.get("accessory"):
                yield label, " ".join(_strings(block.get("accessory")))
        else:
            # Rich text splits a sentence into styled runs ("endpoint " + `abc123`): read each block as one piece.
            yield label, " ".join(_strings(block))


_ATTACHMENT_KEYS = ("pretext", "title", "title_link", "text", "fallback", "footer", "author_name", "from_url")


def pieces(message: dict[str, Any]) -> Iterator[tuple[str, str, str]]:
    """(scope, where, text) for every piece of text in the message, in reading order. The scope is the message
    itself or one attachment: a job ID with no endpoint beside it takes the one endpoint its scope names."""
    if isinstance(message.get("text"), str):
        yield "message", "the message text", message["text"]
    for where, text in _block_pieces(message.get("blocks"), "the message"):
        yield "message", where, text
    attachments = message.get("attachments")
    for n, attachment in enumerate(attachments if isinstance(attachments, list) else [], 1):
        if not isinstance(attachment, dict):
            continue
        name = f"attachment {n}"
        for key in _ATTACHMENT_KEYS:
            if isinstance(attachment.get(key), str):
                yield name, f"{name}'s {key.replace('_', ' ')}", attachment[key]
        for item in attachment.get("fields") or []:
            if isinstance(item, dict):
                title, value = str(item.get("title") or ""), str(item.get("value") or "")
                yield name, f"{name}'s field “{title[:40]}”" if title else f"{name}'s fields", f"{title}: {value}"
        blocks = list(_block_pieces(attachment.get("blocks"), name))
        # A message shared into another carries the original's blocks here.
        for shared in attachment.get("message_blocks") or []:
            if isinstance(shared, dict):
                blocks += _block_pieces((shared.get("message") or {}).get("blocks"), name)
        for where, text in blocks:
            yield name, where, text


def _has_digit(value: str) -> bool:
    return any(ch.isdigit() for ch in value)


@dataclass
class _Scan:
    references: dict[tuple[str, str], Reference] = field(default_factory=dict)
    loose: dict[str, tuple[str, str]] = field(default_factory=dict)        # job -> (scope, where)
    named: dict[str, dict[str, None]] = field(default_factory=dict)        # scope -> endpoints named in it

    def name(self, scope: str, endpoint: str) -> None:
        if is_valid_id(endpoint):
            self.named.setdefault(scope, {}).setdefault(endpoint, None)

    def add(self, scope: str, endpoint: str, job: str, where: str) -> None:
        if is_valid_id(endpoint) and is_valid_id(job) and len(self.references) < MAX_REFERENCES:
            self.references.setdefault((endpoint, job), Reference(endpoint, job, where))
            self.name(scope, endpoint)

    def piece(self, scope: str, where: str, text: str) -> None:
        text = _clean(text)
        for match in _API_JOB_URL.finditer(text):
            self.add(scope, match.group(1), match.group(2), where)
        for match in _API_ENDPOINT_URL.finditer(text):
            self.name(scope, match.group(1))
        text = _API_ENDPOINT_URL.sub(" ", _API_JOB_URL.sub(" ", text))
        for match in _PAIR.finditer(text):
            self.add(scope, match.group(1), match.group(2), where)
        text = _PAIR.sub(" ", text)
        named = [(m.start(), m.group(1)) for m in _ENDPOINT_WORD.finditer(text)
                 if _has_digit(m.group(1)) and len(m.group(1)) >= 3 and not re.fullmatch(JOB_SHAPE, m.group(1), re.I)]
        for _, endpoint in named:
            self.name(scope, endpoint)
        jobs = [(m.start(), m.group(1)) for m in _JOB_SHAPED.finditer(text)]
        jobs += [(m.start(), m.group(1)) for m in _JOB_WORD.finditer(text)
                 if _has_digit(m.group(1)) and len(m.group(1)) >= 3 and all(m.group(1) != j for _, j in jobs)]
        for at, job in sorted(jobs):
            before = [ep for pos, ep in named if pos < at]
            endpoint = before[-1] if before else (named[0][1] if named else None)
            if endpoint is not None:
                self.add(scope, endpoint, job, where)
            elif is_valid_id(job):
                self.loose.setdefault(job, (scope, where))

    def settle(self) -> Findings:
        """Job IDs found with no endpoint beside them take the one endpoint their attachment names, else the one
        endpoint the whole message names; the rest stay loose."""
        everywhere = tuple(dict.fromkeys(ep for eps in self.named.values() for ep in eps))
        loose: dict[str, str] = {}
        for job, (scope, where) in self.loose.items():
            if any(job == ref.job for ref in self.references.values()):
                continue
            near = tuple(self.named.get(scope, {}))
            endpoint = near[0] if len(near) == 1 else everywhere[0] if len(everywhere) == 1 else None
            if endpoint is not None:
                self.add(scope, endpoint, job, where)
            else:
                loose[job] = where
        return Findings(tuple(self.references.values()), tuple(loose.items()), everywhere)


def find_references(message: dict[str, Any]) -> Findings:
    """Every RunPod job named in `message` (a Slack message: text, blocks, attachments), each with where it was
    found. The same job found twice is kept once, with where it was seen first."""
    scan = _Scan()
    budget = MAX_SCAN
    for scope, where, text in pieces(message):
        if budget <= 0:
            break
        scan.piece(scope, where, text[:budget])
        budget -= len(text)
    return scan.settle()


def describe_places(places: Sequence[str], limit: int = 4) -> str:
    """"the message text, attachment 1's field “Job” and 2 more places"."""
    shown = list(places[:limit])
    more = len(places) - len(shown)
    if more:
        return ", ".join(shown) + f" and {more} more place" + ("s" if more > 1 else "")
    if len(shown) > 1:
        return ", ".join(shown[:-1]) + " and " + shown[-1]
    return shown[0] if shown else "nowhere"
