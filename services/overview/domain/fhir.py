"""The overview as a FHIR R4 Bundle (type collection) of EpisodeOfCare, as plain JSON-ready dicts.

Following the HL7 Norway draft mapping (domain.md §1): one EpisodeOfCare per entry, the service type
as `type`, on hold as `status=onhold` (R4's code has no hyphen), weekly hours as a Ratio extension
h/wk, the responsible unit as `managingOrganization` with its phone on a contained Organization.
Our choices: the coordinator is the `careManager` (a contained Practitioner with a phone); the sources
and the fields R4 has no element for are extensions under `https://samhandling.no/fhir/StructureDefinition/`;
ids are uuid5 of the entry's identifying fields, so the same overview always gives the same bundle.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any

from services.overview.domain.codes import NATIONAL_SYSTEM, CodeSystem, ServiceType, local_system_uri
from services.overview.domain.compilation import OverviewEntry
from services.overview.domain.services import Contact, ServiceStatus, Unit
from services.platform.identifiers import (
    ORGANISATION_NUMBER_SYSTEM,
    person_identifier_system,
)

UCUM = "http://unitsofmeasure.org"

STRUCTURE_DEFINITION = "https://samhandling.no/fhir/StructureDefinition/"
WEEKLY_EXTENT_URL = STRUCTURE_DEFINITION + "weekly-extent"  # valueRatio, hours per week
WEEKLY_EXTENT_TEXT_URL = STRUCTURE_DEFINITION + "weekly-extent-text"  # the source's own text
SOURCE_URL = STRUCTURE_DEFINITION + "source"  # one per source: sourceSystem + updatedAt
DESCRIPTION_URL = STRUCTURE_DEFINITION + "service-description"
SERVICE_LEVEL_URL = STRUCTURE_DEFINITION + "service-level"
STAY_TYPE_URL = STRUCTURE_DEFINITION + "stay-type"
TEMPORARY_CESSATION_URL = STRUCTURE_DEFINITION + "temporary-cessation"
NEEDS_CAPTION_URL = STRUCTURE_DEFINITION + "needs-caption"
PRIMARY_CONTACT_URL = STRUCTURE_DEFINITION + "primary-contact"  # name, role, phone
NEXT_PLANNED_VISIT_URL = STRUCTURE_DEFINITION + "next-planned-visit"
KEY_BOX_URL = STRUCTURE_DEFINITION + "key-box"

UNIT_ID = "unit-responsible"
COORDINATOR_ID = "coordinator"

EPISODE_STATUS = {
    ServiceStatus.ACTIVE: "active",
    ServiceStatus.ON_HOLD: "onhold",
    ServiceStatus.PLANNED: "planned",
    ServiceStatus.ENDED: "finished",
}

_NAMESPACE = uuid.uuid5(uuid.NAMESPACE_URL, "https://samhandling.no/fhir/overview")


def overview_bundle(*, patient_id: str, municipality: str, entries: Sequence[OverviewEntry], today: date) -> dict:
    patient = {"identifier": {"system": person_identifier_system(patient_id), "value": patient_id}}
    ids = _episode_ids(patient_id, municipality, entries)
    bundle_id = uuid.uuid5(_NAMESPACE, "|".join(["bundle", municipality, patient_id, today.isoformat(), *ids]))
    return {
        "resourceType": "Bundle",
        "id": str(bundle_id),
        "type": "collection",
        "entry": [
            {"fullUrl": f"urn:uuid:{episode_id}", "resource": _episode(episode_id, entry, patient, municipality)}
            for episode_id, entry in zip(ids, entries, strict=True)
        ],
    }


def coding_system(service_type: ServiceType, municipality: str) -> str:
    if service_type.system is CodeSystem.LOCAL:
        return local_system_uri(municipality)
    return NATIONAL_SYSTEM


def _episode_ids(patient_id: str, municipality: str, entries: Sequence[OverviewEntry]) -> list[str]:
    """uuid5 of what identifies an entry; a repeated name gets a counter, so ids stay unique."""
    ids: list[str] = []
    seen: dict[str, int] = {}
    for entry in entries:
        service = entry.service
        unit = service.responsible_unit
        name = "|".join(
            [
                municipality,
                patient_id,
                coding_system(service.service_type, municipality),
                service.service_type.code,
                service.start_date.isoformat(),
                service.end_date.isoformat() if service.end_date else "",
                "" if unit is None else (unit.organisation_number or unit.name),
                *(source.source_system for source in entry.sources),
            ]
        )
        count = seen.get(name, 0)
        seen[name] = count + 1
        ids.append(str(uuid.uuid5(_NAMESPACE, name if count == 0 else f"{name}#{count}")))
    return ids


def _episode(episode_id: str, entry: OverviewEntry, patient: dict, municipality: str) -> dict:
    service = entry.service
    service_type = service.service_type
    resource: dict[str, Any] = {
        "resourceType": "EpisodeOfCare",
        "id": episode_id,
        "meta": {"lastUpdated": _instant(entry.last_updated)},
    }
    contained: list[dict] = []
    unit = service.responsible_unit
    if unit is not None:
        contained.append(_organisation(unit))
    if service.coordinator is not None:
        contained.append(_practitioner(service.coordinator))
    if contained:
        resource["contained"] = contained
    resource["extension"] = _extensions(entry)
    resource["status"] = EPISODE_STATUS[entry.status]
    resource["type"] = [
        {
            "coding": [
                {
                    "system": coding_system(service_type, municipality),
                    "code": service_type.code,
                    "display": service_type.display,
                }
            ],
            "text": service_type.display,
        }
    ]
    resource["patient"] = patient
    if unit is not None:
        reference: dict[str, Any] = {"reference": f"#{UNIT_ID}"}
        if unit.organisation_number:
            reference["identifier"] = _organisation_identifier(unit.organisation_number)
        reference["display"] = unit.name
        resource["managingOrganization"] = reference
    period = {"start": service.start_date.isoformat()}
    if service.end_date is not None:
        period["end"] = service.end_date.isoformat()
    resource["period"] = period
    if service.coordinator is not None:
        resource["careManager"] = {"reference": f"#{COORDINATOR_ID}", "display": service.coordinator.name}
    return resource


def _extensions(entry: OverviewEntry) -> list[dict]:
    service = entry.service
    extensions: list[dict] = [
        {
            "url": SOURCE_URL,
            "extension": [
                {"url": "sourceSystem", "valueString": source.source_system},
                {"url": "updatedAt", "valueInstant": _instant(source.updated_at)},
            ],
        }
        for source in entry.sources
    ]
    if service.weekly_hours is not None:
        extensions.append({"url": WEEKLY_EXTENT_URL, "valueRatio": _per_week(service.weekly_hours)})
    texts = [
        (WEEKLY_EXTENT_TEXT_URL, service.weekly_extent),
        (DESCRIPTION_URL, service.description),
        (SERVICE_LEVEL_URL, service.service_level),
        (STAY_TYPE_URL, service.stay_type),
    ]
    extensions.extend({"url": url, "valueString": text} for url, text in texts if text)
    if service.temporary_cessation:
        extensions.append({"url": TEMPORARY_CESSATION_URL, "valueBoolean": True})
    extensions.append({"url": NEEDS_CAPTION_URL, "valueBoolean": service.needs_caption})
    if service.primary_contact is not None:
        extensions.append(_primary_contact(service.primary_contact))
    if service.next_planned_visit is not None:
        extensions.append({"url": NEXT_PLANNED_VISIT_URL, "valueDateTime": _instant(service.next_planned_visit)})
    if service.key_box is not None:
        extensions.append({"url": KEY_BOX_URL, "valueBoolean": service.key_box})
    return extensions


def _per_week(hours: Decimal) -> dict:
    return {
        "numerator": {"value": _number(hours), "unit": "h", "system": UCUM, "code": "h"},
        "denominator": {"value": 1, "unit": "wk", "system": UCUM, "code": "wk"},
    }


def _organisation(unit: Unit) -> dict:
    organisation: dict[str, Any] = {"resourceType": "Organization", "id": UNIT_ID}
    if unit.organisation_number:
        organisation["identifier"] = [_organisation_identifier(unit.organisation_number)]
    organisation["name"] = unit.name
    if unit.phone:
        organisation["telecom"] = [_phone(unit.phone)]
    return organisation


def _practitioner(contact: Contact) -> dict:
    practitioner: dict[str, Any] = {
        "resourceType": "Practitioner",
        "id": COORDINATOR_ID,
        "name": [{"text": contact.name}],
    }
    if contact.phone:
        practitioner["telecom"] = [_phone(contact.phone)]
    return practitioner


def _primary_contact(contact: Contact) -> dict:
    parts: list[dict] = [{"url": "name", "valueString": contact.name}]
    if contact.role:
        parts.append({"url": "role", "valueString": contact.role})
    if contact.phone:
        parts.append({"url": "phone", "valueContactPoint": _phone(contact.phone)})
    return {"url": PRIMARY_CONTACT_URL, "extension": parts}


def _organisation_identifier(organisation_number: str) -> dict:
    return {"system": ORGANISATION_NUMBER_SYSTEM, "value": organisation_number}


def _phone(number: str) -> dict:
    return {"system": "phone", "value": number, "use": "work"}


def _instant(moment: datetime) -> str:
    """FHIR instants need a time zone; a naive time is taken to be UTC."""
    if moment.utcoffset() is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.isoformat()


def _number(value: Decimal) -> int | float:
    """JSON has no decimal type; whole numbers stay integers."""
    return int(value) if value == value.to_integral_value() else float(value)
