"""One municipal service delivered to a patient, its status on a given day, and its weekly extent."""

from __future__ import annotations

import enum
import re
from dataclasses import dataclass
from datetime import date, datetime
from decimal import ROUND_HALF_UP, Decimal

from services.overview.domain.codes import ServiceType

HOURS_PER_WEEK = Decimal(168)
_MINUTE_PRECISION = Decimal("0.01")  # hours converted from minutes are rounded to 1/100 h (36 s)


class ServiceStatus(enum.IntEnum):
    """The numbers match the protobuf enum, and their order is the order of the overview."""

    ACTIVE = 1
    ON_HOLD = 2
    PLANNED = 3
    ENDED = 4


@dataclass(frozen=True)
class Contact:
    name: str
    role: str | None = None
    phone: str | None = None


@dataclass(frozen=True)
class Unit:
    name: str
    organisation_number: str | None = None
    phone: str | None = None


@dataclass(frozen=True)
class MunicipalService:
    service_type: ServiceType
    start_date: date
    end_date: date | None  # the last day of delivery, inclusive; None = ongoing
    temporary_cessation: bool
    stay_type: str | None
    weekly_extent: str | None  # the source's text, kept as sent
    weekly_hours: Decimal | None  # parsed from weekly_extent when it is clear
    description: str | None
    needs_caption: bool
    service_level: str | None
    responsible_unit: Unit | None
    primary_contact: Contact | None
    next_planned_visit: datetime | None  # timezone-aware
    coordinator: Contact | None
    key_box: bool | None  # sensitive: whether a key box exists


def status_on(service: MunicipalService, today: date) -> ServiceStatus:
    if service.start_date > today:
        return ServiceStatus.PLANNED
    if service.end_date is not None and service.end_date < today:
        return ServiceStatus.ENDED
    if service.temporary_cessation:
        return ServiceStatus.ON_HOLD
    return ServiceStatus.ACTIVE


# Weekly extent. A number, then an optional unit (none = hours), then an optional "per week".
_NUMBER = r"[0-9]{1,4}(?:[.,][0-9]{1,4})?"
_HOURS = r"(?:t|t\.|time|timer|timar|h|hr|hrs|hour|hours)"
_MINUTES = r"(?:min|min\.|mins|minutt|minutter|minutes?)"
_PER_WEEK = r"(?:\s*/\s*(?:uke|uka|u|wk|week)|\s+(?:per|pr\.?|i|a)\s+(?:uke|uka|uken|veke|veka|week))?"
_HOURS_ONLY = re.compile(rf"(?P<hours>{_NUMBER})\s*{_HOURS}?{_PER_WEEK}", re.IGNORECASE)
_MINUTES_ONLY = re.compile(rf"(?P<minutes>{_NUMBER})\s*{_MINUTES}{_PER_WEEK}", re.IGNORECASE)
_HOURS_AND_MINUTES = re.compile(
    rf"(?P<hours>{_NUMBER})\s*{_HOURS}\s*(?:,|og|and)?\s*(?P<minutes>{_NUMBER})\s*{_MINUTES}{_PER_WEEK}",
    re.IGNORECASE,
)


def parse_weekly_hours(text: str | None) -> Decimal | None:
    """Hours per week in a source's free text ("5 timer", "15 minutter", "7,5"), or None when the text
    is not clearly one amount (empty, a range, words, negative, more hours than a week has)."""
    if text is None:
        return None
    text = text.strip()
    if match := _HOURS_ONLY.fullmatch(text):
        hours = _decimal(match["hours"])
    elif match := _MINUTES_ONLY.fullmatch(text):
        hours = _minutes_to_hours(_decimal(match["minutes"]))
    elif match := _HOURS_AND_MINUTES.fullmatch(text):
        hours = _decimal(match["hours"]) + _minutes_to_hours(_decimal(match["minutes"]))
    else:
        return None
    if hours > HOURS_PER_WEEK:
        return None
    return hours


def _decimal(number: str) -> Decimal:
    return Decimal(number.replace(",", "."))


def _minutes_to_hours(minutes: Decimal) -> Decimal:
    hours = (minutes / 60).quantize(_MINUTE_PRECISION, rounding=ROUND_HALF_UP)
    # Without trailing zeros ("0.5", not "0.50"), and never in exponent form ("10", not "1E+1").
    return hours.quantize(Decimal(1)) if hours == hours.to_integral_value() else hours.normalize()
