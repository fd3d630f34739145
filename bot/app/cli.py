"""`python -m bot alert`: the same alert the webhook posts, from a shell or another monitor."""

from __future__ import annotations

import sys

from bot.app.server import StartupError, check_slack
from bot.core.ids import id_problem, shorten
from bot.infra.config import Settings
from bot.work.runtime import Runtime


async def post_alert(settings: Settings, endpoint: str, job: str, status: str, error: str | None,
                     channel: str | None) -> int:
    for kind, value in (("endpoint ID", endpoint), ("job ID", job)):
        problem = id_problem(value)
        if problem:
            print(f"Not posted: the {kind} {shorten(value)!r} is not valid: {problem}.", file=sys.stderr)
            return 2
    channel = channel or settings.alert_channel
    if not channel:
        print("Not posted: give --channel C… or set RUNPOD_ALERT_CHANNEL.", file=sys.stderr)
        return 2
    rt = Runtime(settings)
    await rt.open()
    try:
        await check_slack(rt)
        body = {"id": job, "status": status, **({"error": error} if error else {})}
        result, alert = await rt.failure(endpoint, body, channel)
        if result == "posted":
            # The alert goes out through the outbox; wait for Slack's answer to say where it went.
            await rt.outbox.idle(rt.timing.cli_post_wait)
            alert = await rt.desk.get(endpoint, job) or alert
    except StartupError as exc:
        print(f"Not posted: {exc}", file=sys.stderr)
        return 2
    finally:
        await rt.close(5.0)
    if alert.ts is None and getattr(alert, "posting", False):
        print(f"Not posted yet: Slack did not take the message within {rt.timing.cli_post_wait:.0f} s. It stays "
              "queued and the app posts it when it next starts.", file=sys.stderr)
        return 1
    if alert.ts is None:
        print(f"Not posted: Slack refused the message in channel {channel} (see the log above; is the app "
              "invited to the channel?).", file=sys.stderr)
        return 1
    where = f"channel {alert.channel}, message ts {alert.ts}"
    if result == "posted":
        print(f"Alert posted to {where}.")
    elif result == "updated":
        print(f"This job already had an alert; it was updated: {where}.")
    elif result == "grouped":
        print(f"Many jobs of endpoint {endpoint} are failing: this one was added to their grouped alert, {where}.")
    else:
        print(f"This failure already has an alert (not posted twice): {where}.")
    return 0
