"""A peer service's error, turned back into the domain error it was, so that a caller of ours sees
the same status, reason and field violations as if it had called the peer itself."""

from __future__ import annotations

import time

import grpc
from google.rpc import error_details_pb2, status_pb2
from grpc import aio

from services.platform import errors, request_context

_STATUS_DETAILS_KEY = "grpc-status-details-bin"
_UNAVAILABLE_CODES = (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED, grpc.StatusCode.CANCELLED)
# Peer calls end at the caller's deadline; their end is observed a moment after it.
_DEADLINE_SLACK_SECONDS = 0.05


def domain_error(error: aio.AioRpcError, peer: str) -> Exception:
    """The domain error to raise for a failed peer call. Anything we cannot classify stays an
    unexpected error (INTERNAL for our caller) rather than being passed off as their fault."""
    code, message = error.code(), error.details() or ""
    details = _details(error)
    reason = next((detail for detail in details if isinstance(detail, error_details_pb2.ErrorInfo)), None)
    if code == grpc.StatusCode.DEADLINE_EXCEEDED and _callers_deadline_passed():
        return errors.DeadlineExceeded("the call's deadline passed")
    if code in _UNAVAILABLE_CODES:
        return errors.Unavailable(f"the {peer} service is unavailable; retry later")
    if code == grpc.StatusCode.PERMISSION_DENIED:
        return errors.PermissionDenied(reason.reason if reason else "DENIED", message, _metadata(reason))
    if code == grpc.StatusCode.UNAUTHENTICATED:
        return errors.Unauthenticated(reason.reason if reason else "INVALID_TOKEN", message, _metadata(reason))
    if code == grpc.StatusCode.INVALID_ARGUMENT:
        violations = [
            errors.FieldViolation(violation.field, violation.description)
            for detail in details
            if isinstance(detail, error_details_pb2.BadRequest)
            for violation in detail.field_violations
        ]
        return errors.InvalidArgument(violations or [errors.FieldViolation("", message)])
    if code == grpc.StatusCode.NOT_FOUND:
        return errors.NotFound(message)
    if code == grpc.StatusCode.ABORTED and reason:
        return errors.Aborted(reason.reason, message, _metadata(reason))
    if code == grpc.StatusCode.RESOURCE_EXHAUSTED:
        return errors.ResourceExhausted(reason.reason if reason else "RESOURCE_EXHAUSTED", message, _metadata(reason))
    if code == grpc.StatusCode.FAILED_PRECONDITION and reason:
        return errors.FailedPrecondition(reason.reason, message, _metadata(reason))
    return RuntimeError(f"{peer} call failed: {code.name}")


def _callers_deadline_passed() -> bool:
    """Whether our own caller's time is up (so the peer's time ran out with it, not on its own)."""
    deadline = request_context.deadline.get()
    return deadline is not None and time.monotonic() >= deadline - _DEADLINE_SLACK_SECONDS


def _metadata(reason: error_details_pb2.ErrorInfo | None) -> dict[str, str]:
    return dict(reason.metadata) if reason else {}


def _details(error: aio.AioRpcError) -> list:
    raw = next((value for key, value in error.trailing_metadata() or () if key == _STATUS_DETAILS_KEY), None)
    if not isinstance(raw, bytes):
        return []
    status = status_pb2.Status.FromString(raw)
    found = []
    for packed in status.details:
        for kind in (error_details_pb2.ErrorInfo, error_details_pb2.BadRequest):
            if packed.Is(kind.DESCRIPTOR):
                detail = kind()
                packed.Unpack(detail)
                found.append(detail)
    return found
