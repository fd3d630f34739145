"""Logging: JSON lines or readable text, with every secret scrubbed from every line."""

from __future__ import annotations

import json
import logging
import sys
import time
from collections.abc import Iterable

CONTEXT_FIELDS = ("user", "channel", "endpoint", "job", "source", "outcome", "http_status")


class Scrubber(logging.Filter):
    """Replaces secret values wherever they appear in a record's final text."""

    def __init__(self, secrets: Iterable[str]):
        super().__init__()
        self.secrets = tuple(s for s in secrets if s and len(s) >= 6)

    def scrub(self, text: str) -> str:
        for secret in self.secrets:
            text = text.replace(secret, "[redacted]")
        return text

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        if record.exc_info and record.exc_info[1] is not None:
            error = record.exc_info[1]
            if getattr(error, "expected", False):
                # An outage the app expects (the database away): one line, not a traceback, whoever logged it.
                message += f": {error}"
            else:
                message += "\n" + logging.Formatter().formatException(record.exc_info)
            record.exc_info = None
            record.exc_text = None
        record.msg, record.args = self.scrub(message), None
        return True


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry = {"ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created)) + f".{int(record.msecs):03d}Z",
                 "level": record.levelname.lower(), "logger": record.name, "msg": record.getMessage()}
        for name in CONTEXT_FIELDS:
            value = getattr(record, name, None)
            if value is not None:
                entry[name] = value
        return json.dumps(entry, ensure_ascii=False)


class TextFormatter(logging.Formatter):
    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)-7s %(name)s: %(message)s")

    def format(self, record: logging.LogRecord) -> str:
        text = super().format(record)
        extra = " ".join(f"{n}={getattr(record, n)}" for n in CONTEXT_FIELDS if getattr(record, n, None) is not None)
        return f"{text} [{extra}]" if extra else text


def setup_logging(fmt: str, level: str, secrets: Iterable[str]) -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter() if fmt == "json" else TextFormatter())
    handler.addFilter(Scrubber(secrets))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level if level in logging.getLevelNamesMapping() else "INFO")
    # slack_sdk logs request bodies at DEBUG; keep third parties at INFO or above even when we debug.
    for name in ("slack_sdk", "slack_bolt", "aiohttp.access", "aiosqlite"):
        logging.getLogger(name).setLevel(max(logging.INFO, root.level))
    # httpx logs every request at INFO without the user or job; our own line about each retry carries both.
    for name in ("aiohttp.access", "httpx", "httpcore"):
        logging.getLogger(name).setLevel(logging.WARNING)


def ctx(**fields: object) -> dict[str, object]:
    """`extra=` for a log line about a retry: who, where, which job."""
    return {k: v for k, v in fields.items() if v is not None}
