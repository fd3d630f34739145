"""What the app's log shows on-call: an expected outage as one line, anything else with its traceback, no secret."""

from __future__ import annotations

import io
import logging

from bot.infra.logs import Scrubber, TextFormatter
from bot.store import StoreUnavailable


def logged(exc: BaseException, message: str = "could not post a note about a followed job") -> str:
    out = io.StringIO()
    handler = logging.StreamHandler(out)
    handler.setFormatter(TextFormatter())
    handler.addFilter(Scrubber(["s3cr3t-password"]))
    log = logging.getLogger("test.logs")
    log.propagate = False
    log.handlers = [handler]
    try:
        raise exc
    except BaseException:
        log.exception(message)
    return out.getvalue()


def test_a_database_outage_logged_with_its_exception_is_one_line_with_the_reason() -> None:
    try:
        try:
            raise ConnectionResetError("connection reset by peer")
        except ConnectionResetError as cause:
            raise StoreUnavailable("PostgreSQL at postgresql://bot:s3cr3t-password@db/app is unavailable: "
                                   "InterfaceError: the underlying connection is closed") from cause
    except StoreUnavailable as exc:
        text = logged(exc)
    assert text.count("\n") == 1 and "Traceback" not in text, text
    assert "could not post a note about a followed job: PostgreSQL at" in text and "connection is closed" in text
    assert "s3cr3t-password" not in text


def test_an_unexpected_error_keeps_its_traceback() -> None:
    text = logged(KeyError("thread_ts"))
    assert "Traceback (most recent call last)" in text and "KeyError: 'thread_ts'" in text
