"""Tests that start real processes: python -m bot, replicas, PostgreSQL, kill -9."""
