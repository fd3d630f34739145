"""`python -m bot` runs the app; `python -m bot alert …` posts a failure alert from a shell or a monitor;
`python -m bot retry …` and `python -m bot status …` retry or check jobs from a shell."""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Sequence

from bot.infra.config import POLICIES_SETTING, ConfigError, Settings, load_settings, read_env

HELP = """usage:
  python -m bot                     run the app (Socket Mode when SLACK_APP_TOKEN is set, else HTTP mode)
  python -m bot alert <endpointId> <jobId> [--status FAILED|TIMED_OUT] [--error TEXT] [--channel ID]
                                    post a failure alert with Retry and Status buttons
  python -m bot retry <endpointId> <jobId> [<jobId> …] [--follow] [--json]
                                    retry jobs (same checks, allowlist, budget and audit as in Slack);
                                    --follow waits for each requeued job to end and prints how it ended;
                                    exit 0 requeued, 1 refused or not retried, 2 usage or settings,
                                    3 outcome unknown (may have gone through: check its status)
  python -m bot status <endpointId> <jobId> [--json]
                                    print a job's status (RunPod's JSON), changing nothing
Settings come from the environment and from .env in the working directory; see .env.example."""


def config_problem(exc: ConfigError) -> str:
    lines = ["runpod-retry cannot start: some settings are missing or wrong.", ""]
    lines += [f"  - {problem}" for problem in exc.problems]
    in_policy_file = [p.startswith(f"{POLICIES_SETTING} (") for p in exc.problems]
    lines.append("")
    if not all(in_policy_file):
        lines.append("Put them in .env in this folder (copy .env.example) or in the environment, then run again.")
    if any(in_policy_file):
        lines.append("Fix the policy file named above (see \"Retry policies\" in README.md), then run again.")
    return "\n".join(lines)


def _settings(serving: bool) -> Settings | None:
    try:
        return load_settings(read_env(), serving=serving)
    except ConfigError as exc:
        print(config_problem(exc), file=sys.stderr)
        return None


def _alert(argv: Sequence[str]) -> int:
    from bot.app.cli import post_alert

    parser = argparse.ArgumentParser(prog="python -m bot alert", description="Post a RunPod failure alert.")
    parser.add_argument("endpoint")
    parser.add_argument("job")
    parser.add_argument("--status", default="FAILED", type=str.upper, choices=("FAILED", "TIMED_OUT"))
    parser.add_argument("--error", default=None)
    parser.add_argument("--channel", default=None, help="channel ID (default: RUNPOD_ALERT_CHANNEL)")
    args = parser.parse_args(argv)
    settings = _settings(serving=False)
    if settings is None:
        return 2
    return asyncio.run(post_alert(settings, args.endpoint, args.job, args.status, args.error, args.channel))


def _terminal(argv: Sequence[str]) -> int:
    from bot.app.terminal import parse, run

    args = parse(argv)
    try:
        settings = load_settings(read_env(), serving=False, needs=("RUNPOD_API_KEY",))
    except ConfigError as exc:
        print(config_problem(exc).replace("cannot start", "cannot run"), file=sys.stderr)
        return 2
    return asyncio.run(run(settings, argv[0], args.endpoint, args.jobs, args.json, getattr(args, "follow", False)))


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] in ("-h", "--help", "help"):
        print(HELP)
        return 0
    if argv and argv[0] == "alert":
        return _alert(argv[1:])
    if argv and argv[0] in ("retry", "status"):
        return _terminal(argv)
    if argv:
        print(f"unknown arguments: {' '.join(argv)}\n\n{HELP}", file=sys.stderr)
        return 2
    settings = _settings(serving=True)
    if settings is None:
        return 2
    from bot.app.server import serve
    from bot.infra.logs import setup_logging

    setup_logging(settings.log_format, settings.log_level, settings.secrets())
    try:
        return asyncio.run(serve(settings))
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
