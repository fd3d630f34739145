"""The obvious implementation, kept tiny: a baseline for the benchmark (python -m bench), not part of the app.

Bolt's sync `App` with its built-in development server (`app.start`): the command listener acks, then calls
RunPod's /retry with httpx and posts the result with the sync WebClient, all in Bolt's listener thread pool.
Settings come from the same environment variables the real app reads.
"""

from __future__ import annotations

import http.server
import os
from typing import Any

import httpx
import slack_bolt.app.app as bolt_app_module
from slack_bolt import Ack, App
from slack_sdk import WebClient

RUNPOD_API_URL = os.environ["RUNPOD_API_URL"].rstrip("/")
RUNPOD_API_KEY = os.environ["RUNPOD_API_KEY"]

app = App(client=WebClient(token=os.environ["SLACK_BOT_TOKEN"], base_url=os.environ["SLACK_API_URL"]),
          signing_secret=os.environ["SLACK_SIGNING_SECRET"])


@app.command("/runpod-retry")
def retry(ack: Ack, body: dict[str, Any], client: WebClient) -> None:
    ack()
    endpoint, job = body["text"].split()[:2]
    parent = client.chat_postMessage(channel=body["channel_id"],
                                     text=f"<@{body['user_id']}> asked to retry job {job} on {endpoint}")
    answer = httpx.post(f"{RUNPOD_API_URL}/{endpoint}/retry/{job}",
                        headers={"Authorization": f"Bearer {RUNPOD_API_KEY}"}, timeout=10)
    client.chat_postMessage(channel=body["channel_id"], thread_ts=parent["ts"],
                            text=f"RunPod answered HTTP {answer.status_code}: {answer.text}")


class LoopbackHTTPServer(http.server.HTTPServer):
    """The development server's own HTTPServer, bound to 127.0.0.1 (app.start binds 0.0.0.0) on PORT."""

    def __init__(self, address: tuple[str, int], handler: Any):
        super().__init__(("127.0.0.1", int(os.environ.get("PORT", "0"))), handler)
        print(f"listening on port {self.server_address[1]}", flush=True)


if __name__ == "__main__":
    bolt_app_module.HTTPServer = LoopbackHTTPServer  # type: ignore[misc]
    app.start(port=0, http_server_logger_enabled=False)
