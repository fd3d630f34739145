"""Prometheus metrics, on a registry of the app's own (several apps can live in one test process)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.retries = Counter("runpod_retry_retries", "Retry attempts sent to RunPod, by outcome.",
                               ["outcome", "source"], registry=r)
        self.refusals = Counter("runpod_retry_refusals", "Requests refused before RunPod was called, by reason.",
                                ["reason"], registry=r)
        self.duplicates = Counter("runpod_retry_duplicates_suppressed",
                                  "Duplicate clicks, commands and webhooks that were not acted on twice.",
                                  ["kind"], registry=r)
        self.runpod_latency = Histogram("runpod_retry_runpod_latency_seconds", "RunPod API call latency.",
                                        ["op", "outcome"], registry=r,
                                        buckets=(0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 30))
        self.ack_latency = Histogram("runpod_retry_ack_latency_seconds",
                                     "Time from receiving a Slack request to acknowledging it.", ["mode"],
                                     registry=r, buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 3))
        self.followed = Gauge("runpod_retry_jobs_followed", "Retried jobs being followed to their end.",
                              registry=r)
        self.slack_connected = Gauge("runpod_retry_slack_connected",
                                     "1 when the Socket Mode connection is up (always 1 in HTTP mode).", registry=r)
        self.webhooks = Counter("runpod_retry_webhooks", "RunPod webhooks received, by result.", ["result"],
                                registry=r)
        self.alerts = Counter("runpod_retry_alerts_posted", "Failure alerts posted, by kind.", ["kind"], registry=r)
        self.auto_retries = Counter("runpod_retry_auto_retries",
                                    "What retry policies did with failures, by policy and result (sent, completed, "
                                    "failed_again, skipped, stopped, spent, dry_run).", ["policy", "result"],
                                    registry=r)

        self.outbox_depth = Gauge("runpod_retry_outbox_depth", "Slack calls queued, by lane (a channel, or a method).",
                                  ["lane"], registry=r)
        self.outbox_oldest = Gauge("runpod_retry_outbox_oldest_seconds",
                                   "Age of the oldest Slack call still queued, by lane.", ["lane"], registry=r)
        self.rate_limited = Counter("runpod_retry_rate_limited", "429 answers received, by platform and method.",
                                    ["platform", "method"], registry=r)
        self.outbox_set_aside = Counter("runpod_retry_outbox_set_aside",
                                        "Slack calls set aside after failing unexpectedly for too long, by method.",
                                        ["method"], registry=r)
        self.runpod_rate = Gauge("runpod_retry_runpod_rate_per_second",
                                 "The RunPod limiter's current rate, by endpoint and operation.",
                                 ["endpoint", "op"], registry=r)

    def observe_runpod(self, op: str, outcome: str, seconds: float) -> None:
        self.runpod_latency.labels(op=op, outcome=outcome).observe(seconds)

    def observe_runpod_rate(self, endpoint: str, op: str, per_second: float) -> None:
        self.runpod_rate.labels(endpoint=endpoint, op=op).set(per_second)

    def render(self) -> bytes:
        return generate_latest(self.registry)
