"""Reading one source's submitted list of services: every problem is found and reported at once."""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import date, datetime

from services.overview.domain.codes import LOCAL_CODE, CodeSystem, ServiceType, ServiceTypeCatalog
from services.overview.domain.services import Contact, MunicipalService, Unit, parse_weekly_hours
from services.platform.errors import FieldViolation, InvalidArgument
from services.platform.identifiers import organisation_number_problem

_ISO_DATE = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}")
_CODE_SYSTEM_UNSPECIFIED = 0
# Line breaks and tabs are allowed in the free-text description only.
_MULTILINE_FIELDS = frozenset({"description"})
_LAYOUT_CHARACTERS = frozenset("\n\r\t")


@dataclass(frozen=True)
class SubmittedService:
    """One entry as the caller sent it: strings for dates, "" for absent."""

    code_system: int
    service_type_code: str
    local_display: str
    start_date: str
    end_date: str
    temporary_cessation: bool
    stay_type: str
    weekly_extent: str
    description: str
    needs_caption: bool
    service_level: str
    unit_name: str
    unit_organisation_number: str
    unit_phone: str
    contact_name: str
    contact_role: str
    contact_phone: str
    next_planned_visit: datetime | None
    coordinator_name: str
    coordinator_phone: str
    key_box: bool | None


@dataclass(frozen=True)
class SubmissionLimits:
    max_services: int = 200
    max_text: int = 500
    max_short_text: int = 100


def read_submission(
    items: Sequence[SubmittedService],
    catalog: ServiceTypeCatalog,
    limits: SubmissionLimits,
    *,
    field_prefix: str = "services",
) -> tuple[MunicipalService, ...]:
    """The submitted list as services, or InvalidArgument naming every problem (`services[3].end_date`).

    A list longer than `limits.max_services` is rejected on its length alone, without reading its entries.
    """
    if len(items) > limits.max_services:
        raise InvalidArgument.single(field_prefix, f"at most {limits.max_services} services per submission")
    violations: list[FieldViolation] = []
    services: list[MunicipalService] = []
    for index, item in enumerate(items):
        reader = _EntryReader(item, f"{field_prefix}[{index}]", catalog, limits)
        service = reader.read()
        violations.extend(reader.violations)
        if service is not None:
            services.append(service)
    if violations:
        raise InvalidArgument(violations)
    return tuple(services)


class _EntryReader:
    """Reads one entry, collecting a violation per problem field instead of stopping at the first."""

    def __init__(self, item: SubmittedService, prefix: str, catalog: ServiceTypeCatalog, limits: SubmissionLimits):
        self._item = item
        self._prefix = prefix
        self._catalog = catalog
        self._limits = limits
        self.violations: list[FieldViolation] = []

    def read(self) -> MunicipalService | None:
        item, long, short = self._item, self._limits.max_text, self._limits.max_short_text
        service_type = self._service_type()
        start = self._date("start_date", required=True)
        end = self._date("end_date", required=False)
        if start is not None and end is not None and start > end:
            self._violation("end_date", "is before start_date")
        stay_type = self._text("stay_type", short)
        weekly_extent = self._text("weekly_extent", long)
        description = self._text("description", long)
        service_level = self._text("service_level", long)
        unit = self._unit()
        primary_contact = self._contact("contact_name", "contact_role", "contact_phone")
        visit = item.next_planned_visit
        if visit is not None and visit.utcoffset() is None:
            self._violation("next_planned_visit", "must include a time zone")
        coordinator = self._contact("coordinator_name", None, "coordinator_phone")
        if self.violations or service_type is None or start is None:
            return None
        return MunicipalService(
            service_type=service_type,
            start_date=start,
            end_date=end,
            temporary_cessation=item.temporary_cessation,
            stay_type=stay_type,
            weekly_extent=weekly_extent,
            weekly_hours=parse_weekly_hours(weekly_extent),
            description=description,
            needs_caption=item.needs_caption,
            service_level=service_level,
            responsible_unit=unit,
            primary_contact=primary_contact,
            next_planned_visit=visit,
            coordinator=coordinator,
            key_box=item.key_box,
        )

    def _service_type(self) -> ServiceType | None:
        system_number = self._item.code_system
        if system_number in (_CODE_SYSTEM_UNSPECIFIED, CodeSystem.NATIONAL_9151):
            return self._national_type()
        if system_number == CodeSystem.LOCAL:
            return self._local_type()
        self._violation("code_system", "unknown code system")
        return None

    def _national_type(self) -> ServiceType | None:
        # The caller's display text (local_display) is ignored: national texts come from the list.
        code = self._item.service_type_code
        if not code.strip():
            self._violation("service_type_code", "is required")
            return None
        found = self._catalog.lookup(code)
        if found is None:
            self._violation("service_type_code", "is not in code list 9151")
        return found

    def _local_type(self) -> ServiceType | None:
        code = self._local_code()
        display = self._text("local_display", self._limits.max_text)
        if display is None and not self._has_violation("local_display"):
            self._violation("local_display", "is required for a local code")
        if code is None or display is None:
            return None
        return ServiceType(system=CodeSystem.LOCAL, code=code, display=display, display_en=None)

    def _local_code(self) -> str | None:
        code = self._item.service_type_code.strip()
        if not code:
            self._violation("service_type_code", "is required")
            return None
        if not LOCAL_CODE.fullmatch(code):
            self._violation("service_type_code", "a local code is 1 to 20 characters of A-Z, a-z, 0-9, '.', '_', '-'")
            return None
        return code

    def _date(self, name: str, *, required: bool) -> date | None:
        value: str = getattr(self._item, name)
        if value == "":
            if required:
                self._violation(name, "is required")
            return None
        if not _ISO_DATE.fullmatch(value):
            self._violation(name, "must be a date written YYYY-MM-DD")
            return None
        try:
            return date.fromisoformat(value)
        except ValueError:
            self._violation(name, "is not a real calendar date")
            return None

    def _unit(self) -> Unit | None:
        long, short = self._limits.max_text, self._limits.max_short_text
        name = self._text("unit_name", long)
        organisation_number = self._text("unit_organisation_number", short, check=organisation_number_problem)
        phone = self._text("unit_phone", short)
        if name is None:
            if self._given("unit_organisation_number", "unit_phone") and not self._has_violation("unit_name"):
                self._violation("unit_name", "is required when the unit has an organisation number or phone")
            return None
        return Unit(name=name, organisation_number=organisation_number, phone=phone)

    def _contact(self, name_field: str, role_field: str | None, phone_field: str) -> Contact | None:
        short = self._limits.max_short_text
        name = self._text(name_field, short)
        role = self._text(role_field, short) if role_field else None
        phone = self._text(phone_field, short)
        if name is None:
            details = (role_field, phone_field) if role_field else (phone_field,)
            if self._given(*details) and not self._has_violation(name_field):
                self._violation(name_field, "is required when a role or phone is given")
            return None
        return Contact(name=name, role=role, phone=phone)

    def _text(self, name: str, limit: int, *, check: Callable[[str], str | None] | None = None) -> str | None:
        """The field trimmed, None when blank; a violation when it is too long or has control characters."""
        raw: str = getattr(self._item, name)
        value = raw.strip()
        if len(value) > limit:
            self._violation(name, f"is longer than {limit} characters")
            return None
        if _has_control_characters(raw, allow_layout=name in _MULTILINE_FIELDS):
            self._violation(name, "contains control characters")
            return None
        if not value:
            return None
        if check is not None and (problem := check(value)) is not None:
            self._violation(name, problem)
            return None
        return value

    def _given(self, *names: str) -> bool:
        """Whether the caller sent any of these fields, valid or not."""
        return any(getattr(self._item, name).strip() for name in names)

    def _violation(self, name: str, description: str) -> None:
        self.violations.append(FieldViolation(f"{self._prefix}.{name}", description))

    def _has_violation(self, name: str) -> bool:
        field_name = f"{self._prefix}.{name}"
        return any(violation.field == field_name for violation in self.violations)


def _has_control_characters(value: str, *, allow_layout: bool) -> bool:
    """C0/C1 controls (category Cc) and lone surrogates (Cs); tab and line breaks only if allowed."""
    for character in value:
        if allow_layout and character in _LAYOUT_CHARACTERS:
            continue
        if unicodedata.category(character) in ("Cc", "Cs"):
            return True
    return False
