"""Time as the app assumes it: every wait, period, lifetime and pacing rate, and Slack's and RunPod's limits, in one
frozen object that the runtime hands to every part that waits.

Production uses the defaults. `Timing.scaled(factor)` is the same clock run faster (factor < 1) or slower: every
wait multiplied by the factor, every rate divided by it, counts (bursts, calls per window) unchanged. Tests run the
app and the stand-ins at the same factor (`RUNPOD_RETRY_TIME_SCALE`), so they meet the same limits, sooner.

Not here, on purpose: platform facts that are not waits (RunPod keeps a job 30 minutes, the deadline shown to users,
how long records are kept) and the operator's own settings (storm window, follow interval, RunPod timeout).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

WAIT = {"scales": "wait"}   # seconds: multiplied by the factor
RATE = {"scales": "rate"}   # per second: divided by the factor


def _wait(seconds: float) -> Any:
    return field(default=seconds, metadata=WAIT)


def _rate(per_second: float) -> Any:
    return field(default=per_second, metadata=RATE)


def _waits(*seconds: float) -> Any:
    return field(default=tuple(seconds), metadata=WAIT)


@dataclass(frozen=True)
class Timing:
    # Slack's limits as the app paces itself (shared/slack-platform-notes.md), a little under what Slack allows:
    # chat.postMessage and file uploads per channel, then chat.update (Tier 3), ephemerals and views (Tier 4),
    # and a command's response_url.
    slack_post_rate: float = _rate(1.0)
    slack_post_burst: float = 3.0
    slack_update_rate: float = _rate(50 / 60)
    slack_update_burst: float = 5.0
    slack_tier4_rate: float = _rate(100 / 60)
    slack_tier4_burst: float = 10.0
    slack_respond_rate: float = _rate(1.0)
    slack_respond_burst: float = 3.0
    slack_retry_after: float = _wait(1.0)        # a 429 without Retry-After
    slack_max_retry_after: float = _wait(600.0)  # a longer Retry-After is taken as this
    slack_backoff_base: float = _wait(0.5)       # after 5xx and dropped connections, doubling per try ...
    slack_max_backoff: float = _wait(60.0)       # ... up to this
    outbox_store_pause: float = _wait(1.0)       # the database is away: the call is safe in it, try again after
    outbox_set_aside: float = _wait(60.0)        # a call failing unexpectedly this long is set aside: its lane goes on
    response_url_after: float = _wait(5.0)       # Slack failing a command's reply this long: say it via response_url
    pacer_interval: float = _wait(1.0)           # one message redrawn at most this often (bot/slack/pacing.py)

    # RunPod's limits (shared/runpod-serverless-api.md): calls counted per endpoint and operation over this window.
    runpod_window: float = _wait(10.0)
    # A call is counted when its answer lands, never earlier than RunPod counted it; this covers a call sent after
    # another that arrives before it, by a few milliseconds (bot/runpod/limits.py).
    runpod_window_margin: float = _wait(0.5)
    runpod_backoff_base: float = _wait(0.5)      # a 429 without Retry-After, doubling per try ...
    runpod_max_backoff: float = _wait(30.0)      # ... up to this
    runpod_max_retry_after: float = _wait(60.0)  # a longer Retry-After is taken as this

    # Leases: a replica's hold on its work, renewed every third of it; a dead replica's work is adopted after it.
    lease: float = _wait(15.0)
    # The database was away: accepted work, a retry's settling, a claim's release are tried again after these.
    store_retry_pauses: tuple[float, ...] = _waits(1.0, 2.0, 4.0, 8.0, 16.0)
    settle_retry_pauses: tuple[float, ...] = _waits(1.0, 2.0, 4.0, 8.0, 16.0)
    release_retry_pauses: tuple[float, ...] = _waits(0.5, 1.0, 2.0, 5.0, 10.0, 30.0)
    pg_listen_check: float = _wait(5.0)          # how often the LISTEN connection is checked when quiet

    # The app's own periods and lifetimes.
    follow_max_interval: float = _wait(60.0)     # status checks of a followed job grow up to this far apart
    group_cache: float = _wait(60.0)             # a user group's members are asked again after this
    health_cache: float = _wait(30.0)            # a health snapshot this young is used again
    health_failure_cache: float = _wait(10.0)    # after a failed check, RunPod is not asked again for this long
    health_show: float = _wait(600.0)            # a snapshot older than this is not shown any more
    alert_sweep: float = _wait(30.0)             # alerts past their deadline lose their Retry button this often
    redelivery_window: float = _wait(300.0)      # a second failure of the same job within it is the same failure
    undelivered_notice: float = _wait(600.0)     # an alert that cannot be posted is told at most this often
    bulk_settle_wait: float = _wait(60.0)        # a taken-over bulk run waits this long for jobs being settled ...
    bulk_settle_poll: float = _wait(1.0)         # ... looking this often
    home_active: float = _wait(15 * 60.0)        # a Home opened this recently is kept current
    home_min_interval: float = _wait(10.0)       # one person's Home is redrawn at most this often ...
    home_idle_redraw: float = _wait(60.0)        # ... and at least this often while active
    home_tell_every: float = _wait(2.0)          # other replicas are told of Home changes at most this often
    home_min_wait: float = _wait(0.2)            # the Home loop never spins faster than this
    # The durable-execution engine (bot/work/engine.py): each replica says it is alive this often, and one silent
    # this long is taken for dead and its workflows resumed elsewhere. Longer than any pause a live replica makes
    # (a garbage collection, a busy machine): a replica taken for dead while alive could act twice.
    executor_beat: float = _wait(2.0)
    executor_stale: float = _wait(12.0)
    auto_poll: float = _wait(2.0)                # an automatic retry looks whether its job has ended this often

    # Bounds: how long something slow is given before the app goes on without it. Not scaled: they cost time only
    # when something is slow, and a busy machine needs them whole.
    health_timeout: float = 3.0                  # one health check, at most
    health_wait: float = 1.5                     # an alert or a summary waits this long for a snapshot
    accept_within: float = 2.0                   # a request is written down within this, or Slack is told no
    # ...and its answer from the database is waited for this much longer: a row the database wrote in time is not
    # given up on because its answer was a moment late (the person would be told to try again, and it still runs).
    accept_answer_grace: float = 0.3
    periodic_grace: float = 1.0                  # at shutdown, for the sweeps and the lease keeper to notice
    shutdown_grace: float = 8.0                  # SIGTERM to exit, at most (under the 10 s orchestrators allow)
    outbox_finish_grace: float = 2.0             # at shutdown, for a Slack call already sent to get its answer
    cli_post_wait: float = 20.0                  # `python -m bot alert` waits this long for Slack to take it

    # The factor these figures were scaled by (1: real time). Retry-After is in the platform's seconds, which the
    # stand-ins in tests scale the same way: it is multiplied by this.
    scale: float = 1.0

    def scaled(self, factor: float) -> Timing:
        """The same clock, `factor` times as long: waits multiplied by it, rates divided by it."""
        if factor <= 0:
            raise ValueError("a time scale must be positive")
        if factor == 1:
            return self
        changes: dict[str, Any] = {"scale": self.scale * factor}
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            kind = f.metadata.get("scales")
            if kind == "wait":
                changes[f.name] = tuple(v * factor for v in value) if isinstance(value, tuple) else value * factor
            elif kind == "rate":
                changes[f.name] = value / factor
        return dataclasses.replace(self, **changes)

    def retry_after(self, seconds: float) -> float:
        """A platform's Retry-After (its seconds) as a wait on this clock."""
        return seconds * self.scale


REAL = Timing()

__all__ = ["REAL", "Timing"]
