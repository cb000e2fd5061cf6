"""The FHIR export of an assessment, validated with the fhir.resources R4B models. Codes are those of
design/domain.md §2 and design/news2.md, written out here rather than imported."""

from __future__ import annotations

import dataclasses
import json
import uuid
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest
from fhir.resources.R4B.bundle import Bundle

from services.news2.domain.fhir import assessment_bundle
from services.news2.domain.scoring import Consciousness, RawVitalSigns, VitalSigns, read_vital_signs, score

LOINC = "http://loinc.org"
SNOMED = "http://snomed.info/sct"
UCUM = "http://unitsofmeasure.org"
CATEGORY = "http://terminology.hl7.org/CodeSystem/observation-category"
FODSELSNUMMER = "17057549955"
D_NUMBER = "71018512372"

MEASURED_AT = datetime(2025, 3, 4, 10, 15, 0, tzinfo=timezone(timedelta(hours=1)))
RECORDED_AT = datetime(2025, 3, 4, 9, 16, 30, tzinfo=UTC)

RAW = RawVitalSigns(
    respiratory_rate=22,  # 2
    spo2=95.5,  # 96 as scored → scale 1: 0
    spo2_scale=1,
    on_oxygen=True,  # 2
    systolic_bp=105,  # 1
    pulse=88,  # 0
    consciousness=Consciousness.ALERT,  # 0
    temperature=36.05,  # 36.1 as scored → 0
)  # total 5: medium

VITAL_SIGN_CODES = {
    "respiratory_rate": ("9279-1", "86290005", 22, "/min"),
    "spo2": ("2708-6", "431314004", 96, "%"),
    "systolic_bp": ("8480-6", "271649006", 105, "mm[Hg]"),
    "pulse": ("8867-4", "364075005", 88, "/min"),
    "temperature": ("8310-5", "276885007", 36.1, "Cel"),
}
COMPONENTS_SCALE_1 = [
    ("1104301000000104", 2),  # respiration rate
    ("1104311000000102", 0),  # SpO2 scale 1
    ("1104331000000105", 2),  # air or oxygen
    ("1104341000000101", 1),  # systolic blood pressure
    ("1104351000000103", 0),  # pulse
    ("1104361000000100", 0),  # consciousness
    ("1104371000000107", 0),  # temperature
]


def bundle_for(
    raw: RawVitalSigns = RAW,
    *,
    patient_id: str = FODSELSNUMMER,
    assessment_id: str = "assessment-1",
    performer: str | None = "974760673",
    recorded_at: datetime | None = RECORDED_AT,
) -> dict[str, Any]:
    measured = read_vital_signs(raw)
    bundle = assessment_bundle(
        assessment_id=assessment_id,
        patient_id=patient_id,
        measured_at=MEASURED_AT,
        recorded_at=recorded_at,
        measured=measured,
        score=score(measured) if measured.is_complete else None,
        performer_organisation=performer,
    )
    Bundle.model_validate(bundle)  # raises when the bundle is not valid R4
    return bundle


def observations(bundle: dict[str, Any]) -> list[dict[str, Any]]:
    return [entry["resource"] for entry in bundle["entry"]]


def codings(concept: dict[str, Any]) -> set[tuple[str, str]]:
    return {(c["system"], c["code"]) for c in concept.get("coding", [])}


def by_code(bundle: dict[str, Any], system: str, code: str) -> dict[str, Any]:
    [found] = [o for o in observations(bundle) if (system, code) in codings(o["code"])]
    return found


def test_a_complete_assessment_is_a_valid_collection_with_eight_observations() -> None:
    bundle = bundle_for()
    assert bundle["resourceType"] == "Bundle"
    assert bundle["type"] == "collection"
    assert len(bundle["entry"]) == 8  # seven vital signs and the NEWS2 score
    assert all(o["resourceType"] == "Observation" and o["status"] == "final" for o in observations(bundle))
    json.dumps(bundle)  # plain JSON, ready to send


@pytest.mark.parametrize("parameter", list(VITAL_SIGN_CODES))
def test_measured_vital_signs_carry_loinc_snomed_and_ucum(parameter: str) -> None:
    loinc, snomed, value, unit = VITAL_SIGN_CODES[parameter]
    observation = by_code(bundle_for(), LOINC, loinc)
    assert (SNOMED, snomed) in codings(observation["code"])
    assert codings(observation["category"][0]) == {(CATEGORY, "vital-signs")}
    assert observation["valueQuantity"]["value"] == value
    assert observation["valueQuantity"]["system"] == UCUM
    assert observation["valueQuantity"]["code"] == unit
    assert observation["effectiveDateTime"] == "2025-03-04T10:15:00+01:00"
    assert observation["issued"] == "2025-03-04T09:16:30+00:00"
    assert observation["performer"] == [
        {"type": "Organization", "identifier": {"system": "urn:oid:2.16.578.1.12.4.1.4.101", "value": "974760673"}}
    ]


@pytest.mark.parametrize(
    ("level", "code"),
    [
        (Consciousness.ALERT, "248234008"),
        (Consciousness.NEW_CONFUSION, "130987000"),
        (Consciousness.VOICE, "300202002"),
        (Consciousness.PAIN, "450847001"),
        (Consciousness.UNRESPONSIVE, "422768004"),
    ],
)
def test_consciousness_is_coded_acvpu(level: Consciousness, code: str) -> None:
    observation = by_code(bundle_for(dataclasses.replace(RAW, consciousness=level)), SNOMED, "1104441000000107")
    assert codings(observation["valueCodeableConcept"]) == {(SNOMED, code)}
    assert codings(observation["category"][0]) == {(CATEGORY, "vital-signs")}


@pytest.mark.parametrize(("on_oxygen", "code"), [(False, "722742002"), (True, "371825009")])
def test_air_or_oxygen_is_coded(on_oxygen: bool, code: str) -> None:
    bundle = bundle_for(dataclasses.replace(RAW, on_oxygen=on_oxygen))
    answers = [codings(o["valueCodeableConcept"]) for o in observations(bundle) if "valueCodeableConcept" in o]
    oxygen_answers = [a for a in answers if a & {(SNOMED, "722742002"), (SNOMED, "371825009")}]
    assert oxygen_answers == [{(SNOMED, code)}]


def test_the_news2_observation_has_total_components_and_links() -> None:
    bundle = bundle_for()
    news2 = by_code(bundle, SNOMED, "1104051000000101")
    assert codings(news2["category"][0]) == {(CATEGORY, "survey")}
    assert news2["valueInteger"] == 5
    assert [(c["code"]["coding"][0]["code"], c["valueInteger"]) for c in news2["component"]] == COMPONENTS_SCALE_1
    assert all(c["code"]["coding"][0]["system"] == SNOMED for c in news2["component"])
    vital_urls = [entry["fullUrl"] for entry in bundle["entry"] if entry["resource"] is not news2]
    assert len(vital_urls) == 7
    assert [link["reference"] for link in news2["derivedFrom"]] == vital_urls
    assert "medium" in news2["interpretation"][0]["text"].lower()
    assert news2["effectiveDateTime"] == "2025-03-04T10:15:00+01:00"


def test_scale_2_uses_the_scale_2_component_code() -> None:
    bundle = bundle_for(dataclasses.replace(RAW, spo2=97, spo2_scale=2))  # 97 % on oxygen → 3
    components = {
        c["code"]["coding"][0]["code"]: c["valueInteger"]
        for c in by_code(bundle, SNOMED, "1104051000000101")["component"]
    }
    assert "1104311000000102" not in components
    assert components["1104321000000108"] == 3
    assert by_code(bundle, SNOMED, "1104051000000101")["valueInteger"] == 8  # 2 + 3 + 2 + 1


def test_full_urls_are_stable_uuid5_urns() -> None:
    first, again, other = bundle_for(), bundle_for(), bundle_for(assessment_id="assessment-2")
    urls = [entry["fullUrl"] for entry in first["entry"]]
    assert all(url.startswith("urn:uuid:") and uuid.UUID(url[9:]).version == 5 for url in urls)
    assert len(set(urls)) == len(urls)
    assert urls == [entry["fullUrl"] for entry in again["entry"]]
    assert not set(urls) & {entry["fullUrl"] for entry in other["entry"]}


@pytest.mark.parametrize(
    ("patient_id", "system"),
    [
        (FODSELSNUMMER, "urn:oid:2.16.578.1.12.4.1.4.1"),
        ("01019012480", "urn:oid:2.16.578.1.12.4.1.4.1"),
        ("31129950016", "urn:oid:2.16.578.1.12.4.1.4.1"),  # day 31: the highest first digit of a fødselsnummer
        (D_NUMBER, "urn:oid:2.16.578.1.12.4.1.4.2"),
        ("45018512487", "urn:oid:2.16.578.1.12.4.1.4.2"),  # day 5 + 40: the lowest first digit of a D-number
    ],
)
def test_subject_identifier_system_follows_the_kind_of_number(patient_id: str, system: str) -> None:
    bundle = bundle_for(patient_id=patient_id)
    subjects = {json.dumps(o["subject"], sort_keys=True) for o in observations(bundle)}
    assert subjects == {json.dumps({"identifier": {"system": system, "value": patient_id}}, sort_keys=True)}


def test_an_incomplete_assessment_has_vital_signs_but_no_news2_observation() -> None:
    bundle = bundle_for(dataclasses.replace(RAW, pulse=None, consciousness=0))
    found = observations(bundle)
    assert len(found) == 5
    assert not [o for o in found if (SNOMED, "1104051000000101") in codings(o["code"])]
    assert not [o for o in found if (LOINC, "8867-4") in codings(o["code"])]
    assert not [o for o in found if (SNOMED, "1104441000000107") in codings(o["code"])]
    assert all(codings(o["category"][0]) == {(CATEGORY, "vital-signs")} for o in found)


def test_nothing_measured_is_an_empty_collection() -> None:
    assert bundle_for(RawVitalSigns())["entry"] == []


def test_performer_and_recorded_time_are_optional() -> None:
    bundle = bundle_for(performer=None, recorded_at=None)
    assert all("performer" not in o and "issued" not in o for o in observations(bundle))
    assert "timestamp" not in bundle


def test_times_without_a_zone_are_refused() -> None:
    measured: VitalSigns = read_vital_signs(RAW)
    with pytest.raises(ValueError, match="measured_at"):
        assessment_bundle(
            assessment_id="a",
            patient_id=FODSELSNUMMER,
            measured_at=datetime(2025, 3, 4, 10, 15),
            recorded_at=None,
            measured=measured,
            score=None,
            performer_organisation=None,
        )


def test_quantities_are_exported_as_measured_when_the_values_as_sent_are_given() -> None:
    measured = read_vital_signs(RAW)
    bundle = assessment_bundle(
        assessment_id="assessment-as-sent",
        patient_id=FODSELSNUMMER,
        measured_at=MEASURED_AT,
        recorded_at=RECORDED_AT,
        measured=measured,
        as_sent=RAW,
        score=score(measured),
        performer_organisation=None,
    )
    Bundle.model_validate(bundle)
    temperature = by_code(bundle, LOINC, "8310-5")["valueQuantity"]["value"]
    spo2 = by_code(bundle, LOINC, "2708-6")["valueQuantity"]["value"]
    pulse = by_code(bundle, LOINC, "8867-4")["valueQuantity"]["value"]
    assert (temperature, spo2, pulse) == (36.05, 95.5, 88)
    # The score is still that of the values as scored (36.1 °C and 96 % both score 0).
    assert by_code(bundle, SNOMED, "1104051000000101")["valueInteger"] == 5


def test_the_author_is_a_practitioner_performer_by_hpr_number() -> None:
    measured = read_vital_signs(RAW)
    bundle = assessment_bundle(
        assessment_id="assessment-author",
        patient_id=FODSELSNUMMER,
        measured_at=MEASURED_AT,
        recorded_at=RECORDED_AT,
        measured=measured,
        score=score(measured),
        performer_organisation="974760673",
        performer_hpr_number="565505933",
    )
    Bundle.model_validate(bundle)
    for observation in observations(bundle):
        assert {
            "type": "Practitioner",
            "identifier": {"system": "urn:oid:2.16.578.1.12.4.1.4.4", "value": "565505933"},
        } in observation["performer"]
