import random
from dataclasses import replace
from datetime import UTC, date, datetime, timedelta

from hypothesis import given, settings
from hypothesis import strategies as st

from services.overview.domain.codes import CodeSystem, ServiceType
from services.overview.domain.compilation import (
    RECENTLY_ENDED_DAYS,
    OverviewEntry,
    SourceList,
    SourceRef,
    compile_overview,
    count_active,
)
from services.overview.domain.services import MunicipalService, ServiceStatus, Unit

TODAY = date(2025, 6, 15)
DAY = timedelta(days=1)
EARLY = datetime(2025, 6, 1, 8, 0, tzinfo=UTC)
LATER = datetime(2025, 6, 10, 8, 0, tzinfo=UTC)
LATEST = datetime(2025, 6, 14, 8, 0, tzinfo=UTC)
ORG_A = "974760673"
ORG_B = "923609016"
HOME_NURSING = Unit("Hjemmesykepleien sone sør", ORG_A, "+47 75 55 55 55")

NATIONAL_NAMES = {"1": "Praktisk bistand - daglige gjøremål", "6": "Trygghetsalarm", "15": "Helsetjenester i hjemmet"}


def service_type(code: str = "15", system: CodeSystem = CodeSystem.NATIONAL_9151) -> ServiceType:
    if system is CodeSystem.LOCAL:
        return ServiceType(system, code, f"Lokal {code}", None)
    return ServiceType(system, code, NATIONAL_NAMES.get(code, f"Kode {code}"), None)


def service(
    code: str = "15",
    start: date = TODAY - 30 * DAY,
    end: date | None = None,
    *,
    cessation: bool = False,
    unit: Unit | None = HOME_NURSING,
    system: CodeSystem = CodeSystem.NATIONAL_9151,
    description: str | None = None,
) -> MunicipalService:
    return MunicipalService(
        service_type=service_type(code, system),
        start_date=start,
        end_date=end,
        temporary_cessation=cessation,
        stay_type=None,
        weekly_extent=None,
        weekly_hours=None,
        description=description,
        needs_caption=False,
        service_level=None,
        responsible_unit=unit,
        primary_contact=None,
        next_planned_visit=None,
        coordinator=None,
        key_box=None,
    )


def source(name: str, updated_at: datetime, *services: MunicipalService) -> SourceList:
    return SourceList(name, updated_at, tuple(services))


def source_names(entry: OverviewEntry) -> list[str]:
    return [ref.source_system for ref in entry.sources]


# --- one source --------------------------------------------------------------------------------------------


def test_nothing_known() -> None:
    assert compile_overview([], TODAY) == ()
    assert compile_overview([source("eye", EARLY)], TODAY) == ()
    assert count_active([], TODAY) == 0


def test_one_service_from_one_source() -> None:
    reported = service()
    (entry,) = compile_overview([source("gerica", LATER, reported)], TODAY)
    assert entry == OverviewEntry(reported, ServiceStatus.ACTIVE, (SourceRef("gerica", LATER),))
    assert entry.last_updated == LATER


def test_statuses_are_computed_for_today() -> None:
    lists = [
        source(
            "gerica",
            LATER,
            service("1", start=TODAY),
            service("6", start=TODAY - DAY, cessation=True),
            service("15", start=TODAY + DAY),
            service("9", start=TODAY - 10 * DAY, end=TODAY - DAY),
        )
    ]
    assert [(entry.service.service_type.code, entry.status) for entry in compile_overview(lists, TODAY)] == [
        ("1", ServiceStatus.ACTIVE),
        ("6", ServiceStatus.ON_HOLD),
        ("15", ServiceStatus.PLANNED),
        ("9", ServiceStatus.ENDED),
    ]


# --- the 90-day window ---------------------------------------------------------------------------------------


def test_recently_ended_window_is_90_days() -> None:
    assert RECENTLY_ENDED_DAYS == 90


def test_ended_90_days_ago_is_shown_91_days_ago_is_not() -> None:
    edge = service("1", start=TODAY - 200 * DAY, end=TODAY - 90 * DAY)
    past = service("6", start=TODAY - 200 * DAY, end=TODAY - 91 * DAY)
    yesterday = service("9", start=TODAY - 200 * DAY, end=TODAY - DAY)
    entries = compile_overview([source("gerica", LATER, edge, past, yesterday)], TODAY)
    assert [(entry.service, entry.status) for entry in entries] == [
        (yesterday, ServiceStatus.ENDED),
        (edge, ServiceStatus.ENDED),
    ]


def test_ending_today_is_still_active() -> None:
    (entry,) = compile_overview([source("gerica", LATER, service(end=TODAY))], TODAY)
    assert entry.status is ServiceStatus.ACTIVE


# --- the same service from several sources ------------------------------------------------------------------


def test_identical_service_from_two_sources_is_shown_once_with_the_newest_fields() -> None:
    older = service(description="from gerica")
    newer = service(description="from profil")
    (entry,) = compile_overview([source("profil", LATEST, newer), source("gerica", EARLY, older)], TODAY)
    assert entry.service is newer
    assert entry.sources == (SourceRef("gerica", EARLY), SourceRef("profil", LATEST))
    assert entry.last_updated == LATEST
    assert count_active([source("profil", LATEST, newer), source("gerica", EARLY, older)], TODAY) == 1


def test_newest_source_wins_whatever_its_name() -> None:
    first = service(description="a")
    second = service(description="z")
    (entry,) = compile_overview([source("aaa", LATEST, first), source("zzz", EARLY, second)], TODAY)
    assert entry.service is first
    (entry,) = compile_overview([source("aaa", EARLY, first), source("zzz", LATEST, second)], TODAY)
    assert entry.service is second


def test_equally_fresh_sources_show_the_first_source_by_name() -> None:
    first = service(description="a")
    second = service(description="z")
    for lists in (
        [source("aaa", LATER, first), source("zzz", LATER, second)],
        [source("zzz", LATER, second), source("aaa", LATER, first)],
    ):
        (entry,) = compile_overview(lists, TODAY)
        assert entry.service is first


def test_three_sources() -> None:
    lists = [
        source("gerica", EARLY, service(description="g")),
        source("profil", LATEST, service(description="p")),
        source("cosdoc", LATER, service(description="c")),
    ]
    (entry,) = compile_overview(lists, TODAY)
    assert source_names(entry) == ["cosdoc", "gerica", "profil"]
    assert entry.service.description == "p"


def test_overlapping_periods_with_different_dates_are_merged() -> None:
    first = service(start=TODAY - 30 * DAY)
    second = service(start=TODAY - 10 * DAY, end=TODAY + 100 * DAY)
    (entry,) = compile_overview([source("gerica", LATER, first), source("profil", EARLY, second)], TODAY)
    assert entry.service is first
    assert source_names(entry) == ["gerica", "profil"]


def test_periods_touching_on_one_day_overlap() -> None:
    # Inclusive dates: one ends on the day the other starts.
    first = service(start=TODAY + 10 * DAY, end=TODAY + 20 * DAY)
    second = service(start=TODAY + 20 * DAY)
    (entry,) = compile_overview([source("gerica", LATER, first), source("profil", EARLY, second)], TODAY)
    assert source_names(entry) == ["gerica", "profil"]


def test_non_overlapping_periods_are_not_merged() -> None:
    planned_first = service(start=TODAY + 10 * DAY, end=TODAY + 20 * DAY)
    planned_then = service(start=TODAY + 21 * DAY)
    ended_first = service(start=TODAY - 60 * DAY, end=TODAY - 40 * DAY)
    ended_then = service(start=TODAY - 39 * DAY, end=TODAY - 20 * DAY)
    lists = [source("gerica", LATER, planned_first, ended_first), source("profil", EARLY, planned_then, ended_then)]
    entries = compile_overview(lists, TODAY)
    assert [(entry.service, source_names(entry)) for entry in entries] == [
        (planned_first, ["gerica"]),
        (planned_then, ["profil"]),
        (ended_then, ["profil"]),
        (ended_first, ["gerica"]),
    ]


def merged(first: Unit | None, second: Unit | None) -> bool:
    lists = [source("gerica", LATER, service(unit=first)), source("profil", EARLY, service(unit=second))]
    entries = compile_overview(lists, TODAY)
    assert count_active(lists, TODAY) == len(entries)
    return len(entries) == 1


def test_same_unit() -> None:
    assert merged(None, None)
    assert merged(Unit("Hjemmesykepleien"), Unit("Hjemmesykepleien"))
    assert merged(Unit("Hjemmesykepleien"), Unit("HJEMMESYKEPLEIEN"))
    assert merged(Unit("Hjemmesykepleien  sør"), Unit(" hjemmesykepleien sør"))
    assert merged(Unit("Hjemmesykepleien", ORG_A), Unit("Hjemmetjenesten Sone Sør", ORG_A))
    assert merged(Unit("Hjemmesykepleien", ORG_A), Unit("hjemmesykepleien"))  # only one has a number: names
    assert merged(Unit("Hjemmesykepleien", ORG_A, "1"), Unit("Hjemmesykepleien", ORG_A, "2"))


def test_different_unit_is_not_merged() -> None:
    assert not merged(Unit("Hjemmesykepleien sone sør"), Unit("Hjemmesykepleien sone nord"))
    assert not merged(Unit("Hjemmesykepleien", ORG_A), Unit("Hjemmesykepleien", ORG_B))
    assert not merged(Unit("Hjemmesykepleien", ORG_A), Unit("Praktisk bistand"))
    assert not merged(Unit("Hjemmesykepleien"), None)
    assert not merged(None, Unit("Hjemmesykepleien"))


def test_different_code_or_code_system_is_not_merged() -> None:
    lists = [
        source("gerica", LATER, service("15"), service("15", system=CodeSystem.LOCAL)),
        source("profil", EARLY, service("1"), service("15", system=CodeSystem.LOCAL)),
    ]
    entries = compile_overview(lists, TODAY)
    assert sorted(
        (entry.service.service_type.system, entry.service.service_type.code, tuple(source_names(entry)))
        for entry in entries
    ) == [
        (CodeSystem.NATIONAL_9151, "1", ("profil",)),
        (CodeSystem.NATIONAL_9151, "15", ("gerica",)),
        (CodeSystem.LOCAL, "15", ("gerica", "profil")),
    ]


def test_entries_from_the_same_source_are_never_merged() -> None:
    twice = service()
    lists = [source("gerica", LATER, twice, twice)]
    entries = compile_overview(lists, TODAY)
    assert [source_names(entry) for entry in entries] == [["gerica"], ["gerica"]]
    assert count_active(lists, TODAY) == 2


def test_two_lists_under_one_source_name_are_one_source() -> None:
    lists = [source("gerica", LATER, service()), source("gerica", EARLY, service())]
    assert len(compile_overview(lists, TODAY)) == 2


def test_a_source_with_two_matching_entries_merges_only_one() -> None:
    lists = [source("gerica", LATER, service(), service()), source("profil", EARLY, service())]
    entries = compile_overview(lists, TODAY)
    assert sorted(source_names(entry) for entry in entries) == [["gerica"], ["gerica", "profil"]]


def test_a_group_holds_only_services_that_all_match_each_other() -> None:
    # X overlaps Y, Y overlaps Z, but X and Z do not overlap: Z joins no group with X in it.
    x = service(start=TODAY + 10 * DAY, end=TODAY + 20 * DAY, description="x")
    y = service(start=TODAY + 15 * DAY, end=TODAY + 30 * DAY, description="y")
    z = service(start=TODAY + 25 * DAY, end=TODAY + 40 * DAY, description="z")
    lists = [source("x", LATEST, x), source("y", LATER, y), source("z", EARLY, z)]
    entries = compile_overview(lists, TODAY)
    assert [(entry.service, source_names(entry)) for entry in entries] == [(x, ["x", "y"]), (z, ["z"])]


def test_sources_that_disagree_on_status_stay_separate() -> None:
    lists = [source("gerica", LATER, service()), source("profil", EARLY, service(cessation=True))]
    entries = compile_overview(lists, TODAY)
    assert [(entry.status, source_names(entry)) for entry in entries] == [
        (ServiceStatus.ACTIVE, ["gerica"]),
        (ServiceStatus.ON_HOLD, ["profil"]),
    ]
    assert count_active(lists, TODAY) == 1


# --- order ---------------------------------------------------------------------------------------------------


def test_order_of_the_overview() -> None:
    active_old = service("1", start=TODAY - 300 * DAY)
    active_new = service("1", start=TODAY)
    active_code_2 = service("2", start=TODAY - 100 * DAY)
    active_code_15 = service("15", start=TODAY - 100 * DAY)
    active_local = service("A", start=TODAY - 100 * DAY, system=CodeSystem.LOCAL)
    active_unit_a = service("6", start=TODAY - 50 * DAY, unit=Unit("alfa"))
    active_unit_b = service("6", start=TODAY - 50 * DAY, unit=Unit("Beta"))
    active_no_unit = service("6", start=TODAY - 50 * DAY, unit=None)
    on_hold_old = service("15", start=TODAY - 20 * DAY, cessation=True)
    on_hold_new = service("15", start=TODAY - 2 * DAY, cessation=True)
    planned_soon = service("15", start=TODAY + DAY)
    planned_later = service("15", start=TODAY + 30 * DAY)
    planned_on_hold = service("1", start=TODAY + 30 * DAY, cessation=True)
    ended_recent = service("15", start=TODAY - 300 * DAY, end=TODAY - DAY)
    ended_long_ago = service("15", start=TODAY - 300 * DAY, end=TODAY - 80 * DAY)
    ended_with_cessation = service("1", start=TODAY - 300 * DAY, end=TODAY - 80 * DAY, cessation=True)
    expected = [
        active_new,
        active_no_unit,
        active_unit_a,
        active_unit_b,
        active_code_2,
        active_code_15,
        active_local,
        active_old,
        on_hold_new,
        on_hold_old,
        planned_soon,
        planned_on_hold,
        planned_later,
        ended_recent,
        ended_with_cessation,
        ended_long_ago,
    ]
    shuffled = list(expected)
    random.Random(7).shuffle(shuffled)
    lists = [source("gerica", LATER, *shuffled)]  # one source, so that nothing merges
    assert [entry.service for entry in compile_overview(lists, TODAY)] == expected


def test_order_does_not_depend_on_the_order_of_the_input() -> None:
    lists = [
        source("gerica", LATER, service("1"), service("15"), service("15", unit=None), service("6", start=TODAY + DAY)),
        source("profil", LATEST, service("15", description="p"), service("1", end=TODAY - DAY)),
        source("cosdoc", EARLY, service("15", description="c"), service("15", description="c2")),
    ]
    expected = compile_overview(lists, TODAY)
    generator = random.Random(11)
    for _ in range(20):
        shuffled = [
            replace(item, services=tuple(generator.sample(item.services, len(item.services)))) for item in lists
        ]
        generator.shuffle(shuffled)
        assert compile_overview(shuffled, TODAY) == expected


def test_lists_may_be_any_iterable() -> None:
    lists = [source("gerica", LATER, service()), source("profil", EARLY, service())]
    assert compile_overview(iter(lists), TODAY) == compile_overview(lists, TODAY)
    assert count_active(iter(lists), TODAY) == 1


# --- count_active --------------------------------------------------------------------------------------------


def test_count_active_counts_only_active_entries() -> None:
    lists = [
        source(
            "gerica",
            LATER,
            service("1"),
            service("6", cessation=True),
            service("9", start=TODAY + DAY),
            service("15", end=TODAY - DAY),
            service("2", end=TODAY),
        ),
        source("profil", EARLY, service("1"), service("2", start=TODAY - 5 * DAY)),
    ]
    assert count_active(lists, TODAY) == 2


UNITS = [None, Unit("Alfa"), Unit("alfa"), Unit("Alfa", ORG_A), Unit("Beta", ORG_A), Unit("Beta", ORG_B), Unit("Beta")]
UPDATED = [EARLY, LATER, LATEST]


@st.composite
def services(draw: st.DrawFn) -> MunicipalService:
    start = TODAY + draw(st.integers(-120, 10)) * DAY
    length = draw(st.none() | st.integers(0, 130))
    return service(
        draw(st.sampled_from(["1", "15"])),
        start=start,
        end=None if length is None else start + length * DAY,
        cessation=draw(st.booleans()),
        unit=draw(st.sampled_from(UNITS)),
        system=draw(st.sampled_from(list(CodeSystem))),
        description=draw(st.sampled_from([None, "a", "b"])),
    )


source_lists = st.lists(
    st.builds(
        source,
        st.sampled_from(["gerica", "profil", "cosdoc", "eye"]),
        st.sampled_from(UPDATED),
    ).flatmap(lambda empty: st.lists(services(), max_size=6).map(lambda found: replace(empty, services=tuple(found)))),
    max_size=4,
)


@settings(max_examples=200, deadline=None)
@given(source_lists)
def test_count_active_equals_the_active_entries_shown(lists: list[SourceList]) -> None:
    entries = compile_overview(lists, TODAY)
    assert count_active(lists, TODAY) == sum(entry.status is ServiceStatus.ACTIVE for entry in entries)


@settings(max_examples=200, deadline=None)
@given(source_lists, st.randoms(use_true_random=False))
def test_every_shown_service_is_accounted_for_once(lists: list[SourceList], generator: random.Random) -> None:
    entries = compile_overview(lists, TODAY)
    cutoff = TODAY - RECENTLY_ENDED_DAYS * DAY
    shown = [
        reported
        for item in lists
        for reported in item.services
        if reported.end_date is None or reported.end_date >= cutoff
    ]
    assert sum(len(entry.sources) for entry in entries) == len(shown)
    for entry in entries:
        names = source_names(entry)
        assert names == sorted(names) and len(set(names)) == len(names)
    assert [int(entry.status) for entry in entries] == sorted(int(entry.status) for entry in entries)
    shuffled = list(lists)
    generator.shuffle(shuffled)
    assert compile_overview(shuffled, TODAY) == entries
