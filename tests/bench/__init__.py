"""The benchmark harness (`make bench`, `make bench QUICK=1`; issue 7). Not a test suite: nothing here is
named `test_*`, so pytest never collects it, and nothing here asserts on timings.

- `harness` (run as `python -m tests.bench`) starts the mesh with `samhandling up` in a temporary data
  directory on free ports, the echo server of the gRPC floor, fills the overview tenant with bulk SQL,
  runs every scenario through the driver, prints the table and writes `bench-results.json`;
- `driver` (`python -m tests.bench.driver SPEC`) is the closed-loop asyncio load driver, one process per
  scenario, that prints its figures as JSON;
- `echo_server` (`python -m tests.bench.echo_server --port N`) is the trivial grpc.aio unary echo server;
- `fill` writes the overview lists straight into the storage tables.

QUICK mode uses a smaller large fill (10,000 patients by default), so its large overview scenario is
reported as `overview_large` (its N is in `machine.large_fill_n`), never as `overview_100k`; the ratio
`overview_p99_100k_over_1k` is then computed from `overview_large` and `machine.ratio_notes` says so.
"""
