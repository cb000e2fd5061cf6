"""Structured logs: one JSON object per line on stderr, with the request id and, while a span is
active, the trace and span ids, so a log line leads to its trace. Never patient data: messages are
written without identifiers, errors are logged by type and place (not message), and anything that
still looks like a person number or a credential is redacted."""

from __future__ import annotations

import json
import logging
import sys
import traceback
from datetime import UTC, datetime

from opentelemetry import trace

from services.platform import request_context
from services.platform.redaction import redact_text


class JsonFormatter(logging.Formatter):
    """Fields: timestamp (UTC, ISO 8601, ms), level, service, logger, message, request_id, and
    trace_id / span_id (W3C hex) when a span is active; `error` (type and place) for exceptions."""

    def __init__(self, service: str) -> None:
        super().__init__()
        self.service = service

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, str] = {
            "timestamp": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "service": self.service,
            "logger": record.name,
            "message": redact_text(record.getMessage()),
            "request_id": request_context.request_id.get(),
        }
        span_context = trace.get_current_span().get_span_context()
        if span_context.is_valid:
            entry["trace_id"] = trace.format_trace_id(span_context.trace_id)
            entry["span_id"] = trace.format_span_id(span_context.span_id)
        if record.exc_info and record.exc_info[1] is not None:
            entry["error"] = describe_error(record.exc_info[1])
        return json.dumps(entry, ensure_ascii=False)


def describe_error(error: BaseException) -> str:
    """The error's type and where it was raised, but not its message: messages can carry patient data."""
    frames = traceback.extract_tb(error.__traceback__)[-4:]
    where = " <- ".join(
        f"{frame.filename.rsplit('/', 2)[-1]}:{frame.lineno} {frame.name}" for frame in reversed(frames)
    )
    return f"{type(error).__module__}.{type(error).__qualname__} at {where}"


def configure_logging(level: str, service: str) -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter(service))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    for noisy in ("alembic.runtime.plugins",):
        logging.getLogger(noisy).setLevel(logging.WARNING)
