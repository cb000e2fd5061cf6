"""Protobuf ⇄ domain for the access contract."""

from __future__ import annotations

import base64
from datetime import datetime

from google.protobuf.timestamp_pb2 import Timestamp
from samhandling.access.v1 import access_pb2

from services.access.domain.access_log import Actor, ChainedEntry, Verification
from services.access.domain.consent import Block, Objection, Registration
from services.platform.errors import InvalidArgument

DEFAULT_PAGE_SIZE = 50
MAX_PAGE_SIZE = 500
MAX_SEQUENCE = 2**63 - 1


def timestamp(moment: datetime) -> Timestamp:
    message = Timestamp()
    message.FromDatetime(moment)
    return message


def actor_message(actor: Actor) -> access_pb2.Actor:
    return access_pb2.Actor(
        hpr_number=actor.hpr_number or "",
        name=actor.name or "",
        organisation_number=actor.organisation_number,
        unit_organisation_number=actor.unit_organisation_number or "",
        client_id=actor.client_id,
        is_patient=actor.is_patient,
    )


def entry_message(item: ChainedEntry) -> access_pb2.AccessLogEntry:
    entry = item.entry
    return access_pb2.AccessLogEntry(
        entry_id=entry.entry_id,
        sequence=item.sequence,
        decided_at=timestamp(entry.decided_at),
        tenant=entry.tenant,
        patient_id=entry.patient_id,
        actor=actor_message(entry.actor),
        purpose_of_use=entry.purpose_of_use or "",
        decision_ref=entry.decision_ref or "",
        data_kind=int(entry.data_kind),
        action=int(entry.action),
        decision=access_pb2.DECISION_ALLOWED if entry.allowed else access_pb2.DECISION_DENIED,
        reason=entry.reason or "",
        break_the_glass=entry.break_the_glass,
        follow_up=entry.follow_up,
        on_patients_request=entry.on_patients_request,
        subject_hpr_number=entry.subject_hpr_number or "",
        entry_hash=item.entry_hash.hex(),
        previous_hash=item.previous_hash.hex(),
    )


def _registration_fields(registration: Registration) -> dict:
    return {
        "registered_at": timestamp(registration.registered_at),
        "registered_by": int(registration.registered_by),
        "registered_by_actor": actor_message(registration.actor),
        "documented_request": registration.documented_request or "",
    }


def objection_message(objection: Objection) -> access_pb2.Objection:
    return access_pb2.Objection(patient_id=objection.patient_id, **_registration_fields(objection.registration))


def block_message(block: Block) -> access_pb2.PractitionerBlock:
    return access_pb2.PractitionerBlock(
        patient_id=block.patient_id, hpr_number=block.hpr_number, **_registration_fields(block.registration)
    )


def verification_message(verification: Verification, verified_at: datetime) -> access_pb2.VerifyAccessLogResponse:
    return access_pb2.VerifyAccessLogResponse(
        intact=verification.intact,
        entries_checked=verification.entries_checked,
        first_broken_sequence=verification.broken_sequence or 0,
        first_broken_entry_id=verification.broken_entry_id or "",
        problem=verification.problem.value if verification.problem else "",
        head_hash=verification.head_hash.hex(),
        verified_at=timestamp(verified_at),
    )


def page_size(requested: int) -> int:
    if requested < 0:
        raise InvalidArgument.single("page_size", "must not be negative")
    return min(requested or DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE)


def encode_page_token(before_sequence: int) -> str:
    return base64.urlsafe_b64encode(f"before:{before_sequence}".encode()).decode()


def decode_page_token(token: str) -> int | None:
    if not token:
        return None
    try:
        kind, _, value = base64.urlsafe_b64decode(token.encode("ascii")).decode("ascii").partition(":")
        before = int(value)
    except (ValueError, UnicodeError):
        before = -1
        kind = ""
    # Log sequences are int64 (BIGINT): a larger number cannot be one, nor be bound as a query parameter.
    if kind != "before" or not 1 <= before <= MAX_SEQUENCE:
        raise InvalidArgument.single("page_token", "not a token from a previous response")
    return before
