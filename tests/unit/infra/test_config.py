"""The settings (bot/infra/config.py): what is missing or malformed is named, with where to get it; the defaults."""

from __future__ import annotations

import pytest

from bot.infra.config import SETTINGS, ConfigError, load_settings, settings_table

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
