"""What the tests and the benchmark share: the loopback stand-ins for Slack and RunPod (`testkit.fakes`), the app
in-process (`testkit.harness`), real `python -m bot` processes (`testkit.process`, `testkit.replicas`), a throwaway
PostgreSQL (`testkit.pg`) and payload builders. Nothing here imports the test package."""
