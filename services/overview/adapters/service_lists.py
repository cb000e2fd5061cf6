"""Each source system's list of services for a patient, kept in the storage service: one record per
(patient, source), a new version per submission, so a source's history is kept and another source's
list is never touched."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal
from typing import Any

from services.overview.domain.codes import CodeSystem, ServiceType
from services.overview.domain.compilation import SourceList
from services.overview.domain.services import Contact, MunicipalService, Unit
from services.platform.errors import UNREADABLE_PAYLOAD, unreadable_record
from services.platform.requests import scoped_idempotency_key
from services.platform.storage_client import StorageClient, StoredRecord
from services.storage.domain.records import is_valid_key

KIND = "overview.services"
CONTENT_TYPE = "application/vnd.samhandling.overview-services+json; version=1"


@dataclass(frozen=True)
class StoredList:
    source: SourceList
    version: int
    sequence: int


def record_key(source_system: str) -> str:
    """The storage key of a source's list: its client id when that is a valid key, else a digest."""
    if is_valid_key(source_system) and not source_system.startswith("sha256:"):
        return source_system
    return "sha256:" + hashlib.sha256(source_system.encode()).hexdigest()


class ServiceLists:
    def __init__(self, storage: StorageClient) -> None:
        self.storage = storage

    async def save(
        self, tenant: str, patient_id: str, source_system: str, services: tuple[MunicipalService, ...], key: str
    ) -> tuple[StoredList, bool]:
        """Stores the source's list as its next version; returns it and whether it was a replay."""
        result = await self.storage.put(
            tenant,
            patient_id,
            KIND,
            record_key(source_system),
            encode(services),
            CONTENT_TYPE,
            scoped_idempotency_key("overview", key),
        )
        return stored_list(result.record), result.replayed

    async def current(self, tenant: str, patient_id: str) -> list[SourceList]:
        """The latest list of every source that has reported on the patient."""
        return [stored_list(record).source for record in await self.storage.latest(tenant, patient_id, KIND)]

    async def history(
        self, tenant: str, patient_id: str, source_system: str, page_size: int, page_token: str
    ) -> tuple[list[StoredList], str]:
        records, token = await self.storage.versions(
            tenant, patient_id, KIND, record_key(source_system), page_size, page_token
        )
        return [stored_list(record) for record in records], token


def stored_list(record: StoredRecord) -> StoredList:
    """Raises DataLoss when the record holds something this service did not write."""
    try:
        services = decode(record.data)
    except UNREADABLE_PAYLOAD as error:
        raise unreadable_record(KIND, record.version, record.sequence) from error
    return StoredList(SourceList(record.source_system, record.recorded_at, services), record.version, record.sequence)


def encode(services: tuple[MunicipalService, ...]) -> bytes:
    return json.dumps({"services": [_service_json(service) for service in services]}, ensure_ascii=False).encode()


def decode(data: bytes) -> tuple[MunicipalService, ...]:
    return tuple(_service(item) for item in json.loads(data)["services"])


def _service_json(service: MunicipalService) -> dict[str, Any]:
    kind = service.service_type
    return {
        "service_type": {
            "system": kind.system.name,
            "code": kind.code,
            "display": kind.display,
            "display_en": kind.display_en,
        },
        "start_date": service.start_date.isoformat(),
        "end_date": service.end_date.isoformat() if service.end_date else None,
        "temporary_cessation": service.temporary_cessation,
        "stay_type": service.stay_type,
        "weekly_extent": service.weekly_extent,
        "weekly_hours": str(service.weekly_hours) if service.weekly_hours is not None else None,
        "description": service.description,
        "needs_caption": service.needs_caption,
        "service_level": service.service_level,
        "responsible_unit": _plain(service.responsible_unit),
        "primary_contact": _plain(service.primary_contact),
        "next_planned_visit": service.next_planned_visit.isoformat() if service.next_planned_visit else None,
        "coordinator": _plain(service.coordinator),
        "key_box": service.key_box,
    }


def _service(item: dict[str, Any]) -> MunicipalService:
    kind = item["service_type"]
    return MunicipalService(
        service_type=ServiceType(CodeSystem[kind["system"]], kind["code"], kind["display"], kind["display_en"]),
        start_date=date.fromisoformat(item["start_date"]),
        end_date=date.fromisoformat(item["end_date"]) if item["end_date"] else None,
        temporary_cessation=item["temporary_cessation"],
        stay_type=item["stay_type"],
        weekly_extent=item["weekly_extent"],
        weekly_hours=Decimal(item["weekly_hours"]) if item["weekly_hours"] is not None else None,
        description=item["description"],
        needs_caption=item["needs_caption"],
        service_level=item["service_level"],
        responsible_unit=Unit(**item["responsible_unit"]) if item["responsible_unit"] else None,
        primary_contact=Contact(**item["primary_contact"]) if item["primary_contact"] else None,
        next_planned_visit=datetime.fromisoformat(item["next_planned_visit"]) if item["next_planned_visit"] else None,
        coordinator=Contact(**item["coordinator"]) if item["coordinator"] else None,
        key_box=item["key_box"],
    )


def _plain(value: Unit | Contact | None) -> dict[str, Any] | None:
    return None if value is None else dict(value.__dict__)
