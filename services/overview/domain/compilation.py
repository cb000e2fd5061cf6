"""Compiling the overview ("sammenstilling") from every source's latest list for one patient.

Rules (domain.md §1, our choices where it is silent):
- shown: active, on hold and planned services, and those that ended in the last `RECENTLY_ENDED_DAYS`
  days (end date on or after today minus that many days);
- order: active, on hold, planned, ended; active and on hold newest start first, planned soonest start
  first, ended latest end first; ties by code, then unit name, then sources, then the remaining fields;
- one service reported by several sources is shown once, naming every source, with the fields of the
  most recently updated source (ties: the source system name that sorts first). Two entries are the
  same service when they come from different source systems, have the same code system and code,
  overlapping periods (inclusive dates, open end = ongoing), the same responsible unit (organisation
  numbers when both have one, else names compared case-insensitively; both without a unit counts as
  the same) and — our choice — the same status today, so that sources that disagree (one says on hold,
  the other active) stay visible side by side instead of one silently hiding the other. An entry joins
  a group only if it is the same service as every entry already in it.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import date, datetime, timedelta

from services.overview.domain.codes import CodeSystem, ServiceType
from services.overview.domain.services import MunicipalService, ServiceStatus, Unit, status_on

RECENTLY_ENDED_DAYS = 90


@dataclass(frozen=True)
class SourceList:
    """The latest list that one source system pushed for the patient."""

    source_system: str
    updated_at: datetime
    services: tuple[MunicipalService, ...]


@dataclass(frozen=True)
class SourceRef:
    source_system: str
    updated_at: datetime


@dataclass(frozen=True)
class OverviewEntry:
    service: MunicipalService
    status: ServiceStatus
    sources: tuple[SourceRef, ...]  # sorted by source_system

    @property
    def last_updated(self) -> datetime:
        return max(source.updated_at for source in self.sources)


@dataclass(frozen=True)
class _Reported:
    """One service as one source reported it."""

    source: SourceRef
    service: MunicipalService


def compile_overview(lists: Iterable[SourceList], today: date) -> tuple[OverviewEntry, ...]:
    by_status: dict[ServiceStatus, list[_Reported]] = defaultdict(list)
    ended_since = today - timedelta(days=RECENTLY_ENDED_DAYS)
    for reported in _reported(lists):
        status = status_on(reported.service, today)
        if status is ServiceStatus.ENDED and reported.service.end_date is not None:
            if reported.service.end_date < ended_since:
                continue
        by_status[status].append(reported)
    entries = [
        OverviewEntry(
            service=group[0].service,
            status=status,
            sources=tuple(sorted((member.source for member in group), key=lambda source: source.source_system)),
        )
        for status, reported in by_status.items()
        for group in _same_service_groups(reported)
    ]
    return tuple(sorted(entries, key=_display_order))


def count_active(lists: Iterable[SourceList], today: date) -> int:
    """The number of ACTIVE entries `compile_overview` shows, looking at active services only.

    Exact because services are only ever grouped with services of the same status."""
    active = [reported for reported in _reported(lists) if status_on(reported.service, today) is ServiceStatus.ACTIVE]
    return len(_same_service_groups(active))


def _reported(lists: Iterable[SourceList]) -> Iterator[_Reported]:
    for source_list in lists:
        source = SourceRef(source_list.source_system, source_list.updated_at)
        for service in source_list.services:
            yield _Reported(source, service)


def _same_service_groups(reported: list[_Reported]) -> list[list[_Reported]]:
    """Groups of the same service, each led by the entry whose fields are shown.

    Entries are taken newest source first, so the first entry of a group is the most recently updated
    one; the order among equals is fixed by the source name and the service's own fields, so the result
    does not depend on the order of the input."""
    ordered = sorted(reported, key=lambda item: (item.source.source_system, _service_key(item.service)))
    ordered.sort(key=lambda item: item.source.updated_at, reverse=True)  # stable: keeps the order above
    groups: list[list[_Reported]] = []
    groups_by_code: dict[tuple[CodeSystem, str], list[list[_Reported]]] = defaultdict(list)
    for item in ordered:
        candidates = groups_by_code[(item.service.service_type.system, item.service.service_type.code)]
        for group in candidates:
            if all(_same_service(member, item) for member in group):
                group.append(item)
                break
        else:
            group = [item]
            candidates.append(group)
            groups.append(group)
    return groups


def _same_service(a: _Reported, b: _Reported) -> bool:
    if a.source.source_system == b.source.source_system:
        return False
    first, second = a.service, b.service
    return (
        first.service_type.system == second.service_type.system
        and first.service_type.code == second.service_type.code
        and _overlap(first, second)
        and _same_unit(first.responsible_unit, second.responsible_unit)
    )


def _overlap(first: MunicipalService, second: MunicipalService) -> bool:
    first_end = first.end_date or date.max
    second_end = second.end_date or date.max
    return first.start_date <= second_end and second.start_date <= first_end


def _same_unit(first: Unit | None, second: Unit | None) -> bool:
    if first is None or second is None:
        return first is None and second is None
    if first.organisation_number and second.organisation_number:
        return first.organisation_number == second.organisation_number
    return _folded(first.name) == _folded(second.name)


def _folded(text: str) -> str:
    return " ".join(text.split()).casefold()


def _display_order(entry: OverviewEntry) -> tuple[object, ...]:
    service = entry.service
    if entry.status is ServiceStatus.PLANNED:
        when = service.start_date.toordinal()
    elif entry.status is ServiceStatus.ENDED:
        when = -(service.end_date or date.max).toordinal()
    else:
        when = -service.start_date.toordinal()
    return (
        entry.status,
        when,
        _code_key(service.service_type),
        _unit_name_key(service.responsible_unit),
        tuple(source.source_system for source in entry.sources),
        _service_key(service),
    )


def _code_key(service_type: ServiceType) -> tuple[int, int, int, str]:
    """National before local; numeric codes by value ("2" before "15"), then the rest by text."""
    code = service_type.code
    if code.isascii() and code.isdigit():
        return (service_type.system, 0, int(code), "")
    return (service_type.system, 1, 0, code)


def _unit_name_key(unit: Unit | None) -> str:
    return "" if unit is None else _folded(unit.name)


def _service_key(service: MunicipalService) -> tuple[object, ...]:
    """A total order over services, so that equal-looking entries still come out in a fixed order."""
    return (
        _code_key(service.service_type),
        service.start_date,
        service.end_date or date.max,
        _unit_name_key(service.responsible_unit),
        repr(service),
    )
