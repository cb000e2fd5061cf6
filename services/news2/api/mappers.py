"""Protobuf ⇄ domain for the news2 contract. Enums map by member name, so the domain never depends
on wire numbers."""

from __future__ import annotations

import enum
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

from google.protobuf.timestamp_pb2 import Timestamp
from samhandling.news2.v1 import news2_pb2

from services.news2.domain.assessments import Assessment, AssessmentTrend, FeedAlert, Provenance
from services.news2.domain.scoring import News2Score, RawVitalSigns, VitalSigns
from services.news2.domain.trend import AlertReason, alert_reasons
from services.platform.errors import FieldViolation

VITAL_SIGNS_FIELD = "vital_signs"
MEASURED_AT_FIELD = "vital_signs.measured_at"
# A clock a little ahead of ours is tolerated; a measurement further in the future is a mistake.
MAX_CLOCK_SKEW = timedelta(minutes=5)
EARLIEST_MEASUREMENT = datetime(1900, 1, 1, tzinfo=UTC)
# The range of google.protobuf.Timestamp (0001-01-01 to 9999-12-31).
_MIN_SECONDS, _MAX_SECONDS = -62_135_596_800, 253_402_300_799

DEFAULT_PAGE_SIZE = 50
MAX_PAGE_SIZE = 200

_OPTIONAL_MEASURES = ("respiratory_rate", "spo2", "systolic_bp", "pulse", "temperature")


def raw_vital_signs(message: news2_pb2.VitalSigns) -> RawVitalSigns:
    """Exactly what the caller sent: absent optionals are None, enums stay numbers (maybe unknown)."""
    present = {name: getattr(message, name) for name in _OPTIONAL_MEASURES if message.HasField(name)}
    return RawVitalSigns(
        spo2_scale=message.spo2_scale,
        on_oxygen=message.on_oxygen if message.HasField("on_oxygen") else None,
        consciousness=message.consciousness,
        **present,
    )


def measured_at(message: news2_pb2.VitalSigns, now: datetime, violations: list[FieldViolation]) -> datetime | None:
    if not message.HasField("measured_at"):
        violations.append(FieldViolation(MEASURED_AT_FIELD, "required when recording"))
        return None
    stamp = message.measured_at
    if not 0 <= stamp.nanos < 1_000_000_000 or not _MIN_SECONDS <= stamp.seconds <= _MAX_SECONDS:
        violations.append(FieldViolation(MEASURED_AT_FIELD, "is not a valid timestamp"))
        return None
    moment = stamp.ToDatetime(tzinfo=UTC)
    if moment < EARLIEST_MEASUREMENT:
        violations.append(FieldViolation(MEASURED_AT_FIELD, "must not be before 1900"))
        return None
    if moment > now + MAX_CLOCK_SKEW:
        violations.append(FieldViolation(MEASURED_AT_FIELD, "must not be in the future"))
        return None
    return moment


def page_size(requested: int, violations: list[FieldViolation]) -> int:
    if requested < 0:
        violations.append(FieldViolation("page_size", "must not be negative"))
    return min(requested or DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE)


def timestamp(moment: datetime) -> Timestamp:
    message = Timestamp()
    message.FromDatetime(moment)
    return message


def _wire(enum_type: Any, prefix: str, member: enum.Enum | None) -> int:
    """The wire number of a domain enum member (0, UNSPECIFIED, for None)."""
    return 0 if member is None else enum_type.Value(f"{prefix}_{member.name}")


def vital_signs_message(raw: RawVitalSigns, measured: datetime | None) -> news2_pb2.VitalSigns:
    """The vital signs as measured (as sent)."""
    message = news2_pb2.VitalSigns(spo2_scale=raw.spo2_scale, consciousness=raw.consciousness)
    for name in _OPTIONAL_MEASURES:
        value = getattr(raw, name)
        if value is not None:
            setattr(message, name, value)
    if raw.on_oxygen is not None:
        message.on_oxygen = raw.on_oxygen
    if measured is not None:
        message.measured_at.CopyFrom(timestamp(measured))
    return message


def scored_values_message(values: VitalSigns) -> news2_pb2.VitalSigns:
    """The values as scored: rounded to the chart's resolution."""
    message = news2_pb2.VitalSigns(
        spo2_scale=_wire(news2_pb2.Spo2Scale, "SPO2", values.spo2_scale),
        consciousness=_wire(news2_pb2.Consciousness, "CONSCIOUSNESS", values.consciousness),
    )
    for name in _OPTIONAL_MEASURES:
        value = getattr(values, name)
        if value is not None:
            setattr(message, name, float(value))
    if values.on_oxygen is not None:
        message.on_oxygen = values.on_oxygen
    return message


def score_message(score: News2Score) -> news2_pb2.News2Score:
    points = score.parameter_scores
    return news2_pb2.News2Score(
        total=score.total,
        parameter_scores=news2_pb2.ParameterScores(
            respiration_rate=points.respiration_rate,
            spo2=points.spo2,
            air_or_oxygen=points.air_or_oxygen,
            systolic_bp=points.systolic_bp,
            pulse=points.pulse,
            consciousness=points.consciousness,
            temperature=points.temperature,
        ),
        risk_level=_wire(news2_pb2.RiskLevel, "RISK_LEVEL", score.risk_level),
        single_parameter_scored_3=score.single_parameter_scored_3,
        scale=_wire(news2_pb2.Spo2Scale, "SPO2", score.scale),
        scored_values=scored_values_message(score.scored_values),
        minimum_monitoring=_wire(news2_pb2.MonitoringFrequency, "MONITORING_FREQUENCY", score.monitoring),
        clinical_response=score.clinical_response,
    )


def trend_message(value: AssessmentTrend) -> news2_pb2.Trend:
    return news2_pb2.Trend(
        previous_assessment_id=value.previous_assessment_id,
        previous_total=value.trend.previous_total,
        total_delta=value.trend.total_delta,
        previous_risk_level=_wire(news2_pb2.RiskLevel, "RISK_LEVEL", value.trend.previous_risk_level),
        risk_change=_wire(news2_pb2.RiskChange, "RISK_CHANGE", value.trend.risk_change),
    )


def reason_values(reasons: Sequence[AlertReason]) -> list[int]:
    return [_wire(news2_pb2.AlertReason, "ALERT_REASON", reason) for reason in reasons]


def provenance_message(provenance: Provenance) -> news2_pb2.Provenance:
    return news2_pb2.Provenance(
        source_system=provenance.source_system,
        organisation_number=provenance.organisation_number,
        author_hpr_number=provenance.author_hpr_number or "",
        recorded_at=timestamp(provenance.recorded_at),
    )


def assessment_message(assessment: Assessment, trend: AssessmentTrend | None) -> news2_pb2.Assessment:
    """The stored assessment, shown with `trend` (the one stored at record time, or one recomputed)
    and the alert reasons that follow from its score and that trend."""
    reasons = alert_reasons(assessment.score, trend.trend if trend else None) if assessment.score else ()
    return news2_pb2.Assessment(
        assessment_id=assessment.assessment_id,
        version=assessment.version,
        tenant=assessment.tenant,
        patient_id=assessment.patient_id,
        vital_signs=vital_signs_message(assessment.measured, assessment.measured_at),
        complete=assessment.complete,
        score=score_message(assessment.score) if assessment.score is not None else None,
        missing_parameters=list(assessment.missing_parameters),
        trend=trend_message(trend) if trend is not None else None,
        alert_reasons=reason_values(reasons),
        provenance=provenance_message(assessment.provenance),
        sequence=assessment.sequence,
    )


def alert_message(alert: FeedAlert) -> news2_pb2.WatchAlertsResponse:
    reasons = list(alert.reasons)
    message = news2_pb2.WatchAlertsResponse(
        sequence=alert.recorded.sequence, assessment=assessment_message(alert.recorded, alert.trend)
    )
    if alert.later_rise is not None:
        later, rise = alert.later_rise
        reasons.append(AlertReason.LATER_ASSESSMENT_ROSE_BY_2_OR_MORE)
        message.later_assessment.CopyFrom(assessment_message(later, rise))
    message.reasons.extend(reason_values(reasons))
    return message
