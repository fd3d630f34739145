"""Issue 20, the kill switch: `/runpod-retry auto` lists the retry policies and their state; `auto pause` and
`auto resume` (and the Home tab's and the breaker notice's buttons) stop and start automatic retries, with the access
rules of retrying; the team sees it in the alert channel; the breaker tells the alert channel once, with Resume.
The real app over loopback, both Slack modes; what the person and the channel read, and what was stored."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest

from bot.core import actions
from bot.core.policies import COMPLETED, FAILED_AGAIN
from testkit.fakes import view_problems
from testkit.harness import Ack, Harness, message_text
from testkit.surfaces_payloads import view_button
from tests.app.test_home import open_home

ALERTS = "CALERTS"
# The policy file RUNPOD_RETRY_POLICIES names, as a team would write it.
OOM = """
[[policy]]
name = "oom-once"
endpoints = ["ep-a", "ep-b"]
errors = ["CUDA out of memory"]
max_attempts = 2
delay = "30s"
mode = "on"
"""
LOST = """
[[policy]]
name = "lost-worker"
endpoints = ["*"]
errors = ["re:Worker .* (died|lost)"]
max_attempts = 1
delay = "0s"
mode = "dry-run"
"""
POLICIES = OOM + LOST

MakeApp = Callable[..., Awaitable[Harness]]


@pytest.fixture
async def make_auto_app(make_app: MakeApp, tmp_path: Path) -> MakeApp:
    """The app with a policy file (`policies=None`: RUNPOD_RETRY_POLICIES unset)."""
    async def factory(mode: str = "http", policies: str | None = POLICIES, **env: str) -> Harness:
        if policies is not None:
            path = tmp_path / "policies.toml"
            path.write_text(policies)
            env["RUNPOD_RETRY_POLICIES"] = str(path)
        return await make_app(mode, **env)

    return factory


@pytest.fixture
async def app(make_auto_app: MakeApp, mode: str) -> Harness:
    return await make_auto_app(mode)


def told(app: Harness, ack: Ack) -> str:
    """What the person who typed the command read: the ack, and the private replies on its response_url."""
    said = [message_text(ack.body)] if isinstance(ack.body, dict) and ack.body else []
    return "\n".join(said + [message_text(r) for r in app.responses(ack.response_url)])


def channel_text(app: Harness, channel: str = ALERTS) -> str:
    return "\n".join(message_text(m) for m in app.posts(channel))


async def stored(app: Harness) -> tuple[list[Any], list[str]]:
    """The active pauses and the audit trail's outcomes."""
    return (await app.rt.store.auto_pauses(time.time()),
            [row["outcome"] for row in await app.rt.store.history(50)])


def accessory(msg: dict[str, Any], action_id: str) -> list[dict[str, Any]]:
    return [b["accessory"] for b in msg.get("blocks") or []
            if (b.get("accessory") or {}).get("action_id") == action_id]


# ---------------------------------------------------------------- `auto`


async def test_auto_lists_each_policy_in_one_line_with_its_state(app, runpod, slack):
    ack = await app.command("auto")
    await app.settle()

    assert ack.status == 200
    text = told(app, ack)
    assert "oom-once: CUDA out of memory on ep-a, ep-b, up to 2 retries 30 s apart — :large_green_circle: on" in text
    assert ("lost-worker: /Worker .* (died|lost)/ on every endpoint, 1 retry right away (dry run: says what it would "
            "do, retries nothing) — :test_tube: dry run") in text
    assert text.index("oom-once") < text.index("lost-worker")  # in the order they apply
    assert "Nothing is paused" in text
    assert runpod.calls == [] and app.posts(ALERTS) == [] and not slack.rejected()


async def test_auto_without_policies_says_there_are_none_and_pausing_stores_nothing(make_auto_app):
    app = await make_auto_app(policies=None)

    listed = await app.command("auto")
    paused = await app.command("auto pause ep-a")
    await app.settle()

    assert "No retry policies are set up (RUNPOD_RETRY_POLICIES names no policy file)" in told(app, listed)
    assert "nothing to pause" in told(app, paused)
    assert await stored(app) == ([], [])
    assert app.posts(ALERTS) == []


# ---------------------------------------------------------------- pause and resume by command


async def test_pausing_an_endpoint_tells_the_person_and_the_team_and_is_audited(app, slack):
    started = time.time()
    ack = await app.command("auto pause ep-a 2h", user="U1", channel="C1")
    await app.settle()

    assert ack.status == 200
    text = told(app, ack)
    assert "Automatic retries on `ep-a` are paused until" in text and "`/runpod-retry auto resume ep-a`" in text
    [pause] = (await stored(app))[0]
    assert (pause.scope, pause.by) == ("ep-a", "U1")
    assert pause.until is not None and started + 7200 <= pause.until <= time.time() + 7200
    assert await app.rt.switch.paused("ep-a") == pause
    assert await app.rt.switch.paused("ep-b") is None
    [line] = app.posts(ALERTS)
    assert "<@U1> paused automatic retries on `ep-a` until" in message_text(line)  # edited to a mention
    assert "Failures there will be alerted for people to decide" in message_text(line)
    [row] = await app.rt.store.history(5)
    assert (row["user"], row["endpoint"], row["outcome"], row["source"]) == ("U1", "ep-a", "auto:pause", "command")

    listing = await app.command("auto")
    await app.settle()
    text = told(app, listing)
    assert "on; paused on `ep-a`" in text and "`ep-a`: paused until" in text and "by <@U1>" in text
    assert not slack.rejected()


async def test_pausing_all_then_resuming_all_lifts_every_pause(app):
    await app.command("auto pause ep-b")
    paused = await app.command("auto pause all", user="U2")
    await app.settle()
    assert "Automatic retries on every endpoint are paused until someone resumes them" in told(app, paused)
    assert {p.scope for p in (await stored(app))[0]} == {"ep-b", "*"}
    assert (await app.rt.switch.paused("ep-zzz")).scope == "*"
    listing = await app.command("auto")
    await app.settle()
    assert told(app, listing).count(":double_vertical_bar: paused (every endpoint)") == 2

    resumed = await app.command("auto resume all", user="U3")
    await app.settle()

    assert "Automatic retries on every endpoint are on again" in told(app, resumed)
    pauses, outcomes = await stored(app)
    assert pauses == [] and await app.rt.switch.paused("ep-b") is None
    assert sorted(outcomes) == ["auto:pause", "auto:pause", "auto:resume", "auto:resume"]
    text = channel_text(app)
    assert "<@U2> paused automatic retries on every endpoint until someone resumes them" in text
    assert "<@U3> resumed automatic retries on every endpoint" in text


async def test_resuming_one_endpoint_while_all_are_paused_says_so(app):
    await app.command("auto pause ep-a")
    await app.settle()  # one after another, as a person types them: each command's work runs after its ack
    await app.command("auto pause all")
    await app.settle()
    ack = await app.command("auto resume ep-a")
    await app.settle()

    assert "still paused until someone resumes them" in told(app, ack)
    assert [p.scope for p in (await stored(app))[0]] == ["*"]


async def test_a_pause_already_on_is_kept_and_a_longer_one_replaces_it(app):
    await app.command("auto pause ep-a 2h")
    shorter = await app.command("auto pause ep-a 30m")
    await app.settle()
    assert "were already paused until" in told(app, shorter) and "nothing changed" in told(app, shorter)
    [pause] = (await stored(app))[0]

    longer = await app.command("auto pause ep-a")
    await app.settle()
    assert "paused until someone resumes them" in told(app, longer)
    [now_on] = (await stored(app))[0]
    assert pause.until is not None and now_on.until is None
    assert (await stored(app))[1] == ["auto:pause", "auto:pause"]


async def test_resuming_what_is_not_paused_changes_nothing(app):
    ack = await app.command("auto resume ep-a")
    await app.settle()

    assert "were not paused, so nothing changed" in told(app, ack)
    assert await stored(app) == ([], [])
    assert app.posts(ALERTS) == []


async def test_pausing_an_endpoint_no_policy_covers_stores_nothing(make_auto_app):
    app = await make_auto_app(policies=OOM)
    ack = await app.command("auto pause ep-zzz")
    await app.settle()

    assert "No retry policy covers endpoint `ep-zzz`" in told(app, ack)
    assert await stored(app) == ([], [])


@pytest.mark.parametrize(("text", "said"), [
    ("auto stop ep-a", "`auto` is followed by `pause` or `resume`, not `stop`"),
    ("auto pause", "Tell me which endpoint to pause, or `all`"),
    ("auto pause ep/a", "endpoint ID `ep/a`: it contains '/'"),
    ("auto pause ep-a 3x", "`3x` is not a duration"),
    ("auto pause ep-a 10s", "A pause lasts from 1 minute to 7 days"),
    ("auto pause ep-a 2h now", "Tell me which endpoint to pause"),
    ("auto resume", "Tell me which endpoint to resume, or `all`"),
])
async def test_bad_input_is_told_plainly_and_nothing_is_stored(make_auto_app, runpod, text, said):
    app = await make_auto_app()
    ack = await app.command(text)
    await app.settle()

    assert ack.status == 200 and said in told(app, ack)
    assert await stored(app) == ([], [])
    assert app.posts(ALERTS) == [] and runpod.calls == []


# ---------------------------------------------------------------- access: the rules of retrying


@pytest.mark.parametrize(("env", "command", "said"), [
    ({"RUNPOD_RETRY_ALLOWED_USERS": "U9"}, "auto pause ep-a", "You are not on the list of people who may retry"),
    ({"RUNPOD_RETRY_ALLOWED_USERS": "U9"}, "auto pause all", "You are not on the list of people who may retry"),
    ({"RUNPOD_RETRY_ENDPOINTS": "ep-b"}, "auto pause ep-c", "This app is not set up to call endpoint `ep-c`"),
    ({"RUNPOD_RETRY_ALLOWED_CHANNELS": "C2"}, "auto pause ep-a", "Retries are not enabled in this channel"),
])
async def test_someone_who_may_not_retry_there_cannot_pause(make_auto_app, env, command, said):
    # Only the policy covering every endpoint: one naming an endpoint outside RUNPOD_RETRY_ENDPOINTS stops start-up.
    app = await make_auto_app(policies=LOST, **env)
    ack = await app.command(command, user="U1", channel="C1")
    await app.settle()

    assert f"Nothing was paused. {said}" in told(app, ack)
    assert await stored(app) == ([], [])
    assert app.posts(ALERTS) == []


async def test_someone_who_may_not_retry_cannot_resume_what_another_paused(make_auto_app):
    app = await make_auto_app(RUNPOD_RETRY_ALLOWED_USERS="U9")
    await app.command("auto pause ep-a", user="U9")
    ack = await app.command("auto resume ep-a", user="U1")
    await app.settle()

    assert "Nothing was resumed. You are not on the list" in told(app, ack)
    pauses, outcomes = await stored(app)
    assert [p.by for p in pauses] == ["U9"] and outcomes == ["auto:pause"]


# ---------------------------------------------------------------- the Home tab and its buttons


async def test_home_shows_automatic_retries_and_pauses_and_resumes_them_with_its_buttons(app, slack):
    view = await open_home(app, "U4")
    text = message_text(view)
    assert "Automatic retries" in text and "oom-once: CUDA out of memory on ep-a, ep-b" in text
    assert view_problems(view) == []
    [pause_all] = [a for b in view["blocks"] for a in [b.get("accessory") or {}]
                   if a.get("action_id") == actions.AUTO_PAUSE]

    await app.interact(view_button(actions.AUTO_PAUSE, pause_all["value"], view=view, user_id="U4"))
    await app.settle()

    [pause] = (await stored(app))[0]
    assert (pause.scope, pause.by, pause.until) == ("*", "U4", None)
    [row] = await app.rt.store.history(5)
    assert (row["source"], row["outcome"]) == ("home", "auto:pause")
    [reply] = app.posts("U4")  # a Home tab is in no channel: the person's messages with the app
    assert "Automatic retries on every endpoint are paused" in message_text(reply)
    assert "<@U4> paused automatic retries on every endpoint" in channel_text(app)
    paused = await slack.wait_for(lambda s: "paused until someone resumes them" in message_text(s.home("U4"))
                                  and s.home("U4"))
    assert not [b for b in paused["blocks"] if (b.get("accessory") or {}).get("action_id") == actions.AUTO_PAUSE]
    [resume] = [b["accessory"] for b in paused["blocks"]
                if (b.get("accessory") or {}).get("action_id") == actions.AUTO_RESUME]

    await app.interact(view_button(actions.AUTO_RESUME, resume["value"], view=paused, user_id="U4"))
    await app.settle()

    assert (await stored(app))[0] == []
    assert "<@U4> resumed automatic retries on every endpoint" in channel_text(app)
    await slack.wait_for(lambda s: "Pause all" in message_text(s.home("U4")))
    assert not slack.rejected()


async def test_home_offers_no_kill_switch_buttons_to_someone_who_may_not_retry(make_auto_app):
    app = await make_auto_app(RUNPOD_RETRY_ALLOWED_USERS="U9")
    view = await open_home(app, "U1")

    assert "Automatic retries" in message_text(view)
    assert not [b for b in view["blocks"] if (b.get("accessory") or {}).get("action_id", "").startswith("auto_")]


async def test_a_home_click_is_checked_against_the_alert_channel_where_automatic_retries_act(make_auto_app):
    app = await make_auto_app(RUNPOD_RETRY_ALLOWED_CHANNELS=ALERTS)  # the Home tab is in no channel
    view = await open_home(app, "U1")
    await app.interact(view_button(actions.AUTO_PAUSE, "*", view=view, user_id="U1"))
    await app.settle()

    assert [p.scope for p in (await stored(app))[0]] == ["*"]


async def test_a_home_click_is_refused_when_the_alert_channel_is_not_one_where_retries_are_enabled(make_auto_app):
    app = await make_auto_app(RUNPOD_RETRY_ALLOWED_CHANNELS="C2")
    view = await open_home(app, "U1")
    await app.interact(view_button(actions.AUTO_PAUSE, "*", view=view, user_id="U1"))
    await app.settle()

    assert "Nothing was paused. Retries are not enabled in this channel" in message_text(app.posts("U1")[0])
    assert await stored(app) == ([], [])


async def test_home_has_no_automatic_retries_section_without_policies(make_auto_app):
    app = await make_auto_app(policies=None)
    view = await open_home(app, "U1")

    assert "Automatic retries" not in message_text(view)


async def test_a_button_with_a_forged_scope_is_refused_and_changes_nothing(app):
    ack = await app.click(actions.AUTO_PAUSE, "ep/../x", message_ts="1.000100", channel=ALERTS)
    await app.settle()

    assert ack.status == 200
    assert await stored(app) == ([], [])


# ---------------------------------------------------------------- the breaker


async def record_ends(app: Harness, endpoint: str, failed: int, completed: int) -> None:
    now = time.time()
    for i in range(failed + completed):
        result = FAILED_AGAIN if i < failed else COMPLETED
        assert await app.rt.store.record_auto(endpoint, f"job-{i}", 1, "oom-once", result, now - 60 + i)


async def test_the_breaker_tells_the_alert_channel_once_with_resume_and_resume_lifts_it(app, slack):
    await record_ends(app, "ep-a", failed=6, completed=4)

    # Every replica's workflow finishing at once asks; one pause, one notice.
    await asyncio.gather(*(app.rt.switch.finished("ep-a") for _ in range(5)))
    await app.settle()

    [notice] = app.posts(ALERTS)
    text = message_text(notice)
    assert "Automatic retries on `ep-a` are paused until" in text
    assert ("6 of the last 10 automatic retries failed again within 10 minutes. Failures there will be alerted for "
            "people to decide.") in text
    assert "UTC" in notice["text"] and "<!date" not in notice["text"]  # the notification says the time plainly
    [resume] = accessory(notice, actions.AUTO_RESUME)
    assert resume["value"] == "ep-a"
    [pause] = (await stored(app))[0]
    assert (pause.scope, pause.by) == ("ep-a", "breaker")
    assert pause.until is not None and 1790 <= pause.until - pause.at <= 1800
    [row] = await app.rt.store.history(5)
    assert (row["user"], row["outcome"]) == ("breaker", "auto:pause")
    listing = await app.command("auto")
    await app.settle()
    assert "the breaker tripped at" in told(app, listing) and "6 of the last 10" in told(app, listing)

    await app.click(actions.AUTO_RESUME, resume["value"], message_ts=notice["ts"], channel=ALERTS, user="U5")
    await app.settle()

    assert (await stored(app))[0] == []
    [now] = [m for m in app.posts(ALERTS) if m["ts"] == notice["ts"]]
    assert "<@U5> resumed them at" in message_text(now) and not accessory(now, actions.AUTO_RESUME)
    assert "<@U5> resumed automatic retries on `ep-a`" in channel_text(app)
    assert not slack.rejected()


async def test_the_breaker_stays_closed_under_half_failing_again(app):
    await record_ends(app, "ep-a", failed=4, completed=6)
    await app.rt.switch.finished("ep-a")
    await app.settle()

    assert (await stored(app))[0] == [] and app.posts(ALERTS) == []


async def test_a_resume_on_the_notice_by_someone_who_may_not_retry_is_refused(make_auto_app):
    app = await make_auto_app(RUNPOD_RETRY_ALLOWED_USERS="U9")
    await app.rt.switch.trip("ep-a", "6 of the last 10 automatic retries failed again within 10 minutes")
    await app.settle()
    [notice] = app.posts(ALERTS)

    ack = await app.click(actions.AUTO_RESUME, "ep-a", message_ts=notice["ts"], channel=ALERTS, user="U1")
    await app.settle()

    assert "Nothing was resumed. You are not on the list" in told(app, ack)
    assert [p.by for p in (await stored(app))[0]] == ["breaker"]
    assert accessory(app.posts(ALERTS)[0], actions.AUTO_RESUME)


async def test_pauses_and_resumes_reach_the_audit_channel_like_other_audit_lines(make_auto_app, slack):
    app = await make_auto_app(RUNPOD_AUDIT_CHANNEL="CAUDIT")
    await app.command("auto pause ep-a 2h", user="U1", channel="C1")
    await app.rt.switch.trip("ep-b", "6 of the last 10 automatic retries failed again within 10 minutes")
    await app.command("auto resume ep-a", user="U2", channel="C1")
    await app.settle()
    await slack.wait_for(lambda s: "resumed automatic retries" in channel_text(app, "CAUDIT"))

    text = channel_text(app, "CAUDIT")
    assert "<@U1> by command in <#C1>: paused automatic retries on `ep-a` until" in text
    assert "The breaker paused automatic retries on `ep-b` until" in text and "6 of the last 10" in text
    assert "<@U2> by command in <#C1>: resumed automatic retries on `ep-a`" in text
    assert "<@breaker>" not in text and "``" not in text
    assert not slack.rejected()
