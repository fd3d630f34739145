"""Starting and stopping the app as an operator does: `python -m bot`, settings, /healthz, SIGTERM."""

from __future__ import annotations

import asyncio
import json
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import aiohttp
import pytest

from bot.infra.config import load_settings, read_env
from testkit.env import APP_TOKEN, BOT_TOKEN, RUNPOD_KEY, SECRETS, SIGNING_SECRET, app_settings, process_env
from testkit.fakes import FakeRunPod, FakeSlack
from testkit.fakes.slack import form_encode, sign, slash_command_body
from testkit.harness import Harness

STOP_WITHIN = 10.0


def clean_env(**settings: str) -> dict[str, str]:
    """The test runner's environment without any of the app's settings, plus `settings`."""
    return process_env(settings)


def run_bot(cwd: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "bot"], cwd=cwd, env=env, capture_output=True, text=True,
                          timeout=30, check=False)


def fake_env(slack: FakeSlack, runpod: FakeRunPod, tmp_path: Path, **overrides: str) -> dict[str, str]:
    return app_settings(slack, runpod, tmp_path / "bot.db", **{
        "RUNPOD_FOLLOW_INTERVAL": "0.05", "SLACK_PING_INTERVAL": "0.2", "LOG_LEVEL": "INFO", "LOG_FORMAT": "text",
        **overrides})


async def exec_bot(cwd: Path, env: dict[str, str]) -> asyncio.subprocess.Process:
    # asyncio's subprocess keeps this loop (and so the in-process fakes) serving while the child runs.
    return await asyncio.create_subprocess_exec(sys.executable, "-m", "bot", cwd=cwd, env=env,
                                                stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)


# ---------------------------------------------------------------- missing or wrong settings


def test_with_no_settings_it_names_every_missing_one_and_where_to_get_it(tmp_path):
    result = run_bot(tmp_path, clean_env())

    assert result.returncode == 2
    err = result.stderr
    assert "Traceback" not in err + result.stdout
    for name in ("SLACK_BOT_TOKEN", "RUNPOD_API_KEY", "SLACK_APP_TOKEN", "SLACK_SIGNING_SECRET"):
        assert name in err, err
    for where in ("OAuth & Permissions", "RunPod console", "App-Level Tokens", "Signing Secret", ".env"):
        assert where in err, err


def test_with_only_the_runpod_key_missing_only_that_is_named(tmp_path):
    result = run_bot(tmp_path, clean_env(SLACK_BOT_TOKEN=BOT_TOKEN, SLACK_APP_TOKEN=APP_TOKEN))

    assert result.returncode == 2
    assert "RUNPOD_API_KEY" in result.stderr and "API Keys" in result.stderr
    assert "SLACK_BOT_TOKEN is not set" not in result.stderr and "SLACK_SIGNING_SECRET" not in result.stderr
    assert "Traceback" not in result.stderr
    assert BOT_TOKEN not in result.stderr + result.stdout and APP_TOKEN not in result.stderr + result.stdout


def test_a_token_of_the_wrong_kind_is_named(tmp_path):
    result = run_bot(tmp_path, clean_env(SLACK_BOT_TOKEN=APP_TOKEN, SLACK_SIGNING_SECRET="s", RUNPOD_API_KEY="k"))

    assert result.returncode == 2
    assert "SLACK_BOT_TOKEN should start with `xoxb-`" in result.stderr
    assert "Traceback" not in result.stderr and APP_TOKEN not in result.stderr


def test_dotenv_is_read_and_real_environment_variables_win(tmp_path):
    (tmp_path / ".env").write_text(
        "# a comment\n"
        "SLACK_BOT_TOKEN=xoxb-from-dotenv\nSLACK_SIGNING_SECRET=secret-from-dotenv\nRUNPOD_API_KEY=rp-dotenv\n"
        "RUNPOD_TIMEOUT=7\nNOT_A_SETTING=ignored\n", encoding="utf-8")

    merged = read_env({"RUNPOD_API_KEY": "rp-real-env", "PATH": "/bin"}, dotenv_path=tmp_path / ".env")

    assert merged == {"SLACK_BOT_TOKEN": "xoxb-from-dotenv", "SLACK_SIGNING_SECRET": "secret-from-dotenv",
                      "RUNPOD_API_KEY": "rp-real-env", "RUNPOD_TIMEOUT": "7"}
    settings = load_settings(merged)
    assert settings.runpod_api_key == "rp-real-env" and settings.slack_bot_token == "xoxb-from-dotenv"
    assert settings.runpod_timeout == 7.0 and not settings.socket_mode
    assert read_env({}, dotenv_path=tmp_path / "absent.env") == {}


def test_dotenv_in_the_working_directory_is_what_python_m_bot_reads(tmp_path):
    (tmp_path / ".env").write_text("SLACK_BOT_TOKEN=xoxb-x\nSLACK_APP_TOKEN=xapp-x\n", encoding="utf-8")

    result = run_bot(tmp_path, clean_env())

    assert result.returncode == 2
    assert "RUNPOD_API_KEY" in result.stderr
    assert "SLACK_BOT_TOKEN is not set" not in result.stderr and "SLACK_APP_TOKEN" not in result.stderr


async def test_a_bot_token_slack_refuses_stops_start_up_with_a_plain_message(slack, runpod, tmp_path):
    wrong = "xoxb-revoked-token-0000"
    proc = await exec_bot(tmp_path, clean_env(**fake_env(slack, runpod, tmp_path, SLACK_BOT_TOKEN=wrong)))
    out, err = await asyncio.wait_for(proc.communicate(), timeout=30)
    stdout, stderr = out.decode(), err.decode()

    assert proc.returncode == 2
    assert "SLACK_BOT_TOKEN" in stderr and "invalid_auth" in stderr and "OAuth & Permissions" in stderr
    assert "Traceback" not in stderr + stdout
    assert wrong not in stderr + stdout
    assert [c.token for c in slack.calls_to("auth.test")] == [wrong]
    assert runpod.calls == []


async def test_unreachable_slack_stops_start_up_with_a_plain_message(slack, runpod, tmp_path):
    env = fake_env(slack, runpod, tmp_path, SLACK_API_URL="http://127.0.0.1:9/api/")
    proc = await exec_bot(tmp_path, clean_env(**env))
    out, err = await asyncio.wait_for(proc.communicate(), timeout=60)

    assert proc.returncode == 2
    assert "SLACK_API_URL" in err.decode() and "Traceback" not in err.decode() + out.decode()


# ---------------------------------------------------------------- /healthz


async def test_healthz_in_http_mode_is_200_with_json(make_app):
    app = await make_app("http")

    status, text = await app.get("/healthz")

    assert status == 200
    body = json.loads(text)
    assert body["ok"] is True and body["mode"] == "http"


async def test_healthz_in_socket_mode_is_503_until_the_socket_connects(slack, runpod, tmp_path):
    slack.refuse_sockets = True
    harness = Harness(slack, runpod, tmp_path, "socket")
    from bot.app.server import App

    harness.app = App(load_settings(harness.env))
    try:
        await harness.app.start(host="127.0.0.1")
        harness.http = aiohttp.ClientSession()
        await slack.wait_calls("apps.connections.open")
        status, text = await harness.get("/healthz")
        assert status == 503
        assert json.loads(text)["slack"] == "disconnected"

        slack.refuse_sockets = False
        await slack.wait_socket(timeout=10)
        for _ in range(100):  # the socket is up; /healthz follows within a moment
            status = (await harness.get("/healthz"))[0]
            if status == 200:
                break
            await asyncio.sleep(0.05)
        assert status == 200
        ack = await harness.command("help")
        assert "/runpod-retry <endpointId> <jobId>" in json.dumps(ack.body)
    finally:
        await harness.stop()


# ---------------------------------------------------------------- the real process serves, then stops on SIGTERM


async def _port_from_log(proc: asyncio.subprocess.Process, seen: list[str]) -> int:
    assert proc.stderr is not None
    while True:
        line = (await proc.stderr.readline()).decode()
        if not line:
            raise AssertionError("the app exited before listening:\n" + "".join(seen))
        seen.append(line)
        if match := re.search(r"listening on port (\d+)", line):
            return int(match.group(1))


@pytest.mark.parametrize("mode", ["http", "socket"])
async def test_python_m_bot_serves_the_command_and_exits_0_on_sigterm(slack, runpod, tmp_path, mode):
    # The real env wins over .env: .env holds a bad bot token, the environment the good one.
    (tmp_path / ".env").write_text("SLACK_BOT_TOKEN=xoxb-stale-from-dotenv\n", encoding="utf-8")
    extra = {"SLACK_APP_TOKEN": APP_TOKEN} if mode == "socket" else {}
    proc = await exec_bot(tmp_path, clean_env(**fake_env(slack, runpod, tmp_path, **extra)))
    seen: list[str] = []
    try:
        port = await asyncio.wait_for(_port_from_log(proc, seen), timeout=30)
        runpod.add_job("ep1", "job-p", status="FAILED")
        response_url = slack.new_response_url()
        fields = slash_command_body("ep1 job-p", response_url=response_url)
        async with aiohttp.ClientSession() as http:

            async def send(fields: dict[str, str]) -> None:
                """The command, as Slack would deliver it in this mode."""
                if mode == "socket":
                    await slack.wait_ack(await slack.socket_send("slash_commands", fields))
                    return
                body = form_encode(fields)
                async with http.post(f"http://127.0.0.1:{port}/slack/events", data=body,
                                     headers=sign(body, SIGNING_SECRET)) as response:
                    assert response.status == 200

            if mode == "socket":
                await slack.wait_socket(timeout=10)
            await send(fields)
            await runpod.wait_calls("retry")
            await slack.wait_for(lambda s: any("completed" in json.dumps(m.get("blocks"))
                                               for m in s.messages.values()), timeout=10)
            # A RunPod answer that echoes the key reaches neither Slack nor the log.
            runpod.add_job("ep1", "job-q", status="FAILED")
            runpod.fault("retry", status=401, body={"error": f"invalid key {RUNPOD_KEY}"})
            fields = slash_command_body("ep1 job-q", response_url=slack.new_response_url())
            await send(fields)
            await slack.wait_for(lambda s: any("RUNPOD_API_KEY" in json.dumps(m.get("blocks"))
                                               for m in s.messages.values()), timeout=10)
            async with http.get(f"http://127.0.0.1:{port}/healthz") as response:
                assert response.status == 200
    finally:
        proc.send_signal(signal.SIGTERM)
        started = time.monotonic()
        _, err = await asyncio.wait_for(proc.communicate(), timeout=STOP_WITHIN + 5)
        took = time.monotonic() - started
    log = "".join(seen) + err.decode()
    assert proc.returncode == 0, log
    assert took < STOP_WITHIN
    assert "Traceback" not in log
    assert not [s for s in SECRETS if s in log]
    assert [c.token for c in slack.calls_to("auth.test")] == [BOT_TOKEN]
    sent = json.dumps([c.args for c in slack.calls], default=str)
    assert not [s for s in SECRETS if s in sent]


# ---------------------------------------------------------------- a database that cannot be used


async def test_a_sqlite_file_that_cannot_be_opened_is_one_plain_message_naming_the_setting(slack, runpod, tmp_path):
    missing = tmp_path / "no-such-folder" / "state.db"
    proc = await exec_bot(tmp_path, clean_env(**fake_env(slack, runpod, tmp_path, RUNPOD_RETRY_DB=str(missing))))
    out, err = await asyncio.wait_for(proc.communicate(), timeout=30)

    assert proc.returncode == 2
    said = (out + err).decode()
    assert "Traceback" not in said
    assert "RUNPOD_RETRY_DB" in said and str(missing) in said and "folder exists" in said, said


async def test_an_unreachable_postgresql_is_one_plain_message_with_the_password_masked(slack, runpod, tmp_path):
    url = "postgresql://retry:hunter2-secret@127.0.0.1:1/runpod_retry"  # nothing listens on port 1
    proc = await exec_bot(tmp_path, clean_env(**fake_env(slack, runpod, tmp_path, RUNPOD_RETRY_DB=url)))
    out, err = await asyncio.wait_for(proc.communicate(), timeout=30)

    assert proc.returncode == 2
    said = (out + err).decode()
    assert "Traceback" not in said and "hunter2-secret" not in said
    assert "RUNPOD_RETRY_DB" in said and "127.0.0.1:1" in said and "retry:" in said, said
