"""Talking to Slack: posting into channels and threads, the response_url fallback, files, paced message updates."""
