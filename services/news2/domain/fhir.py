"""A NEWS2 assessment as a FHIR R4 Bundle (type collection), built as plain JSON-ready dicts.

One Observation per vital sign that was measured (category vital-signs) and, when the set was
complete, one NEWS2 Observation (category survey) with a component per parameter score and
`derivedFrom` links to the vital signs. Codes are those of `design/domain.md` §2 and `news2.md`.
fullUrls are `urn:uuid:` UUIDv5s of the assessment id and the element, so an export is stable.
"""

from __future__ import annotations

import dataclasses
import uuid
from datetime import datetime
from typing import Any

from services.news2.domain.scoring import (
    PARAMETERS,
    Consciousness,
    MonitoringFrequency,
    News2Score,
    RawVitalSigns,
    RiskLevel,
    Spo2Scale,
    VitalSigns,
)
from services.platform.identifiers import (
    HPR_NUMBER_SYSTEM,
    ORGANISATION_NUMBER_SYSTEM,
    person_identifier_system,
)

LOINC = "http://loinc.org"
SNOMED_CT = "http://snomed.info/sct"
UCUM = "http://unitsofmeasure.org"
OBSERVATION_CATEGORY = "http://terminology.hl7.org/CodeSystem/observation-category"

# Fixed forever: changing it would change every exported fullUrl.
_NAMESPACE = uuid.uuid5(uuid.NAMESPACE_URL, "urn:samhandling:news2:assessment")

JSON = dict[str, Any]

# parameter → (LOINC or None, SNOMED CT, text, UCUM unit or None for coded values)
_VITAL_SIGN_CODES: dict[str, tuple[str | None, str, str, str | None]] = {
    "respiratory_rate": ("9279-1", "86290005", "Respiratory rate", "/min"),
    "spo2": ("2708-6", "431314004", "Oxygen saturation (SpO2)", "%"),
    "systolic_bp": ("8480-6", "271649006", "Systolic blood pressure", "mm[Hg]"),
    "pulse": ("8867-4", "364075005", "Pulse rate", "/min"),
    "temperature": ("8310-5", "276885007", "Body temperature", "Cel"),
    "consciousness": (None, "1104441000000107", "Level of consciousness (ACVPU)", None),
}
_QUANTITIES = frozenset({"respiratory_rate", "spo2", "systolic_bp", "pulse", "temperature"})
_UNIT_DISPLAY = {"/min": "/min", "%": "%", "mm[Hg]": "mmHg", "Cel": "°C"}

_ACVPU = {
    Consciousness.ALERT: ("248234008", "Alert"),
    Consciousness.NEW_CONFUSION: ("130987000", "New confusion"),
    Consciousness.VOICE: ("300202002", "Responds to voice"),
    Consciousness.PAIN: ("450847001", "Responds to pain"),
    Consciousness.UNRESPONSIVE: ("422768004", "Unresponsive"),
}
_AIR = ("722742002", "Air")
_OXYGEN = ("371825009", "Supplemental oxygen")
# No verified LOINC or SNOMED CT concept names the "air or oxygen?" question itself; the answer
# carries the SNOMED CT codes, the question is named in text.
_AIR_OR_OXYGEN_TEXT = "Air or supplemental oxygen"

_NEWS2_TOTAL = ("1104051000000101", "NEWS2 total score")
# ParameterScores field → (SNOMED CT, text); the SpO2 component depends on the scale.
_COMPONENT_CODES = {
    "respiration_rate": ("1104301000000104", "NEWS2 respiration rate score"),
    "air_or_oxygen": ("1104331000000105", "NEWS2 air or oxygen score"),
    "systolic_bp": ("1104341000000101", "NEWS2 systolic blood pressure score"),
    "pulse": ("1104351000000103", "NEWS2 pulse score"),
    "consciousness": ("1104361000000100", "NEWS2 consciousness score"),
    "temperature": ("1104371000000107", "NEWS2 temperature score"),
}
_SPO2_COMPONENT_CODES = {
    Spo2Scale.SCALE_1: ("1104311000000102", "NEWS2 SpO2 scale 1 score"),
    Spo2Scale.SCALE_2: ("1104321000000108", "NEWS2 SpO2 scale 2 score"),
}
_RISK_TEXT = {
    RiskLevel.LOW: "Low clinical risk",
    RiskLevel.LOW_MEDIUM: "Low-medium clinical risk",
    RiskLevel.MEDIUM: "Medium clinical risk",
    RiskLevel.HIGH: "High clinical risk",
}
_MONITORING_TEXT = {
    MonitoringFrequency.TWELVE_HOURLY: "every 12 hours",
    MonitoringFrequency.FOUR_TO_SIX_HOURLY: "every 4-6 hours",
    MonitoringFrequency.HOURLY: "hourly",
    MonitoringFrequency.CONTINUOUS: "continuous",
}


def assessment_bundle(
    *,
    assessment_id: str,
    patient_id: str,
    measured_at: datetime,
    recorded_at: datetime | None,
    measured: VitalSigns,
    score: News2Score | None,
    performer_organisation: str | None,
    as_sent: RawVitalSigns | None = None,
    performer_hpr_number: str | None = None,
) -> JSON:
    """`measured` says which parameters were measured (and codes consciousness and oxygen); the
    quantities are `as_sent` when given — the values as measured, not as rounded for scoring."""
    context: JSON = {
        "subject": {"identifier": {"system": person_identifier_system(patient_id), "value": patient_id}},
        "effectiveDateTime": _instant(measured_at, "measured_at"),
    }
    if recorded_at is not None:
        context["issued"] = _instant(recorded_at, "recorded_at")
    performers = []
    if performer_hpr_number is not None:
        performers.append(
            {"type": "Practitioner", "identifier": {"system": HPR_NUMBER_SYSTEM, "value": performer_hpr_number}}
        )
    if performer_organisation is not None:
        performers.append(
            {
                "type": "Organization",
                "identifier": {"system": ORGANISATION_NUMBER_SYSTEM, "value": performer_organisation},
            }
        )
    if performers:
        context["performer"] = performers

    entries: list[JSON] = []
    for parameter in PARAMETERS:
        value = getattr(measured, parameter)
        if value is not None and as_sent is not None and parameter in _QUANTITIES:
            value = getattr(as_sent, parameter)
        if value is not None:
            code, result = _vital_sign(parameter, value)
            observation = _observation("vital-signs", "Vital Signs", code, context, result)
            entries.append({"fullUrl": full_url(assessment_id, parameter), "resource": observation})

    if score is not None:
        derived_from = [{"reference": entry["fullUrl"]} for entry in entries]
        observation = _observation("survey", "Survey", _snomed(*_NEWS2_TOTAL), context, _news2(score, derived_from))
        entries.append({"fullUrl": full_url(assessment_id, "news2"), "resource": observation})

    bundle: JSON = {
        "resourceType": "Bundle",
        "id": str(_uuid(assessment_id, "bundle")),
        "type": "collection",
    }
    if recorded_at is not None:
        bundle["timestamp"] = _instant(recorded_at, "recorded_at")
    bundle["entry"] = entries
    return bundle


def _observation(category: str, category_display: str, code: JSON, context: JSON, result: JSON) -> JSON:
    return {
        "resourceType": "Observation",
        "status": "final",
        "category": [{"coding": [{"system": OBSERVATION_CATEGORY, "code": category, "display": category_display}]}],
        "code": code,
        **context,
        **result,
    }


def full_url(assessment_id: str, element: str) -> str:
    return _uuid(assessment_id, element).urn


def _uuid(assessment_id: str, element: str) -> uuid.UUID:
    return uuid.uuid5(_NAMESPACE, f"{assessment_id}/{element}")


def _instant(moment: datetime, name: str) -> str:
    if moment.tzinfo is None or moment.utcoffset() is None:
        raise ValueError(f"{name} must carry a time zone")
    return moment.isoformat()


def _snomed(code: str, text: str) -> JSON:
    return {"coding": [{"system": SNOMED_CT, "code": code}], "text": text}


def _vital_sign(parameter: str, value: object) -> tuple[JSON, JSON]:
    """The Observation's code and value for one measured parameter."""
    if parameter == "on_oxygen":
        answer, text = _OXYGEN if value else _AIR
        return {"text": _AIR_OR_OXYGEN_TEXT}, {"valueCodeableConcept": _snomed(answer, text)}

    loinc, snomed, text, unit = _VITAL_SIGN_CODES[parameter]
    codings = [{"system": LOINC, "code": loinc}] if loinc else []
    codings.append({"system": SNOMED_CT, "code": snomed})
    code = {"coding": codings, "text": text}
    if parameter == "consciousness":
        return code, {"valueCodeableConcept": _snomed(*_ACVPU[value])}  # type: ignore[index]
    assert unit is not None
    quantity = {
        # Temperature is a Decimal with one place; float keeps the dict JSON-ready and 36.1 stays 36.1.
        "value": _number(value),
        "unit": _UNIT_DISPLAY[unit],
        "system": UCUM,
        "code": unit,
    }
    return code, {"valueQuantity": quantity}


def _number(value: object) -> int | float:
    """JSON-ready: whole values as integers (70, not 70.0), others as floats (36.05 stays 36.05)."""
    number = float(value)  # type: ignore[arg-type]
    return int(number) if number.is_integer() else number


def _news2(score: News2Score, derived_from: list[JSON]) -> JSON:
    """The NEWS2 Observation's value, risk, links and components."""
    components = []
    for field in dataclasses.fields(score.parameter_scores):
        name, points = field.name, getattr(score.parameter_scores, field.name)
        code, text = _SPO2_COMPONENT_CODES[score.scale] if name == "spo2" else _COMPONENT_CODES[name]
        components.append({"code": _snomed(code, text), "valueInteger": points})
    note = f"Minimum monitoring: {_MONITORING_TEXT[score.monitoring]}. Response: {score.clinical_response}."
    if score.single_parameter_scored_3:
        note += " A single parameter scored 3."
    return {
        "valueInteger": score.total,
        "interpretation": [{"text": _RISK_TEXT[score.risk_level]}],
        "note": [{"text": note}],
        "derivedFrom": derived_from,
        "component": components,
    }
