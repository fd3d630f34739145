"""The process: the HTTP server and Socket Mode, the RunPod webhook route, start-up and shutdown, the command-line
tools.
"""
