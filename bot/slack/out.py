"""Posting to Slack: threads, the response_url fallback, long JSON as files. Nothing is silently dropped."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from slack_sdk.errors import SlackApiError, SlackClientError
from slack_sdk.http_retry.builtin_async_handlers import (
    AsyncConnectionErrorRetryHandler,
    AsyncRateLimitErrorRetryHandler,
    AsyncServerErrorRetryHandler,
)
from slack_sdk.web.async_client import AsyncWebClient
from slack_sdk.webhook.async_client import AsyncWebhookClient

from bot.core import messages
from bot.core.messages import Message
from bot.core.outcome import Outcome

log = logging.getLogger(__name__)

# Errors after which posting into the channel will not work, but the command's response_url will.
NO_CHANNEL_ERRORS = frozenset({"not_in_channel", "channel_not_found", "is_archived", "restricted_action",
                               "access_denied", "missing_scope"})


def retry_handlers() -> list[Any]:
    """Slack 429s wait Retry-After; 5xx and dropped connections are tried again a few times."""
    return [AsyncConnectionErrorRetryHandler(max_retry_count=2),
            AsyncRateLimitErrorRetryHandler(max_retry_count=4),
            AsyncServerErrorRetryHandler(max_retry_count=2)]


def make_client(token: str, base_url: str, timeout: int = 15) -> AsyncWebClient:
    client = AsyncWebClient(token=token, base_url=base_url, timeout=timeout)
    client.retry_handlers.extend(h for h in retry_handlers() if type(h) not in map(type, client.retry_handlers))
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
    def __init__(self, client: AsyncWebClient):
        self.client = client

    async def post(self, place: Place, msg: Message) -> str | None:
        """Post into the place's thread (or as a new message). Returns the ts, or None when it went to the
        response_url or nowhere (already logged)."""
        if not place.via_response_url:
            try:
                response = await self.client.chat_postMessage(channel=place.channel, thread_ts=place.thread_ts,
                                                              unfurl_links=False, unfurl_media=False, **msg)
                return str(response["ts"])
            except (SlackApiError, SlackClientError) as exc:
                code = error_code(exc)
                if place.response_url is None:
                    log.error("could not post to Slack channel %s: %s", place.channel, code)
                    return None
                log.warning("cannot post in channel %s (%s); using the command's response_url",
                            place.channel, code)
                place.via_response_url = True
                if code in NO_CHANNEL_ERRORS:
                    msg = messages.without_thread_hint(msg, code)
        await self.respond(place, msg, in_channel=True)
        return None

    async def respond(self, place: Place, msg: Message, *, in_channel: bool = False,
                      replace_original: bool = False) -> bool:
        if place.response_url is None:
            return False
        if place.response_posts >= Place.MAX_RESPONSE_POSTS:
            log.error("response_url budget used up for channel %s; a reply was not delivered", place.channel)
            return False
        place.response_posts += 1
        try:
            response = await AsyncWebhookClient(place.response_url, retry_handlers=retry_handlers()).send(
                text=msg["text"], blocks=msg["blocks"], response_type="in_channel" if in_channel else "ephemeral",
                replace_original=replace_original)
        except Exception as exc:  # the network or Slack failed; the caller can do nothing better than log
            log.error("response_url post failed: %s", type(exc).__name__)
            return False
        if response.status_code != 200:
            log.error("response_url post refused: HTTP %s", response.status_code)
            return False
        return True

    async def ephemeral(self, channel: str, user: str, msg: Message, response_url: str | None = None) -> bool:
        """A message only `user` sees: via response_url when there is one (works everywhere), else postEphemeral."""
        if response_url:
            return await self.respond(Place(channel, response_url=response_url), msg)
        try:
            await self.client.chat_postEphemeral(channel=channel, user=user, **msg)
            return True
        except (SlackApiError, SlackClientError) as exc:
            log.error("could not show a private message to %s: %s", user, error_code(exc))
            return False

    async def update(self, channel: str, ts: str, msg: Message) -> bool:
        try:
            await self.client.chat_update(channel=channel, ts=ts, **msg)
            return True
        except (SlackApiError, SlackClientError) as exc:
            log.error("could not update message %s in %s: %s", ts, channel, error_code(exc))
            return False

    async def attach(self, place: Place, content: str, filename: str, comment: str) -> bool:
        if place.via_response_url:
            return False
        try:
            await self.client.files_upload_v2(channel=place.channel, thread_ts=place.thread_ts, content=content,
                                              filename=filename, title=filename, initial_comment=comment)
            return True
        except (SlackApiError, SlackClientError) as exc:
            log.error("could not attach %s in %s: %s", filename, place.channel, error_code(exc))
            return False

    async def post_outcome(self, place: Place, outcome: Outcome, *, prefix: str = "") -> None:
        """The result reply; JSON too long for a message goes into an attached file."""
        if not messages.outcome_needs_file(outcome):
            await self.post(place, messages.outcome_message(outcome, prefix=prefix))
            return
        name = f"runpod-{outcome.endpoint}-{outcome.job}.json"
        if place.via_response_url:
            note = ("The JSON is too long to show here and I cannot attach files in this channel. "
                    f"Invite me to the channel, or run `/runpod-retry status {outcome.endpoint} {outcome.job}`. "
                    f"Start of it:\n```{messages.escape(messages.json_preview(outcome.body))}```")
        else:
            note = f"The JSON RunPod returned is long: it is attached below as `{name}`."
        await self.post(place, messages.outcome_message(outcome, prefix=prefix, attach_note=note))
        if not place.via_response_url:
            await self.attach(place, messages.render_json(outcome.body), name, f"What RunPod returned for job "
                              f"`{outcome.job}`")
