"""A failed job's `error` in one line: a traceback by its exception, runpod-python's JSON by its type and message,
a plain sentence as it is; the whole error kept readable for the thread; failures grouped by what went wrong."""

from __future__ import annotations

import json

import pytest

from bot.core.worker_errors import (
    MAX_DETAILS_CHARS,
    SUMMARY_CHARS,
    common_errors,
    error_details,
    error_family,
    error_summary,
)
from testkit.fakes.worker_shapes import (
    KEYERROR_TRACEBACK,
    TORCH_OOM_TRACEBACK,
    VALUE_ERROR_TRACEBACK,
    runpod_python_error,
)


def test_a_traceback_reads_as_its_exception_not_its_first_line():
    summary = error_summary(TORCH_OOM_TRACEBACK)

    assert summary is not None and summary.startswith(
        "torch.OutOfMemoryError: CUDA out of memory. Tried to allocate 2.00 GiB. GPU 0 has a total capacity")
    assert "Traceback" not in summary and len(summary) <= SUMMARY_CHARS and summary.endswith("…")
    assert error_summary(VALUE_ERROR_TRACEBACK) == "ValueError: invalid literal for int() with base 10: 'thirty'"


def test_runpod_pythons_json_error_reads_as_type_and_message():
    assert error_summary(runpod_python_error()) == "KeyError: 'prompt'"
    oom = runpod_python_error("<class 'torch.OutOfMemoryError'>", "CUDA out of memory. Tried to allocate 2.00 GiB.",
                              TORCH_OOM_TRACEBACK)
    assert error_summary(oom) == "torch.OutOfMemoryError: CUDA out of memory. Tried to allocate 2.00 GiB."
    # Already decoded by someone (a dict), or with an empty message: the traceback's exception line says it.
    assert error_summary(json.loads(runpod_python_error())) == "KeyError: 'prompt'"
    assert error_summary(runpod_python_error("<class 'KeyError'>", "", KEYERROR_TRACEBACK)) == "KeyError: 'prompt'"


def test_runpod_pythons_json_cut_short_still_reads_as_type_and_message():
    cut = runpod_python_error()[:150] + "…"

    with pytest.raises(ValueError):
        json.loads(cut)
    assert error_summary(cut) == "KeyError: 'prompt'"


@pytest.mark.parametrize("error", ["CUDA out of memory", "Worker lost", "handler returned no output"])
def test_a_plain_sentence_stays_as_it_is_and_has_no_details(error):
    assert error_summary(error) == error
    assert error_details(error) is None


def test_torch_cuda_errors_that_go_on_over_lines_read_as_their_first_line():
    trace = ('Traceback (most recent call last):\n  File "/app/handler.py", line 9, in handler\n    x.cuda()\n'
             "RuntimeError: CUDA error: device-side assert triggered\n"
             "CUDA kernel errors might be asynchronously reported at some other API call, so the stacktrace below "
             "might be incorrect.\nFor debugging consider passing CUDA_LAUNCH_BLOCKING=1\n"
             "Compile with `TORCH_USE_CUDA_DSA` to enable device-side assertions.\n")

    assert error_summary(trace) == "RuntimeError: CUDA error: device-side assert triggered"


def test_a_chained_traceback_reads_as_its_last_exception_and_a_cut_one_still_finds_it():
    chained = (VALUE_ERROR_TRACEBACK + "\nDuring handling of the above exception, another exception occurred:\n\n"
               + KEYERROR_TRACEBACK)
    assert error_summary(chained) == "KeyError: 'prompt'"
    cut = "… (40 earlier lines cut)\n" + "\n".join(TORCH_OOM_TRACEBACK.splitlines()[5:])
    assert (error_summary(cut) or "").startswith("torch.OutOfMemoryError: CUDA out of memory.")


def test_nothing_to_summarise():
    assert error_summary(None) is None and error_summary("") is None and error_summary("\n \n") is None
    assert error_details(None) is None


def test_long_summaries_are_cut_at_a_word():
    summary = error_summary("ValueError: " + "word " * 200, limit=80)

    assert summary is not None and len(summary) <= 80 and summary.endswith("word…")


def test_the_details_are_the_traceback_as_lines_never_escaped_json():
    details = error_details(runpod_python_error()) or ""

    assert details.splitlines()[-1] == "KeyError: 'prompt'"
    assert 'File "/app/handler.py", line 22, in handler' in details
    assert "worker p7k2x9m4qz1h" in details and "runpod-python 1.7.9" in details
    assert "\\n" not in details and "error_traceback" not in details and "&quot;" not in details
    assert error_details(TORCH_OOM_TRACEBACK) == TORCH_OOM_TRACEBACK.strip()


def test_very_long_details_keep_their_end_where_the_cause_is():
    frames = "".join(f'  File "/app/m{n}.py", line {n}, in f{n}\n    f{n + 1}()\n' for n in range(400))
    details = error_details(f"Traceback (most recent call last):\n{frames}RecursionError: maximum recursion depth")

    assert details is not None and len(details) <= MAX_DETAILS_CHARS
    assert details.startswith("… (") and details.endswith("RecursionError: maximum recursion depth")


def test_failures_are_grouped_by_what_went_wrong_not_by_their_sizes():
    ooms = [error_summary(TORCH_OOM_TRACEBACK.replace("2.00 GiB", f"{n}.00 GiB")) or "" for n in range(2, 6)]
    values = [error_summary(VALUE_ERROR_TRACEBACK) or ""] * 4

    assert error_family(ooms[0]) == "torch.OutOfMemoryError: CUDA out of memory."
    assert common_errors(ooms + values) == [("torch.OutOfMemoryError: CUDA out of memory. …", 4),
                                            ("ValueError: invalid literal for int() with base 10: 'thirty'", 4)]
    assert common_errors(["Worker lost"] * 3 + ["CUDA out of memory"]) == [("Worker lost", 3),
                                                                          ("CUDA out of memory", 1)]


def test_a_grouped_alert_keeps_one_whole_error_of_each_kind_and_reads_older_saved_storms():
    from bot.core.groups import MAX_EXAMPLES, Storm

    storm = Storm("ep1", "C1", started=1.0, last_at=1.0)
    kept = [storm.add_example(f"job-{n}", error) for n, error in enumerate(
        [TORCH_OOM_TRACEBACK, TORCH_OOM_TRACEBACK.replace("2.00 GiB", "4.00 GiB"), runpod_python_error(),
         "Worker lost", VALUE_ERROR_TRACEBACK, 'Traceback (most recent call last):\n  File "x"\nOSError: disk'])]

    assert kept == [True, False, True, False, True, False], "first of each kind, plain one-liners need none"
    assert len(storm.examples) == MAX_EXAMPLES
    assert storm.examples["KeyError: 'prompt'"][0] == "job-2"
    again = Storm.from_json(storm.to_json())
    assert again.examples == storm.examples
    older = json.loads(storm.to_json())
    del older["examples"], older["examples_ts"]
    assert Storm.from_json(json.dumps(older)).examples == {}
