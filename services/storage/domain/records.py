"""Records: versioned, append-only, tenant-scoped content that storage keeps but never interprets."""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from datetime import datetime

from services.platform.errors import Aborted, FailedPrecondition, FieldViolation, raise_if_any
from services.platform.identifiers import municipality_number_problem, person_number_problem

KIND = re.compile(r"[a-z][a-z0-9_]*(\.[a-z][a-z0-9_]*)+")
KIND_MAX = 64
KEY = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:@/+=-]*")
KEY_MAX = 200
IDEMPOTENCY_KEY = re.compile(r"[\x21-\x7e]+")  # printable ASCII, no spaces
IDEMPOTENCY_KEY_MAX = 128
CONTENT_TYPE = re.compile(r"[A-Za-z0-9][\w!#$&^.+-]*/[A-Za-z0-9][\w!#$&^.+-]*( *;[ -~]*)?")
CONTENT_TYPE_MAX = 128
MAX_VERSION = 2**31 - 1  # versions are int64 on the wire, int4 in the database
MAX_WATCH_KINDS = 50


@dataclass(frozen=True)
class RecordRef:
    tenant: str
    patient_id: str
    kind: str
    key: str


@dataclass(frozen=True)
class Payload:
    data: bytes
    content_type: str


@dataclass(frozen=True)
class Author:
    """Who writes, from the caller's token."""

    source_system: str
    organisation_number: str
    hpr_number: str | None


@dataclass(frozen=True)
class RecordVersion:
    ref: RecordRef
    version: int
    payload: Payload
    author: Author
    recorded_at: datetime
    sequence: int


@dataclass(frozen=True)
class PutCommand:
    ref: RecordRef
    payload: Payload
    idempotency_key: str
    expected_version: int | None
    author: Author

    def fingerprint(self) -> bytes:
        """Identifies the request, so that a reused idempotency key with other content is caught."""
        digest = hashlib.sha256()
        parts = [
            self.ref.patient_id,
            self.ref.kind,
            self.ref.key,
            self.payload.content_type,
            "" if self.expected_version is None else str(self.expected_version),
            self.author.organisation_number,
            self.author.hpr_number or "",
        ]
        for part in parts:
            encoded = part.encode()
            digest.update(len(encoded).to_bytes(8, "big") + encoded)
        digest.update(self.payload.data)
        return digest.digest()


@dataclass(frozen=True)
class PutResult:
    record: RecordVersion
    replayed: bool


class VersionConflict(Aborted):
    def __init__(self, expected: int, current: int) -> None:
        super().__init__(
            "VERSION_CONFLICT",
            f"expected version {expected} but the record is at version {current}",
            {"expected_version": str(expected), "current_version": str(current)},
        )


class IdempotencyKeyReused(FailedPrecondition):
    def __init__(self) -> None:
        super().__init__(
            "IDEMPOTENCY_KEY_REUSED",
            "this idempotency key was already used for a different request",
            {"subject": "idempotency_key"},
        )


class RecordValidator:
    """Collects every problem in a request, naming each field as the contract does."""

    def __init__(self, *, check_birth_dates: bool, max_payload_bytes: int) -> None:
        self.check_birth_dates = check_birth_dates
        self.max_payload_bytes = max_payload_bytes

    def scope(self, tenant: str, patient_id: str, kind: str, violations: list[FieldViolation]) -> None:
        if problem := municipality_number_problem(tenant):
            violations.append(FieldViolation("tenant", problem))
        if problem := person_number_problem(patient_id, check_date=self.check_birth_dates):
            violations.append(FieldViolation("patient_id", problem))
        check_kind(kind, "kind", violations)

    def ref(self, tenant: str, patient_id: str, kind: str, key: str) -> list[FieldViolation]:
        violations: list[FieldViolation] = []
        self.scope(tenant, patient_id, kind, violations)
        if not is_valid_key(key):
            violations.append(FieldViolation("key", f"must be 1-{KEY_MAX} characters of letters, digits and ._:@/+=-"))
        return violations

    def put(self, command: PutCommand) -> None:
        ref = command.ref
        violations = self.ref(ref.tenant, ref.patient_id, ref.kind, ref.key)
        if len(command.payload.data) > self.max_payload_bytes:
            violations.append(
                FieldViolation("payload.data", f"is larger than the limit of {self.max_payload_bytes} bytes")
            )
        content_type = command.payload.content_type
        if len(content_type) > CONTENT_TYPE_MAX or not CONTENT_TYPE.fullmatch(content_type):
            violations.append(FieldViolation("payload.content_type", "must be a media type, e.g. application/json"))
        if len(command.idempotency_key) > IDEMPOTENCY_KEY_MAX or not IDEMPOTENCY_KEY.fullmatch(command.idempotency_key):
            violations.append(
                FieldViolation("idempotency_key", f"is required: 1-{IDEMPOTENCY_KEY_MAX} printable ASCII characters")
            )
        if command.expected_version is not None and not 0 <= command.expected_version <= MAX_VERSION:
            violations.append(FieldViolation("expected_version", "must be 0 (new record) or a version number"))
        raise_if_any(violations)


def check_version(version: int, field_name: str, violations: list[FieldViolation]) -> None:
    if not 1 <= version <= MAX_VERSION:
        violations.append(FieldViolation(field_name, f"must be a version number from 1 to {MAX_VERSION}"))


def is_valid_key(key: str) -> bool:
    return len(key) <= KEY_MAX and KEY.fullmatch(key) is not None


def check_kind(kind: str, field_name: str, violations: list[FieldViolation]) -> None:
    if len(kind) > KIND_MAX or not KIND.fullmatch(kind):
        violations.append(FieldViolation(field_name, "must be a lower-case dotted name such as news2.assessment"))
