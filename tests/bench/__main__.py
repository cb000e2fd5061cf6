"""`python -m tests.bench`: see tests/bench/harness.py."""

from tests.bench.harness import main

raise SystemExit(main())
