"""Issue 18: Python workers' real errors, over the loopback stand-ins. An alert, a grouped alert, a retried job
that fails again, `status`, `failed` and Home read a failure by its one line (a traceback by its exception,
runpod-python's JSON error as `KeyError: 'prompt'`); the whole traceback is one click away in the alert's thread,
readable, never in a notification and never as escaped JSON."""

from __future__ import annotations

from typing import Any

from bot.core import actions
from testkit.fakes.worker_shapes import (
    TORCH_OOM_TRACEBACK,
    VALUE_ERROR_TRACEBACK,
    runpod_python_error,
)
from testkit.harness import buttons, message_text
from tests.app.alerting import ALERTS, click_retry
from tests.app.test_home import open_home

EP = "ep1"
OOM = "torch.OutOfMemoryError: CUDA out of memory. Tried to allocate 2.00 GiB. GPU 0 has a total capacity of"


async def alert_of(app, runpod, job: str, error: str, **job_options: Any) -> dict[str, Any]:  # type: ignore[no-untyped-def]
    """RunPod fails `job` with the worker's `error` and calls the webhook; the alert as it is in Slack."""
    runpod.add_job(EP, job, status="FAILED", error=error, **job_options)
    status, answer = await app.webhook(EP, {"id": job, "status": "FAILED", "error": error, "executionTime": 41200})
    assert status == 200, answer
    await app.settle()
    [alert] = [m for m in app.top_level(ALERTS) if job in message_text(m)]
    return alert


async def test_an_alert_of_a_torch_traceback_reads_as_its_exception_and_its_thread_holds_the_traceback(
        make_app, runpod, slack):
    app = await make_app("http")

    alert = await alert_of(app, runpod, "job-oom1", TORCH_OOM_TRACEBACK)

    assert alert["text"].startswith(f"FAILED: job job-oom1 on ep1: {OOM}")
    assert "Traceback" not in alert["text"] and 'File "' not in alert["text"] and len(alert["text"]) < 260
    body = message_text({"blocks": alert["blocks"]})
    assert f"*Error:* `{OOM}" in body and "Traceback" not in body and "/app/handler.py" not in body
    assert "The worker's whole error (its traceback) is in the thread." in body
    [details] = app.thread(ALERTS, alert["ts"])
    whole = message_text({"blocks": details["blocks"]})
    assert 'File "/app/handler.py", line 58, in handler' in whole and "PYTORCH_CUDA_ALLOC_CONF" in whole
    assert "Traceback (most recent call last):" not in details["text"]
    assert not slack.rejected()


async def test_runpod_pythons_json_error_reads_as_type_and_message_never_as_escaped_json(make_app, runpod, slack):
    app = await make_app("socket")

    alert = await alert_of(app, runpod, "job-key1", runpod_python_error())

    assert alert["text"].startswith("FAILED: job job-key1 on ep1: KeyError: 'prompt'. Retry before")
    assert "*Error:* `KeyError: 'prompt'`" in message_text({"blocks": alert["blocks"]})
    everything = message_text(alert) + "".join(message_text(m) for m in app.thread(ALERTS, alert["ts"]))
    assert "error_type" not in everything and "&quot;" not in everything and "\\n" not in everything
    assert "<class" not in everything and "&lt;class" not in everything
    [details] = app.thread(ALERTS, alert["ts"])
    lines = message_text({"blocks": details["blocks"]}).replace("```", "").splitlines()
    assert "KeyError: 'prompt'" in lines and '    prompt = job["input"]["prompt"]' in lines
    assert any("worker p7k2x9m4qz1h" in line for line in lines)
    assert not slack.rejected()


async def test_a_grouped_alert_counts_errors_by_what_went_wrong(make_app, runpod, slack):
    app = await make_app("http", RUNPOD_STORM_THRESHOLD="3")
    ooms = [TORCH_OOM_TRACEBACK.replace("2.00 GiB", f"{n}.00 GiB").replace("1.12 GiB", f"0.{n}1 GiB")
            for n in range(2, 6)]
    for n, error in enumerate(ooms + [VALUE_ERROR_TRACEBACK] * 4):
        runpod.add_job(EP, f"job-g{n}", error=error)
        assert (await app.webhook(EP, {"id": f"job-g{n}", "status": "FAILED", "error": error}))[0] == 200
    await app.settle()

    [storm] = [m for m in app.top_level(ALERTS) if "jobs failed on endpoint" in message_text(m)]
    text = message_text(storm)
    assert "4× `torch.OutOfMemoryError: CUDA out of memory. …`" in text
    assert "4× `ValueError: invalid literal for int() with base 10: 'thirty'`" in text
    assert "Traceback" not in text and "8×" not in text
    assert storm["text"].startswith("8 jobs failed on endpoint ep1: 4× torch.OutOfMemoryError: CUDA out of memory.")
    assert "one whole error (traceback) of each kind, are in the thread" in text
    thread = app.thread(ALERTS, storm["ts"])
    [examples] = [m for m in thread if "The whole error of one job of each kind" in message_text(m)]
    whole = message_text(examples)
    assert whole.count("Traceback (most recent call last):") == 2, "one whole traceback of each kind"
    assert 'File "/app/handler.py", line 58, in handler' in whole and 'File "/app/handler.py", line 41' in whole
    assert "*torch.OutOfMemoryError: CUDA out of memory.* (job `job-g2`)" in whole
    listed = "".join(message_text(m) for m in thread if m is not examples)
    assert "job-g7" in listed and "ValueError: invalid literal" in listed and "Traceback" not in listed
    assert not slack.rejected()


async def test_a_retried_job_that_fails_again_ends_with_its_exception_and_the_traceback_below(make_app, runpod):
    app = await make_app("http")
    alert = await alert_of(app, runpod, "job-again1", TORCH_OOM_TRACEBACK, after_retry=("IN_PROGRESS", "FAILED"),
                           final_error=runpod_python_error())

    await click_retry(app, alert, user="U7")
    await app.settle()

    ending = app.thread(ALERTS, alert["ts"])[-1]
    assert ending["text"] == "<@U7>: FAILED again after a retry: job job-again1 on ep1: KeyError: 'prompt'"
    assert "*failed again*: `KeyError: 'prompt'`." in ending["blocks"][0]["text"]["text"]
    assert '    prompt = job["input"]["prompt"]' in message_text(ending)
    assert "error_type" not in message_text(ending) and "\\n" not in message_text(ending)
    now = app.slack.messages[(ALERTS, alert["ts"])]
    assert "KeyError" in now["text"] and actions.RETRY in buttons(now)


async def test_status_failed_and_home_read_the_same_one_line(make_app, runpod, slack):
    app = await make_app("http", RUNPOD_STORM_THRESHOLD="50")
    await alert_of(app, runpod, "job-s1", runpod_python_error())
    await alert_of(app, runpod, "job-s2", TORCH_OOM_TRACEBACK)

    ack = await app.command(f"status {EP} job-s1")
    await app.settle()
    told = "".join(message_text(m) for m in app.responses(ack.response_url)) + "".join(
        message_text(m) for m in app.posts("C1"))
    assert "failed: KeyError: 'prompt'" in told and "error_traceback" not in told and "\\n" not in told
    assert '    prompt = job["input"]["prompt"]' in told and "its `error` is shown above" in told

    ack = await app.command(f"failed {EP}")
    await app.settle()
    [offer] = app.responses(ack.response_url)
    assert "1× `KeyError:" in message_text(offer) and f"1× `{OOM}" in message_text(offer)
    assert "Traceback" not in message_text(offer) and "error_type" not in message_text(offer)

    home = message_text(await open_home(app, "U1"))
    assert "failed at" in home and OOM in home and "KeyError: 'prompt'" in home
    assert "Traceback" not in home and "error_type" not in home
