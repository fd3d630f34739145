"""Automatic retries (retry policies) in Slack: the `auto` listing, the kill switch's answers, the line the alert
channel gets when someone pauses or resumes, the breaker's notice, and the Home tab's section."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from bot.core import actions
from bot.core.breaker import BREAKER, BREAKER_WINDOW
from bot.core.commands import AUTO_PAUSE_FORM, AUTO_RESUME_FORM, COMMAND
from bot.core.messages.blocks import (
    Message,
    button,
    clip,
    code,
    context,
    escape,
    mention,
    message,
    plain,
    section,
    slack_time,
    window_text,
)
from bot.core.policies import EVERY_ENDPOINT, Pause, Policy, describe

MAX_POLICIES = 40    # policy lines shown; a file with more is summed up
MAX_PAUSES = 10      # pauses shown one each (with a Resume button on Home)
LINES_PER_SECTION = 6
SETTING = "RUNPOD_RETRY_POLICIES"
ALERTED = "Failures there will be alerted for people to decide."


# ---------------------------------------------------------------- words


def where(scope: str) -> str:
    """`ep-a`, or "every endpoint"."""
    return "every endpoint" if scope == EVERY_ENDPOINT else code(scope)


def scope_word(scope: str) -> str:
    """How a person types the scope: the endpoint ID, or `all`."""
    return "all" if scope == EVERY_ENDPOINT else scope


def by_words(by: str, *, mentions: bool = True) -> str:
    if by == BREAKER:
        return "the breaker"
    if by.startswith("policy:"):
        return f"policy {escape(by.split(':', 1)[1])}"
    return mention(by) if mentions else plain(mention(by))


def breaker_reason(failed: int, considered: int) -> str:
    """Why the breaker tripped, in the words the notice, the listing and the audit use."""
    return (f"{failed} of the last {considered} automatic retries failed again within "
            f"{window_text(BREAKER_WINDOW)}")


def _time(epoch: float, now: float) -> str:
    # A pause ending tomorrow or later says which day: "until 05:42" would read as today.
    return slack_time(epoch, "{date_short_pretty} {time}" if epoch - now > 12 * 3600 else "{time}")


def until_words(pause: Pause, now: float) -> str:
    return "until someone resumes them" if pause.until is None else f"until {_time(pause.until, now)}"


def pause_line(pause: Pause, now: float) -> str:
    """One active pause: what, until when, by whom or why."""
    if pause.by == BREAKER:
        return (f":rotating_light: {where(pause.scope)}: the breaker tripped at {_time(pause.at, now)} because "
                f"{escape(pause.reason)}; paused {until_words(pause, now)}.")
    return (f":double_vertical_bar: {where(pause.scope)}: paused {until_words(pause, now)}, by "
            f"{by_words(pause.by)} at {_time(pause.at, now)}.")


def policy_line(policy: Policy, pauses: Sequence[Pause]) -> str:
    """A policy in one line, and its state: on, dry run, paused (everywhere, or on some of its endpoints)."""
    described = clip(escape(describe(policy)), 400)
    if any(p.scope == EVERY_ENDPOINT for p in pauses):
        state = ":double_vertical_bar: paused (every endpoint)"
    elif policy.dry_run:
        state = ":test_tube: dry run"
    else:
        state = ":large_green_circle: on"
    paused = [p.scope for p in pauses if p.scope != EVERY_ENDPOINT and policy.covers(p.scope)]
    if paused and not any(p.scope == EVERY_ENDPOINT for p in pauses):
        named = ", ".join(code(s) for s in paused[:5]) + (f" and {len(paused) - 5} more" if len(paused) > 5 else "")
        state += f"; paused on {named}"
    return f"• {described} — {state}"


def _sections(lines: Sequence[str]) -> list[dict[str, Any]]:
    return [section("\n".join(lines[i:i + LINES_PER_SECTION])) for i in range(0, len(lines), LINES_PER_SECTION)]


def _policy_lines(policies: Sequence[Policy], pauses: Sequence[Pause]) -> list[str]:
    lines = [policy_line(p, pauses) for p in policies[:MAX_POLICIES]]
    if len(policies) > MAX_POLICIES:
        lines.append(f"…and {len(policies) - MAX_POLICIES} more policies (see the file {SETTING} names).")
    return lines


# ---------------------------------------------------------------- `/runpod-retry auto`


def no_policies() -> Message:
    text = (f"No retry policies are set up ({SETTING} names no policy file), so the app retries nothing by itself "
            "and there is nothing to pause or resume. Failures are alerted for people to decide.")
    return message(text, [section(f":information_source: {text}")])


def auto_listing(policies: Sequence[Policy], pauses: Sequence[Pause], now: float) -> Message:
    """The policies in the order they apply (the first that matches a failure is used), each with its state, then
    every active pause and how to change it."""
    if not policies:
        return no_policies()
    blocks: list[dict[str, Any]] = [section(
        f"*Automatic retries*: {len(policies)} {'policy' if len(policies) == 1 else 'policies'}, in the order they "
        "apply (the first that matches a failure is used):")]
    blocks += _sections(_policy_lines(policies, pauses))
    if pauses:
        lines = [pause_line(p, now) for p in pauses[:MAX_PAUSES]]
        if len(pauses) > MAX_PAUSES:
            lines.append(f"…and {len(pauses) - MAX_PAUSES} more paused endpoints.")
        blocks += [section("*Paused now*"), *_sections(lines)]
        blocks.append(context(f"{AUTO_RESUME_FORM} starts them again; {AUTO_PAUSE_FORM} pauses more."))
    else:
        blocks.append(context(f"Nothing is paused. {AUTO_PAUSE_FORM} stops automatic retries on one endpoint or "
                              "on every one, until you resume or for that long."))
    paused = "; paused on " + ", ".join(scope_word(p.scope) for p in pauses) if pauses else ""
    return message(f"{len(policies)} retry policies{paused}", blocks)


# ---------------------------------------------------------------- the kill switch's answers (only the person sees)


def paused_confirm(pause: Pause, now: float) -> Message:
    text = (f"Automatic retries on {where(pause.scope)} are paused {until_words(pause, now)}. {ALERTED} "
            f"`{COMMAND} auto resume {scope_word(pause.scope)}` starts them again.")
    return message(f"Automatic retries on {scope_word(pause.scope)} are paused",
                   [section(f":double_vertical_bar: {text}")])


def already_paused(pause: Pause, now: float) -> Message:
    """A pause asked for while a pause as long or longer is on: nothing changed."""
    why = f" because {escape(pause.reason)}" if pause.by == BREAKER else ""
    text = (f"Automatic retries on {where(pause.scope)} were already paused {until_words(pause, now)} by "
            f"{by_words(pause.by)}{why}, so nothing changed. `{COMMAND} auto resume {scope_word(pause.scope)}` starts "
            "them again.")
    return message(f"Automatic retries on {scope_word(pause.scope)} were already paused",
                   [section(f":double_vertical_bar: {text}")])


def resumed_confirm(scope: str, still: Pause | None, now: float) -> Message:
    """Resumed. `still`: a pause of every endpoint that keeps this one paused anyway."""
    text = f"Automatic retries on {where(scope)} are on again: failures a policy matches are retried by themselves."
    if still is not None:
        text = (f"The pause on {where(scope)} is lifted, but automatic retries on every endpoint are still paused "
                f"{until_words(still, now)} by {by_words(still.by)}: `{COMMAND} auto resume all` lifts that.")
    return message(f"Automatic retries on {scope_word(scope)}: resumed", [section(f":arrow_forward: {text}")])


def not_paused(scope: str) -> Message:
    text = (f"Automatic retries on {where(scope)} were not paused, so nothing changed. `{COMMAND} auto` shows "
            "what is paused.")
    return message(f"Automatic retries on {scope_word(scope)} were not paused", [section(f":information_source: "
                                                                                      f"{text}")])


def auto_not_covered(endpoint: str) -> Message:
    text = (f"No retry policy covers endpoint {code(endpoint)}: nothing is retried there by itself, so nothing was "
            f"paused. `{COMMAND} auto` lists the policies.")
    return message(f"No retry policy covers endpoint {endpoint}", [section(f":information_source: {text}")])


# ---------------------------------------------------------------- the alert channel


def switch_line(user: str, scope: str, pause: Pause | None, now: float, *, mentions: bool = True) -> Message:
    """What the team reads in the alert channel when a person pauses (`pause`) or resumes (None) automatic retries.
    Posted without mentions, then edited to them: Slack does not notify a mention added by an edit."""
    person = by_words(user, mentions=mentions)
    if pause is not None:
        text = (f":double_vertical_bar: {person} paused automatic retries on {where(scope)} "
                f"{until_words(pause, now)}. {ALERTED} `{COMMAND} auto resume {scope_word(scope)}` starts them again.")
        return message(f"{plain(person)} paused automatic retries on {scope_word(scope)}", [section(text)])
    text = (f":arrow_forward: {person} resumed automatic retries on {where(scope)}: failures a policy matches are "
            "retried by themselves again.")
    return message(f"{plain(person)} resumed automatic retries on {scope_word(scope)}", [section(text)])


def breaker_notice(pause: Pause, now: float) -> Message:
    """Told once, when the breaker pauses an endpoint: what, until when, why, and a Resume button."""
    text = (f"Automatic retries on {where(pause.scope)} are paused {until_words(pause, now)}: "
            f"{escape(pause.reason)}. {ALERTED}")
    block = section(f":rotating_light: {text}")
    block["accessory"] = button("Resume", actions.AUTO_RESUME, pause.scope)
    return message(text, [block, context(f"Resume turns them on again now; `{COMMAND} auto` shows every policy and "
                                         "pause.")])


def breaker_resumed(pause: Pause, user: str, now: float) -> Message:
    """The breaker's notice once someone pressed its Resume: no button left to press."""
    text = (f"Automatic retries on {where(pause.scope)} were paused by the breaker at {_time(pause.at, now)}: "
            f"{escape(pause.reason)}. {mention(user)} resumed them at {_time(now, now)}.")
    return message(f"Automatic retries on {scope_word(pause.scope)} were resumed",
                   [section(f":arrow_forward: {text}")])


# ---------------------------------------------------------------- the Home tab


def home_auto_blocks(policies: Sequence[Policy], pauses: Sequence[Pause], now: float, *,
                     may: bool) -> list[dict[str, Any]]:
    """The Home tab's "Automatic retries" section (only when policies are set up): each policy and its state, each
    pause; for someone who may retry, Pause all and a Resume per pause."""
    if not policies:
        return []
    title = section("*Automatic retries*: the retry policies, in the order they apply")
    everywhere = any(p.scope == EVERY_ENDPOINT for p in pauses)
    if may and not everywhere:
        title["accessory"] = button("Pause all", actions.AUTO_PAUSE, EVERY_ENDPOINT, style="danger")
    blocks: list[dict[str, Any]] = [{"type": "divider"}, title, *_sections(_policy_lines(policies, pauses))]
    for pause in pauses[:MAX_PAUSES]:
        block = section(pause_line(pause, now))
        if may:
            block["accessory"] = button("Resume", actions.AUTO_RESUME, pause.scope, style="primary")
        blocks.append(block)
    if len(pauses) > MAX_PAUSES:
        blocks.append(context(f"…and {len(pauses) - MAX_PAUSES} more paused endpoints: `{COMMAND} auto` lists "
                              "them."))
    blocks.append(context(f"{AUTO_PAUSE_FORM} pauses one endpoint (until you resume, or for that long)."))
    return blocks
