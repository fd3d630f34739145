"""Plumbing every layer may use: settings, logging, metrics, tracked background tasks. Knows nothing of Slack, RunPod
or storage.
"""
