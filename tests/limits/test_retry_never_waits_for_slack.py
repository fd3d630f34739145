"""The action never waits for the words: a busy channel's Slack pace does not hold up the RunPod call.

Forty `/runpod-retry <endpoint> <job>` in one channel within a second, Slack's one post a second per channel
enforced by the stand-in, RunPod answering each call in 0.5 s. Each retry must reach RunPod at once; the replies
follow at Slack's pace, each in its command's thread.
"""

from __future__ import annotations

import asyncio
import time

from testkit.fakes.limits import SlackLimits
from testkit.harness import message_text

COMMANDS = 40
ENDPOINTS = ("ep1", "ep2", "ep3", "ep4")


async def test_forty_commands_in_one_channel_reach_runpod_before_slacks_pace_and_replies_follow_it(
        make_app, runpod, slack):
    slack.limits = SlackLimits()  # chat.postMessage: about 1 per second per channel
    runpod.latency = 0.5
    app = await make_app("http")
    jobs = [(ENDPOINTS[i % len(ENDPOINTS)], f"job-{i:02d}-u1") for i in range(COMMANDS)]
    for endpoint, job in jobs:
        runpod.add_job(endpoint, job, status="FAILED")

    sent: dict[str, float] = {}

    async def one(endpoint: str, job: str) -> None:
        sent[job] = time.monotonic()
        ack = await app.command(f"{endpoint} {job}", channel="C1")
        assert ack.status == 200

    started = time.monotonic()
    await asyncio.gather(*(one(endpoint, job) for endpoint, job in jobs))
    retries = await runpod.wait_calls("retry", COMMANDS, timeout=30)
    arrived = {call.job: call.at for call in retries}
    waits = sorted(arrived[job] - sent[job] for _endpoint, job in jobs)
    p99 = waits[int(0.99 * (len(waits) - 1))]
    # Measured against Slack's pace, so a loaded machine slows both sides alike: every retry reached RunPod before
    # Slack had taken ten of the channel's posts (waiting for them, the 40th would come after about 40). The
    # benchmark measures the absolute figure (goal: p99 under 300 ms); the bound here only says "not seconds".
    last_retry = max(arrived.values())
    assert p99 < 3.0, f"ack → RunPod p99 {p99:.2f} s (all: {[round(w, 2) for w in waits]})"
    await runpod.wait_for(lambda rp: len(rp.requeued()) == COMMANDS, timeout=10)
    assert set(runpod.requeued().values()) == {1}, "each job requeued exactly once"

    # The words follow at Slack's pace: a parent per command, its result in its thread. Slack's floor for 80 posts
    # in one channel at one a second is about 77 s after the burst; twice that is allowed: "not stuck", on a machine
    # that may be busy (how near the floor the app keeps is the benchmark's business).
    def every_result_in_its_thread() -> bool:
        parents = app.top_level("C1")
        if len(parents) < COMMANDS:
            return False
        return all(any("requeued" in message_text(reply).lower() or "in_queue" in message_text(reply).lower()
                       for reply in app.thread("C1", parent["ts"])) for parent in parents)

    deadline = started + 2 * (2 * COMMANDS - 3)
    while not every_result_in_its_thread():
        assert time.monotonic() < deadline, "the replies fell behind Slack's floor"
        await asyncio.sleep(0.25)
    tenth_post = sorted(call.at for call in slack.accepted("chat.postMessage", channel="C1"))[9]
    assert last_retry < tenth_post, "a retry waited behind the channel's Slack pace"
    # The jobs' endings wait their turn behind every result already queued, not between them: when the last result
    # went out, the channel had had exactly the parents and the results (an ending in between puts every later
    # result a second further from the floor; interleaved, the last came at 1.48 x the floor in the benchmark).
    posts = [message_text(call.args).lower() for call in slack.accepted("chat.postMessage", channel="C1")]
    last_result = max(i for i, text in enumerate(posts) if "requeued" in text or "in_queue" in text)
    assert last_result + 1 == 2 * COMMANDS, f"{last_result + 1 - 2 * COMMANDS} endings went before the last result"
    parents = app.top_level("C1")
    for endpoint, job in jobs:
        [parent] = [p for p in parents if job in message_text(p)]
        assert endpoint in message_text(parent)
    assert not slack.rejected()
