"""Protobuf ⇄ domain for the storage contract."""

from __future__ import annotations

import base64
import json

from google.protobuf.timestamp_pb2 import Timestamp
from samhandling.storage.v1 import storage_pb2

from services.platform.errors import InvalidArgument
from services.platform.principal import Principal
from services.storage.domain.records import (
    MAX_VERSION,
    Author,
    Payload,
    PutCommand,
    RecordRef,
    RecordVersion,
    is_valid_key,
)


def author_of(caller: Principal) -> Author:
    return Author(caller.client_id, caller.acting_organisation_number, caller.hpr_number)


def put_command(request: storage_pb2.PutRecordRequest, caller: Principal) -> PutCommand:
    return PutCommand(
        ref=RecordRef(request.tenant, request.patient_id, request.kind, request.key),
        payload=Payload(request.payload.data, request.payload.content_type),
        idempotency_key=request.idempotency_key,
        expected_version=request.expected_version if request.HasField("expected_version") else None,
        author=author_of(caller),
    )


def record_message(record: RecordVersion) -> storage_pb2.Record:
    recorded_at = Timestamp()
    recorded_at.FromDatetime(record.recorded_at)
    return storage_pb2.Record(
        tenant=record.ref.tenant,
        patient_id=record.ref.patient_id,
        kind=record.ref.kind,
        key=record.ref.key,
        version=record.version,
        payload=storage_pb2.Payload(data=record.payload.data, content_type=record.payload.content_type),
        provenance=storage_pb2.Provenance(
            source_system=record.author.source_system,
            organisation_number=record.author.organisation_number,
            author_hpr_number=record.author.hpr_number or "",
            recorded_at=recorded_at,
        ),
        sequence=record.sequence,
    )


DEFAULT_PAGE_SIZE = 100
MAX_PAGE_SIZE = 1000


def page_size(requested: int) -> int:
    if requested < 0:
        raise InvalidArgument.single("page_size", "must not be negative")
    return min(requested or DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE)


def encode_page_token(position: str | int) -> str:
    return base64.urlsafe_b64encode(json.dumps({"after": position}).encode()).decode()


def _page_position(token: str) -> object:
    try:
        return json.loads(base64.urlsafe_b64decode(token.encode()))["after"]
    except (ValueError, KeyError, TypeError):
        return None


def _bad_page_token() -> InvalidArgument:
    return InvalidArgument.single("page_token", "is not a token returned by this service")


def version_after(token: str) -> int:
    """The version after which a page of history starts (0 for the first page)."""
    if not token:
        return 0
    position = _page_position(token)
    if not isinstance(position, int) or isinstance(position, bool) or not 0 <= position <= MAX_VERSION:
        raise _bad_page_token()
    return position


def key_after(token: str) -> str:
    """The key after which a page of records starts ("" for the first page)."""
    if not token:
        return ""
    position = _page_position(token)
    if not isinstance(position, str) or not is_valid_key(position):
        raise _bad_page_token()
    return position


def fit_page(records: list[RecordVersion], page_size: int, byte_budget: int) -> tuple[list[RecordVersion], bool]:
    """At most page_size records whose payloads fit the byte budget (at least one, so a page always
    makes progress), and whether more follow."""
    page: list[RecordVersion] = []
    used = 0
    for record in records[:page_size]:
        used += len(record.payload.data)
        if page and used > byte_budget:
            return page, True
        page.append(record)
    return page, len(records) > page_size
