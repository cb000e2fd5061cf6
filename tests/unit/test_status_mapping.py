import grpc
import pytest
from google.protobuf.message import Message
from google.rpc import code_pb2, error_details_pb2, status_pb2

from services.platform import errors
from services.platform.status import ERROR_DOMAIN, internal_status, status_for, with_request_id
from services.storage.domain.records import IdempotencyKeyReused, VersionConflict

DETAILS_KEY = "grpc-status-details-bin"


def rich_status(status: grpc.Status) -> status_pb2.Status:
    packed = dict(status.trailing_metadata)[DETAILS_KEY]
    return status_pb2.Status.FromString(packed)


def details_of(status: grpc.Status) -> list[Message]:
    unpacked: list[Message] = []
    for packed in rich_status(status).details:
        for kind in (
            error_details_pb2.BadRequest,
            error_details_pb2.ErrorInfo,
            error_details_pb2.PreconditionFailure,
            error_details_pb2.RetryInfo,
        ):
            if packed.Is(kind.DESCRIPTOR):
                message = kind()
                packed.Unpack(message)
                unpacked.append(message)
                break
        else:
            raise AssertionError(f"unexpected detail {packed.type_url}")
    return unpacked


def only_detail(status: grpc.Status, kind: type[Message]) -> Message:
    found = [detail for detail in details_of(status) if isinstance(detail, kind)]
    assert len(found) == 1
    return found[0]


@pytest.mark.parametrize(
    ("error", "code"),
    [
        (errors.InvalidArgument.single("kind", "bad"), grpc.StatusCode.INVALID_ARGUMENT),
        (errors.Unauthenticated("INVALID_TOKEN", "no"), grpc.StatusCode.UNAUTHENTICATED),
        (errors.PermissionDenied("BLOCKED", "no"), grpc.StatusCode.PERMISSION_DENIED),
        (errors.NotFound("no such record"), grpc.StatusCode.NOT_FOUND),
        (errors.Aborted("CONFLICT", "again"), grpc.StatusCode.ABORTED),
        (VersionConflict(1, 2), grpc.StatusCode.ABORTED),
        (errors.FailedPrecondition("STATE", "no"), grpc.StatusCode.FAILED_PRECONDITION),
        (IdempotencyKeyReused(), grpc.StatusCode.FAILED_PRECONDITION),
        (errors.Unavailable("database down"), grpc.StatusCode.UNAVAILABLE),
        (errors.DomainError("something else"), grpc.StatusCode.INTERNAL),
        (errors.ReasonedError("ODD", "unmapped"), grpc.StatusCode.INTERNAL),
    ],
    ids=lambda value: type(value).__name__ if isinstance(value, Exception) else None,
)
def test_code_and_message(error: errors.DomainError, code: grpc.StatusCode) -> None:
    status = status_for(error)

    assert status.code == code
    assert status.details == error.message
    assert rich_status(status).code == code.value[0]
    assert rich_status(status).message == error.message


def test_invalid_argument_lists_every_field_violation() -> None:
    error = errors.InvalidArgument(
        [
            errors.FieldViolation("tenant", "must be a four-digit municipality number"),
            errors.FieldViolation("payload.data", "is larger than the limit of 10 bytes"),
        ]
    )

    status = status_for(error)

    bad_request = only_detail(status, error_details_pb2.BadRequest)
    assert [(v.field, v.description) for v in bad_request.field_violations] == [
        ("tenant", "must be a four-digit municipality number"),
        ("payload.data", "is larger than the limit of 10 bytes"),
    ]
    assert status.details == "invalid request: tenant, payload.data"
    assert len(details_of(status)) == 1


@pytest.mark.parametrize(
    "error",
    [
        errors.Unauthenticated("TOKEN_TOO_LARGE", "access token is too large"),
        errors.PermissionDenied("CLINICIAN_BLOCKED", "blocked by the patient", {"patient": "ref-1"}),
        errors.Aborted("VERSION_CONFLICT", "conflict", {"expected_version": "1", "current_version": "2"}),
        errors.FailedPrecondition("NOT_READY", "not ready", {"subject": "tenant"}),
    ],
    ids=lambda error: type(error).__name__,
)
def test_reasoned_error_carries_error_info(error: errors.ReasonedError) -> None:
    info = only_detail(status_for(error), error_details_pb2.ErrorInfo)

    assert info.reason == error.reason
    assert info.domain == ERROR_DOMAIN == "samhandling.no"
    assert dict(info.metadata) == error.metadata


def test_version_conflict_metadata() -> None:
    info = only_detail(status_for(VersionConflict(3, 5)), error_details_pb2.ErrorInfo)

    assert info.reason == "VERSION_CONFLICT"
    assert dict(info.metadata) == {"expected_version": "3", "current_version": "5"}


def test_failed_precondition_carries_precondition_failure() -> None:
    error = IdempotencyKeyReused()

    status = status_for(error)

    failure = only_detail(status, error_details_pb2.PreconditionFailure)
    assert [(v.type, v.subject, v.description) for v in failure.violations] == [
        ("IDEMPOTENCY_KEY_REUSED", "idempotency_key", error.message)
    ]
    assert only_detail(status, error_details_pb2.ErrorInfo).reason == "IDEMPOTENCY_KEY_REUSED"


def test_precondition_without_subject_has_an_empty_subject() -> None:
    status = status_for(errors.FailedPrecondition("NOT_READY", "not ready"))

    failure = only_detail(status, error_details_pb2.PreconditionFailure)

    assert failure.violations[0].subject == ""


def test_unavailable_carries_retry_info() -> None:
    status = status_for(errors.Unavailable("database cannot be reached"))

    retry = only_detail(status, error_details_pb2.RetryInfo)
    assert retry.retry_delay.seconds == 1
    assert len(details_of(status)) == 1


@pytest.mark.parametrize(
    "error",
    [errors.NotFound("no such record"), errors.DomainError("boom")],
    ids=lambda error: type(error).__name__,
)
def test_errors_without_details(error: errors.DomainError) -> None:
    assert details_of(status_for(error)) == []


def test_internal_status_names_the_request_id() -> None:
    status = internal_status("req-7f3a")

    assert status.code == grpc.StatusCode.INTERNAL
    assert "req-7f3a" in status.details
    assert rich_status(status).code == code_pb2.INTERNAL
    assert "req-7f3a" in rich_status(status).message
    assert list(rich_status(status).details) == []


def test_with_request_id_adds_trailing_metadata() -> None:
    original = status_for(errors.NotFound("gone"))

    status = with_request_id(original, "req-1")

    assert isinstance(status, grpc.Status)
    assert status.code == grpc.StatusCode.NOT_FOUND
    assert status.details == "gone"
    assert ("x-request-id", "req-1") in status.trailing_metadata
    assert rich_status(status) == rich_status(original)
