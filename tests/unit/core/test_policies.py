"""Retry policies (bot/core/policies.py): which failures a policy matches, the first match winning, durations, the
one-line description, and every problem a policy file can have, named by policy and field for a tired human."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from bot.core.policies import (
    RESULTS,
    STATUSES,
    Policy,
    PolicyFileError,
    describe,
    first_match,
    parse_duration,
    parse_policies,
)

SOURCE = "RUNPOD_RETRY_POLICIES (/etc/policies.toml)"

# The issue's own example, field for field.
EXAMPLE = """
[[policy]]
name = "oom-once"                        # shown in Slack, the audit log and history
endpoints = ["ep-a", "ep-b"]             # or ["*"]
errors = ["CUDA out of memory", "re:Worker .* (died|lost)"]
statuses = ["FAILED", "TIMED_OUT"]       # optional, default both
max_attempts = 2                         # automatic retries of one job, at most
delay = "30s"                            # before each automatic retry ("90s", "2m")
only_when_healthy = true                 # optional, default true
mode = "on"                              # "on" or "dry-run"
"""

MINIMAL = {"name": '"p"', "endpoints": '["ep-a"]', "errors": "[]", "max_attempts": "1", "delay": '"0s"',
           "mode": '"on"'}


def policy_toml(**fields: str | None) -> str:
    """One [[policy]] table: MINIMAL's fields, with `fields` overriding (None leaves a field out)."""
    merged = {**MINIMAL, **fields}
    return "[[policy]]\n" + "".join(f"{k} = {v}\n" for k, v in merged.items() if v is not None)


def problems(text: str) -> tuple[str, ...]:
    with pytest.raises(PolicyFileError) as caught:
        parse_policies(text, SOURCE)
    return caught.value.problems


def one_problem(text: str) -> str:
    [problem] = problems(text)
    return problem


# ---------------------------------------------------------------- reading a good file


def test_the_issues_example_reads_field_for_field():
    [policy] = parse_policies(EXAMPLE, SOURCE)

    assert policy == Policy(name="oom-once", endpoints=("ep-a", "ep-b"),
                            errors=("CUDA out of memory", "re:Worker .* (died|lost)"), statuses=("FAILED", "TIMED_OUT"),
                            max_attempts=2, delay=30.0, only_when_healthy=True, mode="on")
    assert not policy.dry_run


def test_optional_fields_default_to_both_statuses_and_only_when_healthy():
    [policy] = parse_policies(policy_toml(mode='"dry-run"'))

    assert policy.statuses == STATUSES == ("FAILED", "TIMED_OUT")
    assert policy.only_when_healthy is True
    assert policy.dry_run and policy.errors == () and policy.delay == 0.0


def test_policies_keep_the_files_order():
    text = policy_toml(name='"first"') + policy_toml(name='"second"') + policy_toml(name='"third"')

    assert [p.name for p in parse_policies(text)] == ["first", "second", "third"]


def test_the_results_are_the_specs_words():
    assert RESULTS == ("sent", "completed", "failed_again", "skipped", "dry_run", "refused")


# ---------------------------------------------------------------- matching

OOM = Policy(name="oom", endpoints=("ep-a", "ep-b"), errors=("CUDA out of memory",), max_attempts=2, delay=30.0)
WORKER = Policy(name="worker", endpoints=("*",), errors=("re:Worker .* (died|lost)",))
ANY = Policy(name="any", endpoints=("ep-c",), errors=())


@pytest.mark.parametrize(("summary", "text", "matched"), [
    ("CUDA out of memory", None, True),
    ("RuntimeError: CUDA out of memory. Tried to allocate 2 GiB", None, True),   # a substring of the summary
    ("RuntimeError", "Traceback …\nRuntimeError: CUDA out of memory. Tried", True),  # … or of the whole text
    ("cuda out of memory", None, False),                                         # case-sensitive
    ("CUDA error", "device-side assert", False),
    (None, None, False),                                                         # no error text: nothing to match
])
def test_a_substring_matches_the_summary_or_the_whole_text(summary, text, matched):
    assert OOM.matches("ep-a", "FAILED", summary, text) is matched


@pytest.mark.parametrize(("summary", "text", "matched"), [
    ("Worker 7 died", None, True),
    ("job failed", "handler crashed\nWorker gpu-3 lost its lease", True),
    ("Worker died", None, False),          # the regex needs something between "Worker " and "died"
    ("worker 7 died", None, False),
    ("re:Worker .* (died|lost)", None, False),  # the pattern is a regex, not the literal text after re:
])
def test_re_prefix_is_a_regex_searched_in_the_summary_or_the_whole_text(summary, text, matched):
    assert WORKER.matches("any-endpoint", "TIMED_OUT", summary, text) is matched


def test_statuses_default_to_both_and_narrow_when_given():
    assert OOM.matches("ep-a", "FAILED", "CUDA out of memory", None)
    assert OOM.matches("ep-a", "TIMED_OUT", "CUDA out of memory", None)
    timeouts = Policy(name="t", endpoints=("*",), errors=(), statuses=("TIMED_OUT",))
    assert timeouts.matches("ep-a", "TIMED_OUT", None, None)
    assert not timeouts.matches("ep-a", "FAILED", None, None)
    assert not OOM.matches("ep-a", "CANCELLED", "CUDA out of memory", None)


def test_endpoints_are_a_list_or_every_endpoint():
    assert OOM.covers("ep-a") and OOM.covers("ep-b") and not OOM.covers("ep-c")
    assert not OOM.matches("ep-c", "FAILED", "CUDA out of memory", None)
    assert WORKER.covers("ep-a") and WORKER.covers("anything-else")


def test_an_empty_errors_list_matches_any_error_even_none():
    assert ANY.matches("ep-c", "FAILED", "whatever went wrong", "and its traceback")
    assert ANY.matches("ep-c", "TIMED_OUT", None, None)
    assert not ANY.matches("ep-a", "FAILED", "whatever", None)


def test_the_first_policy_that_matches_wins():
    catch_all = Policy(name="catch-all", endpoints=("*",), errors=())
    policies = [OOM, WORKER, catch_all]

    assert first_match(policies, "ep-a", "FAILED", "CUDA out of memory; Worker 1 died", None) is OOM
    assert first_match(policies, "ep-c", "FAILED", "CUDA out of memory; Worker 1 died", None) is WORKER
    assert first_match(policies, "ep-c", "FAILED", "disk full", None) is catch_all
    assert first_match([catch_all, OOM], "ep-a", "FAILED", "CUDA out of memory", None) is catch_all
    assert first_match([OOM, WORKER], "ep-c", "FAILED", "disk full", None) is None
    assert first_match([], "ep-a", "FAILED", "CUDA out of memory", None) is None


def test_a_parsed_file_matches_like_the_policies_it_describes():
    [policy] = parse_policies(EXAMPLE)

    assert policy.matches("ep-b", "TIMED_OUT", None, "… Worker abc lost …")
    assert not policy.matches("ep-z", "FAILED", "CUDA out of memory", None)


# ---------------------------------------------------------------- durations


@pytest.mark.parametrize(("text", "seconds"), [
    ("90s", 90.0), ("2m", 120.0), ("1h", 3600.0), ("0s", 0.0), ("1.5m", 90.0), (" 45 s ", 45.0), ("2M", 120.0),
    ("1d", 86400.0),
])
def test_durations(text, seconds):
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["3x", "", "30", "s", "-5s", "1m30s", "ten minutes", "1e3s"])
def test_a_bad_duration_says_what_one_looks_like(text):
    with pytest.raises(ValueError, match=re.escape(f'"{text}" is not a duration such as 90s or 2m')):
        parse_duration(text)


# ---------------------------------------------------------------- the one-line description


def test_describe_says_what_where_how_often_and_how_soon():
    [policy] = parse_policies(EXAMPLE)

    assert describe(policy) == ("oom-once: CUDA out of memory or /Worker .* (died|lost)/ on ep-a, ep-b, up to 2 "
                                "retries 30 s apart")


def test_describe_every_endpoint_one_retry_narrowed_status_unhealthy_and_dry_run():
    policy = Policy(name="timeouts", endpoints=("*",), errors=(), statuses=("TIMED_OUT",), max_attempts=1,
                    delay=150.0, only_when_healthy=False, mode="dry-run")

    assert describe(policy) == ("timeouts: any error on every endpoint, timed out jobs only, 1 retry after 2 min 30 s, "
                                "even while the endpoint's health warns (dry run: says what it would do, retries "
                                "nothing)")
    assert describe(Policy(name="now", endpoints=("ep-a",), errors=("x",), max_attempts=3)) == (
        "now: x on ep-a, up to 3 retries right away")


# ---------------------------------------------------------------- every problem, named by policy and field


@pytest.mark.parametrize(("fields", "says"), [
    ({"name": "3"}, 'policy #1: name: it must be text in quotes, such as "oom-once", not 3'),
    ({"name": '"  "'}, "policy #1: name: it is empty; people see it in Slack, the audit log and history"),
    ({"name": None}, 'policy #1: name: it is missing; every policy needs one (see the README\'s "Retry policies")'),
    ({"name": '"' + "n" * 61 + '"'}, "is too long or not on one line"),
    ({"endpoints": '"ep-a"'}, 'policy "p": endpoints: it must be a list of texts in quotes, such as ["ep-a", "ep-b"] '
                              'or ["*"], not "ep-a"'),
    ({"endpoints": "[]"}, 'policy "p": endpoints: it is empty; list endpoint IDs, or ["*"] for every endpoint'),
    ({"endpoints": '["ep/b"]'}, 'policy "p": endpoints: "ep/b" is not an endpoint ID: it contains \'/\'; only '
                                "letters, digits, '-' and '_' are allowed"),
    ({"endpoints": '["ep a"]'}, 'policy "p": endpoints: "ep a" is not an endpoint ID: it contains a space'),
    ({"endpoints": '["*", "ep-a"]'}, 'policy "p": endpoints: "*" already means every endpoint; list either "*" alone '
                                     "or endpoint IDs"),
    ({"endpoints": None}, 'policy "p": endpoints: it is missing'),
    ({"errors": '"CUDA"'}, 'policy "p": errors: it must be a list of texts in quotes'),
    ({"errors": '["re:Worker (died"]'}, 'policy "p": errors: "re:Worker (died" is not a valid regular expression '
                                        "(missing ), unterminated subpattern at position 7)"),
    ({"errors": '["re:"]'}, 'policy "p": errors: "re:" has no regular expression after re:'),
    ({"errors": '[""]'}, 'policy "p": errors: "" would match every error; write errors = [] to match any error'),
    ({"errors": None}, 'policy "p": errors: it is missing'),
    ({"statuses": '["CRASHED"]'}, 'policy "p": statuses: "CRASHED" is not a status a failed job can have; use '
                                  '"FAILED" or "TIMED_OUT"'),
    ({"statuses": '["failed"]'}, 'policy "p": statuses: "failed" is not a status'),
    ({"statuses": "[]"}, 'policy "p": statuses: it is empty, so the policy would never apply'),
    ({"max_attempts": "0"}, 'policy "p": max_attempts: 0 would never retry; use at least 1'),
    ({"max_attempts": "-1"}, 'policy "p": max_attempts: -1 would never retry; use at least 1'),
    ({"max_attempts": "11"}, 'policy "p": max_attempts: 11 is too many automatic retries of one job; use at most 10'),
    ({"max_attempts": '"2"'}, 'policy "p": max_attempts: it must be a whole number such as 2, not "2"'),
    ({"max_attempts": "2.5"}, 'policy "p": max_attempts: it must be a whole number such as 2, not 2.5'),
    ({"max_attempts": "true"}, 'policy "p": max_attempts: it must be a whole number such as 2, not true'),
    ({"max_attempts": None}, 'policy "p": max_attempts: it is missing'),
    ({"delay": '"3x"'}, 'policy "p": delay: "3x" is not a duration such as 90s or 2m'),
    ({"delay": "30"}, 'policy "p": delay: it must be a duration in quotes, such as "30s" or "2m", not 30'),
    ({"delay": '"45m"'}, 'policy "p": delay: "45m" is too long: RunPod forgets a failed job 30 min after it ends, so '
                         "the retry could never happen; use less than 30m"),
    ({"delay": None}, 'policy "p": delay: it is missing'),
    ({"only_when_healthy": '"yes"'}, 'policy "p": only_when_healthy: it must be true or false, not "yes"'),
    ({"mode": '"maybe"'}, 'policy "p": mode: it must be "on" or "dry-run" (says what it would do, does nothing), not '
                          '"maybe"'),
    ({"mode": '"dry_run"'}, 'policy "p": mode: it must be "on" or "dry-run"'),
    ({"mode": None}, 'policy "p": mode: it is missing'),
    ({"retries": "2"}, 'policy "p": retries: it is not a field of a policy; the fields are name, endpoints, errors, '
                       "statuses, max_attempts, delay, only_when_healthy, mode"),
    ({"max_attempt": "2"}, 'policy "p": max_attempt: it is not a field of a policy; did you mean max_attempts?'),
])
def test_each_problem_is_named_by_policy_and_field(fields, says):
    problem = one_problem(policy_toml(**fields))

    assert problem.startswith(f"{SOURCE}: ")
    assert says in problem, problem
    assert "\n" not in problem


def test_every_problem_in_the_file_is_reported_at_once_in_file_order():
    text = (policy_toml(name='"oom-once"', endpoints='["ep/b"]', delay='"3x"', mode='"maybe"', retries="2")
            + policy_toml(name="7", errors='["re:("]'))

    found = problems(text)

    assert [p.removeprefix(f"{SOURCE}: ").split(":")[0:2] for p in found] == [
        ['policy "oom-once"', " retries"],
        ['policy "oom-once"', " endpoints"],
        ['policy "oom-once"', " delay"],
        ['policy "oom-once"', " mode"],
        ["policy #2", " name"],
        ["policy #2", " errors"],
    ]
    assert f'{SOURCE}: policy "oom-once": delay: "3x" is not a duration such as 90s or 2m' in found


def test_duplicate_names_are_a_problem_told_apart_by_place():
    text = policy_toml(name='"oom"') + policy_toml(name='"other"') + policy_toml(name='"oom"', delay='"x"')

    assert problems(text) == (
        f'{SOURCE}: policy "oom" (#3): delay: "x" is not a duration such as 90s or 2m',
        f'{SOURCE}: policy "oom" (#3): name: policy #1 already has this name; give each policy its own',
    )


@pytest.mark.parametrize(("text", "says"), [
    ("", 'it has no policy; each one starts with a [[policy]] line (see the README\'s "Retry policies")'),
    ("# only a comment\n", "it has no policy; each one starts with a [[policy]] line"),
    ("policy = []\n", "it has no policy"),
    ("[policy]\nname = \"p\"\n", "policy must be a list of tables: start each policy with [[policy]], in double "
                                 "brackets"),
    ("policy = 3\n", "policy must be a list of tables"),
    ("[[policy]\nname = \"p\"\n", "it is not valid TOML: "),
    ('[[policy]]\nname = "p\n', "it is not valid TOML: "),
])
def test_a_file_without_policies_or_not_toml_says_so(text, says):
    problem = one_problem(text)

    assert problem.startswith(f"{SOURCE}: ") and says in problem, problem
    assert "\n" not in problem


def test_unknown_top_level_keys_are_problems_too():
    found = problems('retries = 3\n' + policy_toml())

    assert found == (f'{SOURCE}: "retries" is not something a policy file can set; it holds only [[policy]] tables',)


def test_toml_errors_say_where():
    problem = one_problem('[[policy]]\nname = "p"\nendpoints = [ep-a]\n')

    assert "line 3" in problem


def test_a_long_or_multiline_value_is_quoted_back_short_and_on_one_line():
    problem = one_problem(policy_toml(delay='"""\n' + "x" * 200 + '"""'))

    assert "\n" not in problem and "…" in problem and len(problem) < 200


def test_the_default_source_is_the_policy_file():
    with pytest.raises(PolicyFileError) as caught:
        parse_policies("")
    assert caught.value.problems[0].startswith("policy file: ")
    assert str(caught.value) == "\n".join(caught.value.problems)


def test_the_limits_themselves_are_allowed():
    [low] = parse_policies(policy_toml(max_attempts="1", delay='"0s"'))
    [high] = parse_policies(policy_toml(max_attempts="10", delay='"29m"'))

    assert (low.max_attempts, low.delay) == (1, 0.0)
    assert (high.max_attempts, high.delay) == (10, 29 * 60.0)


# ---------------------------------------------------------------- the README's example


def test_the_readmes_policy_file_and_its_problems_are_what_the_app_reads_and_says():
    readme = (Path(__file__).resolve().parents[3] / "README.md").read_text(encoding="utf-8")
    section = readme[readme.index("#### The policy file"):]
    example = section[section.index("```toml\n") + len("```toml\n"):section.index("```\n", 10)]
    shown = section[section.index("```text\n"):section.index("```\n", section.index("```text\n") + 8)]

    first, second = parse_policies(example)
    assert describe(first) == ("oom-once: CUDA out of memory or /Worker .* (died|lost)/ on abc123xyz4567, "
                               "def456uvw8901, up to 2 retries 30 s apart")
    assert second.dry_run and second.statuses == ("TIMED_OUT",) and second.delay == 120.0

    # The output shown: the first policy with a stray field and a bad delay, the second renamed "oom-once" too.
    broken = (example.replace('delay = "30s"', 'delay = "3x"\nretries = 2', 1)
              .replace('name = "timeouts-watch"', 'name = "oom-once"'))
    source = "RUNPOD_RETRY_POLICIES (/etc/runpod-retry/policies.toml)"
    with pytest.raises(PolicyFileError) as caught:
        parse_policies(broken, source)
    assert [f"  - {p}" for p in caught.value.problems] == [ln for ln in shown.splitlines() if ln.startswith("  - ")]
