"""The settings (bot/infra/config.py): what is missing or malformed is named, with where to get it; the defaults."""

from __future__ import annotations

import pytest

from bot.infra.config import SETTINGS, ConfigError, load_policies, load_settings, settings_table

BASE = {"SLACK_BOT_TOKEN": "xoxb-1", "RUNPOD_API_KEY": "rp-1", "SLACK_SIGNING_SECRET": "s"}


def problems_of(env: dict[str, str]) -> list[str]:
    with pytest.raises(ConfigError) as caught:
        load_settings(env)
    return caught.value.problems


def test_nothing_set_names_every_missing_setting_with_where_to_get_it():
    problems = problems_of({})
    text = "\n".join(problems)
    assert len(problems) == 3
    for name in ("SLACK_BOT_TOKEN", "RUNPOD_API_KEY", "SLACK_APP_TOKEN", "SLACK_SIGNING_SECRET"):
        assert name in text
    assert "OAuth & Permissions" in text and "API Keys" in text and "App-Level Tokens" in text


def test_the_alert_command_needs_only_the_bot_token():
    assert load_settings({"SLACK_BOT_TOKEN": "xoxb-1"}, serving=False).slack_bot_token == "xoxb-1"
    assert "SLACK_BOT_TOKEN" in problems_of({})[0]


def test_defaults_and_modes():
    http = load_settings(BASE)
    assert not http.socket_mode and http.port == 3000
    assert http.runpod_api_url == "https://api.runpod.ai/v2" and http.slack_api_url == "https://slack.com/api/"
    socket = load_settings({"SLACK_BOT_TOKEN": "xoxb-1", "RUNPOD_API_KEY": "rp-1", "SLACK_APP_TOKEN": "xapp-1"})
    assert socket.socket_mode
    custom = load_settings({**BASE, "RUNPOD_API_URL": "http://127.0.0.1:1/v2/", "SLACK_API_URL": "http://h/api",
                            "PORT": "8080"})
    assert custom.runpod_api_url == "http://127.0.0.1:1/v2" and custom.slack_api_url == "http://h/api/"
    assert custom.port == 8080


@pytest.mark.parametrize(("env", "says"), [
    ({"SLACK_BOT_TOKEN": "xapp-1"}, "should start with `xoxb-`"),
    ({"SLACK_APP_TOKEN": "xoxb-2"}, "should start with `xapp-`"),
    ({"PORT": "web"}, "PORT must be a number"),
    ({"RUNPOD_TIMEOUT": "0"}, "RUNPOD_TIMEOUT must be at least"),
    ({"RUNPOD_MAX_ATTEMPTS": "0"}, "RUNPOD_MAX_ATTEMPTS must be at least 1"),
    ({"LOG_FORMAT": "xml"}, "LOG_FORMAT"),
    ({"RUNPOD_RETRY_ENDPOINTS": "ep1,bad id!"}, "RUNPOD_RETRY_ENDPOINTS"),
])
def test_malformed_settings_are_named(env, says):
    problems = problems_of({**BASE, **env})
    assert any(says in p for p in problems), problems


def test_endpoint_keys_are_parsed_and_become_secrets():
    s = load_settings({**BASE, "RUNPOD_ENDPOINT_KEYS": " epA=key-a , epB=key=b\nepC = key-c ,"})
    assert dict(s.runpod_endpoint_keys) == {"epA": "key-a", "epB": "key=b", "epC": "key-c"}
    assert {"key-a", "key=b", "key-c", "rp-1", "xoxb-1", "s"} <= set(s.secrets())
    assert dict(load_settings(BASE).runpod_endpoint_keys) == {}


@pytest.mark.parametrize("value", ["epA", "epA=", "=sekrit-9", "bad id!=sekrit-9", "epA=sekrit-9,epB"])
def test_malformed_endpoint_keys_are_named_without_the_key(value):
    problems = problems_of({**BASE, "RUNPOD_ENDPOINT_KEYS": value})
    assert any("RUNPOD_ENDPOINT_KEYS" in p for p in problems)
    assert not any("sekrit-9" in p for p in problems)


def test_settings_table_lists_every_setting():
    table = settings_table()
    for setting in SETTINGS:
        assert f"`{setting.name}`" in table


# ---------------------------------------------------------------- RUNPOD_RETRY_POLICIES

GOOD_POLICY = """[[policy]]
name = "oom-once"
endpoints = ["ep-a", "ep-b"]
errors = ["CUDA out of memory"]
max_attempts = 2
delay = "30s"
mode = "on"
"""


def test_without_a_policy_file_there_are_no_policies():
    assert load_settings(BASE).policies == ()


def test_the_policy_file_is_read_into_settings(tmp_path):
    path = tmp_path / "policies.toml"
    path.write_text(GOOD_POLICY, encoding="utf-8")

    [policy] = load_settings({**BASE, "RUNPOD_RETRY_POLICIES": str(path)}).policies

    assert policy.name == "oom-once" and policy.endpoints == ("ep-a", "ep-b") and policy.delay == 30.0
    assert load_policies(str(path)) == (policy,)


def test_policy_problems_join_the_other_settings_problems_each_naming_the_setting_and_file(tmp_path):
    path = tmp_path / "policies.toml"
    path.write_text(GOOD_POLICY.replace('"30s"', '"3x"'), encoding="utf-8")

    found = problems_of({**BASE, "RUNPOD_RETRY_POLICIES": str(path), "LOG_FORMAT": "xml"})

    said = f'RUNPOD_RETRY_POLICIES ({path}): policy "oom-once": delay: "3x" is not a duration such as 90s or 2m'
    assert said in found
    assert any(p.startswith("LOG_FORMAT") for p in found)


@pytest.mark.parametrize(("make", "says"), [
    (lambda d: d / "absent.toml", "there is no such file; check the path, or unset RUNPOD_RETRY_POLICIES"),
    (lambda d: d, "it is a folder; name the policy file itself"),
    (lambda d: (d / "bin.toml", (d / "bin.toml").write_bytes(b"\xff\xfe\x00name"))[0], "it is not text (UTF-8)"),
])
def test_a_policy_file_that_cannot_be_read_says_why(tmp_path, make, says):
    path = make(tmp_path)

    [problem] = problems_of({**BASE, "RUNPOD_RETRY_POLICIES": str(path)})

    assert problem.startswith(f"RUNPOD_RETRY_POLICIES ({path}): ") and says in problem, problem


def test_a_policy_endpoint_the_allowlist_forbids_is_a_problem(tmp_path):
    path = tmp_path / "policies.toml"
    path.write_text(GOOD_POLICY, encoding="utf-8")

    [problem] = problems_of({**BASE, "RUNPOD_RETRY_POLICIES": str(path), "RUNPOD_RETRY_ENDPOINTS": "ep-a,ep-c"})

    assert problem == (f'RUNPOD_RETRY_POLICIES ({path}): policy "oom-once": endpoints: "ep-b" is not in '
                       "RUNPOD_RETRY_ENDPOINTS, so the app may never retry its jobs; add it there or remove it here")
    every = tmp_path / "every.toml"
    every.write_text(GOOD_POLICY.replace('["ep-a", "ep-b"]', '["*"]'), encoding="utf-8")
    assert load_settings({**BASE, "RUNPOD_RETRY_POLICIES": str(every), "RUNPOD_RETRY_ENDPOINTS": "ep-a"}).policies


def test_commands_that_do_not_serve_do_not_need_the_policy_file(tmp_path):
    # A broken policy file must not stand in the way of a retry from a terminal or a posted alert.
    env = {**BASE, "RUNPOD_RETRY_POLICIES": str(tmp_path / "absent.toml")}
    assert load_settings(env, serving=False).policies == ()
    assert load_settings(env, serving=False, needs=("RUNPOD_API_KEY",)).policies == ()


def test_the_database_password_is_a_secret_the_logs_scrub():
    settings = load_settings({**BASE, "RUNPOD_RETRY_DB": "postgresql://app:s3cr%40t@db.internal:5432/runpod"})
    assert "s3cr%40t" in settings.secrets() and "s3cr@t" in settings.secrets()
