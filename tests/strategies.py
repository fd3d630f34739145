"""Hypothesis strategies for what reaches the app from outside: command text, IDs, RunPod's JSON, and the values
its messages are built from; and the check that Slack would accept a message. Shared by the unit tier's message
properties and the app tier's live properties."""

from __future__ import annotations

import json
import re
from typing import Any

from hypothesis import strategies as st
from slack_sdk.models.blocks import Block

from bot.core.alerts import Alert, Phase
from bot.core.ids import MAX_ID_LENGTH
from bot.core.outcome import Kind, Outcome
from testkit.fakes import block_problems

ID_RE = re.compile(r"^[A-Za-z0-9_-]{1,128}$")  # what RunPod accepts as an endpoint or job ID
ID_CHARS = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_"

ids = st.text(alphabet=ID_CHARS, min_size=1, max_size=MAX_ID_LENGTH)
longest_ids = st.text(alphabet=ID_CHARS, min_size=MAX_ID_LENGTH, max_size=MAX_ID_LENGTH)
any_ids = ids | longest_ids


def repeated(pieces: st.SearchStrategy[str], most: int) -> st.SearchStrategy[str]:
    """Long text cheaply: a short piece repeated up to `most` times (Slack limits are in the thousands)."""
    return st.tuples(pieces, st.integers(1, most)).map(lambda t: t[0] * t[1])


# Characters that matter to Slack (mrkdwn escapes, code fences, mentions) and to the parser (separators, links).
TRICKY = ["&", "<", ">", "```", "`", "*", "_", "~", "<!channel>", "<@U1>", "\n", "\t", " ", ",", "/", "|",
          "&amp;", "é", "🙂", "\u200b", "\\", '"', "'", "{", "}"]
texts = st.text(max_size=300) | st.lists(st.sampled_from(TRICKY) | st.text(max_size=8), max_size=40).map("".join)
huge_texts = texts | repeated(st.sampled_from(TRICKY) | st.text(min_size=1, max_size=10), 6000)

WORDS = ["status", "history", "failed", "help", "health", "STATUS", "-h", "?", "30m", "2h", "90s", "0", "50", "51",
         "https://api.runpod.ai/v2/ep1/status/job-1", "<https://api.runpod.ai/v2/ep1/retry/job-2|link>",
         "http://example.com/x", "ep1 job-1", "ep1/job-3", "ep1/", "/job", "ep2/job-4", "<ep1>", "a" * 129]
command_texts = texts | st.lists(st.sampled_from(WORDS) | any_ids | st.text(max_size=12),
                                 max_size=12).map(lambda words: " ".join(words))

json_scalars = (st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False)
                | texts)
json_values = st.recursive(json_scalars, lambda inner: st.lists(inner, max_size=6)
                           | st.dictionaries(st.text(max_size=20), inner, max_size=6), max_leaves=30)
long_bodies = st.builds(lambda job, piece, n, extra: {"id": job, "status": "COMPLETED", "output": piece * n,
                                                      **extra},
                        ids, st.text(min_size=1, max_size=10), st.integers(1, 20_000),
                        st.dictionaries(st.text(max_size=10), json_scalars, max_size=5))
many_keys = st.integers(1, 3000).map(lambda n: {f"key{i}": "value & <tag>" for i in range(n)})
bodies = json_values | long_bodies | many_keys
statuses = st.sampled_from(["FAILED", "TIMED_OUT", "COMPLETED", "CANCELLED", "IN_QUEUE", "IN_PROGRESS"]) | texts
times = st.floats(min_value=0, max_value=4_000_000_000)
numbers = st.none() | st.floats(allow_nan=False, allow_infinity=False) | st.integers(-10**12, 10**12)

alerts = st.builds(
    Alert, endpoint=any_ids, job=any_ids, channel=ids, status=st.sampled_from(["FAILED", "TIMED_OUT"]) | texts,
    ended_at=times, error=st.none() | huge_texts, delay_ms=numbers, execution_ms=numbers, ts=st.none() | ids,
    thread_ts=st.none() | ids, phase=st.sampled_from(list(Phase)), actor=st.none() | any_ids,
    acted_at=st.none() | times, job_status=st.none() | statuses, note=st.none() | huge_texts,
    retry_offered=st.booleans(), retries=st.integers(0, 1000),
)
outcomes = st.builds(
    Outcome, kind=st.sampled_from(list(Kind)), endpoint=any_ids, job=any_ids, summary=huge_texts,
    advice=huge_texts, http_status=st.none() | st.integers(100, 599), job_status=st.none() | statuses,
    body=st.none() | bodies, excerpt=huge_texts,
)
history_rows = st.lists(st.fixed_dictionaries({
    "at": times, "user": any_ids, "channel": ids, "endpoint": any_ids, "job": any_ids,
    "source": st.sampled_from(["command", "button", "bulk", "retry_all"]), "outcome": texts,
    "called": st.integers(0, 1), "http_status": st.none() | st.integers(100, 599),
    "job_status": st.none() | statuses, "detail": st.none() | huge_texts,
}), max_size=50)


# ---------------------------------------------------------------- what Slack accepts


def assert_postable(msg: dict[str, Any]) -> None:
    """Slack would take this message: slack_sdk's Block Kit validation, the stand-in's limits, ≤ 50 blocks."""
    assert isinstance(msg["text"], str) and msg["text"].strip()
    assert len(msg["text"]) <= 40_000
    blocks = msg["blocks"]
    assert isinstance(blocks, list) and 0 < len(blocks) <= 50
    for block in blocks:
        parsed = Block.parse(block)
        assert parsed is not None, block
        parsed.validate_json()
    assert block_problems(blocks) == []
    json.dumps(msg)  # it can be sent at all
