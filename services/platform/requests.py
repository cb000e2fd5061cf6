"""Checks every patient-data request shares: which tenant it addresses and which patient it names."""

from __future__ import annotations

import hashlib
import re

from services.platform.errors import FieldViolation, PermissionDenied, raise_if_any
from services.platform.identifiers import municipality_number_problem, person_number_problem
from services.platform.principal import Principal
from services.platform.request_context import current_principal

_HPR_NUMBER = re.compile(r"[0-9]{1,9}")


def requested_tenant(value: str, caller: Principal, violations: list[FieldViolation]) -> str:
    """The tenant a request addresses: the one it names, else the caller's own."""
    if value:
        if problem := municipality_number_problem(value):
            violations.append(FieldViolation("tenant", problem))
        return value
    if caller.tenant is None:
        raise PermissionDenied("UNKNOWN_ORGANISATION", "the caller's organisation is not part of any municipality")
    return caller.tenant


def check_patient_id(value: str, violations: list[FieldViolation], *, check_date: bool, field: str = "patient_id"):
    if problem := person_number_problem(value, check_date=check_date):
        violations.append(FieldViolation(field, problem))


def check_hpr_number(value: str, violations: list[FieldViolation], *, field: str = "hpr_number") -> None:
    if not _HPR_NUMBER.fullmatch(value):
        violations.append(FieldViolation(field, "must be an HPR number (1 to 9 digits)"))


IDEMPOTENCY_KEY_MAX = 128
_IDEMPOTENCY_KEY = re.compile(r"[\x21-\x7e]{1,128}")


def check_idempotency_key(value: str, violations: list[FieldViolation], *, field: str = "idempotency_key") -> None:
    if not _IDEMPOTENCY_KEY.fullmatch(value):
        violations.append(
            FieldViolation(field, f"required: 1 to {IDEMPOTENCY_KEY_MAX} printable ASCII characters, e.g. a UUID")
        )


# The range of google.protobuf.Timestamp: 0001-01-01T00:00:00Z to 9999-12-31T23:59:59.999999999Z.
TIMESTAMP_MIN_SECONDS, TIMESTAMP_MAX_SECONDS = -62_135_596_800, 253_402_300_799


def timestamp_problem(seconds: int, nanos: int) -> str | None:
    """Why a google.protobuf.Timestamp (its seconds and nanos) is not a moment, or None when it is. The
    wire allows any int64 and int32; converting an out-of-range one to a datetime raises."""
    if not 0 <= nanos < 1_000_000_000 or not TIMESTAMP_MIN_SECONDS <= seconds <= TIMESTAMP_MAX_SECONDS:
        return "is not a valid timestamp (0001-01-01 to 9999-12-31, nanos 0 to 999999999)"
    return None


def feed_request(request) -> tuple[Principal, str]:
    """The caller and tenant of a request to follow a feed (`tenant`, `from_sequence`), validated."""
    caller = current_principal()
    violations: list[FieldViolation] = []
    tenant = requested_tenant(request.tenant, caller, violations)
    if request.from_sequence < 0:
        violations.append(FieldViolation("from_sequence", "must not be negative"))
    raise_if_any(violations)
    return caller, tenant


def scoped_idempotency_key(scope: str, key: str) -> str:
    """The caller's idempotency key as one service passes it to storage. Storage scopes keys by source
    system across every kind of record, so a vendor that reuses its own key for a services list and a
    set of vital signs must not have the second refused as a reuse of the first."""
    scoped = f"{scope}:{key}"
    if len(scoped) <= IDEMPOTENCY_KEY_MAX:
        return scoped
    return f"{scope}:sha256:{hashlib.sha256(key.encode()).hexdigest()}"
