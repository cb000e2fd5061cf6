"""`python -m tests.soak`: see tests/soak/harness.py."""

from tests.soak.harness import main

raise SystemExit(main())
