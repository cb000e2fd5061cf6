"""A recorded NEWS2 assessment and its history: the trend against the previous complete assessment,
and which alerts a newly recorded assessment raises given what was recorded before it."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from services.news2.domain.scoring import News2Score, RawVitalSigns, VitalSigns
from services.news2.domain.trend import RISE_ALERT_POINTS, AlertReason, Trend, alert_reasons, trend


@dataclass(frozen=True)
class Provenance:
    source_system: str
    organisation_number: str
    author_hpr_number: str | None
    recorded_at: datetime


@dataclass(frozen=True)
class AssessmentTrend:
    """The change against a previous complete assessment, and which one that was."""

    previous_assessment_id: str
    trend: Trend


@dataclass(frozen=True)
class NewAssessment:
    """What RecordVitalSigns stores; the storage adds id, version, provenance and sequence."""

    tenant: str
    patient_id: str
    measured_at: datetime
    measured: RawVitalSigns
    as_scored: VitalSigns
    score: News2Score | None
    trend: AssessmentTrend | None
    alert_reasons: tuple[AlertReason, ...]

    @property
    def missing_parameters(self) -> tuple[str, ...]:
        return self.as_scored.missing_parameters()


@dataclass(frozen=True)
class Assessment:
    assessment_id: str
    version: int
    tenant: str
    patient_id: str
    measured_at: datetime
    # Exactly as sent.
    measured: RawVitalSigns
    # Validated and rounded to the chart's resolution.
    as_scored: VitalSigns
    # None for an incomplete set: never a total from a partial one.
    score: News2Score | None
    missing_parameters: tuple[str, ...]
    # As computed when recorded (a later backfilled measurement does not change it).
    trend: AssessmentTrend | None
    alert_reasons: tuple[AlertReason, ...]
    provenance: Provenance
    sequence: int

    @property
    def complete(self) -> bool:
        return self.score is not None


def predecessor(assessments: Sequence[Assessment], index: int) -> Assessment | None:
    """In a newest-first list, the complete assessment measured strictly before the one at `index`."""
    current = assessments[index]
    for candidate in assessments[index + 1 :]:
        if candidate.complete and candidate.measured_at < current.measured_at:
            return candidate
    return None


def trend_against(current: Assessment, previous: Assessment | None) -> AssessmentTrend | None:
    if current.score is None or previous is None or previous.score is None:
        return None
    change = trend(current.score, previous.score)
    return None if change is None else AssessmentTrend(previous.assessment_id, change)


@dataclass(frozen=True)
class FeedAlert:
    """What the change feed's position of one recorded assessment means for the people who must act.

    Derived only from what was recorded up to that position, so a watcher that replays the feed gets
    exactly the alerts a live watcher got. `recorded` may itself alert (its own reasons, against the
    previous complete assessment measured before it); and when it was measured before an assessment
    recorded earlier (a late entry), that later one may now be seen to have risen by 2 or more."""

    recorded: Assessment
    trend: AssessmentTrend | None
    reasons: tuple[AlertReason, ...]
    later_rise: tuple[Assessment, AssessmentTrend] | None = None


def alert_at(recorded: Assessment, history: Sequence[Assessment]) -> FeedAlert | None:
    """The alert raised when `recorded` entered the feed, or None. `history` is the patient's
    assessments (any order, may include `recorded` and later ones: they are ignored)."""
    if recorded.score is None:
        return None  # no total, no trend: an incomplete set neither alerts nor changes a trend
    known = [
        a
        for a in history
        if a.complete and a.sequence < recorded.sequence and a.assessment_id != recorded.assessment_id
    ]
    earlier = [a for a in known if a.measured_at < recorded.measured_at]
    previous = max(earlier, key=_measurement_order, default=None)
    own_trend = trend_against(recorded, previous)
    reasons = alert_reasons(recorded.score, own_trend.trend if own_trend else None)
    later_rise = None
    successor = min((a for a in known if a.measured_at > recorded.measured_at), key=_measurement_order, default=None)
    if successor is not None:
        rise = trend_against(successor, recorded)
        if rise is not None and rise.trend.total_delta >= RISE_ALERT_POINTS:
            later_rise = (successor, rise)
    if not reasons and later_rise is None:
        return None
    return FeedAlert(recorded, own_trend, reasons, later_rise)


def _measurement_order(assessment: Assessment) -> tuple[datetime, int]:
    return assessment.measured_at, assessment.sequence
