"""Domain errors: what went wrong, in domain terms. One interceptor maps them to gRPC statuses
(`services.platform.status`), so domain code never imports grpc."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class FieldViolation:
    field: str
    description: str


class DomainError(Exception):
    """Base class. `message` is safe to show a caller: it never contains patient data."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class InvalidArgument(DomainError):
    def __init__(self, violations: list[FieldViolation] | tuple[FieldViolation, ...]) -> None:
        self.violations = tuple(violations)
        fields = ", ".join(violation.field for violation in self.violations)
        super().__init__(f"invalid request: {fields}")

    @classmethod
    def single(cls, field_name: str, description: str) -> InvalidArgument:
        return cls([FieldViolation(field_name, description)])


@dataclass
class _Reasoned:
    reason: str
    metadata: dict[str, str] = field(default_factory=dict)


class ReasonedError(DomainError):
    """An error with a machine-readable reason (google.rpc.ErrorInfo), e.g. TENANT_MISMATCH."""

    def __init__(self, reason: str, message: str, metadata: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.reason = reason
        self.metadata = dict(metadata or {})


class Unauthenticated(ReasonedError):
    pass


class PermissionDenied(ReasonedError):
    pass


class NotFound(DomainError):
    pass


class Aborted(ReasonedError):
    """A concurrency conflict; the caller may re-read and try again."""


class FailedPrecondition(ReasonedError):
    """The system is not in a state that allows the request; retrying the same request will not help."""


class ResourceExhausted(ReasonedError):
    """A limit was reached (a rate, a quota); retrying later may help, after `retry_after_seconds` if
    given (google.rpc.RetryInfo)."""

    def __init__(
        self,
        reason: str,
        message: str,
        metadata: dict[str, str] | None = None,
        *,
        retry_after_seconds: float | None = None,
    ) -> None:
        super().__init__(reason, message, metadata)
        self.retry_after_seconds = retry_after_seconds


class DataLoss(ReasonedError):
    """Stored data cannot be read: it was not written by this service, or is damaged. Retrying will not
    help; the operator must look at the record named in the metadata."""


# The decoding errors of a stored payload that is not what the reading service wrote.
UNREADABLE_PAYLOAD = (ValueError, KeyError, TypeError, AttributeError, ArithmeticError)


def unreadable_record(kind: str, version: int, sequence: int) -> DataLoss:
    return DataLoss(
        "UNREADABLE_RECORD",
        f"a stored {kind} record cannot be read; it was not written by this service or is damaged",
        {"kind": kind, "version": str(version), "sequence": str(sequence)},
    )


class DeadlineExceeded(DomainError):
    """The call ran out of time (the caller's deadline or the server's own limit); its work was abandoned."""


class Unavailable(DomainError):
    """A dependency (the database, a peer service) cannot be reached; retrying later may help."""


def raise_if_any(violations: list[FieldViolation]) -> None:
    """Reports every problem found in a request at once."""
    if violations:
        raise InvalidArgument(violations)
