"""Work written down before Slack is told it was taken: a request acknowledged and then lost with its replica (a
kill -9 while the database was slow) would be a promise nobody keeps. The row is the request; whoever adopts it
after a death carries it out (`BulkRunner.resume`, `StormDesk.resume`, `SingleRetries.resume`)."""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

from bot.infra.tasks import Background
from bot.store import Store, StoreUnavailable
from bot.work.who import Who

log = logging.getLogger(__name__)

# The inbox row of a grouped alert's Retry all. Written before the click is acknowledged (`retry_all_request`); rows
# of this kind written by earlier versions, once the run had taken its jobs, carry them ("jobs").
RETRY_ALL_REQUEST = "retry_all"


def retry_all_request(who: Who, endpoint: str, storm_id: str) -> dict[str, Any]:
    """The click, as its row keeps it: which grouped alert, who clicked, where. The jobs are chosen when the click
    is carried out (another Retry all may have taken some by then); the storm keeps them under the row's id."""
    return {"request": True, "endpoint": endpoint, "storm": storm_id, "who": who.to_json()}


async def accept_in_time(store: Store, background: Background, kind: str, payload: dict[str, Any],
                         within: float, grace: float) -> int | None:
    """The inbox row for a request about to be acknowledged, or None when the database did not write it within
    `within` seconds (Slack waits 3 s for the acknowledgement): the person is then told to try again. The database
    itself writes a row that comes later as done (`Store.accept_by`), so nobody carries it out behind their back,
    not even a replica adopting it after this one died; its answer is waited for `grace` longer, and a row written
    in time whose answer came later still is let go here."""
    now = time.time()
    writing = asyncio.ensure_future(store.accept_by(kind, payload, now, by=now + within))
    try:
        work_id = await asyncio.wait_for(asyncio.shield(writing), within + grace)
    except StoreUnavailable as exc:
        log.warning("could not write a %s request down: %s", kind, exc)
        return None
    except TimeoutError:
        log.warning("the database did not write a %s request down within %g s; the person is asked to try again",
                    kind, within)

        def landed(done: asyncio.Future[int | None]) -> None:
            if not done.cancelled() and done.exception() is None and (work_id := done.result()) is not None:
                background.spawn(let_go(store, work_id), name=f"drop a late {kind} request")

        writing.add_done_callback(landed)
        return None
    if work_id is None:
        log.warning("the database wrote a %s request down after %g s; the person is asked to try again", kind, within)
    return work_id


async def let_go(store: Store, work_id: int | None) -> None:
    """The request's row is done with (carried out, or nothing was to be done)."""
    if work_id is None:
        return
    try:
        await store.done(work_id)
    except Exception as exc:  # its adopter looks at it again: what was done is not done twice, what was not may be
        log.warning("could not let go of a request's row: %s", exc)
