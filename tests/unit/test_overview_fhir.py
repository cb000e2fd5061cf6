import json
import uuid
from datetime import UTC, date, datetime, timedelta, timezone
from decimal import Decimal
from typing import Any

import pytest
from fhir.resources.R4B.bundle import Bundle
from fhir.resources.R4B.episodeofcare import EpisodeOfCare

from services.overview.domain.codes import CodeSystem, ServiceType
from services.overview.domain.compilation import OverviewEntry, SourceRef
from services.overview.domain.fhir import overview_bundle
from services.overview.domain.services import Contact, MunicipalService, ServiceStatus, Unit

TODAY = date(2025, 6, 15)
PATIENT = "17057549955"
D_NUMBER = "71018512372"
MUNICIPALITY = "1804"
ORG = "974760673"
UPDATED = datetime(2025, 6, 14, 8, 30, tzinfo=UTC)
EARLIER = datetime(2025, 6, 1, 8, 30, tzinfo=UTC)
HOME_NURSING = ServiceType(CodeSystem.NATIONAL_9151, "15", "Helsetjenester i hjemmet", "Home health care")
PHYSIOTHERAPY = ServiceType(CodeSystem.LOCAL, "fysio", "Fysioterapi", None)
UNIT = Unit("Hjemmesykepleien sone sør", ORG, "+47 75 55 55 55")
EXTENSIONS = "https://samhandling.no/fhir/StructureDefinition/"


def service(**changes: Any) -> MunicipalService:
    fields: dict[str, Any] = {
        "service_type": HOME_NURSING,
        "start_date": date(2025, 1, 1),
        "end_date": None,
        "temporary_cessation": False,
        "stay_type": None,
        "weekly_extent": None,
        "weekly_hours": None,
        "description": None,
        "needs_caption": False,
        "service_level": None,
        "responsible_unit": UNIT,
        "primary_contact": None,
        "next_planned_visit": None,
        "coordinator": None,
        "key_box": None,
    }
    return MunicipalService(**(fields | changes))


def entry(status: ServiceStatus = ServiceStatus.ACTIVE, *, sources: tuple[str, ...] = ("gerica",), **changes: Any):
    refs = tuple(SourceRef(name, UPDATED if index == 0 else EARLIER) for index, name in enumerate(sources))
    return OverviewEntry(service(**changes), status, refs)


def bundle(*entries: OverviewEntry, patient_id: str = PATIENT) -> dict:
    result = overview_bundle(patient_id=patient_id, municipality=MUNICIPALITY, entries=entries, today=TODAY)
    Bundle.model_validate(result)  # raises when the bundle is not valid R4
    return result


def episodes(result: dict) -> list[dict]:
    return [item["resource"] for item in result["entry"]]


def extension(resource: dict, name: str) -> list[dict]:
    return [item for item in resource.get("extension", []) if item["url"] == EXTENSIONS + name]


def contained(resource: dict, reference: dict) -> dict:
    assert reference["reference"].startswith("#")
    (found,) = [item for item in resource["contained"] if item["id"] == reference["reference"][1:]]
    return found


def test_empty_overview_is_an_empty_collection() -> None:
    result = bundle()
    assert result["resourceType"] == "Bundle"
    assert result["type"] == "collection"
    assert result["entry"] == []


@pytest.mark.parametrize(
    ("status", "fhir_status"),
    [
        (ServiceStatus.ACTIVE, "active"),
        (ServiceStatus.ON_HOLD, "onhold"),
        (ServiceStatus.PLANNED, "planned"),
        (ServiceStatus.ENDED, "finished"),
    ],
)
def test_status(status: ServiceStatus, fhir_status: str) -> None:
    (episode,) = episodes(bundle(entry(status)))
    assert episode["resourceType"] == "EpisodeOfCare"
    assert episode["status"] == fhir_status
    # R4's code system for EpisodeOfCare.status (the library does not enforce its codes itself)
    allowed = EpisodeOfCare.model_fields["status"].json_schema_extra["enum_values"]
    assert fhir_status in allowed


def test_national_service_type() -> None:
    (episode,) = episodes(bundle(entry()))
    assert episode["type"][0]["coding"] == [
        {"system": "urn:oid:2.16.578.1.12.4.1.1.9151", "code": "15", "display": "Helsetjenester i hjemmet"}
    ]


def test_local_service_type_names_the_municipality() -> None:
    (episode,) = episodes(bundle(entry(service_type=PHYSIOTHERAPY)))
    assert episode["type"][0]["coding"] == [
        {"system": "urn:samhandling:local-service-type:1804", "code": "fysio", "display": "Fysioterapi"}
    ]


def test_period() -> None:
    ongoing, ended = episodes(
        bundle(entry(), entry(ServiceStatus.ENDED, start_date=date(2024, 2, 29), end_date=date(2025, 5, 31)))
    )
    assert ongoing["period"] == {"start": "2025-01-01"}
    assert ended["period"] == {"start": "2024-02-29", "end": "2025-05-31"}


@pytest.mark.parametrize(
    ("patient_id", "system"),
    [
        (PATIENT, "urn:oid:2.16.578.1.12.4.1.4.1"),
        ("01019012480", "urn:oid:2.16.578.1.12.4.1.4.1"),
        ("31129950016", "urn:oid:2.16.578.1.12.4.1.4.1"),
        ("22750884907", "urn:oid:2.16.578.1.12.4.1.4.1"),  # NHN synthetic identity (month + 65)
        (D_NUMBER, "urn:oid:2.16.578.1.12.4.1.4.2"),
        ("45018512487", "urn:oid:2.16.578.1.12.4.1.4.2"),
    ],
)
def test_patient_identifier(patient_id: str, system: str) -> None:
    (episode,) = episodes(bundle(entry(), patient_id=patient_id))
    assert episode["patient"] == {"identifier": {"system": system, "value": patient_id}}


def test_responsible_unit_with_organisation_number_and_phone() -> None:
    (episode,) = episodes(bundle(entry()))
    reference = episode["managingOrganization"]
    assert reference["identifier"] == {"system": "urn:oid:2.16.578.1.12.4.1.4.101", "value": ORG}
    assert reference["display"] == "Hjemmesykepleien sone sør"
    organisation = contained(episode, reference)
    assert organisation["resourceType"] == "Organization"
    assert organisation["name"] == "Hjemmesykepleien sone sør"
    assert organisation["identifier"] == [{"system": "urn:oid:2.16.578.1.12.4.1.4.101", "value": ORG}]
    assert organisation["telecom"] == [{"system": "phone", "value": "+47 75 55 55 55", "use": "work"}]


def test_unit_without_organisation_number_or_phone() -> None:
    (episode,) = episodes(bundle(entry(responsible_unit=Unit("Fysioterapitjenesten"))))
    reference = episode["managingOrganization"]
    assert "identifier" not in reference
    assert reference["display"] == "Fysioterapitjenesten"
    organisation = contained(episode, reference)
    assert organisation["name"] == "Fysioterapitjenesten"
    assert "telecom" not in organisation and "identifier" not in organisation


def test_no_unit() -> None:
    (episode,) = episodes(bundle(entry(responsible_unit=None)))
    assert "managingOrganization" not in episode
    assert "contained" not in episode


@pytest.mark.parametrize(("hours", "value"), [(Decimal("7.5"), 7.5), (Decimal(5), 5), (Decimal("0.25"), 0.25)])
def test_weekly_hours_as_a_ratio(hours: Decimal, value: float) -> None:
    (episode,) = episodes(bundle(entry(weekly_extent="text", weekly_hours=hours)))
    (ratio,) = extension(episode, "weekly-extent")
    assert ratio["valueRatio"] == {
        "numerator": {"value": value, "unit": "h", "system": "http://unitsofmeasure.org", "code": "h"},
        "denominator": {"value": 1, "unit": "wk", "system": "http://unitsofmeasure.org", "code": "wk"},
    }
    assert [item["valueString"] for item in extension(episode, "weekly-extent-text")] == ["text"]


def test_unparsed_weekly_extent_keeps_only_the_text() -> None:
    (episode,) = episodes(bundle(entry(weekly_extent="etter behov", weekly_hours=None)))
    assert extension(episode, "weekly-extent") == []
    assert [item["valueString"] for item in extension(episode, "weekly-extent-text")] == ["etter behov"]


def test_sources_and_last_updated() -> None:
    (episode,) = episodes(bundle(entry(sources=("gerica", "profil"))))
    assert [item["extension"] for item in extension(episode, "source")] == [
        [
            {"url": "sourceSystem", "valueString": "gerica"},
            {"url": "updatedAt", "valueInstant": "2025-06-14T08:30:00+00:00"},
        ],
        [
            {"url": "sourceSystem", "valueString": "profil"},
            {"url": "updatedAt", "valueInstant": "2025-06-01T08:30:00+00:00"},
        ],
    ]
    assert episode["meta"]["lastUpdated"] == "2025-06-14T08:30:00+00:00"


def test_details_for_the_clinician() -> None:
    visit = datetime(2025, 6, 16, 9, 0, tzinfo=timezone(timedelta(hours=2)))
    (episode,) = episodes(
        bundle(
            entry(
                ServiceStatus.ON_HOLD,
                temporary_cessation=True,
                description="Sårstell",
                service_level="Hjemmeboende - Sone sør",
                stay_type="korttidsopphold",
                needs_caption=True,
                primary_contact=Contact("Kari Nordmann", "Primærkontakt", "900 00 000"),
                coordinator=Contact("Ola Nordmann", None, "911 11 111"),
                next_planned_visit=visit,
                key_box=True,
            )
        )
    )
    assert [item["valueString"] for item in extension(episode, "service-description")] == ["Sårstell"]
    assert [item["valueString"] for item in extension(episode, "service-level")] == ["Hjemmeboende - Sone sør"]
    assert [item["valueString"] for item in extension(episode, "stay-type")] == ["korttidsopphold"]
    assert [item["valueBoolean"] for item in extension(episode, "temporary-cessation")] == [True]
    assert [item["valueBoolean"] for item in extension(episode, "needs-caption")] == [True]
    assert [item["valueBoolean"] for item in extension(episode, "key-box")] == [True]
    assert [item["valueDateTime"] for item in extension(episode, "next-planned-visit")] == ["2025-06-16T09:00:00+02:00"]
    (contact,) = extension(episode, "primary-contact")
    assert contact["extension"] == [
        {"url": "name", "valueString": "Kari Nordmann"},
        {"url": "role", "valueString": "Primærkontakt"},
        {"url": "phone", "valueContactPoint": {"system": "phone", "value": "900 00 000", "use": "work"}},
    ]
    coordinator = contained(episode, episode["careManager"])
    assert episode["careManager"]["display"] == "Ola Nordmann"
    assert coordinator["resourceType"] == "Practitioner"
    assert coordinator["name"] == [{"text": "Ola Nordmann"}]
    assert coordinator["telecom"] == [{"system": "phone", "value": "911 11 111", "use": "work"}]


def test_absent_details_are_left_out() -> None:
    (episode,) = episodes(bundle(entry()))
    for name in ["service-description", "service-level", "stay-type", "temporary-cessation", "key-box",
                 "next-planned-visit", "primary-contact", "weekly-extent", "weekly-extent-text"]:  # fmt: skip
        assert extension(episode, name) == []
    assert [item["valueBoolean"] for item in extension(episode, "needs-caption")] == [False]
    assert "careManager" not in episode


def test_key_box_known_absent() -> None:
    (episode,) = episodes(bundle(entry(key_box=False)))
    assert [item["valueBoolean"] for item in extension(episode, "key-box")] == [False]


def test_full_urls_are_deterministic_unique_uuids() -> None:
    entries = (entry(), entry(), entry(service_type=PHYSIOTHERAPY), entry(ServiceStatus.PLANNED, start_date=TODAY))
    first = bundle(*entries)
    assert first == bundle(*entries)
    urls = [item["fullUrl"] for item in first["entry"]]
    assert len(set(urls)) == len(urls) == 4
    for item in first["entry"]:
        assert item["fullUrl"].startswith("urn:uuid:")
        identifier = uuid.UUID(item["fullUrl"].removeprefix("urn:uuid:"))
        assert identifier.version == 5
        assert item["resource"]["id"] == str(identifier)
    other_patient = bundle(*entries, patient_id=D_NUMBER)
    assert not set(urls) & {item["fullUrl"] for item in other_patient["entry"]}


def test_entries_keep_the_overview_order() -> None:
    entries = (entry(), entry(ServiceStatus.ON_HOLD, service_type=PHYSIOTHERAPY), entry(ServiceStatus.ENDED))
    assert [episode["status"] for episode in episodes(bundle(*entries))] == ["active", "onhold", "finished"]


def test_bundle_is_plain_json_and_reads_back_as_r4() -> None:
    result = bundle(entry(weekly_extent="7,5 timer", weekly_hours=Decimal("7.5")))
    text = json.dumps(result)
    parsed = Bundle.model_validate_json(text)
    episode = parsed.entry[0].resource
    assert episode.get_resource_type() == "EpisodeOfCare"
    assert episode.status == "active"
    assert episode.managingOrganization.identifier.value == ORG
    assert episode.contained[0].telecom[0].value == "+47 75 55 55 55"
    assert episode.type[0].coding[0].code == "15"
    assert episode.period.start == date(2025, 1, 1)
