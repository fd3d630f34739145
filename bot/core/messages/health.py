"""Endpoint health: `/runpod-retry health`, and the snapshot (with a warning) on alerts, confirmations, summaries."""

from __future__ import annotations

from typing import Any

from bot.core.commands import COMMAND
from bot.core.health import Health, health_warning, health_words, unlikely_reason
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


def health_line(health: Health) -> str:
    """One line: whose health, as of when, the counts in words."""
    return (f":stethoscope: Endpoint {code(health.endpoint)} health, as RunPod reported it at "
            f"{slack_time(health.at)}: {health_words(health)}")


def health_blocks(health: Health | None) -> list[dict[str, Any]]:
    """The snapshot for another message (an alert, a confirmation, a summary): the counts in a small line, and the
    warning, when there is one, where it is read. Nothing when there is no snapshot (a failed check says nothing)."""
    if health is None or not health.known:
        return []
    blocks = [context(health_line(health))]
    warning = health_warning(health)
    if warning:
        blocks.append(section(f":warning: {warning}"))
    return blocks


def confirm_warning(text: str, health: Health | None) -> str:
    """A confirm dialog's text with the health warning first, kept within the dialog's 300 characters."""
    reason = unlikely_reason(health) if health is not None else None
    if not reason:
        return text
    return clip(f"⚠️ Unlikely to work now: {reason}. {text}", MAX_CONFIRM_TEXT)


def health_message(endpoint: str, health: Health | None, problem: str | None = None) -> Message:
    """`/runpod-retry health <endpointId>`: the counts in words, the warning, then RunPod's JSON."""
    if health is None:
        why = problem or "RunPod gave no answer"
        return message(f"Could not check the health of endpoint {endpoint}",
                       [section(f":grey_question: I could not check the health of endpoint {code(endpoint)}: "
                                f"{why}."),
                        context(f"A health check changes nothing on RunPod. `{COMMAND} health {endpoint}` asks "
                                "again.")])
    warning = health_warning(health)
    icon = ":warning:" if warning else ":stethoscope:"
    blocks: list[dict[str, Any]] = [
        section(f"{icon} *Endpoint {code(endpoint)}*, as RunPod reported it at {slack_time(health.at)}:\n"
                f"{health_words(health)}")]
    if warning:
        blocks.append(section(f":warning: {warning}"))
    sections = json_sections(health.body, max_sections=4)
    if sections:
        blocks.append(context("RunPod's answer (HTTP 200):"))
        blocks.extend(sections)
    text = f"Endpoint {endpoint}: {health_words(health)}" + (f" {warning}" if warning else "")
    return message(text, blocks)
