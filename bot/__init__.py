"""runpod-retry: a Slack app that retries failed RunPod Serverless jobs."""

__version__ = "0.1.0"
