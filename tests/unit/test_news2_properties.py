"""Properties of NEWS2 scoring that hold for every plausible measurement set. The expectations
(normal bands, the risk table) are restated here from design/news2.md, not taken from the code."""

from __future__ import annotations

import dataclasses
import math
from decimal import Decimal
from typing import NamedTuple

from hypothesis import given
from hypothesis import strategies as st

from services.news2.domain.scoring import (
    Consciousness,
    MonitoringFrequency,
    News2Score,
    RawVitalSigns,
    RiskLevel,
    Spo2Scale,
    read_vital_signs,
    score,
)
from services.platform.errors import InvalidArgument


def measurement(low: float, high: float) -> st.SearchStrategy[float]:
    """Values from low to high as a device or a person would send them: whole, one decimal, any float."""
    options = [st.floats(low, high, allow_nan=False, allow_infinity=False)]
    if math.ceil(low) <= math.floor(high):
        options.append(st.integers(math.ceil(low), math.floor(high)).map(float))
    if math.ceil(low * 10) <= math.floor(high * 10):
        tenths = st.integers(math.ceil(low * 10), math.floor(high * 10)).map(lambda n: n / 10)
        options.append(tenths.filter(lambda value: low <= value <= high))
    return st.one_of(options)


@st.composite
def complete_sets(draw: st.DrawFn) -> RawVitalSigns:
    return RawVitalSigns(
        respiratory_rate=draw(measurement(0, 80)),
        spo2=draw(measurement(50, 100)),
        spo2_scale=draw(st.sampled_from([0, 1, 2])),
        on_oxygen=draw(st.booleans()),
        systolic_bp=draw(measurement(40, 300)),
        pulse=draw(measurement(20, 300)),
        consciousness=draw(st.integers(1, 5)),
        temperature=draw(measurement(25.0, 45.0)),
    )


def scored(raw: RawVitalSigns) -> News2Score:
    return score(read_vital_signs(raw))


@given(complete_sets())
def test_total_is_the_sum_of_the_components_and_at_most_20(raw: RawVitalSigns) -> None:
    result = scored(raw)
    components = result.parameter_scores.as_tuple()
    assert result.total == sum(components)
    assert 0 <= result.total <= 20
    assert all(points in (0, 1, 2, 3) for points in components)
    assert result.parameter_scores.air_or_oxygen == (2 if raw.on_oxygen else 0)


@given(complete_sets())
def test_risk_monitoring_and_response_follow_the_table(raw: RawVitalSigns) -> None:
    result = scored(raw)
    single_3 = 3 in result.parameter_scores.as_tuple()
    assert result.single_parameter_scored_3 is single_3
    # Chart 2 / Chart 4, evaluated in the order news2.md gives.
    if result.total >= 7:
        expected = (RiskLevel.HIGH, MonitoringFrequency.CONTINUOUS, "emergency assessment")
    elif result.total >= 5:
        expected = (RiskLevel.MEDIUM, MonitoringFrequency.HOURLY, "urgent assessment")
    elif single_3:
        expected = (RiskLevel.LOW_MEDIUM, MonitoringFrequency.HOURLY, "registered nurse informs")
    elif result.total >= 1:
        expected = (RiskLevel.LOW, MonitoringFrequency.FOUR_TO_SIX_HOURLY, "registered nurse assesses")
    else:
        expected = (RiskLevel.LOW, MonitoringFrequency.TWELVE_HOURLY, "continue routine monitoring")
    risk, monitoring, response = expected
    assert result.risk_level is risk
    assert result.monitoring is monitoring
    assert result.clinical_response.startswith(response)


@given(complete_sets())
def test_the_values_as_scored_score_the_same_again(raw: RawVitalSigns) -> None:
    result = scored(raw)
    values = result.scored_values
    again = RawVitalSigns(
        respiratory_rate=values.respiratory_rate,
        spo2=values.spo2,
        spo2_scale=int(values.spo2_scale),
        on_oxygen=values.on_oxygen,
        systolic_bp=values.systolic_bp,
        pulse=values.pulse,
        consciousness=int(values.consciousness),
        temperature=float(values.temperature),
    )
    assert scored(again).parameter_scores == result.parameter_scores


@given(complete_sets())
def test_rounding_moves_a_value_by_at_most_half_the_chart_resolution(raw: RawVitalSigns) -> None:
    values = read_vital_signs(raw)
    for name in ("respiratory_rate", "spo2", "systolic_bp", "pulse"):
        assert abs(Decimal(getattr(values, name)) - Decimal(repr(getattr(raw, name)))) <= Decimal("0.5")
    assert abs(values.temperature - Decimal(repr(raw.temperature))) <= Decimal("0.05")
    assert values.spo2_scale is (Spo2Scale.SCALE_2 if raw.spo2_scale == 2 else Spo2Scale.SCALE_1)


class Numeric(NamedTuple):
    field: str
    component: str
    low: float  # plausibility limits
    high: float
    normal_low: float  # the band that scores 0 (Chart 1)
    normal_high: float


NUMERIC = [
    Numeric("respiratory_rate", "respiration_rate", 0, 80, 12, 20),
    Numeric("systolic_bp", "systolic_bp", 40, 300, 111, 219),
    Numeric("pulse", "pulse", 20, 300, 51, 90),
    Numeric("temperature", "temperature", 25.0, 45.0, 36.1, 38.0),
]


@given(complete_sets(), st.data())
def test_moving_a_measurement_away_from_its_normal_band_never_lowers_a_score(
    base: RawVitalSigns, data: st.DataObject
) -> None:
    parameter = data.draw(st.sampled_from(NUMERIC))
    if data.draw(st.booleans()):  # downwards, from the normal band or below it
        start = data.draw(measurement(parameter.low, parameter.normal_high))
        worse = data.draw(measurement(parameter.low, start))
    else:  # upwards, from the normal band or above it
        start = data.draw(measurement(parameter.normal_low, parameter.high))
        worse = data.draw(measurement(start, parameter.high))
    before = scored(dataclasses.replace(base, **{parameter.field: start}))
    after = scored(dataclasses.replace(base, **{parameter.field: worse}))
    assert getattr(after.parameter_scores, parameter.component) >= getattr(before.parameter_scores, parameter.component)
    assert after.total >= before.total


@given(complete_sets(), st.data())
def test_a_lower_spo2_never_lowers_a_score(base: RawVitalSigns, data: st.DataObject) -> None:
    # Downwards is away from normal on every SpO2 line, as long as scale 2 on oxygen starts at or
    # below its normal band (88-92 %).
    top = 92 if base.spo2_scale == 2 and base.on_oxygen else 100
    start = data.draw(measurement(50, top))
    worse = data.draw(measurement(50, start))
    before = scored(dataclasses.replace(base, spo2=start))
    after = scored(dataclasses.replace(base, spo2=worse))
    assert after.parameter_scores.spo2 >= before.parameter_scores.spo2
    assert after.total >= before.total


@given(complete_sets(), st.data())
def test_a_higher_spo2_on_oxygen_on_scale_2_never_lowers_a_score(base: RawVitalSigns, data: st.DataObject) -> None:
    base = dataclasses.replace(base, spo2_scale=2, on_oxygen=True)
    start = data.draw(measurement(88, 100))
    worse = data.draw(measurement(start, 100))
    before = scored(dataclasses.replace(base, spo2=start))
    after = scored(dataclasses.replace(base, spo2=worse))
    assert after.parameter_scores.spo2 >= before.parameter_scores.spo2
    assert after.total >= before.total


@given(complete_sets())
def test_oxygen_instead_of_air_never_lowers_a_score(base: RawVitalSigns) -> None:
    on_air = scored(dataclasses.replace(base, on_oxygen=False))
    on_oxygen = scored(dataclasses.replace(base, on_oxygen=True))
    assert on_oxygen.parameter_scores.air_or_oxygen == on_air.parameter_scores.air_or_oxygen + 2
    assert on_oxygen.parameter_scores.spo2 >= on_air.parameter_scores.spo2
    assert on_oxygen.total >= on_air.total + 2


@given(complete_sets(), st.sampled_from([c for c in Consciousness if c is not Consciousness.ALERT]))
def test_any_loss_of_alertness_scores_3(base: RawVitalSigns, level: Consciousness) -> None:
    alert = scored(dataclasses.replace(base, consciousness=Consciousness.ALERT))
    not_alert = scored(dataclasses.replace(base, consciousness=level))
    assert alert.parameter_scores.consciousness == 0
    assert not_alert.parameter_scores.consciousness == 3
    assert not_alert.total == alert.total + 3
    assert not_alert.single_parameter_scored_3


@given(st.sampled_from(NUMERIC), st.data())
def test_values_outside_the_plausibility_limits_are_always_rejected(parameter: Numeric, data: st.DataObject) -> None:
    too_low = st.floats(max_value=parameter.low, exclude_max=True, allow_nan=False)
    too_high = st.floats(min_value=parameter.high, exclude_min=True, allow_nan=False)
    value = data.draw(st.one_of(too_low, too_high))
    try:
        read_vital_signs(RawVitalSigns(**{parameter.field: value}))
    except InvalidArgument as error:
        assert [v.field for v in error.violations] == [parameter.field]
    else:
        raise AssertionError(f"{parameter.field}={value!r} was accepted")
