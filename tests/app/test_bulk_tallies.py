"""Issue 18, bulk tallies: a bulk retry's parent, summary and thread say what happened to each job (requeued,
completed, failed again, not retried, unknown: may have gone through), with counts that add up and a title that is
true; a 502 is "unknown" in plain words, never RunPod's raw HTML; the person who asked is mentioned once per run when
its jobs fail again."""

from __future__ import annotations

import json

from testkit.harness import message_text

EP = "ep1"
CHANNEL = "C1"
# One job at a time: the first job's /retry meets the 502, and its /status check the next one.
ONE_AT_A_TIME = {"RUNPOD_BULK_CONCURRENCY": "1", "RUNPOD_FOLLOW_INTERVAL": "0.05"}
TORCH_OOM = ("Traceback (most recent call last):\n  File \"/handler.py\", line 41, in handler\n    out = model(x)\n"
             "torch.OutOfMemoryError: CUDA out of memory. Tried to allocate 2.00 GiB (GPU 0; 23.65 GiB total)")
HTML_502 = "<html><head><title>502 Bad Gateway</title></head><body><h1>502 Bad Gateway</h1></body></html>"


async def test_every_kind_of_row_is_named_counted_and_titled_truthfully(make_app, runpod, slack):
    app = await make_app("http", **ONE_AT_A_TIME)
    jobs = ["job-lost", "job-ok", "job-again-1", "job-again-2", "job-done"]
    runpod.add_job(EP, "job-lost")
    runpod.add_job(EP, "job-ok")
    for job in ("job-again-1", "job-again-2"):
        runpod.add_job(EP, job, after_retry=("IN_PROGRESS", "FAILED"), final_error=TORCH_OOM)
    runpod.add_job(EP, "job-done", status="COMPLETED", error=None)
    # RunPod's gateway answers the first retry with an HTML 502, and the status check after it likewise: nobody
    # knows whether the retry went through.
    runpod.fault("retry", status=502, body=HTML_502)
    runpod.fault("status", status=502, body=HTML_502)

    await app.command(f"{EP} " + " ".join(jobs), user="U1", channel=CHANNEL)
    await app.settle(timeout=30)

    [parent] = app.top_level(CHANNEL)
    parent = slack.messages[(CHANNEL, parent["ts"])]
    text = message_text(parent)
    assert "*3 of 5 jobs requeued · 1 not retried · 1 unknown, may have gone through* on endpoint `ep1`" in text
    assert "Retried 5 jobs" not in text and "all sent" not in text and "5/5 done" not in text
    outcomes = next(line for line in text.splitlines() if line.startswith("*Outcomes:*"))
    counts = {"completed": 1, "failed again": 2, "not retried": 1, "unknown, may have gone through": 1}
    for words, n in counts.items():
        assert f"{n} {words}" in outcomes, outcomes
    assert sum(counts.values()) == len(jobs), "every job in one count"
    assert "still running" not in outcomes
    assert "*Failed again:* `job-again-1`, `job-again-2`" in text
    assert "*Unknown, may have gone through:* `job-lost`" in text and "`/runpod-retry status ep1 <jobId>`" in text

    thread = app.thread(CHANNEL, parent["ts"])
    [summary] = [m for m in thread if "Results for 5 jobs" in message_text(m)]
    rows = {line.split()[0]: line for line in message_text(summary).splitlines() if line.startswith("job-")}
    assert rows["job-lost"].split(None, 1)[1] == ("unknown, may have gone through: RunPod had a server error "
                                                 "(HTTP 502 Bad Gateway); check its status")
    assert rows["job-ok"].endswith("requeued, completed")
    assert rows["job-again-1"].endswith("requeued, failed again")
    assert "not retried: the job already completed" in rows["job-done"]

    # The person who asked: one mention for the whole run, though two of its jobs failed again.
    mentions = [m for m in thread if "<@U1>" in message_text(m)]
    assert len(mentions) == 1, [message_text(m) for m in mentions]
    said = message_text(mentions[0])
    assert "failed again" in said and "torch.OutOfMemoryError: CUDA out of memory. Tried to allocate" in said
    assert "Traceback" not in said, "the error's one line, not its first"

    [upload] = slack.uploads.values()
    upload = upload.decode() if isinstance(upload, bytes) else upload
    shown = "\n".join(message_text(m) for m in [parent, *thread]) + upload
    assert "<html" not in shown and "&lt;html" not in shown and "Bad Gateway 502" not in shown, "no raw HTML"
    [lost] = [r for r in json.loads(upload)["results"] if r["job"] == "job-lost"]
    assert lost["may_have_gone_through"] is True and lost["error"].endswith("(HTTP 502 Bad Gateway)")
    assert not slack.rejected()
