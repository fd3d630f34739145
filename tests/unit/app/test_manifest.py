"""The Slack app manifest (manifest.yml) is valid and declares what the bot relies on."""

import copy
import json
from pathlib import Path

import jsonschema
import pytest
import yaml

REPO_ROOT = Path(__file__).resolve().parents[3]
MANIFEST_PATH = REPO_ROOT / "manifest.yml"
SCHEMA_PATH = REPO_ROOT.parent / "shared" / "slack" / "manifest.schema.1.0.0.json"
COMMAND = "/runpod-retry"


@pytest.fixture(scope="module")
def manifest() -> dict:
    data = yaml.safe_load(MANIFEST_PATH.read_text(encoding="utf-8"))
    assert isinstance(data, dict), "manifest.yml must be a YAML mapping"
    return data


@pytest.fixture(scope="module")
def validator() -> jsonschema.Draft7Validator:
    if not SCHEMA_PATH.is_file():
        pytest.skip(f"Slack manifest schema not found at {SCHEMA_PATH} (../shared is optional)")
    schema = json.loads(SCHEMA_PATH.read_text(encoding="utf-8"))
    jsonschema.Draft7Validator.check_schema(schema)
    return jsonschema.Draft7Validator(schema)


def _slash_command(manifest: dict) -> dict:
    commands = manifest.get("features", {}).get("slash_commands", [])
    matches = [c for c in commands if c.get("command") == COMMAND]
    assert len(matches) == 1, f"expected exactly one {COMMAND} slash command, found {len(matches)}"
    return matches[0]


def test_manifest_is_plain_json_data(manifest):
    # Slack reads the manifest as JSON: YAML-only data (dates, a bare `on:` key) must not slip in.
    assert json.loads(json.dumps(manifest)) == manifest


def test_manifest_validates_against_slack_schema(manifest, validator):
    errors = sorted(validator.iter_errors(manifest), key=lambda e: list(e.absolute_path))
    assert not errors, "\n".join(f"{list(e.absolute_path)}: {e.message}" for e in errors)


def test_schema_rejects_a_broken_manifest(manifest, validator):
    # Guards the test above: the schema must be strict enough to catch a typo in a key.
    broken = copy.deepcopy(manifest)
    broken["settings"]["socket_mode_enable"] = broken["settings"].pop("socket_mode_enabled")
    assert not validator.is_valid(broken)


def test_declares_slash_command_with_usage_hint(manifest):
    command = _slash_command(manifest)
    assert command.get("description", "").strip()
    hint = command.get("usage_hint", "")
    for subcommand in ("status", "failed", "history", "help"):
        assert subcommand in hint, f"usage_hint does not mention {subcommand!r}: {hint!r}"
    assert command.get("should_escape") is False


def test_interactivity_is_enabled(manifest):
    interactivity = manifest.get("settings", {}).get("interactivity", {})
    assert interactivity.get("is_enabled") is True


def test_request_urls_point_at_slack_events(manifest):
    # HTTP mode serves both slash commands and button clicks on /slack/events.
    urls = [
        _slash_command(manifest).get("url", ""),
        manifest["settings"]["interactivity"].get("request_url", ""),
    ]
    for url in urls:
        assert url.startswith("https://") and url.endswith("/slack/events"), url


def test_bot_scopes_cover_commands_and_posting(manifest):
    scopes = set(manifest.get("oauth_config", {}).get("scopes", {}).get("bot", []))
    missing = {"commands", "chat:write"} - scopes
    assert not missing, f"missing bot scopes: {sorted(missing)}"


def test_socket_mode_is_on_by_default(manifest):
    assert manifest.get("settings", {}).get("socket_mode_enabled") is True


# ---------------------------------------------------------------- issue 12: the shortcut, the Home tab, events


def test_declares_the_message_shortcut_with_the_apps_callback_id(manifest):
    from bot.core import actions

    [shortcut] = manifest["features"]["shortcuts"]
    assert shortcut["type"] == "message" and shortcut["callback_id"] == actions.SHORTCUT
    assert shortcut["name"] == "Retry RunPod jobs"


def test_enables_the_home_tab_and_subscribes_to_app_home_opened(manifest):
    assert manifest["features"]["app_home"]["home_tab_enabled"] is True
    events = manifest["settings"]["event_subscriptions"]
    assert "app_home_opened" in events["bot_events"]
    # HTTP mode takes events at the same Request URL as commands and clicks.
    assert events["request_url"].startswith("https://") and events["request_url"].endswith("/slack/events")


def test_usage_hint_mentions_health(manifest):
    assert "health <endpointId>" in _slash_command(manifest)["usage_hint"]
