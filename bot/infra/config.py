"""Settings: every name, default and "where to get it" is defined once, here.

Settings come from the process environment and from `.env` in the working directory (real environment
variables win). `SETTINGS` drives loading, the start-up error message and the README's settings table,
so the three cannot drift apart.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import unquote, urlsplit

from bot.core.ids import id_problem
from bot.core.policies import EVERY_ENDPOINT, Policy, PolicyFileError, parse_policies

DEFAULT_RUNPOD_API_URL = "https://api.runpod.ai/v2"
DEFAULT_SLACK_API_URL = "https://slack.com/api/"
POLICIES_SETTING = "RUNPOD_RETRY_POLICIES"


@dataclass(frozen=True)
class Setting:
    name: str
    default: str | None
    meaning: str
    needed: str = "no"
    where: str = ""


SETTINGS: tuple[Setting, ...] = (
    Setting("SLACK_BOT_TOKEN", None, "Bot token (`xoxb-…`) used for every Slack Web API call.", "always",
            "Slack app page → OAuth & Permissions → Bot User OAuth Token (install the app first)"),
    Setting("SLACK_APP_TOKEN", None, "App-level token (`xapp-…`, scope `connections:write`). When set, the app "
            "runs in Socket Mode.", "Socket Mode",
            "Slack app page → Basic Information → App-Level Tokens → Generate (scope connections:write)"),
    Setting("SLACK_SIGNING_SECRET", None, "Verifies the signature of every request Slack sends in HTTP mode.",
            "HTTP mode", "Slack app page → Basic Information → App Credentials → Signing Secret"),
    Setting("RUNPOD_API_KEY", None, "Default RunPod API key, sent as `Authorization: Bearer <key>`.", "always",
            "RunPod console → Settings → API Keys (a key with access to your Serverless endpoints)"),
    Setting("RUNPOD_ENDPOINT_KEYS", "", "For teams with endpoints under more than one RunPod account: "
            "comma-separated `endpointId=apiKey` pairs, e.g. `abc123xyz=rpa_KEY1,def456uvw=rpa_KEY2`. Calls for a "
            "listed endpoint (retry and status) send its key; every other endpoint uses `RUNPOD_API_KEY`. The keys "
            "are secrets like `RUNPOD_API_KEY`: never shown in Slack or in logs, and a malformed entry is reported "
            "at start-up by its position, not quoted.", "several accounts",
            "each account's RunPod console → Settings → API Keys"),
    Setting("RUNPOD_API_URL", DEFAULT_RUNPOD_API_URL, "Base of RunPod's Serverless API (point it at a stand-in "
            "in tests)."),
    Setting("SLACK_API_URL", DEFAULT_SLACK_API_URL, "Base of the Slack Web API for every Slack call, Socket "
            "Mode's `apps.connections.open` included."),
    Setting("PORT", "3000", "Port of the app's HTTP listener (`/slack/events`, `/healthz`, `/metrics`, "
            "`/runpod/webhook/…`)."),
    Setting("RUNPOD_WEBHOOK_SECRET", "", "Secret RunPod must send as `?token=` to `/runpod/webhook/<endpoint>`. "
            "Unset: the webhook route is off (answers 404).", "for alerts",
            "make one up, e.g. `python -c 'import secrets; print(secrets.token_urlsafe(32))'`"),
    Setting("RUNPOD_ALERT_CHANNEL", "", "Channel ID where failure alerts are posted.", "for alerts",
            "Slack: open the channel → its name → About → Channel ID (C…)"),
    Setting("RUNPOD_RETRY_ALLOWED_USERS", "", "Comma-separated user IDs that may retry. With this and the "
            "group list both empty, everyone in the workspace may."),
    Setting("RUNPOD_RETRY_ALLOWED_USERGROUPS", "", "Comma-separated user-group IDs (S…) whose members may "
            "retry."),
    Setting("RUNPOD_RETRY_ALLOWED_CHANNELS", "", "Comma-separated channel IDs where the command and the buttons "
            "work. Empty: everywhere."),
    Setting("RUNPOD_RETRY_ENDPOINTS", "", "Comma-separated endpoint IDs the app will ever call. Empty: any."),
    Setting("RUNPOD_RETRY_MAX_PER_JOB", "3", "Manual retries allowed for one job per hour."),
    Setting(POLICIES_SETTING, "", "Path to a TOML file of retry policies: failures they match are retried "
            "without waking anyone (see Retry policies). Unset: only people retry. A bad file stops start-up, naming "
            "each problem.", "for automatic retries"),
    Setting("RUNPOD_RETRY_DB", "runpod-retry.db", "Where the app keeps its state (audit trail, alerts, followed jobs, "
            "queued Slack messages): a SQLite file path for one instance, or a postgresql://user:password@host:5432/db "
            "URL shared by several replicas."),
    Setting("RUNPOD_AUDIT_CHANNEL", "", "Optional channel ID that gets one line per retry attempt."),
    Setting("RUNPOD_BULK_CONCURRENCY", "8", "How many RunPod calls a bulk retry makes at once."),
    Setting("RUNPOD_STORM_THRESHOLD", "5", "Failures of one endpoint within the storm window that turn single "
            "alerts into one grouped alert."),
    Setting("RUNPOD_STORM_WINDOW", "120", "Storm window, in seconds."),
    Setting("RUNPOD_FOLLOW_INTERVAL", "5", "First wait, in seconds, between status checks of a retried job "
            "(it grows 1.5x per check, up to 60 s)."),
    Setting("RUNPOD_FOLLOW_MAX", "3600", "How long, in seconds, a retried job is followed before the app gives "
            "up and says so."),
    Setting("RUNPOD_TIMEOUT", "10", "Timeout, in seconds, of one RunPod API call."),
    Setting("RUNPOD_MAX_ATTEMPTS", "4", "Attempts per RunPod status or health check when it answers 429 (waits "
            "`Retry-After`, else backs off exponentially). A retry is not bounded by this: its 429s are waited out "
            "until the job's 30-minute retry window closes."),
    Setting("SLACK_PING_INTERVAL", "10", "Socket Mode keep-alive ping interval, in seconds (a dropped socket "
            "is noticed within a few of these)."),
    Setting("RUNPOD_RETRY_TIME_SCALE", "1", "For tests and benchmarks only: leave unset in production. Multiplies "
            "every wait the app assumes (pacing, Slack's and RunPod's limits, leases, sweeps, caches; "
            "bot/infra/timing.py) and divides every rate by it, so `0.1` runs the app's clock ten times as fast "
            "against stand-ins that enforce the platforms' limits at the same scale. Settings above are not scaled."),
    Setting("LOG_FORMAT", "text", "`json` for one JSON object per line; `text` otherwise."),
    Setting("LOG_LEVEL", "INFO", "Python log level."),
)

SETTING_NAMES = frozenset(s.name for s in SETTINGS)
_BY_NAME = {s.name: s for s in SETTINGS}


class ConfigError(Exception):
    """Settings are missing or malformed; `problems` holds one plain sentence each."""

    def __init__(self, problems: list[str]):
        super().__init__("\n".join(problems))
        self.problems = problems


def _csv(value: str) -> tuple[str, ...]:
    items = (item.strip() for item in value.replace("\n", ",").split(","))
    return tuple(dict.fromkeys(item for item in items if item))


@dataclass(frozen=True)
class Settings:
    slack_bot_token: str
    runpod_api_key: str
    slack_app_token: str = ""
    slack_signing_secret: str = ""
    runpod_endpoint_keys: Mapping[str, str] = field(default_factory=dict)
    runpod_api_url: str = DEFAULT_RUNPOD_API_URL
    slack_api_url: str = DEFAULT_SLACK_API_URL
    port: int = 3000
    webhook_secret: str = ""
    alert_channel: str = ""
    allowed_users: tuple[str, ...] = ()
    allowed_usergroups: tuple[str, ...] = ()
    allowed_channels: tuple[str, ...] = ()
    allowed_endpoints: tuple[str, ...] = ()
    max_retries_per_job: int = 3
    policies: tuple[Policy, ...] = ()
    db_path: str = "runpod-retry.db"
    audit_channel: str = ""
    bulk_concurrency: int = 8
    storm_threshold: int = 5
    storm_window: float = 120.0
    follow_interval: float = 5.0
    follow_max: float = 3600.0
    runpod_timeout: float = 10.0
    runpod_max_attempts: int = 4
    slack_ping_interval: float = 10.0
    time_scale: float = 1.0
    log_format: str = "text"
    log_level: str = "INFO"

    @property
    def socket_mode(self) -> bool:
        return bool(self.slack_app_token)

    def secrets(self) -> tuple[str, ...]:
        """Every secret value, so log and message scrubbing can never miss one."""
        values = [self.slack_bot_token, self.slack_app_token, self.slack_signing_secret, self.runpod_api_key,
                  self.webhook_secret, *self.runpod_endpoint_keys.values()]
        if "://" in self.db_path:  # PostgreSQL's password: libraries that print a connection string (DBOS) too
            password = urlsplit(self.db_path).password or ""
            values += [password, unquote(password)]
        return tuple(v for v in values if v)


def read_env(environ: Mapping[str, str] | None = None, dotenv_path: str | Path | None = ".env") -> dict[str, str]:
    """The environment merged over `.env` (real variables win), restricted to our settings."""
    merged: dict[str, str] = {}
    if dotenv_path is not None and Path(dotenv_path).is_file():
        from dotenv import dotenv_values

        merged.update({k: v for k, v in dotenv_values(dotenv_path).items() if v is not None})
    merged.update(os.environ if environ is None else environ)
    return {k: v.strip() for k, v in merged.items() if k in SETTING_NAMES}


def _missing(name: str) -> str:
    s = _BY_NAME[name]
    return f"{name} is not set ({s.meaning.split('.')[0]}). Get it from: {s.where}."


def load_settings(env: Mapping[str, str], *, serving: bool = True, needs: tuple[str, ...] | None = None) -> Settings:
    """Validate `env` (already merged, see `read_env`) into Settings, or raise ConfigError naming every problem.

    `serving=False` is for the `alert` command, which only posts to Slack. `needs` names the settings that must be
    set instead (the `retry` and `status` commands need RunPod's key, not Slack's token).
    """
    problems: list[str] = []

    def get(name: str) -> str:
        value = env.get(name, "")
        return value if value else (_BY_NAME[name].default or "")

    if needs is None:
        needs = ("SLACK_BOT_TOKEN", "RUNPOD_API_KEY") if serving else ("SLACK_BOT_TOKEN",)
    for name in needs:
        if not get(name):
            problems.append(_missing(name))
    if serving and not get("SLACK_APP_TOKEN") and not get("SLACK_SIGNING_SECRET"):
        problems.append(
            "Neither SLACK_APP_TOKEN (Socket Mode) nor SLACK_SIGNING_SECRET (HTTP mode) is set; set one. "
            f"SLACK_APP_TOKEN: {_BY_NAME['SLACK_APP_TOKEN'].where}. "
            f"SLACK_SIGNING_SECRET: {_BY_NAME['SLACK_SIGNING_SECRET'].where}."
        )
    for name, prefix in (("SLACK_BOT_TOKEN", "xoxb-"), ("SLACK_APP_TOKEN", "xapp-")):
        value = get(name)
        if value and not value.startswith(prefix):
            problems.append(f"{name} should start with `{prefix}`; check you copied the right token.")

    def number(name: str, kind: type[int] | type[float], minimum: float) -> float:
        raw = get(name)
        try:
            value = kind(raw)
        except ValueError:
            problems.append(f"{name} must be a number, got {raw!r}.")
            return kind(_BY_NAME[name].default or 0)
        if value < minimum:
            problems.append(f"{name} must be at least {minimum}, got {raw!r}.")
        return value

    endpoint_keys: dict[str, str] = {}
    for n, item in enumerate(_csv(get("RUNPOD_ENDPOINT_KEYS")), 1):
        endpoint, sep, key = item.partition("=")
        endpoint, key = endpoint.strip(), key.strip()
        # Never quote an entry back whole: a malformed one may be nothing but the key itself.
        if not sep:
            why = "it has no `=`"
        elif not key:
            why = "it has no key after `=`"
        elif (bad_id := id_problem(endpoint)) is not None:
            why = f"the endpoint ID before `=` is not valid ({bad_id})"
        elif endpoint in endpoint_keys and endpoint_keys[endpoint] != key:
            why = "its endpoint is already listed earlier with a different key"
        else:
            endpoint_keys[endpoint] = key
            continue
        problems.append(f"RUNPOD_ENDPOINT_KEYS must look like `endpointA=key1,endpointB=key2`; entry {n} is "
                        f"malformed: {why}.")
    allowed_endpoints = _csv(get("RUNPOD_RETRY_ENDPOINTS"))
    for endpoint in allowed_endpoints:
        if (bad_id := id_problem(endpoint)) is not None:
            problems.append(f"RUNPOD_RETRY_ENDPOINTS has an invalid endpoint ID {endpoint[:40]!r}: {bad_id}. "
                            "List endpoint IDs separated by commas, e.g. `abc123xyz,def456uvw`.")
    policies: tuple[Policy, ...] = ()
    if serving and (path := get(POLICIES_SETTING)):
        try:
            policies = load_policies(path)
        except PolicyFileError as exc:
            problems.extend(exc.problems)
        problems.extend(_unreachable(path, policies, allowed_endpoints))
    log_format = get("LOG_FORMAT").lower()
    if log_format not in ("json", "text"):
        problems.append(f"LOG_FORMAT must be `json` or `text`, got {log_format!r}.")

    settings = Settings(
        slack_bot_token=get("SLACK_BOT_TOKEN"),
        runpod_api_key=get("RUNPOD_API_KEY"),
        slack_app_token=get("SLACK_APP_TOKEN"),
        slack_signing_secret=get("SLACK_SIGNING_SECRET"),
        runpod_endpoint_keys=endpoint_keys,
        runpod_api_url=get("RUNPOD_API_URL").rstrip("/"),
        slack_api_url=get("SLACK_API_URL").rstrip("/") + "/",
        port=int(number("PORT", int, 0)),
        webhook_secret=get("RUNPOD_WEBHOOK_SECRET"),
        alert_channel=get("RUNPOD_ALERT_CHANNEL"),
        allowed_users=_csv(get("RUNPOD_RETRY_ALLOWED_USERS")),
        allowed_usergroups=_csv(get("RUNPOD_RETRY_ALLOWED_USERGROUPS")),
        allowed_channels=_csv(get("RUNPOD_RETRY_ALLOWED_CHANNELS")),
        allowed_endpoints=allowed_endpoints,
        max_retries_per_job=int(number("RUNPOD_RETRY_MAX_PER_JOB", int, 1)),
        policies=policies,
        db_path=get("RUNPOD_RETRY_DB"),
        audit_channel=get("RUNPOD_AUDIT_CHANNEL"),
        bulk_concurrency=int(number("RUNPOD_BULK_CONCURRENCY", int, 1)),
        storm_threshold=int(number("RUNPOD_STORM_THRESHOLD", int, 2)),
        storm_window=number("RUNPOD_STORM_WINDOW", float, 1),
        follow_interval=number("RUNPOD_FOLLOW_INTERVAL", float, 0.01),
        follow_max=number("RUNPOD_FOLLOW_MAX", float, 0.1),
        runpod_timeout=number("RUNPOD_TIMEOUT", float, 0.05),
        runpod_max_attempts=int(number("RUNPOD_MAX_ATTEMPTS", int, 1)),
        slack_ping_interval=number("SLACK_PING_INTERVAL", float, 0.1),
        time_scale=number("RUNPOD_RETRY_TIME_SCALE", float, 0.001),
        log_format=log_format,
        log_level=get("LOG_LEVEL").upper(),
    )
    if problems:
        raise ConfigError(problems)
    return settings


def load_policies(path: str) -> tuple[Policy, ...]:
    """The policies in the file at `path`; raises PolicyFileError naming every problem, each line starting with
    "RUNPOD_RETRY_POLICIES (<path>):" (see POLICIES_SETTING)."""
    source = f"{POLICIES_SETTING} ({path})"
    try:
        text = Path(path).read_text(encoding="utf-8")
    except FileNotFoundError:
        why = "there is no such file; check the path, or unset RUNPOD_RETRY_POLICIES to retry only by hand"
    except IsADirectoryError:
        why = "it is a folder; name the policy file itself"
    except PermissionError:
        why = "the app is not allowed to read it; check the file's permissions"
    except UnicodeDecodeError:
        why = "it is not text (UTF-8); it should be a TOML file"
    except OSError as exc:
        why = f"it cannot be read ({exc.strerror or exc})"
    else:
        return parse_policies(text, source)
    raise PolicyFileError([f"{source}: {why}"])


def _unreachable(path: str, policies: tuple[Policy, ...], allowed: tuple[str, ...]) -> list[str]:
    """A policy naming an endpoint outside RUNPOD_RETRY_ENDPOINTS could never retry there: said at start-up, not
    found out at 3 a.m."""
    if not allowed:
        return []
    return [f"{POLICIES_SETTING} ({path}): policy \"{p.name}\": endpoints: \"{e}\" is not in "
            "RUNPOD_RETRY_ENDPOINTS, so the app may never retry its jobs; add it there or remove it here"
            for p in policies for e in p.endpoints if e != EVERY_ENDPOINT and e not in allowed]


def settings_table() -> str:
    """The README's settings table, generated from SETTINGS."""
    rows = ["| setting | needed | default | meaning |", "| --- | --- | --- | --- |"]
    for s in SETTINGS:
        default = f"`{s.default}`" if s.default else "-"
        where = f" Where: {s.where}." if s.where else ""
        rows.append(f"| `{s.name}` | {s.needed} | {default} | {s.meaning}{where} |")
    return "\n".join(rows)


def env_example() -> str:
    """The `.env.example` file, generated from SETTINGS."""
    lines = ["# runpod-retry settings. Copy to .env and fill in. Real environment variables win over this file.",
             "# Regenerate with: python -m bot.app.docs",
             "# (run from the repository root; it also brings the tables in README.md up to date)", ""]
    for s in SETTINGS:
        lines.append(f"# {s.meaning} (needed: {s.needed})")
        if s.where:
            lines.append(f"# Where: {s.where}")
        lines.append(f"{s.name}={s.default or ''}" if s.default else f"{s.name}=")
        lines.append("")
    return "\n".join(lines)
