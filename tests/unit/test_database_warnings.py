"""An outage fails every call; the log says so once every few seconds, with a count, not once per call."""

from __future__ import annotations

import logging

from services.platform import database


def test_unavailable_warnings_are_throttled_and_count_what_they_held_back(caplog):
    clock = iter([100.0, 100.1, 100.2, 103.0, 105.5, 105.6])
    warnings = database._Throttled("database unavailable", interval=5.0, clock=lambda: next(clock))
    with caplog.at_level(logging.WARNING, logger=database.__name__):
        for _ in range(6):
            warnings.warn("ConnectionRefusedError")
    lines = [record.getMessage() for record in caplog.records]
    assert lines == [
        "database unavailable: ConnectionRefusedError (0 more since the last warning)",
        "database unavailable: ConnectionRefusedError (3 more since the last warning)",
    ]


def test_with_no_interval_every_warning_is_logged(caplog):
    warnings = database._Throttled("database unavailable", interval=0.0)
    with caplog.at_level(logging.WARNING, logger=database.__name__):
        for _ in range(3):
            warnings.warn("OSError")
    assert len(caplog.records) == 3
