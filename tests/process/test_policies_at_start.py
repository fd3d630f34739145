"""A real `python -m bot` given RUNPOD_RETRY_POLICIES: a bad policy file stops start-up with every problem named by
policy and field, one per line, exit 2 and no traceback; a good one starts and serves as usual."""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

import aiohttp

from testkit.env import BOT_TOKEN, RUNPOD_KEY, SIGNING_SECRET, process_env
from testkit.fakes.slack import form_encode, sign, slash_command_body
from testkit.process import AppProcess

BAD_POLICIES = """\
[[policy]]
name = "oom-once"
endpoints = ["ep-a", "ep/b"]
errors = ["CUDA out of memory", "re:Worker .* (died|lost"]
statuses = ["FAILED", "CRASHED"]
max_attempts = 11
delay = "3x"
only_when_healthy = "yes"
mode = "maybe"
retries = 2

[[policy]]
endpoints = ["*"]
errors = []
max_attempts = 0
delay = "1m"
mode = "dry-run"

[[policy]]
name = "oom-once"
endpoints = ["*"]
errors = []
max_attempts = 1
delay = "0s"
mode = "on"
"""

GOOD_POLICIES = """\
[[policy]]
name = "oom-once"
endpoints = ["ep-a", "ep-b"]
errors = ["CUDA out of memory", "re:Worker .* (died|lost)"]
statuses = ["FAILED", "TIMED_OUT"]
max_attempts = 2
delay = "30s"
only_when_healthy = true
mode = "on"

[[policy]]
name = "timeouts-dry-run"
endpoints = ["*"]
errors = []
statuses = ["TIMED_OUT"]
max_attempts = 1
delay = "2m"
mode = "dry-run"
"""


async def run_to_exit(cwd: Path, env: dict[str, str]) -> tuple[int, str, str]:
    proc = await asyncio.create_subprocess_exec(sys.executable, "-m", "bot", cwd=cwd, env=process_env(env),
                                                stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    out, err = await asyncio.wait_for(proc.communicate(), timeout=30)
    return proc.returncode or 0, out.decode(), err.decode()


async def test_a_bad_policy_file_names_every_problem_one_per_line_and_exits_2(tmp_path):
    path = tmp_path / "policies.toml"
    path.write_text(BAD_POLICIES, encoding="utf-8")
    env = {"SLACK_BOT_TOKEN": BOT_TOKEN, "RUNPOD_API_KEY": RUNPOD_KEY, "SLACK_SIGNING_SECRET": SIGNING_SECRET,
           "SLACK_API_URL": "http://127.0.0.1:9/api/", "RUNPOD_RETRY_POLICIES": str(path)}

    code, out, err = await run_to_exit(tmp_path, env)

    assert code == 2
    assert "Traceback" not in out + err
    said = [line.strip().removeprefix("- ") for line in err.splitlines() if f"RUNPOD_RETRY_POLICIES ({path})" in line]
    where = f"RUNPOD_RETRY_POLICIES ({path}): "
    assert [line.removeprefix(where).split(":")[0:2] for line in said] == [
        ['policy "oom-once"', " retries"],
        ['policy "oom-once"', " endpoints"],
        ['policy "oom-once"', " errors"],
        ['policy "oom-once"', " statuses"],
        ['policy "oom-once"', " max_attempts"],
        ['policy "oom-once"', " delay"],
        ['policy "oom-once"', " only_when_healthy"],
        ['policy "oom-once"', " mode"],
        ["policy #2", " name"],
        ["policy #2", " max_attempts"],
        ['policy "oom-once" (#3)', " name"],
    ], err
    assert f'{where}policy "oom-once": delay: "3x" is not a duration such as 90s or 2m' in said
    assert f'{where}policy "oom-once": endpoints: "ep/b" is not an endpoint ID' in err
    assert "is not a valid regular expression" in err and '"CRASHED" is not a status' in err
    assert "Fix the policy file named above" in err
    assert BOT_TOKEN not in out + err and RUNPOD_KEY not in out + err


async def test_a_missing_policy_file_is_one_plain_line_and_exit_2(tmp_path):
    path = tmp_path / "nowhere" / "policies.toml"
    env = {"SLACK_BOT_TOKEN": BOT_TOKEN, "RUNPOD_API_KEY": RUNPOD_KEY, "SLACK_SIGNING_SECRET": SIGNING_SECRET,
           "SLACK_API_URL": "http://127.0.0.1:9/api/", "RUNPOD_RETRY_POLICIES": str(path)}

    code, out, err = await run_to_exit(tmp_path, env)

    assert code == 2 and "Traceback" not in out + err
    assert f"RUNPOD_RETRY_POLICIES ({path}): there is no such file" in err


async def test_a_good_policy_file_starts_and_serves_as_usual(slack, runpod, tmp_path):
    path = tmp_path / "policies.toml"
    path.write_text(GOOD_POLICIES, encoding="utf-8")

    async with AppProcess(slack, runpod, tmp_path, RUNPOD_RETRY_POLICIES=str(path)) as app, \
            aiohttp.ClientSession() as http:
        async with http.get(f"{app.base}/healthz") as response:
            assert response.status == 200
        body = form_encode(slash_command_body("help", response_url=slack.new_response_url()))
        async with http.post(f"{app.base}/slack/events", data=body, headers=sign(body, SIGNING_SECRET)) as response:
            assert response.status == 200
            assert "/runpod-retry <endpointId> <jobId>" in await response.text()
        assert app.proc is not None and app.proc.returncode is None

    assert "Traceback" not in app.text and "cannot start" not in app.text and "RUNPOD_RETRY_POLICIES" not in app.text
