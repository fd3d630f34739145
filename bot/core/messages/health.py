"""Endpoint health: `/runpod-retry health`, and the snapshot (with a warning) on alerts, confirmations, summaries."""

from __future__ import annotations

from typing import Any

from bot.core.commands import COMMAND
from bot.core.health import Health, Verdict, health_words, read_health, unlikely_reason
from bot.core.messages.blocks import (
    Message,
    clip,
    code,
    context,
    json_sections,
    message,
    section,
    slack_time,
)

MAX_CONFIRM_TEXT = 300  # a confirm dialog's text


_ICONS = {Verdict.HEALTHY: ":white_check_mark:", Verdict.STARTING: ":hourglass_flowing_sand:",
          Verdict.IDLE: ":zzz:", Verdict.UNKNOWN: ":grey_question:", Verdict.THROTTLED: ":warning:",
          Verdict.UNHEALTHY: ":warning:", Verdict.STUCK: ":warning:"}


def verdict_line(health: Health) -> str:
    """The verdict first, in words: "Healthy: retries should run now (…)", "Idle: …", or the warning."""
    reading = read_health(health)
    return f"{_ICONS[reading.verdict]} *{reading.headline}.*"


def health_line(health: Health) -> str:
    """One line: whose health, as of when, the counts in words."""
    return (f":stethoscope: Endpoint {code(health.endpoint)} health, as RunPod reported it at "
            f"{slack_time(health.at)}: {health_words(health)}")


def health_blocks(health: Health | None) -> list[dict[str, Any]]:
    """The snapshot for another message (an alert, a confirmation, a summary): the verdict in words, then the
    counts in a small line; a warning says what to do where it is read. Nothing when there is no snapshot (a
    failed check says nothing)."""
    if health is None or not health.known:
        return []
    reading = read_health(health)
    if reading.verdict.warns:
        return [section(f"{verdict_line(health)} {reading.advice}"), context(health_line(health))]
    return [context(f"{verdict_line(health)} {health_line(health)}")]


def confirm_warning(text: str, health: Health | None) -> str:
    """A confirm dialog's text with the health warning first, kept within the dialog's 300 characters."""
    reason = unlikely_reason(health) if health is not None else None
    if not reason:
        return text
    return clip(f"⚠️ Unlikely to work now: {reason}. {text}", MAX_CONFIRM_TEXT)


def health_message(endpoint: str, health: Health | None, problem: str | None = None) -> Message:
    """`/runpod-retry health <endpointId>`: the verdict in words, what to do about a warning, the counts, then
    RunPod's JSON."""
    if health is None:
        why = problem or "RunPod gave no answer"
        return message(f"Could not check the health of endpoint {endpoint}",
                       [section(f":grey_question: I could not check the health of endpoint {code(endpoint)}: "
                                f"{why}."),
                        context(f"A health check changes nothing on RunPod. `{COMMAND} health {endpoint}` asks "
                                "again.")])
    reading = read_health(health)
    lead = verdict_line(health) + (f"\n{reading.advice}" if reading.advice else "")
    blocks: list[dict[str, Any]] = [
        section(lead),
        section(f"Endpoint {code(endpoint)}, as RunPod reported it at {slack_time(health.at)}:\n"
                f"{health_words(health)}")]
    sections = json_sections(health.body, max_sections=4)
    if sections:
        blocks.append(context("RunPod's answer (HTTP 200):"))
        blocks.extend(sections)
    text = f"Endpoint {endpoint}: {reading.headline}. {health_words(health)}"
    return message(text, blocks)
