"""Structured-enough logs: one line per event with the request id; never patient data."""

from __future__ import annotations

import logging
import sys

from services.platform import request_context


class _RequestIdFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        record.request_id = request_context.request_id.get()
        return True


def configure_logging(level: str, service: str) -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.addFilter(_RequestIdFilter())
    handler.setFormatter(
        logging.Formatter(f"%(asctime)s %(levelname)s {service} %(name)s request_id=%(request_id)s %(message)s")
    )
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    for noisy in ("alembic.runtime.plugins",):
        logging.getLogger(noisy).setLevel(logging.WARNING)
