"""`python -m bench`: the command line (`--only SECTION`, `--skip-naive`)."""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import tempfile
import time
from pathlib import Path

import bench
from bench.config import README, RESULTS, ROOT, SECTIONS
from bench.report import report, write_readme
from bench.runs import Row, run_app, run_breaker, run_limits, run_naive, run_one_channel, run_policies, run_replicas


async def main(sections: set[str], write: bool) -> int:
    started, load = time.monotonic(), os.getloadavg()[0]
    print(f"runpod-retry benchmark: {', '.join(s for s in SECTIONS if s in sections)}", file=sys.stderr)
    with tempfile.TemporaryDirectory(prefix="runpod-retry-bench-") as tmp:
        workdir = Path(tmp)
        rows: list[Row] = []
        limits = None
        if sections & {"burst", "bulk"}:
            rows.append(await run_app(workdir, sections))
        channel = await run_one_channel(workdir) if "channel" in sections else None
        if "limits" in sections:
            limits = await run_limits(workdir)
        setups = await run_replicas(workdir) if "replicas" in sections else None
        policies = await run_policies(workdir) if "policies" in sections else None
        breaker = await run_breaker(workdir) if "breaker" in sections else None
        if "naive" in sections:
            if not rows:
                print("  (the baseline is shown beside the app's burst: add `burst`)", file=sys.stderr)
            else:
                rows.append(await run_naive(workdir))
    text = report(rows, limits, time.monotonic() - started, sections, setups, channel, load, policies, breaker)
    print(text)
    if write:
        RESULTS.write_text(text)
        write_readme(text)
        print(f"(written to {RESULTS.relative_to(ROOT)} and {README.relative_to(ROOT)})", file=sys.stderr)
    else:
        print("(one section only: nothing written; the files keep the last full run)", file=sys.stderr)
    return 0


if __name__ == "__main__":
    parser = argparse.ArgumentParser(prog="python -m bench", description=(bench.__doc__ or "").splitlines()[0])
    parser.add_argument("--skip-naive", action="store_true", help="leave out the slow baseline")
    parser.add_argument("--only", action="append", choices=SECTIONS, metavar="SECTION",
                        help=f"run only this section ({', '.join(SECTIONS)}); may be given more than once. "
                             "Prints the report but does not write RESULTS.md or README.md")
    args = parser.parse_args()
    chosen = set(args.only or SECTIONS)
    if args.skip_naive:
        chosen.discard("naive")
    sys.exit(asyncio.run(main(chosen, write=not args.only)))

