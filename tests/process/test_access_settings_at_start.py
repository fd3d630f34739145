"""Access settings a real `python -m bot` refuses at start (the endpoint keys, the endpoint allowlist): said plainly,
exit 2, no traceback, and never the key itself."""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

from testkit.env import BOT_TOKEN, RUNPOD_KEY, SIGNING_SECRET, process_env


async def run_bot(tmp_path: Path, **env: str) -> tuple[int, str]:
    base = {"SLACK_BOT_TOKEN": BOT_TOKEN, "RUNPOD_API_KEY": RUNPOD_KEY, "SLACK_SIGNING_SECRET": SIGNING_SECRET,
            "SLACK_API_URL": "http://127.0.0.1:9/api/"}
    proc = await asyncio.create_subprocess_exec(sys.executable, "-m", "bot", cwd=tmp_path, env=process_env(base | env),
                                                stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    _, err = await asyncio.wait_for(proc.communicate(), timeout=30)
    return proc.returncode or 0, err.decode()


async def test_malformed_endpoint_keys_are_reported_plainly_without_echoing_the_key(tmp_path):
    code, err = await run_bot(tmp_path, RUNPOD_ENDPOINT_KEYS="epA=key-a-secret,epB:key-b-secret")

    assert code == 2
    assert "RUNPOD_ENDPOINT_KEYS" in err and "endpointA=key1,endpointB=key2" in err
    assert "Traceback" not in err
    assert "key-b-secret" not in err and "key-a-secret" not in err


async def test_bad_endpoint_in_retry_endpoints_is_reported_plainly(tmp_path):
    code, err = await run_bot(tmp_path, RUNPOD_RETRY_ENDPOINTS="ep1,ep/2")

    assert code == 2
    assert "RUNPOD_RETRY_ENDPOINTS" in err and "'ep/2'" in err and "only letters, digits" in err
    assert "Traceback" not in err
