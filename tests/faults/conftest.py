"""The mesh the fault tests share (one `samhandling up`, started once: each test writes as its own
source system, so its figures and checks are its own), and the figures printed at the end of the
session whatever the capture mode."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.faults.checks import FILES, RESULTS
from tests.faults.mesh import FaultMesh


@pytest.fixture(scope="package")
def fault_mesh(tmp_path_factory: pytest.TempPathFactory) -> Iterator[FaultMesh]:
    mesh = FaultMesh(tmp_path_factory.mktemp("faults"))
    try:
        mesh.start()
        yield mesh
    finally:
        code = mesh.stop()
    # After every fault, `samhandling up` still stops cleanly: services drain, then the database.
    assert code == 0, f"samhandling up exited with {code}:\n{mesh.log_tail()}"


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if not RESULTS:
        return
    terminalreporter.section("fault figures")
    for figures in RESULTS:
        terminalreporter.write_line(figures.line())
    for path in sorted(FILES):
        terminalreporter.write_line(f"(as JSON in {path})")
