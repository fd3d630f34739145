"""Retries whose answer was lost, settled by whoever adopts their inbox row: the app stopped (or its replica died)
between sending the retry to RunPod and hearing back, so /status says what became of it. Built on RetryService's
steps (record, reply, announce, follow), as a retry RunPod answered is."""

from __future__ import annotations

import asyncio
import logging

from bot.core import messages
from bot.core.alerts import ran_since, retried_beyond
from bot.core.outcome import RETRYABLE, classify_retry
from bot.infra.logs import ctx
from bot.runpod import RunPodError, RunPodReply, RunPodTimeout
from bot.slack.out import Place
from bot.store import Queued, StoreUnavailable
from bot.work.retry import RetryService, reply_key
from bot.work.who import Who

log = logging.getLogger(__name__)


async def settle(service: RetryService, row: Queued) -> None:
    """A retry sent before the app stopped (this process's predecessor, or a replica that died) whose answer
    never came: /status tells whether it took effect. It is then recorded, replied, announced and followed as
    if RunPod had answered, so no alert is left "retrying" and the budget sees it."""
    endpoint, job = str(row.payload.get("endpoint")), str(row.payload.get("job"))
    for pause in (*service.timing.settle_retry_pauses, None):
        try:
            await _settle(service, row, endpoint, job)
            break
        except StoreUnavailable:
            if pause is None:  # left in the inbox: the next start (or another replica) settles it
                log.error("the database stayed away; a retry is left to settle later",
                          extra=ctx(endpoint=endpoint, job=job))
                return
            await asyncio.sleep(pause)
        except Exception:  # the app's own error: logged, and not tried again at every start
            log.exception("could not settle a retry left unanswered", extra=ctx(endpoint=endpoint, job=job))
            break
    # A cancellation (stopping again) skips this: still unsettled, so the next owner settles it.
    await service.mark_answered(row.id)


async def _settle(service: RetryService, row: Queued, endpoint: str, job: str) -> None:
    data = row.payload
    who, place = Who.from_json(data["who"]), Place(**data["place"])
    if place.thread_ts is None and isinstance(key := data.get("parent"), str):
        # The command's message was on its way when the retry was sent: the answer belongs in its thread. Under its
        # key this waits for that post (or makes it, if it never went out) and gives its ts.
        place.thread_ts = await service.out.post(place, messages.command_parent(who.user, endpoint, job), once=key)
    # The replica that sent the retry, killed before RunPod answered, may still hold the job's claim: its claim runs
    # out, and is then taken here, so the job is followed. Held by someone alive, it stays theirs: only the reply.
    await service.claims.outlive_the_dead(endpoint, job)
    async with service.claims.hold(endpoint, job, who.user) as hold:
        hold.sent = True
        try:
            probe: RunPodReply | RunPodError = await service.runpod.status(endpoint, job)
        except RunPodError as exc:
            probe = exc
        lost = RunPodTimeout("the app stopped before RunPod answered the retry", op="retry")
        alert = await service.alert(endpoint, job)  # the failure retried: failed since with other words, it ran
        # Or RunPod counts more retries of the job than the app made before this one (the failures of a grouped
        # alert's jobs have no alert of their own to compare with).
        before = (await service.store.retries_since(endpoint, job, 0)
                  - await service.store.retries_since(endpoint, job, row.created))
        again = isinstance(probe, RunPodReply) and (
            (alert is not None and ran_since(alert, probe.body)) or retried_beyond(probe.body, before))
        if isinstance(probe, RunPodReply) and not again and str(probe.body.get("status") or "").upper() in RETRYABLE:
            # A retry cut off before it reached RunPod (a stop while it was being sent, or the database dropping the
            # connection as the record was written, so the app never sent it): the job's failure is untouched and
            # RunPod counts no retry of it beyond those made before. Someone was told it was taken (a click or a
            # command acknowledged, a run that promised every job one retry), and it never happened: it is sent now.
            outcome = await service.call_retry(endpoint, job)
        else:
            outcome = classify_retry(endpoint, job, lost, probe, ran_since=again)
        # Settled once already (cut off again before it was marked): counted then, not again.
        counted = await service.store.retries_since(endpoint, job, row.created) == 0
        await service.events.settled(data, outcome)
        await service.conclude(who, endpoint, job, place, outcome, hold, post=bool(data.get("post")),
                               follow=bool(data.get("follow")), counted=counted, prefix=messages.AFTER_RESTART,
                               run=data.get("run"), once=reply_key(row.id))
