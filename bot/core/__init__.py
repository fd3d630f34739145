"""The functional core: pure functions and plain data (IDs, commands, RunPod answers and outcomes, alert states,
tallies, Slack messages). Imports nothing of the shell.
"""
