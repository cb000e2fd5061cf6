"""Domain error → gRPC status with google.rpc details (BadRequest, ErrorInfo, PreconditionFailure,
RetryInfo)."""

from __future__ import annotations

import collections

import grpc
from google.protobuf import any_pb2, duration_pb2
from google.rpc import code_pb2, error_details_pb2, status_pb2
from grpc_status import rpc_status

from services.platform import errors

ERROR_DOMAIN = "samhandling.no"

_CODES: list[tuple[type[errors.DomainError], int]] = [
    (errors.InvalidArgument, code_pb2.INVALID_ARGUMENT),
    (errors.Unauthenticated, code_pb2.UNAUTHENTICATED),
    (errors.PermissionDenied, code_pb2.PERMISSION_DENIED),
    (errors.NotFound, code_pb2.NOT_FOUND),
    (errors.Aborted, code_pb2.ABORTED),
    (errors.FailedPrecondition, code_pb2.FAILED_PRECONDITION),
    (errors.ResourceExhausted, code_pb2.RESOURCE_EXHAUSTED),
    (errors.Unavailable, code_pb2.UNAVAILABLE),
    (errors.DeadlineExceeded, code_pb2.DEADLINE_EXCEEDED),
    (errors.DataLoss, code_pb2.DATA_LOSS),
]
# When a ResourceExhausted carries no delay of its own (e.g. relayed from a peer, which keeps only the
# ErrorInfo), the delay in its ErrorInfo metadata, so the RetryInfo survives the hop.
RETRY_AFTER_MS = "retry_after_ms"
# gRPC's server pushback (gRFC A6): a client retry policy waits this long before its next attempt.
RETRY_PUSHBACK_HEADER = "grpc-retry-pushback-ms"


def status_for(error: errors.DomainError) -> grpc.Status:
    code = next((code for kind, code in _CODES if isinstance(error, kind)), code_pb2.INTERNAL)
    status = status_pb2.Status(code=code, message=error.message)
    for detail in _details(error):
        packed = any_pb2.Any()
        packed.Pack(detail)
        status.details.append(packed)
    converted = rpc_status.to_status(status)
    delay = retry_delay_seconds(error)
    if isinstance(error, errors.ResourceExhausted) and delay is not None:
        pushback = ((RETRY_PUSHBACK_HEADER, str(max(1, round(delay * 1000)))),)
        return _Status(converted.code, converted.details, (*converted.trailing_metadata, *pushback))
    return converted


def retry_delay_seconds(error: errors.DomainError) -> float | None:
    """How long the caller should wait before trying again, when the error says."""
    if isinstance(error, errors.Unavailable):
        return 1.0
    if not isinstance(error, errors.ResourceExhausted):
        return None
    if error.retry_after_seconds is not None:
        return max(error.retry_after_seconds, 0.0)
    try:
        return max(int(error.metadata[RETRY_AFTER_MS]), 0) / 1000
    except (KeyError, ValueError):
        return None


def internal_status(request_id: str) -> grpc.Status:
    message = f"internal error (request id {request_id})"
    return rpc_status.to_status(status_pb2.Status(code=code_pb2.INTERNAL, message=message))


def with_request_id(grpc_status: grpc.Status, request_id: str) -> grpc.Status:
    """The status with the request id added to its trailing metadata, so failures can be traced too."""
    trailing = (*(grpc_status.trailing_metadata or ()), ("x-request-id", request_id))
    return _Status(grpc_status.code, grpc_status.details, trailing)


class _Status(collections.namedtuple("_Status", ("code", "details", "trailing_metadata")), grpc.Status):
    pass


def _details(error: errors.DomainError) -> list:
    details: list = []
    if isinstance(error, errors.InvalidArgument):
        details.append(
            error_details_pb2.BadRequest(
                field_violations=[
                    error_details_pb2.BadRequest.FieldViolation(field=v.field, description=v.description)
                    for v in error.violations
                ]
            )
        )
    if isinstance(error, errors.ReasonedError):
        details.append(error_details_pb2.ErrorInfo(reason=error.reason, domain=ERROR_DOMAIN, metadata=error.metadata))
    if isinstance(error, errors.FailedPrecondition):
        details.append(
            error_details_pb2.PreconditionFailure(
                violations=[
                    error_details_pb2.PreconditionFailure.Violation(
                        type=error.reason, subject=error.metadata.get("subject", ""), description=error.message
                    )
                ]
            )
        )
    delay = retry_delay_seconds(error)
    if delay is not None:
        retry_delay = duration_pb2.Duration()
        retry_delay.FromNanoseconds(round(delay * 1e9))
        details.append(error_details_pb2.RetryInfo(retry_delay=retry_delay))
    return details
