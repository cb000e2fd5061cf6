"""The soak (`make soak`, `make soak SOAK_SECONDS=60`; issue 8, "Load"). Not a test suite: nothing here
is named `test_*`, so pytest never collects it, and it is not run by CI.

- `harness` (run as `python -m tests.soak`) starts the mesh with `samhandling up` in a temporary data
  directory (per-client rate limit off), warms it up, then runs a mixed load at the bench's concurrency
  for the soak's duration, sampling every service process's RSS, open file descriptors and TCP
  connections from /proc; prints a table, writes `soak-results.json` and exits non-zero if memory grew
  beyond its bound, descriptors or connections leaked, a service restarted or logged an error, or any
  call failed;
- `driver` (`python -m tests.soak.driver SPEC`) is the mixed load, built on the bench driver.
"""
