"""What the RunPod client keeps of an answer (bot/runpod): short excerpts, without HTML or secrets."""

from __future__ import annotations

from bot.runpod import (
    excerpt,
    redact,
)


def test_excerpt_strips_html_and_secrets_and_stays_short():
    html = "<html><head><style>b{}</style></head><body><h1>502 Bad Gateway</h1>" + "x" * 500 + " key-123456</body>"
    short = excerpt(html, ("key-123456",))
    assert short.startswith("502 Bad Gateway") and "<" not in short and len(short) <= 200
    assert excerpt("a key-123456 b", ("key-123456",)) == "a [redacted] b"


def test_redact_reaches_nested_values_and_keys():
    body = {"error": "bad key rp-1", "nested": [{"rp-1": "Bearer rp-1"}], "n": 3}
    assert redact(body, ("rp-1",)) == {"error": "bad key [redacted]", "nested": [{"[redacted]": "Bearer [redacted]"}],
                                       "n": 3}
