"""The patient's own decisions — objection and blocked clinicians — and who may change or read them.

A patient acts with their own (citizen) token; a clinician may act on the patient's documented request,
which is recorded as such. Only the patient, or the municipality's privacy officer, reads the log."""

from __future__ import annotations

import enum
from dataclasses import dataclass
from datetime import datetime

from services.access.domain.access_log import Actor, ConsentChange
from services.platform.errors import InvalidArgument, PermissionDenied
from services.platform.principal import Principal

DOCUMENTED_REQUEST_MAX = 200


class RegisteredBy(enum.IntEnum):
    # Numbers equal the protobuf enum numbers.
    PATIENT = 1
    CLINICIAN_ON_PATIENTS_REQUEST = 2
    PRIVACY_OFFICER_ON_PATIENTS_REQUEST = 3


# Changes that restrict access: a clinician may make them on the patient's request. Lifting a
# restriction is the patient's own act (or the privacy officer's), never the restricted party's.
RESTRICTING_CHANGES = frozenset({ConsentChange.OBJECTION_REGISTERED, ConsentChange.PRACTITIONER_BLOCKED})


@dataclass(frozen=True)
class Registration:
    """Who registered an objection or a block, when, and on what basis."""

    registered_at: datetime
    registered_by: RegisteredBy
    actor: Actor
    documented_request: str | None


@dataclass(frozen=True)
class Objection:
    patient_id: str
    registration: Registration


@dataclass(frozen=True)
class Block:
    patient_id: str
    hpr_number: str
    registration: Registration


@dataclass(frozen=True)
class ConsentCommand:
    tenant: str
    patient_id: str
    change: ConsentChange
    registration: Registration
    # The clinician blocked or unblocked (block changes only).
    hpr_number: str | None = None


@dataclass(frozen=True)
class ConsentResult:
    changed: bool
    objection: Objection | None = None
    block: Block | None = None


def actor_of(caller: Principal) -> Actor:
    return Actor(
        hpr_number=caller.hpr_number,
        name=caller.name,
        organisation_number=caller.organisation_number,
        unit_organisation_number=caller.unit_organisation_number,
        client_id=caller.client_id,
        is_patient=caller.is_citizen,
    )


def registration_for(
    caller: Principal, tenant: str, patient_id: str, documented_request: str, change: ConsentChange, now: datetime
) -> Registration:
    """Who may change a patient's consent: the patient; a clinician, on the patient's documented request,
    only to add a restriction; the privacy officer, on the patient's documented request."""
    require_tenant(caller, tenant)
    if caller.is_citizen:
        if caller.person_id != patient_id:
            raise PermissionDenied("NOT_THE_PATIENT", "a patient may only change their own objection and blocks")
        return Registration(now, RegisteredBy.PATIENT, actor_of(caller), None)
    if caller.is_privacy_officer:
        request = _documented_request(documented_request)
        return Registration(now, RegisteredBy.PRIVACY_OFFICER_ON_PATIENTS_REQUEST, actor_of(caller), request)
    if caller.hpr_number is None:
        raise PermissionDenied("CLINICIAN_REQUIRED", "only the patient or a clinician (HPR number) may do this")
    if change not in RESTRICTING_CHANGES:
        raise PermissionDenied(
            "PATIENT_OR_PRIVACY_OFFICER_REQUIRED",
            "only the patient or the privacy officer may withdraw an objection or lift a block",
        )
    if caller.attestation is None or patient_id not in caller.attestation.patient_ids:
        raise PermissionDenied("PATIENT_NOT_IN_ATTESTATION", "the token's attestation does not name this patient")
    request = _documented_request(documented_request)
    return Registration(now, RegisteredBy.CLINICIAN_ON_PATIENTS_REQUEST, actor_of(caller), request)


def _documented_request(value: str) -> str:
    value = value.strip()
    if not value:
        raise InvalidArgument.single(
            "documented_request", "required when acting on the patient's request: where that request is documented"
        )
    if len(value) > DOCUMENTED_REQUEST_MAX or not value.isprintable():
        raise InvalidArgument.single(
            "documented_request", f"at most {DOCUMENTED_REQUEST_MAX} printable characters, no clinical content"
        )
    return value


def require_tenant(caller: Principal, tenant: str) -> None:
    if caller.tenant is None or caller.tenant != tenant:
        raise PermissionDenied("TENANT_MISMATCH", "the caller's organisation does not belong to this municipality")


def require_log_reader(caller: Principal, tenant: str, patient_id: str) -> None:
    """The patient reads their own log; the privacy officer reads anyone's in the municipality."""
    require_tenant(caller, tenant)
    if caller.is_privacy_officer:
        return
    if not (caller.is_citizen and caller.person_id == patient_id):
        raise PermissionDenied("NOT_THE_PATIENT", "only the patient or the privacy officer may read this access log")


def require_consent_reader(caller: Principal, tenant: str, patient_id: str) -> None:
    """The patient, the privacy officer, or a clinician whose attestation names the patient."""
    require_tenant(caller, tenant)
    if caller.is_privacy_officer or (caller.is_citizen and caller.person_id == patient_id):
        return
    if caller.is_citizen:
        raise PermissionDenied("NOT_THE_PATIENT", "a patient may only read their own objection and blocks")
    if caller.attestation is None or patient_id not in caller.attestation.patient_ids:
        raise PermissionDenied("PATIENT_NOT_IN_ATTESTATION", "the token's attestation does not name this patient")


def require_privacy_officer(caller: Principal, tenant: str) -> None:
    require_tenant(caller, tenant)
    if not caller.is_privacy_officer:
        raise PermissionDenied("PRIVACY_OFFICER_REQUIRED", "only the municipality's privacy officer may do this")
