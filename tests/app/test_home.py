"""Issue 12, item 3: the Home tab. `app_home_opened` publishes the viewer's Home (failures not retried yet with Retry,
jobs followed, last attempts, each endpoint's retry success, the viewer's access); it is kept current after changes
but throttled; its Retry goes where that job's retry belongs. Both modes, real loopback, every view validated."""

from __future__ import annotations

import asyncio
import json

from bot.core import actions
from testkit.fakes import view_problems
from testkit.harness import Harness, message_text
from testkit.surfaces_payloads import app_home_opened, url_verification, view_button
from tests.app.alerting import ALERTS, alert_via_webhook, current

EP = "ep1"


async def open_home(app: Harness, user: str = "U1") -> dict:
    """The user opens the Home tab; returns it as Slack now holds it."""
    before = len(app.slack.calls_to("views.publish"))
    ack = await app.event(app_home_opened(user))
    assert ack.status == 200
    await app.slack.wait_for(lambda s: len(s.calls_to("views.publish")) > before and s.home(user))
    return app.slack.home(user)


def home_buttons(view: dict) -> dict[str, str]:
    """Job -> the Retry button's value, for every Retry on the Home tab."""
    return {b["accessory"]["value"].split("/", 1)[1]: b["accessory"]["value"] for b in view["blocks"]
            if (b.get("accessory") or {}).get("action_id") == actions.RETRY}


async def test_opening_home_publishes_it_for_the_viewer_valid_and_with_their_access(app, slack, runpod):
    view = await open_home(app, "U3")

    [call] = slack.calls_to("views.publish")
    assert call.ok and call.args["user_id"] == "U3" and view_problems(call.args["view"]) == []
    text = message_text(view)
    assert "You may retry RunPod jobs* in any channel, on any endpoint" in text
    assert "Failures not retried yet" in text and "Retried jobs being followed now" in text
    assert "Last attempts" in text and "Retry success by endpoint" in text
    assert runpod.calls == []


async def test_the_messages_tab_draws_nothing(app, slack):
    await app.event(app_home_opened("U1", tab="messages"))
    await app.settle()

    assert not slack.calls_to("views.publish")


async def test_a_viewer_who_may_not_retry_is_told_and_offered_no_retry(make_app, runpod, slack):
    app = await make_app("socket", RUNPOD_RETRY_ALLOWED_USERS="U9", RUNPOD_RETRY_ENDPOINTS="ep1,ep2")
    await alert_via_webhook(app, runpod, "job-1")

    view = await open_home(app, "U1")

    text = message_text(view)
    assert "You may not retry RunPod jobs" in text and "<@U9>" in text
    assert "job-1" in text and home_buttons(view) == {}
    mine = await open_home(app, "U9")
    assert "on endpoints `ep1`, `ep2`" in message_text(mine) and set(home_buttons(mine)) == {"job-1"}


async def test_retry_on_home_goes_to_the_alerts_thread_and_the_home_keeps_up(app, runpod, slack):
    alert = await alert_via_webhook(app, runpod, "job-1")
    view = await open_home(app, "U7")
    assert set(home_buttons(view)) == {"job-1"}

    ack = await app.interact(view_button(actions.RETRY, home_buttons(view)["job-1"], view=view, user_id="U7"))
    await app.settle()

    assert ack.status == 200
    assert [(c.endpoint, c.job) for c in runpod.calls_to("retry")] == [(EP, "job-1")]
    thread = app.thread_text(ALERTS, alert["ts"])
    assert "was requeued" in thread and "completed" in thread
    assert "<@U7>" in message_text(current(app, alert)) and "completed" in message_text(current(app, alert))

    now = await slack.wait_for(lambda s: "1 retry sent, 1 requeued; 1 completed" in message_text(s.home("U7"))
                               and s.home("U7"))
    assert home_buttons(now) == {} and "100% of those that ended completed" in message_text(now)
    assert "from the Home tab" in message_text(now)  # the last attempts say how it was asked
    [row] = await app.rt.store.history(5)
    assert (row["source"], row["channel"], row["outcome"]) == ("home", ALERTS, "requeued")
    assert not slack.rejected()


async def test_retry_on_home_of_a_job_with_no_alert_goes_to_the_viewers_direct_messages(app, runpod, slack):
    runpod.add_job(EP, "job-2")
    await app.rt.store.record_failure(EP, "job-2", "FAILED", "worker lost", __import__("time").time())
    view = await open_home(app, "U5")

    await app.interact(view_button(actions.RETRY, home_buttons(view)["job-2"], view=view, user_id="U5"))
    await app.settle()

    assert [c.job for c in runpod.calls_to("retry")] == ["job-2"]
    [parent] = app.top_level("U5")  # posted to the user's ID: the app's direct messages with them
    assert "<@U5> asked to retry job `job-2`" in message_text(parent)
    assert "completed" in app.thread_text("U5", parent["ts"])


async def test_a_forged_home_button_reaches_nothing(app, runpod, slack):
    view = await open_home(app, "U1")

    await app.interact(view_button(actions.RETRY, "ep1/job 1", view=view, user_id="U1"))
    await app.settle()

    assert runpod.calls == []


async def test_homes_are_kept_current_but_never_flood_views_publish(make_app, runpod, slack):
    app = await make_app("http", RUNPOD_FOLLOW_INTERVAL="0.02")
    viewers = [f"U{n}" for n in range(1, 4)]
    for user in viewers:
        await open_home(app, user)
    opened = len(slack.calls_to("views.publish"))
    jobs = [f"job-{n}" for n in range(30)]
    for job in jobs:
        runpod.add_job(EP, job)

    started = asyncio.get_running_loop().time()
    await app.command(f"{EP} {' '.join(jobs)}", channel="C1")
    await app.settle()
    done = "30 retries sent, 30 requeued; 30 completed"
    await slack.wait_for(lambda s: all(s.home(u) and done in message_text(s.home(u)) for u in viewers))
    elapsed = asyncio.get_running_loop().time() - started

    publishes = slack.calls_to("views.publish")[opened:]
    per_user = {user: sum(c.args["user_id"] == user for c in publishes) for user in viewers}
    # 30 retries and 30 ends are 90 job events; each Home is redrawn at most once per interval (10 s, scaled), only
    # when it changed.
    limit = int(elapsed / app.rt.timing.home_min_interval) + 2
    assert all(1 <= n <= limit for n in per_user.values()), (per_user, limit)
    assert not any(c.args["user_id"] == "U99" for c in slack.calls_to("views.publish")), "nobody else's Home"
    assert not slack.rate_limited("views.publish")


async def test_a_job_being_followed_is_listed_with_a_link_to_its_thread(app, runpod, slack):
    runpod.add_job(EP, "job-f", after_retry=("IN_PROGRESS",) * 400 + ("COMPLETED",))
    await app.command(f"{EP} job-f", channel="C1")

    await slack.wait_for(lambda s: app.top_level("C1"))
    await open_home(app, "U1")
    view = await slack.wait_for(lambda s: "job-f` on `ep1`, retried by <@U1>" in message_text(s.home("U1"))
                                and s.home("U1"))
    [parent] = app.top_level("C1")
    assert f"/archives/C1/p{parent['ts'].replace('.', '')}" in json.dumps(view)


async def test_url_verification_is_answered_in_http_mode(make_app):
    app = await make_app("http")

    ack = await app.event(url_verification("challenge-42"))

    assert ack.status == 200 and "challenge-42" in ack.text


async def test_no_retry_is_offered_for_a_job_whose_hourly_budget_is_spent(make_app, runpod, slack):
    app = await make_app("http", RUNPOD_RETRY_MAX_PER_JOB="1")
    runpod.add_job(EP, "job-3", after_retry=("FAILED",))
    await app.command(f"{EP} job-3", channel="C1")  # retried once; it fails again and is offered again…
    await app.settle()
    assert [r["job"] for r in await app.rt.store.unretried_failures(0, 5)] == ["job-3"]

    view = await open_home(app, "U1")

    assert home_buttons(view) == {}  # …but not by Home: the budget is spent
    assert "Retry limit reached (1 retry per job per hour)" in message_text(view)


def test_the_home_view_stays_within_slacks_limits_whatever_the_numbers():
    from bot.core import messages
    from bot.core.health import parse_health

    long_id = "j" * 128
    failures = [messages.Failure("e" * 128, f"{long_id[:-3]}{n:03}", "FAILED", "x" * 5000, 1.0, 1801.0,
                                 None if n % 2 else "Retry limit reached (3 per hour).", "https://x/" + "y" * 200)
                for n in range(100)]
    following = [messages.Followed("e" * 128, long_id, "U1", 1.0, "https://x/" + "y" * 200) for _ in range(100)]
    attempts = [{"at": 1.0, "user": "cli:dana", "channel": "", "source": "cli", "outcome": "requeued",
                 "endpoint": "e" * 128, "job": long_id, "job_status": "IN_QUEUE"} for _ in range(50)]
    stats = [messages.EndpointStats("e" * 127 + str(n % 10), 999, 998, 997, 1) for n in range(200)]
    health = [parse_health("e" * 127 + "1", {"workers": {"unhealthy": 5}}, 1.0)]
    access = messages.Access(False, tuple(f"C{n}" for n in range(50)), tuple("e" * 128 for _ in range(50)),
                             ", ".join(f"<@U{n}>" for n in range(10)))

    view = messages.home_view("U1", 2.0, access, failures, following, attempts, stats, more_failures=7,
                              health=health)

    assert view_problems(view) == []
    assert len(view["blocks"]) <= 100
    assert sum(b.get("accessory", {}).get("action_id") == actions.RETRY for b in view["blocks"]) == 10


async def test_with_two_replicas_a_failure_on_one_redraws_a_home_opened_on_the_other(make_app, runpod, slack, pg_url):
    first = await make_app("http", RUNPOD_RETRY_DB=pg_url)
    second = await make_app("http", RUNPOD_RETRY_DB=pg_url)
    view = await open_home(first, "U1")
    assert "job-r1" not in message_text(view)

    runpod.add_job(EP, "job-r1")
    status, _ = await second.webhook(EP, {"id": "job-r1", "status": "FAILED", "error": "OOM"})

    assert status == 200
    now = await slack.wait_for(lambda s: "job-r1" in message_text(s.home("U1")) and s.home("U1"))
    assert set(home_buttons(now)) == {"job-r1"}
