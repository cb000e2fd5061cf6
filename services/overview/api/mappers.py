"""Protobuf ⇄ domain for the overview contract."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, date, datetime

from google.protobuf.timestamp_pb2 import Timestamp
from samhandling.overview.v1 import overview_pb2

from services.overview.domain.codes import CodeSystem, ServiceTypeCatalog
from services.overview.domain.compilation import OverviewEntry, SourceRef
from services.overview.domain.services import Contact, MunicipalService, Unit
from services.overview.domain.submission import SubmissionLimits, SubmittedService, read_submission
from services.platform.errors import FieldViolation, InvalidArgument
from services.platform.requests import timestamp_problem

# The submission reader names flattened fields; the contract nests them.
_FIELD_PATHS = {
    "unit_name": "responsible_unit.name",
    "unit_organisation_number": "responsible_unit.organisation_number",
    "unit_phone": "responsible_unit.phone",
    "contact_name": "primary_contact.name",
    "contact_role": "primary_contact.role",
    "contact_phone": "primary_contact.phone",
    "coordinator_name": "coordinator.name",
    "coordinator_phone": "coordinator.phone",
}


def submitted_services(
    messages: Sequence[overview_pb2.MunicipalService], catalog: ServiceTypeCatalog, limits: SubmissionLimits
) -> tuple[MunicipalService, ...]:
    """The request's services, validated and normalised; InvalidArgument names contract field paths."""
    # A timestamp out of its range cannot become a datetime: reported here, where the message is. (A list
    # over the limit is rejected on its length alone.)
    invalid_visits = [
        FieldViolation(f"services[{index}].next_planned_visit", problem)
        for index, message in enumerate(messages if len(messages) <= limits.max_services else ())
        if message.HasField("next_planned_visit")
        and (problem := timestamp_problem(message.next_planned_visit.seconds, message.next_planned_visit.nanos))
    ]
    try:
        services = read_submission([_submitted(message) for message in messages], catalog, limits)
    except InvalidArgument as error:
        raise InvalidArgument([*invalid_visits, *map(_contract_path, error.violations)]) from None
    if invalid_visits:
        raise InvalidArgument(invalid_visits)
    return services


def _contract_path(violation: FieldViolation) -> FieldViolation:
    prefix, dot, name = violation.field.rpartition(".")
    if dot and name in _FIELD_PATHS:
        return FieldViolation(f"{prefix}.{_FIELD_PATHS[name]}", violation.description)
    return violation


def _submitted(message: overview_pb2.MunicipalService) -> SubmittedService:
    unit, contact, coordinator = message.responsible_unit, message.primary_contact, message.coordinator
    return SubmittedService(
        code_system=message.code_system,
        service_type_code=message.service_type_code,
        local_display=message.local_display,
        start_date=message.start_date,
        end_date=message.end_date,
        temporary_cessation=message.temporary_cessation,
        stay_type=message.stay_type,
        weekly_extent=message.weekly_extent,
        description=message.description,
        needs_caption=message.needs_caption,
        service_level=message.service_level,
        unit_name=unit.name,
        unit_organisation_number=unit.organisation_number,
        unit_phone=unit.phone,
        contact_name=contact.name,
        contact_role=contact.role,
        contact_phone=contact.phone,
        next_planned_visit=(
            message.next_planned_visit.ToDatetime(tzinfo=UTC)
            if message.HasField("next_planned_visit")
            and timestamp_problem(message.next_planned_visit.seconds, message.next_planned_visit.nanos) is None
            else None
        ),
        coordinator_name=coordinator.name,
        coordinator_phone=coordinator.phone,
        key_box=message.key_box if message.HasField("key_box") else None,
    )


def timestamp(moment: datetime) -> Timestamp:
    message = Timestamp()
    message.FromDatetime(moment)
    return message


def service_message(service: MunicipalService) -> overview_pb2.MunicipalService:
    kind = service.service_type
    message = overview_pb2.MunicipalService(
        code_system=int(kind.system),
        service_type_code=kind.code,
        service_type_display=kind.display,
        local_display=kind.display if kind.system is CodeSystem.LOCAL else "",
        start_date=service.start_date.isoformat(),
        end_date=service.end_date.isoformat() if service.end_date else "",
        temporary_cessation=service.temporary_cessation,
        stay_type=service.stay_type or "",
        weekly_extent=service.weekly_extent or "",
        description=service.description or "",
        needs_caption=service.needs_caption,
        service_level=service.service_level or "",
    )
    if service.weekly_hours is not None:
        message.weekly_hours = float(service.weekly_hours)
    if service.responsible_unit:
        message.responsible_unit.CopyFrom(_unit(service.responsible_unit))
    if service.primary_contact:
        message.primary_contact.CopyFrom(_contact(service.primary_contact))
    if service.coordinator:
        message.coordinator.CopyFrom(_contact(service.coordinator))
    if service.next_planned_visit:
        message.next_planned_visit.CopyFrom(timestamp(service.next_planned_visit))
    if service.key_box is not None:
        message.key_box = service.key_box
    return message


def _unit(unit: Unit) -> overview_pb2.Unit:
    return overview_pb2.Unit(name=unit.name, organisation_number=unit.organisation_number or "", phone=unit.phone or "")


def _contact(contact: Contact) -> overview_pb2.Contact:
    return overview_pb2.Contact(name=contact.name, role=contact.role or "", phone=contact.phone or "")


def _source(source: SourceRef) -> overview_pb2.SourceReference:
    return overview_pb2.SourceReference(source_system=source.source_system, updated_at=timestamp(source.updated_at))


def entry_message(entry: OverviewEntry) -> overview_pb2.OverviewEntry:
    return overview_pb2.OverviewEntry(
        service=service_message(entry.service),
        status=int(entry.status),
        sources=[_source(source) for source in entry.sources],
        last_updated=timestamp(entry.last_updated),
        local=entry.service.service_type.system is CodeSystem.LOCAL,
    )


def overview_message(
    patient_id: str, entries: Sequence[OverviewEntry], today: date, active_count: int
) -> overview_pb2.GetOverviewResponse:
    return overview_pb2.GetOverviewResponse(
        patient_id=patient_id,
        entries=[entry_message(entry) for entry in entries],
        as_of_date=today.isoformat(),
        active_count=active_count,
    )
