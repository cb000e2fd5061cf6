"""NEWS2 assessments kept in the storage service: one record per assessment, never changed (version 1),
keyed by measurement time so that storage's descending key order is newest measurement first.

The payload is JSON: the vital signs exactly as sent, the values as scored, the score (complete sets
only), the missing parameters, and the trend and alert reasons computed when it was recorded.
Provenance (source system, organisation, author, recorded_at) and the change-feed sequence come from
the stored record, never from the payload or the request.
"""

from __future__ import annotations

import json
import logging
import re
import uuid
from collections.abc import AsyncGenerator
from dataclasses import fields
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from services.news2.domain.assessments import Assessment, AssessmentTrend, NewAssessment, Provenance
from services.news2.domain.scoring import (
    Consciousness,
    MonitoringFrequency,
    News2Score,
    ParameterScores,
    RawVitalSigns,
    RiskLevel,
    Spo2Scale,
    VitalSigns,
)
from services.news2.domain.trend import AlertReason, RiskChange, Trend
from services.platform.errors import UNREADABLE_PAYLOAD, DataLoss, FailedPrecondition, NotFound, unreadable_record
from services.platform.principal import Principal
from services.platform.requests import scoped_idempotency_key
from services.platform.storage_client import StorageClient, StoredRecord

log = logging.getLogger(__name__)

KIND = "news2.assessment"
CONTENT_TYPE = "application/vnd.samhandling.news2-assessment+json; version=1"

# Measurement time (UTC, microseconds, fixed width so that key order is time order) and a UUID.
ASSESSMENT_ID = re.compile(r"[0-9]{8}T[0-9]{6}\.[0-9]{6}Z-[0-9a-f]{32}")
_KEY_TIME_FORMAT = "%Y%m%dT%H%M%S.%fZ"
# Fixed forever: changing it would give a retried request a different key than its original.
_KEY_NAMESPACE = uuid.uuid5(uuid.NAMESPACE_URL, "urn:samhandling:news2:assessment-key")
# Assessments per storage page read when looking back for a previous complete one. Small: it is
# nearly always among the newest few, and every one read is a payload decoded.
LOOKBACK_PAGE_SIZE = 8
_PARAMETER_SCORE_FIELDS = tuple(field.name for field in fields(ParameterScores))


def assessment_key(source_system: str, idempotency_key: str, measured_at: datetime) -> str:
    """The record key, and the assessment id: deterministic, so a retry addresses the same record."""
    identity = uuid.uuid5(_KEY_NAMESPACE, f"{len(source_system)}:{source_system}:{idempotency_key}")
    return f"{measured_at.astimezone(UTC).strftime(_KEY_TIME_FORMAT)}-{identity.hex}"


def is_assessment_id(value: str) -> bool:
    return ASSESSMENT_ID.fullmatch(value) is not None


class Assessments:
    """The repository of assessments over the storage service (the caller's token is forwarded)."""

    def __init__(self, storage: StorageClient) -> None:
        self.storage = storage

    async def save(self, new: NewAssessment, caller: Principal, idempotency_key: str) -> tuple[Assessment, bool]:
        """Stores the assessment once per idempotency key; returns the stored one and whether this was
        a replay. A retry whose trend came out differently (an assessment was recorded in between)
        still replays the original, as long as it measured the same thing for the same patient."""
        key = assessment_key(caller.client_id, idempotency_key, new.measured_at)
        try:
            result = await self.storage.put(
                new.tenant,
                new.patient_id,
                KIND,
                key,
                encode(new),
                CONTENT_TYPE,
                scoped_idempotency_key("news2", idempotency_key),
            )
        except FailedPrecondition as reused:
            if reused.reason != "IDEMPOTENCY_KEY_REUSED":
                raise
            original = await self._original(new, key, caller)
            if original is None:
                raise
            return original, True
        return assessment_from(result.record), result.replayed

    async def _original(self, new: NewAssessment, key: str, caller: Principal) -> Assessment | None:
        try:
            stored = assessment_from(await self.storage.get(new.tenant, new.patient_id, KIND, key))
        except NotFound:
            return None
        same = (
            stored.measured == new.measured
            and stored.measured_at == new.measured_at
            and stored.provenance.source_system == caller.client_id
            and stored.provenance.organisation_number == caller.acting_organisation_number
            and stored.provenance.author_hpr_number == caller.hpr_number
        )
        return stored if same else None

    async def get(self, tenant: str, patient_id: str, assessment_id: str) -> Assessment:
        try:
            record = await self.storage.get(tenant, patient_id, KIND, assessment_id)
        except NotFound:
            raise NotFound("no such assessment for this patient") from None
        return assessment_from(record)

    async def page(self, tenant: str, patient_id: str, page_size: int, page_token: str) -> tuple[list[Assessment], str]:
        """One page, newest measurement first, and the token of the next ("" after the last)."""
        records, token = await self.storage.page(
            tenant, patient_id, KIND, page_size=page_size, page_token=page_token, descending=True
        )
        return [assessment_from(record) for record in records], token

    async def previous_complete(self, tenant: str, patient_id: str, measured_at: datetime) -> Assessment | None:
        """The newest complete, readable assessment measured strictly before `measured_at`. A record
        that cannot be read is logged and passed over: it must never stop new measurements."""
        token = ""
        while True:
            records, token = await self.storage.page(
                tenant, patient_id, KIND, page_size=LOOKBACK_PAGE_SIZE, page_token=token, descending=True
            )
            for record in records:
                try:
                    assessment = assessment_from(record)
                except DataLoss:
                    log.error("unreadable assessment at sequence %d passed over in the look-back", record.sequence)
                    continue
                if assessment.complete and assessment.measured_at < measured_at:
                    return assessment
            if not token:
                return None

    async def history(self, tenant: str, patient_id: str) -> list[Assessment]:
        """All of the patient's assessments (any order)."""
        return [assessment_from(record) for record in await self.storage.latest(tenant, patient_id, KIND)]

    async def watch(self, tenant: str, after: int) -> AsyncGenerator[Assessment, None]:
        """Every assessment of the tenant recorded after sequence `after`, then live ones. A record that
        cannot be read is logged and passed over, so that it cannot stop the tenant's alerts for good."""
        records = self.storage.watch(tenant, after, [KIND])
        try:
            async for record in records:
                try:
                    assessment = assessment_from(record)
                except DataLoss:
                    log.error("unreadable assessment at sequence %d skipped", record.sequence)
                    continue
                yield assessment
        finally:
            await records.aclose()


# The JSON payload. Enum members are stored by name, so a renumbering never changes what was stored.


def assessment_from(record: StoredRecord) -> Assessment:
    """Raises DataLoss when the record holds something this service did not write."""
    try:
        return _decoded(record)
    except UNREADABLE_PAYLOAD as error:
        raise unreadable_record(KIND, record.version, record.sequence) from error


def _decoded(record: StoredRecord) -> Assessment:
    if record.kind != KIND or record.content_type != CONTENT_TYPE:
        raise ValueError(f"not a stored NEWS2 assessment: {record.kind} ({record.content_type})")
    body = json.loads(record.data)
    as_scored = _as_scored(body["as_scored"])
    return Assessment(
        assessment_id=record.key,
        version=record.version,
        tenant=record.tenant,
        patient_id=record.patient_id,
        measured_at=_aware(datetime.fromisoformat(body["measured_at"])),
        measured=_measured(body["measured"]),
        as_scored=as_scored,
        score=_score(body["score"], as_scored) if body["score"] is not None else None,
        missing_parameters=tuple(body["missing_parameters"]),
        trend=_trend(body["trend"]) if body["trend"] is not None else None,
        alert_reasons=tuple(AlertReason[name] for name in body["alert_reasons"]),
        provenance=Provenance(
            source_system=record.source_system,
            organisation_number=record.organisation_number,
            author_hpr_number=record.author_hpr_number,
            recorded_at=record.recorded_at,
        ),
        sequence=record.sequence,
    )


def encode(new: NewAssessment) -> bytes:
    body = {
        "measured_at": new.measured_at.astimezone(UTC).isoformat(timespec="microseconds"),
        "measured": _measured_json(new.measured),
        "as_scored": _as_scored_json(new.as_scored),
        "complete": new.score is not None,
        "missing_parameters": list(new.missing_parameters),
        "score": _score_json(new.score) if new.score is not None else None,
        "trend": _trend_json(new.trend) if new.trend is not None else None,
        "alert_reasons": [reason.name for reason in new.alert_reasons],
    }
    # Deterministic bytes: a retry of the same request is byte-identical, so storage replays it.
    return json.dumps(body, sort_keys=True, separators=(",", ":"), allow_nan=False).encode()


def _measured_json(raw: RawVitalSigns) -> dict[str, Any]:
    # Floats as sent: json writes the shortest repr that reads back as the identical double.
    return {
        "respiratory_rate": raw.respiratory_rate,
        "spo2": raw.spo2,
        "spo2_scale": Spo2Scale(raw.spo2_scale).name if raw.spo2_scale else None,
        "on_oxygen": raw.on_oxygen,
        "systolic_bp": raw.systolic_bp,
        "pulse": raw.pulse,
        "consciousness": Consciousness(raw.consciousness).name if raw.consciousness else None,
        "temperature": raw.temperature,
    }


def _measured(item: dict[str, Any]) -> RawVitalSigns:
    return RawVitalSigns(
        respiratory_rate=_float(item["respiratory_rate"]),
        spo2=_float(item["spo2"]),
        spo2_scale=Spo2Scale[item["spo2_scale"]].value if item["spo2_scale"] else 0,
        on_oxygen=item["on_oxygen"],
        systolic_bp=_float(item["systolic_bp"]),
        pulse=_float(item["pulse"]),
        consciousness=Consciousness[item["consciousness"]].value if item["consciousness"] else 0,
        temperature=_float(item["temperature"]),
    )


def _float(value: float | int | None) -> float | None:
    return None if value is None else float(value)


# Strict readers for what decides alerts and trends: a stored record with the right shape but the wrong
# types must fail here (and be reported as unreadable), not later in a comparison.


def _int(value: object) -> int:
    if type(value) is not int:
        raise TypeError("not an integer")
    return value


def _number(value: object) -> float | int | None:
    if value is not None and (isinstance(value, bool) or not isinstance(value, (int, float))):
        raise TypeError("not a number")
    return value


def _aware(moment: datetime) -> datetime:
    if moment.tzinfo is None:
        raise ValueError("a time without a time zone")
    return moment


def _as_scored_json(values: VitalSigns) -> dict[str, Any]:
    return {
        "respiratory_rate": values.respiratory_rate,
        "spo2": values.spo2,
        "spo2_scale": values.spo2_scale.name,
        "on_oxygen": values.on_oxygen,
        "systolic_bp": values.systolic_bp,
        "pulse": values.pulse,
        "consciousness": values.consciousness.name if values.consciousness else None,
        "temperature": str(values.temperature) if values.temperature is not None else None,
    }


def _as_scored(item: dict[str, Any]) -> VitalSigns:
    return VitalSigns(
        respiratory_rate=_number(item["respiratory_rate"]),
        spo2=_number(item["spo2"]),
        spo2_scale=Spo2Scale[item["spo2_scale"]],
        on_oxygen=item["on_oxygen"],
        systolic_bp=_number(item["systolic_bp"]),
        pulse=_number(item["pulse"]),
        consciousness=Consciousness[item["consciousness"]] if item["consciousness"] else None,
        temperature=Decimal(item["temperature"]) if item["temperature"] is not None else None,
    )


def _score_json(score: News2Score) -> dict[str, Any]:
    return {
        "total": score.total,
        "parameter_scores": dict(zip(_PARAMETER_SCORE_FIELDS, score.parameter_scores.as_tuple(), strict=True)),
        "risk_level": score.risk_level.name,
        "single_parameter_scored_3": score.single_parameter_scored_3,
        "scale": score.scale.name,
        "monitoring": score.monitoring.name,
        "clinical_response": score.clinical_response,
    }


def _score(item: dict[str, Any], as_scored: VitalSigns) -> News2Score:
    return News2Score(
        total=_int(item["total"]),
        parameter_scores=ParameterScores(**{name: _int(value) for name, value in item["parameter_scores"].items()}),
        risk_level=RiskLevel[item["risk_level"]],
        single_parameter_scored_3=item["single_parameter_scored_3"],
        scale=Spo2Scale[item["scale"]],
        scored_values=as_scored,
        monitoring=MonitoringFrequency[item["monitoring"]],
        clinical_response=item["clinical_response"],
    )


def _trend_json(value: AssessmentTrend) -> dict[str, Any]:
    return {
        "previous_assessment_id": value.previous_assessment_id,
        "previous_total": value.trend.previous_total,
        "total_delta": value.trend.total_delta,
        "previous_risk_level": value.trend.previous_risk_level.name,
        "risk_change": value.trend.risk_change.name,
    }


def _trend(item: dict[str, Any]) -> AssessmentTrend:
    return AssessmentTrend(
        previous_assessment_id=item["previous_assessment_id"],
        trend=Trend(
            previous_total=_int(item["previous_total"]),
            total_delta=_int(item["total_delta"]),
            previous_risk_level=RiskLevel[item["previous_risk_level"]],
            risk_change=RiskChange[item["risk_change"]],
        ),
    )
