"""Which alerts a recorded assessment raises, derived from what was recorded before it in the feed:
its own risk and rise, and — for a late entry — the rise it reveals in a later assessment."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta

from services.news2.domain.assessments import Assessment, Provenance, alert_at
from services.news2.domain.scoring import Consciousness, RawVitalSigns, read_vital_signs, score
from services.news2.domain.trend import AlertReason

NOW = datetime(2026, 11, 26, 12, 0, tzinfo=UTC)
NORMAL = RawVitalSigns(
    respiratory_rate=16,
    spo2=98,
    on_oxygen=False,
    systolic_bp=120,
    pulse=70,
    consciousness=Consciousness.ALERT,
    temperature=37.0,
)  # 0 points
PLUS_3 = replace(NORMAL, respiratory_rate=22, temperature=38.5)  # 2 + 1 = 3, low risk, no single 3
PLUS_1 = replace(NORMAL, temperature=38.5)  # 1


def assessment(raw: RawVitalSigns, *, minutes_ago: int, sequence: int, name: str = "") -> Assessment:
    values = read_vital_signs(raw)
    return Assessment(
        assessment_id=name or f"a{sequence}",
        version=1,
        tenant="1804",
        patient_id="22750884907",
        measured_at=NOW - timedelta(minutes=minutes_ago),
        measured=raw,
        as_scored=values,
        score=score(values) if values.is_complete else None,
        missing_parameters=values.missing_parameters(),
        trend=None,
        alert_reasons=(),
        provenance=Provenance("ehr", "972418013", None, NOW),
        sequence=sequence,
    )


def test_a_rise_of_2_against_the_previous_measurement_alerts():
    baseline = assessment(NORMAL, minutes_ago=60, sequence=1)
    risen = assessment(PLUS_3, minutes_ago=10, sequence=2)
    alert = alert_at(risen, [baseline, risen])
    assert alert is not None
    assert alert.reasons == (AlertReason.ROSE_BY_2_OR_MORE,)
    assert alert.trend is not None and alert.trend.trend.total_delta == 3
    assert alert.trend.previous_assessment_id == baseline.assessment_id
    assert alert.later_rise is None


def test_a_rise_of_1_does_not_alert():
    baseline = assessment(NORMAL, minutes_ago=60, sequence=1)
    assert alert_at(assessment(PLUS_1, minutes_ago=10, sequence=2), [baseline]) is None


def test_a_late_baseline_reveals_the_rise_of_the_assessment_recorded_before_it():
    risen = assessment(PLUS_3, minutes_ago=10, sequence=1)
    late_baseline = assessment(NORMAL, minutes_ago=60, sequence=2)
    assert alert_at(risen, [risen, late_baseline]) is None, "nothing earlier was known at sequence 1"
    alert = alert_at(late_baseline, [risen, late_baseline])
    assert alert is not None and alert.reasons == ()
    assert alert.later_rise is not None
    later, rise = alert.later_rise
    assert later.assessment_id == risen.assessment_id
    assert (rise.previous_assessment_id, rise.trend.total_delta) == (late_baseline.assessment_id, 3)


def test_only_what_was_recorded_before_counts_so_a_replay_gives_the_same_alert():
    baseline = assessment(NORMAL, minutes_ago=60, sequence=1)
    risen = assessment(PLUS_3, minutes_ago=10, sequence=2)
    in_between_recorded_later = assessment(PLUS_3, minutes_ago=30, sequence=3)
    live = alert_at(risen, [baseline, risen])
    replayed = alert_at(risen, [baseline, risen, in_between_recorded_later])
    assert live == replayed


def test_the_successor_is_compared_with_the_nearest_earlier_measurement_only():
    early = assessment(NORMAL, minutes_ago=90, sequence=1)
    middle = assessment(PLUS_3, minutes_ago=30, sequence=2)
    late_entry = assessment(PLUS_3, minutes_ago=60, sequence=3)  # between early and middle, same total as middle
    alert = alert_at(late_entry, [early, middle, late_entry])
    assert alert is not None
    assert alert.reasons == (AlertReason.ROSE_BY_2_OR_MORE,)  # its own rise of 3 over `early`
    assert alert.later_rise is None  # `middle` is level with it


def test_incomplete_sets_neither_alert_nor_serve_as_the_previous_measurement():
    baseline = assessment(NORMAL, minutes_ago=60, sequence=1)
    partial = assessment(replace(PLUS_3, temperature=None), minutes_ago=30, sequence=2)
    risen = assessment(PLUS_3, minutes_ago=10, sequence=3)
    assert alert_at(partial, [baseline, partial]) is None
    alert = alert_at(risen, [baseline, partial, risen])
    assert alert is not None and alert.trend is not None
    assert alert.trend.previous_assessment_id == baseline.assessment_id


def test_risk_reasons_alert_without_any_history():
    high = replace(NORMAL, respiratory_rate=26, pulse=135, temperature=39.5)  # 3 + 3 + 2 = 8
    alert = alert_at(assessment(high, minutes_ago=5, sequence=1), [])
    assert alert is not None
    assert set(alert.reasons) == {AlertReason.HIGH_RISK, AlertReason.SINGLE_PARAMETER_SCORED_3}
