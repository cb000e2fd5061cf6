from datetime import UTC, date, datetime, timedelta, timezone
from decimal import Decimal
from typing import Any

import pytest

from services.overview.domain.codes import CodeSystem, ServiceType, ServiceTypeCatalog
from services.overview.domain.services import Contact, MunicipalService, Unit
from services.overview.domain.submission import SubmissionLimits, SubmittedService, read_submission
from services.platform.errors import InvalidArgument

CATALOG = ServiceTypeCatalog.national()
LIMITS = SubmissionLimits()
ORGANISATION_NUMBER = "974760673"
HOME_NURSING = ServiceType(
    CodeSystem.NATIONAL_9151, "15", "Helsetjenester i hjemmet", "Home health care (home nursing)"
)

LONG_TEXT_FIELDS = ["weekly_extent", "description", "service_level", "unit_name"]
SHORT_TEXT_FIELDS = ["stay_type", "unit_phone", "contact_role", "contact_phone", "coordinator_phone"]
NAME_FIELDS = ["contact_name", "coordinator_name"]  # short fields too
SINGLE_LINE_FIELDS = [*LONG_TEXT_FIELDS[:1], "service_level", "unit_name", *SHORT_TEXT_FIELDS, *NAME_FIELDS]


def submitted(**changes: Any) -> SubmittedService:
    fields: dict[str, Any] = {
        "code_system": 1,
        "service_type_code": "15",
        "local_display": "",
        "start_date": "2025-01-01",
        "end_date": "",
        "temporary_cessation": False,
        "stay_type": "",
        "weekly_extent": "",
        "description": "",
        "needs_caption": False,
        "service_level": "",
        "unit_name": "",
        "unit_organisation_number": "",
        "unit_phone": "",
        "contact_name": "",
        "contact_role": "",
        "contact_phone": "",
        "next_planned_visit": None,
        "coordinator_name": "",
        "coordinator_phone": "",
        "key_box": None,
    }
    return SubmittedService(**(fields | changes))


def read(*items: SubmittedService, limits: SubmissionLimits = LIMITS, **options: Any) -> tuple[MunicipalService, ...]:
    return read_submission(list(items), CATALOG, limits, **options)


def violated_fields(*items: SubmittedService, limits: SubmissionLimits = LIMITS, **options: Any) -> list[str]:
    with pytest.raises(InvalidArgument) as raised:
        read(*items, limits=limits, **options)
    return [violation.field for violation in raised.value.violations]


def test_empty_list_is_valid() -> None:
    assert read_submission([], CATALOG, LIMITS) == ()


def test_minimal_national_entry() -> None:
    (service,) = read(submitted())
    assert service == MunicipalService(
        service_type=HOME_NURSING,
        start_date=date(2025, 1, 1),
        end_date=None,
        temporary_cessation=False,
        stay_type=None,
        weekly_extent=None,
        weekly_hours=None,
        description=None,
        needs_caption=False,
        service_level=None,
        responsible_unit=None,
        primary_contact=None,
        next_planned_visit=None,
        coordinator=None,
        key_box=None,
    )


def test_full_entry_is_read_and_trimmed() -> None:
    visit = datetime(2025, 3, 11, 9, 30, tzinfo=timezone(timedelta(hours=1)))
    (service,) = read(
        submitted(
            service_type_code="015",
            start_date="2025-01-01",
            end_date="2025-12-31",
            temporary_cessation=True,
            stay_type=" dagopphold ",
            weekly_extent="7,5 timer",
            description="Hjemmetjeneste - sårstell\nTo besøk daglig",
            needs_caption=True,
            service_level="Hjemmeboende - Sone sør (hjemmesykepleie)",
            unit_name=" Hjemmesykepleien sone sør ",
            unit_organisation_number=ORGANISATION_NUMBER,
            unit_phone="+47 75 55 55 55",
            contact_name="Kari Nordmann",
            contact_role="Primærkontakt",
            contact_phone="900 00 000",
            next_planned_visit=visit,
            coordinator_name="Ola Nordmann",
            coordinator_phone="911 11 111",
            key_box=True,
        )
    )
    assert service == MunicipalService(
        service_type=HOME_NURSING,
        start_date=date(2025, 1, 1),
        end_date=date(2025, 12, 31),
        temporary_cessation=True,
        stay_type="dagopphold",
        weekly_extent="7,5 timer",
        weekly_hours=Decimal("7.5"),
        description="Hjemmetjeneste - sårstell\nTo besøk daglig",
        needs_caption=True,
        service_level="Hjemmeboende - Sone sør (hjemmesykepleie)",
        responsible_unit=Unit("Hjemmesykepleien sone sør", ORGANISATION_NUMBER, "+47 75 55 55 55"),
        primary_contact=Contact("Kari Nordmann", "Primærkontakt", "900 00 000"),
        next_planned_visit=visit,
        coordinator=Contact("Ola Nordmann", None, "911 11 111"),
        key_box=True,
    )


def test_entries_keep_their_order() -> None:
    services = read(*(submitted(service_type_code=code) for code in ["1", "6", "1"]))
    assert [service.service_type.code for service in services] == ["1", "6", "1"]


# --- code system and codes ---------------------------------------------------------------------------


@pytest.mark.parametrize("code_system", [0, 1])
@pytest.mark.parametrize("code", ["01", "1", " 1 ", "001"])
def test_national_codes_are_normalised(code_system: int, code: str) -> None:
    (service,) = read(submitted(code_system=code_system, service_type_code=code))
    assert service.service_type.code == "1"
    assert service.service_type.system is CodeSystem.NATIONAL_9151


def test_national_display_comes_from_the_list_never_from_the_caller() -> None:
    (service,) = read(submitted(service_type_code="6", local_display="Something else"))
    assert service.service_type.display == "Trygghetsalarm"
    assert service.service_type.display_en == "Personal safety alarm"


@pytest.mark.parametrize("code", ["10", "30", "0", "A1", "fysio", "1.0", "\u0661", "9" * 5000, "1\x00"])
def test_national_code_outside_the_list(code: str) -> None:
    assert violated_fields(submitted(service_type_code=code)) == ["services[0].service_type_code"]


@pytest.mark.parametrize("code_system", [0, 1, 2])
@pytest.mark.parametrize("code", ["", "   "])
def test_missing_code(code_system: int, code: str) -> None:
    fields = violated_fields(submitted(code_system=code_system, service_type_code=code, local_display="Fysioterapi"))
    assert fields == ["services[0].service_type_code"]


@pytest.mark.parametrize("code_system", [3, 99, -1])
def test_unknown_code_system(code_system: int) -> None:
    # The code cannot be judged without its system, so only the system is reported.
    assert violated_fields(submitted(code_system=code_system, service_type_code="10")) == ["services[0].code_system"]


def test_local_code_with_display() -> None:
    (service,) = read(submitted(code_system=2, service_type_code=" fysio ", local_display=" Fysioterapi "))
    assert service.service_type == ServiceType(CodeSystem.LOCAL, "fysio", "Fysioterapi", None)


def test_local_code_is_not_normalised_like_a_national_one() -> None:
    (service,) = read(submitted(code_system=2, service_type_code="015", local_display="Psykisk helse"))
    assert service.service_type.code == "015"


@pytest.mark.parametrize("display", ["", "   "])
def test_local_code_needs_a_display(display: str) -> None:
    fields = violated_fields(submitted(code_system=2, service_type_code="fysio", local_display=display))
    assert fields == ["services[0].local_display"]


@pytest.mark.parametrize("code", ["fy sio", "x" * 21, "fysiø", "a/b"])
def test_malformed_local_code(code: str) -> None:
    fields = violated_fields(submitted(code_system=2, service_type_code=code, local_display="Fysioterapi"))
    assert fields == ["services[0].service_type_code"]


def test_malformed_local_code_and_missing_display_are_both_reported() -> None:
    fields = violated_fields(submitted(code_system=2, service_type_code="a b", local_display=""))
    assert fields == ["services[0].service_type_code", "services[0].local_display"]


# --- dates ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "value",
    [
        "2025-1-01",
        "2025-01-1",
        "25-01-01",
        "20250101",
        "2025/01/01",
        "01.01.2025",
        "2025-01-01T00:00:00",
        " 2025-01-01",
        "2025-01-01 ",
        "+2025-01-01",
        "\uff12\uff10\uff12\uff15-01-01",
        "2025-W01-1",
    ],
)
@pytest.mark.parametrize("field", ["start_date", "end_date"])
def test_malformed_dates(field: str, value: str) -> None:
    assert violated_fields(submitted(**{field: value})) == [f"services[0].{field}"]


@pytest.mark.parametrize("value", ["2025-02-29", "2025-02-30", "2025-13-01", "2025-00-10", "2025-04-31", "0000-01-01"])
@pytest.mark.parametrize("field", ["start_date", "end_date"])
def test_dates_that_are_not_on_the_calendar(field: str, value: str) -> None:
    assert violated_fields(submitted(**{field: value})) == [f"services[0].{field}"]


def test_leap_day_is_a_real_date() -> None:
    (service,) = read(submitted(start_date="2024-02-29"))
    assert service.start_date == date(2024, 2, 29)


def test_missing_start_date() -> None:
    assert violated_fields(submitted(start_date="")) == ["services[0].start_date"]


def test_start_after_end_is_reported_on_end_date() -> None:
    assert violated_fields(submitted(start_date="2025-02-02", end_date="2025-02-01")) == ["services[0].end_date"]


def test_start_on_end_date_is_valid() -> None:
    (service,) = read(submitted(start_date="2025-02-01", end_date="2025-02-01"))
    assert service.start_date == service.end_date == date(2025, 2, 1)


def test_order_is_not_checked_when_a_date_is_malformed() -> None:
    assert violated_fields(submitted(start_date="2025-13-01", end_date="2025-01-01")) == ["services[0].start_date"]


def test_next_planned_visit_needs_a_time_zone() -> None:
    naive = datetime(2025, 3, 11, 9, 30)
    assert violated_fields(submitted(next_planned_visit=naive)) == ["services[0].next_planned_visit"]
    (service,) = read(submitted(next_planned_visit=naive.replace(tzinfo=UTC)))
    assert service.next_planned_visit == naive.replace(tzinfo=UTC)


# --- text ----------------------------------------------------------------------------------------------


def named(field: str, value: str) -> dict[str, str]:
    """The field set to value, with the name its unit or contact needs to be valid."""
    companions = {
        "unit_phone": "unit_name",
        "contact_role": "contact_name",
        "contact_phone": "contact_name",
        "coordinator_phone": "coordinator_name",
    }
    changes = {field: value}
    if field in companions:
        changes[companions[field]] = "Navn"
    return changes


@pytest.mark.parametrize("field", LONG_TEXT_FIELDS)
def test_long_text_limit(field: str) -> None:
    limits = SubmissionLimits(max_text=20, max_short_text=5)
    read(submitted(**named(field, "x" * 20)), limits=limits)
    read(submitted(**named(field, "  " + "x" * 20 + "  ")), limits=limits)  # measured after trimming
    assert violated_fields(submitted(**named(field, "x" * 21)), limits=limits) == [f"services[0].{field}"]


@pytest.mark.parametrize("field", [*SHORT_TEXT_FIELDS, *NAME_FIELDS])
def test_short_text_limit(field: str) -> None:
    limits = SubmissionLimits(max_text=20, max_short_text=5)
    read(submitted(**named(field, "x" * 5)), limits=limits)
    assert violated_fields(submitted(**named(field, "x" * 6)), limits=limits) == [f"services[0].{field}"]


def test_local_display_uses_the_long_text_limit() -> None:
    limits = SubmissionLimits(max_text=20, max_short_text=5)
    read(submitted(code_system=2, service_type_code="fysio", local_display="x" * 20), limits=limits)
    fields = violated_fields(submitted(code_system=2, service_type_code="fysio", local_display="x" * 21), limits=limits)
    assert fields == ["services[0].local_display"]


def test_default_limits() -> None:
    assert SubmissionLimits() == SubmissionLimits(max_services=200, max_text=500, max_short_text=100)
    read(submitted(description="x" * 500, stay_type="x" * 100))
    assert violated_fields(submitted(description="x" * 501, stay_type="x" * 101)) == [
        "services[0].stay_type",
        "services[0].description",
    ]


@pytest.mark.parametrize("character", ["\x00", "\x07", "\x1b", "\x7f", "\x85", "\x9f", "\ud800"])
@pytest.mark.parametrize("field", [*LONG_TEXT_FIELDS, *SHORT_TEXT_FIELDS, *NAME_FIELDS])
def test_control_characters(field: str, character: str) -> None:
    assert violated_fields(submitted(**named(field, f"ab{character}cd"))) == [f"services[0].{field}"]


@pytest.mark.parametrize("character", ["\x00", "\x1f"])
def test_control_characters_at_the_ends_are_not_trimmed_away(character: str) -> None:
    assert violated_fields(submitted(description=f"sårstell{character}")) == ["services[0].description"]


def test_control_characters_in_local_display() -> None:
    fields = violated_fields(submitted(code_system=2, service_type_code="fysio", local_display="Fysio\x00"))
    assert fields == ["services[0].local_display"]


@pytest.mark.parametrize("layout", ["\n", "\r\n", "\t"])
def test_description_may_have_line_breaks_and_tabs(layout: str) -> None:
    (service,) = read(submitted(description=f"sårstell{layout}medisiner"))
    assert service.description == f"sårstell{layout}medisiner"


@pytest.mark.parametrize("field", SINGLE_LINE_FIELDS)
def test_other_text_is_single_line(field: str) -> None:
    assert violated_fields(submitted(**named(field, "ab\ncd"))) == [f"services[0].{field}"]


def test_blank_text_is_absent() -> None:
    (service,) = read(submitted(description="   ", stay_type=" ", unit_name="  ", contact_name="   "))
    assert (service.description, service.stay_type, service.responsible_unit, service.primary_contact) == (
        None,
        None,
        None,
        None,
    )


def test_unclear_weekly_extent_is_kept_as_text_without_hours() -> None:
    (service,) = read(submitted(weekly_extent="2-3 timer"))
    assert (service.weekly_extent, service.weekly_hours) == ("2-3 timer", None)


# --- unit and contacts -----------------------------------------------------------------------------------


@pytest.mark.parametrize("number", ["974760674", "97476067", "9747606731", "97476067A", "974 760 673"])
def test_invalid_organisation_number(number: str) -> None:
    item = submitted(unit_name="Hjemmesykepleien", unit_organisation_number=number)
    assert violated_fields(item) == ["services[0].unit_organisation_number"]


def test_unit_without_organisation_number() -> None:
    (service,) = read(submitted(unit_name="Hjemmesykepleien"))
    assert service.responsible_unit == Unit("Hjemmesykepleien")


@pytest.mark.parametrize(("field", "value"), [("unit_organisation_number", ORGANISATION_NUMBER), ("unit_phone", "123")])
def test_unit_details_need_a_unit_name(field: str, value: str) -> None:
    assert violated_fields(submitted(**{field: value})) == ["services[0].unit_name"]


@pytest.mark.parametrize(
    ("field", "name_field"),
    [("contact_role", "contact_name"), ("contact_phone", "contact_name"), ("coordinator_phone", "coordinator_name")],
)
def test_contact_details_need_a_name(field: str, name_field: str) -> None:
    assert violated_fields(submitted(**{field: "x"})) == [f"services[0].{name_field}"]


def test_contact_with_name_only() -> None:
    (service,) = read(submitted(contact_name="Kari", coordinator_name="Ola"))
    assert (service.primary_contact, service.coordinator) == (Contact("Kari"), Contact("Ola"))


# --- the list as a whole ---------------------------------------------------------------------------------


def test_every_problem_is_reported_at_once_with_its_index() -> None:
    items = [
        submitted(),
        submitted(service_type_code="10", start_date="2025-02-30", description="x\x00"),
        submitted(),
        submitted(code_system=2, service_type_code="fysio", start_date="", unit_organisation_number="123"),
        submitted(start_date="2025-03-01", end_date="2025-02-01", next_planned_visit=datetime(2025, 3, 1)),
        submitted(code_system=5, contact_phone="123"),
    ]
    assert violated_fields(*items) == [
        "services[1].service_type_code",
        "services[1].start_date",
        "services[1].description",
        "services[3].local_display",
        "services[3].start_date",
        "services[3].unit_organisation_number",
        "services[3].unit_name",
        "services[4].end_date",
        "services[4].next_planned_visit",
        "services[5].code_system",
        "services[5].contact_name",
    ]


def test_one_error_with_every_violation_described() -> None:
    with pytest.raises(InvalidArgument) as raised:
        read(submitted(start_date=""), submitted(service_type_code="99"))
    error = raised.value
    assert [(violation.field, violation.description) for violation in error.violations] == [
        ("services[0].start_date", "is required"),
        ("services[1].service_type_code", "is not in code list 9151"),
    ]
    assert error.message == "invalid request: services[0].start_date, services[1].service_type_code"


def test_violations_never_echo_the_submitted_text() -> None:
    secret = "Pasient har rusproblemer"
    with pytest.raises(InvalidArgument) as raised:
        read(submitted(description=secret + "\x00" + "x" * 600, contact_name=secret * 10, unit_phone=secret))
    assert secret not in str(raised.value)
    assert all(secret not in violation.description for violation in raised.value.violations)


def test_field_prefix() -> None:
    fields = violated_fields(submitted(), submitted(start_date=""), field_prefix="lists[2].services")
    assert fields == ["lists[2].services[1].start_date"]


def test_at_most_max_services() -> None:
    assert len(read(*[submitted()] * 200)) == 200
    with pytest.raises(InvalidArgument) as raised:
        read(*[submitted(start_date="")] * 201)
    # Too many entries: rejected on the count alone, the entries are not read.
    assert [violation.field for violation in raised.value.violations] == ["services"]


def test_max_services_uses_the_prefix_and_the_limit() -> None:
    limits = SubmissionLimits(max_services=2)
    assert violated_fields(*[submitted()] * 3, limits=limits, field_prefix="batch") == ["batch"]
    assert len(read(*[submitted()] * 2, limits=limits)) == 2
