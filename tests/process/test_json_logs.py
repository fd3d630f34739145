"""The real process's JSON logs: every retry line names the person, the endpoint and the job, and no line carries a
token, a key or a secret."""

from __future__ import annotations

import asyncio
import json
import re
import signal
import sys
from pathlib import Path
from typing import Any

import aiohttp

from testkit.env import RUNPOD_KEY, SECRETS, SIGNING_SECRET, app_settings, process_env
from testkit.fakes import FakeRunPod, FakeSlack
from testkit.fakes.slack import form_encode, sign, slash_command_body
from testkit.harness import message_text


def bot_env(slack: FakeSlack, runpod: FakeRunPod, tmp_path: Path) -> dict[str, str]:
    return process_env(app_settings(slack, runpod, tmp_path / "bot.db", RUNPOD_FOLLOW_INTERVAL="0.05",
                                    LOG_FORMAT="json", LOG_LEVEL="INFO"))


async def send_command(http: aiohttp.ClientSession, port: int, slack: FakeSlack, text: str) -> None:
    body = form_encode(slash_command_body(text, user_id="U7", channel_id="C1",
                                          response_url=slack.new_response_url()))
    async with http.post(f"http://127.0.0.1:{port}/slack/events", data=body,
                         headers=sign(body, SIGNING_SECRET)) as response:
        assert response.status == 200


async def test_json_logs_name_user_endpoint_and_job_on_every_retry_line_and_never_a_secret(slack, runpod, tmp_path):
    runpod.add_job("ep1", "job-ok", status="FAILED", after_retry=("COMPLETED",))
    runpod.add_job("ep1", "job-401", status="FAILED")
    proc = await asyncio.create_subprocess_exec(sys.executable, "-m", "bot", cwd=tmp_path,
                                                env=bot_env(slack, runpod, tmp_path),
                                                stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    lines: list[str] = []

    async def read_log() -> None:
        assert proc.stderr is not None
        while line := await proc.stderr.readline():
            lines.append(line.decode())

    reader = asyncio.create_task(read_log())
    try:
        port_line = await slack.wait_for(lambda _: next((m for m in lines if "listening on port" in m), None),
                                         timeout=30)
        port = int(re.search(r"listening on port (\d+)", port_line).group(1))  # type: ignore[union-attr]
        async with aiohttp.ClientSession() as http:
            await send_command(http, port, slack, "ep1 job-ok")
            await slack.wait_for(lambda s: any("completed" in message_text(m) and "job-ok" in message_text(m)
                                               for m in s.messages.values()), timeout=10)
            # RunPod refuses the key and echoes it back in its answer.
            runpod.fault("retry", status=401, body=f"Unauthorized: the API key {RUNPOD_KEY} is not valid")
            await send_command(http, port, slack, "ep1 job-401")
            await slack.wait_for(lambda s: any("RUNPOD_API_KEY" in message_text(m) for m in s.messages.values()),
                                 timeout=10)
    finally:
        proc.send_signal(signal.SIGTERM)
        await asyncio.wait_for(proc.wait(), timeout=15)
        await asyncio.wait_for(reader, timeout=5)

    assert proc.returncode == 0, "".join(lines)
    entries: list[dict[str, Any]] = []
    for line in lines:
        entry = json.loads(line)  # one JSON object per line, nothing else
        assert isinstance(entry, dict) and {"ts", "level", "logger", "msg"} <= entry.keys(), line
        entries.append(entry)
    leaked = [line for line in lines if any(secret in line for secret in SECRETS)]
    assert leaked == []
    about_jobs = [e for e in entries if "job-ok" in json.dumps(e) or "job-401" in json.dumps(e)]
    for entry in about_jobs:
        assert entry.get("user") == "U7" and entry.get("endpoint") == "ep1", entry
        assert entry.get("job") in ("job-ok", "job-401"), entry
    retried = {(e["job"], e["msg"]) for e in about_jobs if e["msg"].startswith("retry ")}
    assert retried == {("job-ok", "retry requeued"), ("job-401", "retry unauthorized")}, about_jobs
