"""Benchmark: the app against loopback stand-ins for Slack and RunPod, beside the obvious implementation.

Run from the repository root: `python -m bench` (about 5.5 minutes; `--skip-naive` leaves out the slow baseline;
`--only SECTION` runs one of burst, channel, bulk, limits, replicas, policies, breaker, naive and writes nothing).
Prints Markdown tables and writes them to bench/RESULTS.md and between the `<!-- bench:start -->` /
`<!-- bench:end -->` markers in README.md.

Set-up, so the numbers mean what they say:
- The app runs as its own process (`python -m bot`, HTTP mode, exactly as deployed), so its event loop does not
  share a CPU slice with the load generator. The stand-ins (testkit/fakes: FakeSlack, FakeRunPod) and the load
  generator run together in this process.
- Ack latency is measured by the load generator: from sending a signed slash command on a fresh connection to
  reading the whole answer. It includes connection set-up and this process's own scheduling, so it is an upper
  bound on what the app adds.
- "All results posted" is measured at the Slack stand-in: arrival of the last of the result replies (the first
  reply in each command's thread; parents do not count) minus the moment the burst started.
- One channel (issue 17): a separate app process on SQLite; 40 commands at once into one channel over 4 endpoints,
  Slack's 1 post a second per channel enforced, RunPod answering in 0.5 s. Ack → RunPod is from reading a command's
  ack to its /retry arriving at the RunPod stand-in; "every result" is each command's parent message and the first
  reply in its thread, beside the floor Slack's per-channel limit sets for those posts.
- Real limits (issue 10): a separate app process, with the Slack stand-in at Slack's limits and the RunPod stand-in
  at RunPod's documented ones; a 150-failure storm into one alert channel, then a 300-job bulk retry, each timed
  beside the floor the limits allow.
- Replicas (issue 11): the same burst once into one process on SQLite, then spread round-robin over 3 processes
  on one PostgreSQL (the embedded server the tests use).
- Retry policies (issue 20): two more app processes on SQLite, each with a policy file the section writes, both
  stand-ins at the platforms' real limits, real time. `policies`: 200 CUDA out-of-memory failures over 5 endpoints
  in 1.5 s, each retried once after 5 s (exactly once, within the delay + 1 s, all within 1.3 × the floor RunPod's
  limits set), then every alert until it says the job completed. `breaker`: 40 failures on one endpoint, every
  automatic retry failing again: the breaker trips, tells the channel once, and no automatic retry follows.
- The baseline (bench/naive_app.py) gets the same burst, the same stand-ins and the same measurement.

The modules: `config` (the figures each section uses), `processes` (the app and the baseline as processes, through
testkit/process.py, as the tests start them), `scenarios` (the burst and the bulk run), `one_channel` (40 commands
into one channel), `limits` (the storm and the bulk run at the platforms' real limits), `auto_storms` (the
retry-policy storms), `auto_report` (their tables), `runs` (each section, start to end), `report` (the Markdown tables
and the README's bench section), `__main__` (the command line).
"""

