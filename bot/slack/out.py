"""Posting to Slack: threads, the response_url fallback, long JSON as files, all through the durable outbox."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from slack_sdk.errors import SlackApiError
from slack_sdk.http_retry.builtin_async_handlers import (
    AsyncConnectionErrorRetryHandler,
    AsyncServerErrorRetryHandler,
)
from slack_sdk.web.async_client import AsyncWebClient
from slack_sdk.webhook.async_client import AsyncWebhookClient

from bot.core import messages
from bot.core.messages import Message
from bot.core.outcome import Outcome
from bot.slack.outbox import Delivery, Outbox

log = logging.getLogger(__name__)

# Errors after which posting into the channel will not work, but the command's response_url will.
NO_CHANNEL_ERRORS = frozenset({"not_in_channel", "channel_not_found", "is_archived", "restricted_action",
                               "access_denied", "missing_scope"})


def retry_handlers() -> list[Any]:
    """For the calls that do not go through the outbox (auth.test, usergroups, views.open): a dropped connection
    or a 5xx is tried again a few times. 429s are the outbox's to pace, so no rate-limit handler here."""
    return [AsyncConnectionErrorRetryHandler(max_retry_count=2), AsyncServerErrorRetryHandler(max_retry_count=2)]


def make_client(token: str, base_url: str, timeout: int = 15) -> AsyncWebClient:
    client = AsyncWebClient(token=token, base_url=base_url, timeout=timeout)
    # slack_sdk installs a connection-error handler of its own (one retry); ours replaces it, so the count is ours.
    client.retry_handlers[:] = retry_handlers()
    return client


def error_code(exc: Exception) -> str:
    if isinstance(exc, SlackApiError):
        return str(exc.response.get("error") or f"http_{exc.response.status_code}")
    return type(exc).__name__


@dataclass
class Place:
    """Where a conversation's replies go. After a fallback, everything goes to the response_url."""

    channel: str
    thread_ts: str | None = None
    response_url: str | None = None
    via_response_url: bool = False
    response_posts: int = 0

    MAX_RESPONSE_POSTS = 5


class SlackOut:
    """What the app says in Slack, in its terms (a place, a message); the outbox does the sending."""

    def __init__(self, outbox: Outbox):
        self.outbox = outbox

    async def post(self, place: Place, msg: Message, *, after: dict[str, Any] | None = None,
                   queued: Callable[[], Awaitable[Any]] | None = None, once: str | None = None,
                   news: bool = False, turn: float | None = None) -> str | None:
        """Post into the place's thread (or as a new message). Returns the ts, or None when it went to the
        response_url or nowhere (already logged). Waits until Slack has it: replies need the parent's ts.
        `queued` runs once the post is in the outbox (durable: it goes out even if this process dies now).
        `once`: posted at most once under this key, by whichever replica queues it first (see `Outbox.submit`);
        the others wait for that post and return its ts. `news`: nobody asked for it; `turn`: its place in the
        channel's line counts from then (see `Outbox.submit`)."""
        if not place.via_response_url:
            message_id, pending = await self.outbox.submit("post", {
                "channel": place.channel, "thread_ts": place.thread_ts, "unfurl_links": False,
                "unfurl_media": False, **msg}, after=after, once=once, news=news, turn=turn)
            if queued is not None:
                await queued()
            delivery = await self._delivered(message_id, pending, place)
            if delivery.ok or delivery.again:  # queued before: whoever queued it said it, or fell back for it
                return delivery.ts
            code = delivery.error or "unknown"
            if place.response_url is None:
                log.error("could not post to Slack channel %s: %s", place.channel, code)
                return None
            log.warning("cannot post in channel %s (%s); using the command's response_url", place.channel, code)
            place.via_response_url = True
            if code in NO_CHANNEL_ERRORS or code == messages.SLACK_UNAVAILABLE:
                msg = messages.without_thread_hint(msg, code)
        await self.respond(place, msg, in_channel=True)
        return None

    async def post_later(self, place: Place, msg: Message, *, after: dict[str, Any] | None = None) -> None:
        """Queue a post without waiting for Slack: the outbox sends it (through Slack's trouble, across restarts)
        and then runs the `after` hook, which records where it went. For messages nobody waits on (alerts)."""
        await self.outbox.submit("post", {
            "channel": place.channel, "thread_ts": place.thread_ts, "unfurl_links": False, "unfurl_media": False,
            **msg}, after=after, news=True)

    async def _delivered(self, message_id: int, pending: asyncio.Future[Delivery], place: Place) -> Delivery:
        """Wait for a post. A person waiting on a command is not kept waiting on a Slack outage: when Slack keeps
        failing the post (errors, not just pacing) for `Timing.response_url_after` and there is a response_url, the
        post is taken back and said there instead."""
        if place.response_url is None:
            return await pending
        while True:
            try:
                return await asyncio.wait_for(asyncio.shield(pending), self.outbox.timing.response_url_after)
            except TimeoutError:
                if self.outbox.failing(message_id) and await self.outbox.withdraw(message_id):
                    return Delivery(ok=False, error=messages.SLACK_UNAVAILABLE)

    async def respond(self, place: Place, msg: Message, *, in_channel: bool = False,
                      replace_original: bool = False) -> bool:
        if place.response_url is None:
            return False
        if place.response_posts >= Place.MAX_RESPONSE_POSTS:
            log.error("response_url budget used up for channel %s; a reply was not delivered", place.channel)
            return False
        place.response_posts += 1
        delivery = await self.outbox.send("respond", {
            "url": place.response_url, "text": msg["text"], "blocks": msg["blocks"],
            "response_type": "in_channel" if in_channel else "ephemeral", "replace_original": replace_original})
        if not delivery.ok:
            log.error("response_url post refused: %s", delivery.error)
        return delivery.ok

    async def ephemeral(self, channel: str, user: str, msg: Message, response_url: str | None = None) -> bool:
        """A message only `user` sees: via response_url when there is one (works everywhere), else postEphemeral;
        in the app's own direct messages with `user` (channel = their user ID), a plain message: only they see it."""
        if response_url:
            return await self.respond(Place(channel, response_url=response_url), msg)
        if channel == user:
            return await self.post(Place(channel), msg) is not None
        delivery = await self.outbox.send("ephemeral", {"channel": channel, "user": user, **msg})
        if not delivery.ok:
            log.error("could not show a private message to %s: %s", user, delivery.error)
        return delivery.ok

    async def tell_now(self, channel: str, user: str, msg: Message, response_url: str | None = None) -> None:
        """As `ephemeral`, but straight to Slack, once: for when the database is away (the outbox stores every call
        first) or the words must not wait behind a lane. A failure is logged, not raised."""
        client = self.outbox.client
        try:
            if response_url:
                await AsyncWebhookClient(response_url, session=client.session).send(
                    text=msg["text"], blocks=msg.get("blocks"), response_type="ephemeral")
            else:
                await client.chat_postEphemeral(channel=channel, user=user, text=msg["text"], blocks=msg.get("blocks"))
        except Exception:
            log.exception("could not tell %s directly", user)

    async def publish_home(self, user: str, view: dict[str, Any]) -> None:
        """Queue `user`'s Home tab (views.publish); a newer view of the same Home replaces one still waiting."""
        await self.outbox.submit("publish", {"user_id": user, "view": view}, coalesce=f"publish:{user}")

    async def update(self, channel: str, ts: str, msg: Message, *, news: bool = False,
                     turn: float | None = None) -> None:
        """Queue the message's new state; an older state still waiting is replaced, not sent. `news`: nobody is
        waiting for this edit (an alert redrawn), so what people wait for goes first; `turn`: its place in line
        counts from then (see `Outbox.submit`)."""
        await self.outbox.submit("update", {"channel": channel, "ts": ts, **msg}, coalesce=f"update:{channel}:{ts}",
                                 news=news, turn=turn)

    async def attach(self, place: Place, content: str, filename: str, comment: str, advice: str, *,
                     once: str | None = None) -> bool:
        """Upload `content` as a file in the place's thread; when Slack will not take it, say so there, with
        `advice` (another way to see the same thing). `once`: as for `post`."""
        if place.via_response_url:
            return False
        delivery = await self.outbox.send("file", {
            "channel": place.channel, "thread_ts": place.thread_ts, "content": content, "filename": filename,
            "title": filename, "initial_comment": comment}, once=once)
        if not delivery.ok and not delivery.again:
            log.error("could not attach %s in %s: %s", filename, place.channel, delivery.error)
            await self.post(place, messages.attach_failed(filename, delivery.error or "unknown", advice))
        return delivery.ok

    async def post_outcome(self, place: Place, outcome: Outcome, *, prefix: str = "", once: str | None = None,
                           queued: Callable[[], Awaitable[Any]] | None = None) -> None:
        """The result reply; JSON too long for a message goes into an attached file. `once`, `queued`: as for
        `post` (`queued` runs once the reply is in the outbox, or before it is said at the response_url)."""
        if place.via_response_url and queued is not None:
            await queued()
        if not messages.outcome_needs_file(outcome):
            await self.post(place, messages.outcome_message(outcome, prefix=prefix), once=once, queued=queued)
            return
        name = f"runpod-{outcome.endpoint}-{outcome.job}.json"
        if place.via_response_url:
            note = ("The JSON is too long to show here and I cannot attach files in this channel. "
                    f"Invite me to the channel, or run `/runpod-retry status {outcome.endpoint} {outcome.job}`. "
                    f"Start of it:\n```{messages.escape(messages.json_preview(outcome.body))}```")
        else:
            note = f"The JSON RunPod returned is long: it is attached below as `{name}`."
        await self.post(place, messages.outcome_message(outcome, prefix=prefix, attach_note=note), once=once,
                        queued=queued)
        if not place.via_response_url:
            await self.attach(place, messages.render_json(outcome.body), name, f"What RunPod returned for job "
                              f"`{outcome.job}`", advice=f"The same JSON is what `/runpod-retry status "
                              f"{outcome.endpoint} {outcome.job}` shows.", once=once and f"{once}:file")
