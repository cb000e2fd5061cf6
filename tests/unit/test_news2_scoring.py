"""NEWS2 scoring against the tables in design/news2.md. Every expected value below is read off those
tables by hand; none is computed by the code under test."""

from __future__ import annotations

import dataclasses
import math
import subprocess
import sys
from decimal import Decimal

import pytest

from services.news2.domain.scoring import (
    PARAMETERS,
    Consciousness,
    MonitoringFrequency,
    News2Score,
    RawVitalSigns,
    RiskLevel,
    Spo2Scale,
    VitalSigns,
    read_vital_signs,
    require_complete,
    risk_level,
    score,
)
from services.platform.errors import InvalidArgument

# Every parameter in its 0 band, on air: total 0.
NORMAL = RawVitalSigns(
    respiratory_rate=16,
    spo2=98,
    spo2_scale=1,
    on_oxygen=False,
    systolic_bp=120,
    pulse=70,
    consciousness=Consciousness.ALERT,
    temperature=37.0,
)


def scored(**changes: object) -> News2Score:
    return score(read_vital_signs(dataclasses.replace(NORMAL, **changes)))


def violations(raw: RawVitalSigns, prefix: str = "") -> list[tuple[str, str]]:
    with pytest.raises(InvalidArgument) as caught:
        read_vital_signs(raw, field_prefix=prefix)
    return [(v.field, v.description) for v in caught.value.violations]


# --- Chart 1: both sides of every band edge, plus the plausibility limits -------------------------

RESPIRATION = [(0, 3), (8, 3), (9, 1), (11, 1), (12, 0), (20, 0), (21, 2), (24, 2), (25, 3), (80, 3)]
SPO2_SCALE_1 = [(50, 3), (91, 3), (92, 2), (93, 2), (94, 1), (95, 1), (96, 0), (100, 0)]
SPO2_SCALE_2_ON_AIR = [
    (50, 3), (83, 3), (84, 2), (85, 2), (86, 1), (87, 1), (88, 0), (92, 0),
    (93, 0), (94, 0), (95, 0), (96, 0), (97, 0), (100, 0),
]  # fmt: skip
SPO2_SCALE_2_ON_OXYGEN = [
    (50, 3), (83, 3), (84, 2), (85, 2), (86, 1), (87, 1), (88, 0), (92, 0),
    (93, 1), (94, 1), (95, 2), (96, 2), (97, 3), (100, 3),
]  # fmt: skip
SYSTOLIC = [(40, 3), (90, 3), (91, 2), (100, 2), (101, 1), (110, 1), (111, 0), (219, 0), (220, 3), (300, 3)]
PULSE = [
    (20, 3), (40, 3), (41, 1), (50, 1), (51, 0), (90, 0), (91, 1), (110, 1), (111, 2), (130, 2), (131, 3), (300, 3),
]  # fmt: skip
TEMPERATURE = [
    (25.0, 3), (35.0, 3), (35.1, 1), (36.0, 1), (36.1, 0), (38.0, 0), (38.1, 1), (39.0, 1), (39.1, 2), (45.0, 2),
]  # fmt: skip


@pytest.mark.parametrize(("value", "points"), RESPIRATION)
def test_respiration_rate_bands(value: int, points: int) -> None:
    result = scored(respiratory_rate=value)
    assert result.parameter_scores.respiration_rate == points
    assert result.total == points


@pytest.mark.parametrize(("value", "points"), SPO2_SCALE_1)
@pytest.mark.parametrize("on_oxygen", [False, True])
def test_spo2_scale_1_bands_are_the_same_on_air_and_oxygen(value: int, points: int, on_oxygen: bool) -> None:
    result = scored(spo2=value, spo2_scale=1, on_oxygen=on_oxygen)
    assert result.parameter_scores.spo2 == points
    assert result.parameter_scores.air_or_oxygen == (2 if on_oxygen else 0)
    assert result.total == points + (2 if on_oxygen else 0)
    assert result.scale is Spo2Scale.SCALE_1


@pytest.mark.parametrize(("value", "points"), SPO2_SCALE_2_ON_AIR)
def test_spo2_scale_2_bands_on_air(value: int, points: int) -> None:
    result = scored(spo2=value, spo2_scale=2, on_oxygen=False)
    assert result.parameter_scores.spo2 == points
    assert result.parameter_scores.air_or_oxygen == 0
    assert result.total == points
    assert result.scale is Spo2Scale.SCALE_2


@pytest.mark.parametrize(("value", "points"), SPO2_SCALE_2_ON_OXYGEN)
def test_spo2_scale_2_bands_on_oxygen(value: int, points: int) -> None:
    result = scored(spo2=value, spo2_scale=2, on_oxygen=True)
    assert result.parameter_scores.spo2 == points
    assert result.parameter_scores.air_or_oxygen == 2
    assert result.total == points + 2


@pytest.mark.parametrize(("value", "points"), SYSTOLIC)
def test_systolic_bp_bands(value: int, points: int) -> None:
    result = scored(systolic_bp=value)
    assert result.parameter_scores.systolic_bp == points
    assert result.total == points


@pytest.mark.parametrize(("value", "points"), PULSE)
def test_pulse_bands(value: int, points: int) -> None:
    result = scored(pulse=value)
    assert result.parameter_scores.pulse == points
    assert result.total == points


@pytest.mark.parametrize(("value", "points"), TEMPERATURE)
def test_temperature_bands(value: float, points: int) -> None:
    result = scored(temperature=value)
    assert result.parameter_scores.temperature == points
    assert result.total == points


@pytest.mark.parametrize(
    ("level", "points"),
    [
        (Consciousness.ALERT, 0),
        (Consciousness.NEW_CONFUSION, 3),
        (Consciousness.VOICE, 3),
        (Consciousness.PAIN, 3),
        (Consciousness.UNRESPONSIVE, 3),
    ],
)
def test_consciousness(level: Consciousness, points: int) -> None:
    result = scored(consciousness=int(level))
    assert result.parameter_scores.consciousness == points
    assert result.total == points
    assert result.scored_values.consciousness is level


def test_air_or_oxygen() -> None:
    assert scored(on_oxygen=False).parameter_scores.air_or_oxygen == 0
    assert scored(on_oxygen=True).parameter_scores.air_or_oxygen == 2


# --- Every whole value (temperature: every tenth) the chart can show, against the printed bands ------

# (lowest, highest, points) as printed; None = open-ended.
BANDS = {
    "respiration_rate": [(None, 8, 3), (9, 11, 1), (12, 20, 0), (21, 24, 2), (25, None, 3)],
    "systolic_bp": [(None, 90, 3), (91, 100, 2), (101, 110, 1), (111, 219, 0), (220, None, 3)],
    "pulse": [(None, 40, 3), (41, 50, 1), (51, 90, 0), (91, 110, 1), (111, 130, 2), (131, None, 3)],
    "temperature": [
        (None, Decimal("35.0"), 3),
        (Decimal("35.1"), Decimal("36.0"), 1),
        (Decimal("36.1"), Decimal("38.0"), 0),
        (Decimal("38.1"), Decimal("39.0"), 1),
        (Decimal("39.1"), None, 2),
    ],
}


def printed_band(bands: list, value: Decimal | int) -> int:
    matches = [p for low, high, p in bands if (low is None or value >= low) and (high is None or value <= high)]
    assert len(matches) == 1, f"{value} is in {len(matches)} printed bands"
    return matches[0]


@pytest.mark.parametrize(
    ("field", "component", "values"),
    [
        ("respiratory_rate", "respiration_rate", range(0, 81)),
        ("systolic_bp", "systolic_bp", range(40, 301)),
        ("pulse", "pulse", range(20, 301)),
        ("temperature", "temperature", [Decimal(tenths) / 10 for tenths in range(250, 451)]),
    ],
)
def test_every_chart_value_scores_its_printed_band(field: str, component: str, values: list) -> None:
    for value in values:
        raw_value = float(value) if isinstance(value, Decimal) else value
        points = getattr(scored(**{field: raw_value}).parameter_scores, component)
        assert points == printed_band(BANDS[component], value), f"{field}={value}"


def test_every_spo2_value_scores_its_printed_band() -> None:
    scale_1 = [(None, 91, 3), (92, 93, 2), (94, 95, 1), (96, None, 0)]
    scale_2_low = [(None, 83, 3), (84, 85, 2), (86, 87, 1), (88, 92, 0)]
    scale_2_on_oxygen_high = [(93, 94, 1), (95, 96, 2), (97, None, 3)]
    for value in range(50, 101):
        for on_oxygen in (False, True):
            assert scored(spo2=value, on_oxygen=on_oxygen).parameter_scores.spo2 == printed_band(scale_1, value)
            if value <= 92:
                expected = printed_band(scale_2_low, value)
            else:
                expected = printed_band(scale_2_on_oxygen_high, value) if on_oxygen else 0
            result = scored(spo2=value, spo2_scale=2, on_oxygen=on_oxygen)
            assert result.parameter_scores.spo2 == expected, f"scale 2, {value} %, oxygen={on_oxygen}"


# --- Values between printed bands: half-up rounding on the value as written ----------------------


@pytest.mark.parametrize(
    ("field", "sent", "as_scored", "component", "points"),
    [
        ("respiratory_rate", 20.5, 21, "respiration_rate", 2),
        ("respiratory_rate", 20.49, 20, "respiration_rate", 0),
        ("respiratory_rate", 8.5, 9, "respiration_rate", 1),
        ("respiratory_rate", 8.49, 8, "respiration_rate", 3),
        ("respiratory_rate", 11.5, 12, "respiration_rate", 0),
        ("respiratory_rate", 24.5, 25, "respiration_rate", 3),
        ("spo2", 95.5, 96, "spo2", 0),
        ("spo2", 95.49, 95, "spo2", 1),
        ("spo2", 91.5, 92, "spo2", 2),
        ("systolic_bp", 90.5, 91, "systolic_bp", 2),
        ("systolic_bp", 90.49, 90, "systolic_bp", 3),
        ("systolic_bp", 219.5, 220, "systolic_bp", 3),
        ("pulse", 40.5, 41, "pulse", 1),
        ("pulse", 90.5, 91, "pulse", 1),
        ("pulse", 130.5, 131, "pulse", 3),
        ("temperature", 35.95, Decimal("36.0"), "temperature", 1),
        ("temperature", 36.05, Decimal("36.1"), "temperature", 0),
        ("temperature", 35.05, Decimal("35.1"), "temperature", 1),
        ("temperature", 35.04, Decimal("35.0"), "temperature", 3),
        ("temperature", 38.05, Decimal("38.1"), "temperature", 1),
        ("temperature", 39.05, Decimal("39.1"), "temperature", 2),
        ("temperature", 39.04, Decimal("39.0"), "temperature", 1),
    ],
)
def test_values_between_bands_round_half_up(
    field: str, sent: float, as_scored: int | Decimal, component: str, points: int
) -> None:
    result = scored(**{field: sent})
    assert getattr(result.scored_values, field) == as_scored
    assert getattr(result.parameter_scores, component) == points


def test_scored_values_have_the_chart_resolution() -> None:
    values = read_vital_signs(dataclasses.replace(NORMAL, temperature=37, pulse=70.0, systolic_bp=120.4))
    assert values.temperature == Decimal("37.0")
    assert str(values.temperature) == "37.0"
    assert values.pulse == 70 and isinstance(values.pulse, int)
    assert values.systolic_bp == 120 and isinstance(values.systolic_bp, int)


def test_scoring_refuses_values_that_were_not_rounded() -> None:
    rounded = read_vital_signs(NORMAL)
    with pytest.raises(TypeError):
        dataclasses.replace(rounded, temperature=Decimal("36.05"))
    with pytest.raises(TypeError):
        dataclasses.replace(rounded, pulse=70.4)


# --- The pitfalls news2.md pins ------------------------------------------------------------------


def test_pitfall_respiration_21_to_24_scores_2_never_1() -> None:
    for value in (21, 22, 23, 24):
        assert scored(respiratory_rate=value).parameter_scores.respiration_rate == 2


def test_pitfall_temperature_39_1_and_above_scores_2_not_3() -> None:
    for value in (39.1, 40.0, 42.5, 45.0):
        assert scored(temperature=value).parameter_scores.temperature == 2


def test_pitfall_systolic_220_and_above_scores_3() -> None:
    for value in (220, 250, 300):
        assert scored(systolic_bp=value).parameter_scores.systolic_bp == 3


def test_pitfall_scale_1_never_penalises_a_high_spo2_and_scores_oxygen_on_its_own_line() -> None:
    result = scored(spo2=100, spo2_scale=1, on_oxygen=True)
    assert result.parameter_scores.spo2 == 0
    assert result.parameter_scores.air_or_oxygen == 2
    assert result.total == 2


def test_pitfall_scale_2_at_or_below_92_is_the_same_on_air_and_oxygen() -> None:
    for value in range(50, 93):
        on_air = scored(spo2=value, spo2_scale=2, on_oxygen=False).parameter_scores.spo2
        on_oxygen = scored(spo2=value, spo2_scale=2, on_oxygen=True).parameter_scores.spo2
        assert on_air == on_oxygen, value


def test_pitfall_scale_2_at_93_and_above_scores_0_on_air() -> None:
    for value in range(93, 101):
        assert scored(spo2=value, spo2_scale=2, on_oxygen=False).parameter_scores.spo2 == 0


def test_pitfall_scale_2_at_97_on_oxygen_is_5_points() -> None:
    result = scored(spo2=97, spo2_scale=2, on_oxygen=True)
    assert result.parameter_scores.spo2 == 3
    assert result.parameter_scores.air_or_oxygen == 2
    assert result.total == 5


def test_pitfall_scale_1_is_the_default() -> None:
    # 88 % on air: scale 1 scores 3, scale 2 would score 0.
    result = scored(spo2=88, spo2_scale=0)
    assert result.scale is Spo2Scale.SCALE_1
    assert result.scored_values.spo2_scale is Spo2Scale.SCALE_1
    assert result.parameter_scores.spo2 == 3
    assert read_vital_signs(RawVitalSigns()).spo2_scale is Spo2Scale.SCALE_1


def test_pitfall_new_confusion_scores_3_like_voice_pain_and_unresponsive() -> None:
    result = scored(consciousness=Consciousness.NEW_CONFUSION)
    assert result.parameter_scores.consciousness == 3
    assert result.single_parameter_scored_3 is True
    assert result.risk_level is RiskLevel.LOW_MEDIUM


# Worked out by hand from Chart 1: the 3-point band of every row that has one, and oxygen (+2).
MAXIMAL_SCALE_1 = RawVitalSigns(
    respiratory_rate=8,  # ≤8 → 3
    spo2=91,  # scale 1 ≤91 → 3
    spo2_scale=1,
    on_oxygen=True,  # → 2
    systolic_bp=90,  # ≤90 → 3
    pulse=40,  # ≤40 → 3
    consciousness=Consciousness.UNRESPONSIVE,  # → 3
    temperature=35.0,  # ≤35.0 → 3 (the high side stops at 2)
)


@pytest.mark.parametrize(
    "raw",
    [
        pytest.param(MAXIMAL_SCALE_1, id="scale 1, low extremes"),
        pytest.param(
            dataclasses.replace(MAXIMAL_SCALE_1, respiratory_rate=80, systolic_bp=300, pulse=300, temperature=25.0),
            id="scale 1, plausibility extremes",
        ),
        pytest.param(dataclasses.replace(MAXIMAL_SCALE_1, spo2=83, spo2_scale=2), id="scale 2, ≤83 on oxygen"),
        pytest.param(dataclasses.replace(MAXIMAL_SCALE_1, spo2=97, spo2_scale=2), id="scale 2, ≥97 on oxygen"),
    ],
)
def test_pitfall_maximum_total_is_20(raw: RawVitalSigns) -> None:
    result = score(read_vital_signs(raw))
    assert result.parameter_scores.as_tuple() == (3, 3, 2, 3, 3, 3, 3)
    assert result.total == 20
    assert result.risk_level is RiskLevel.HIGH


def test_without_oxygen_the_maximum_is_18() -> None:
    assert score(read_vital_signs(dataclasses.replace(MAXIMAL_SCALE_1, on_oxygen=False))).total == 18


def test_pitfall_the_oxygen_line_is_never_the_single_3() -> None:
    result = scored(on_oxygen=True, respiratory_rate=22)  # 2 + 2
    assert result.parameter_scores.air_or_oxygen == 2
    assert result.total == 4
    assert result.single_parameter_scored_3 is False
    assert result.risk_level is RiskLevel.LOW
    assert result.monitoring is MonitoringFrequency.FOUR_TO_SIX_HOURLY


@pytest.mark.parametrize(
    ("field", "sent", "points"),
    [
        ("temperature", 35.9, 1),  # int() would make it 35 → 3
        ("temperature", 38.9, 1),  # int() would make it 38 → 0
        ("respiratory_rate", 24.9, 3),  # int() would make it 24 → 2
        ("pulse", 50.9, 0),  # int() would make it 50 → 1
        ("systolic_bp", 110.7, 0),  # int() would make it 110 → 1
    ],
)
def test_pitfall_no_int_truncation(field: str, sent: float, points: int) -> None:
    component = "respiration_rate" if field == "respiratory_rate" else field
    assert getattr(scored(**{field: sent}).parameter_scores, component) == points


def test_pitfall_no_gap_between_printed_bands() -> None:
    # 35.95 lies between the printed 35.1-36.0 and 36.1-38.0 bands: it is 36.0 as scored, so 1.
    assert scored(temperature=35.95).parameter_scores.temperature == 1
    # 11.5 lies between 9-11 and 12-20: 12 as scored, so 0.
    assert scored(respiratory_rate=11.5).parameter_scores.respiration_rate == 0


# --- Chart 2 and Chart 4: risk, monitoring, response ---------------------------------------------

HIGH_RESPONSE = "emergency assessment by a team with critical-care competencies; consider transfer to HDU/ICU"
MEDIUM_RESPONSE = "urgent assessment by a clinician competent in acute illness; monitored environment"
LOW_MEDIUM_RESPONSE = "registered nurse informs the medical team, who decide whether to escalate"
LOW_RESPONSE = "registered nurse assesses and decides on monitoring and escalation"
ZERO_RESPONSE = "continue routine monitoring"


@pytest.mark.parametrize(
    ("changes", "total", "single_3", "risk", "monitoring", "response"),
    [
        pytest.param({}, 0, False, RiskLevel.LOW, MonitoringFrequency.TWELVE_HOURLY, ZERO_RESPONSE, id="0"),
        pytest.param(
            {"temperature": 38.5}, 1, False, RiskLevel.LOW, MonitoringFrequency.FOUR_TO_SIX_HOURLY, LOW_RESPONSE,
            id="1",
        ),
        pytest.param(
            {"respiratory_rate": 22, "pulse": 115}, 4, False, RiskLevel.LOW, MonitoringFrequency.FOUR_TO_SIX_HOURLY,
            LOW_RESPONSE, id="4 without a 3",
        ),
        pytest.param(
            {"consciousness": Consciousness.VOICE}, 3, True, RiskLevel.LOW_MEDIUM, MonitoringFrequency.HOURLY,
            LOW_MEDIUM_RESPONSE, id="3 from a single 3",
        ),
        pytest.param(
            {"respiratory_rate": 25, "temperature": 38.5}, 4, True, RiskLevel.LOW_MEDIUM, MonitoringFrequency.HOURLY,
            LOW_MEDIUM_RESPONSE, id="4 with a 3",
        ),
        pytest.param(
            {"respiratory_rate": 22, "pulse": 115, "temperature": 38.5}, 5, False, RiskLevel.MEDIUM,
            MonitoringFrequency.HOURLY, MEDIUM_RESPONSE, id="5 without a 3",
        ),
        pytest.param(
            {"systolic_bp": 90, "respiratory_rate": 22}, 5, True, RiskLevel.MEDIUM, MonitoringFrequency.HOURLY,
            MEDIUM_RESPONSE, id="5 with a 3",
        ),
        pytest.param(
            {"respiratory_rate": 22, "pulse": 115, "on_oxygen": True}, 6, False, RiskLevel.MEDIUM,
            MonitoringFrequency.HOURLY, MEDIUM_RESPONSE, id="6",
        ),
        pytest.param(
            {"respiratory_rate": 22, "pulse": 115, "on_oxygen": True, "temperature": 38.5}, 7, False, RiskLevel.HIGH,
            MonitoringFrequency.CONTINUOUS, HIGH_RESPONSE, id="7 without a 3",
        ),
        pytest.param(
            {"consciousness": Consciousness.PAIN, "systolic_bp": 95, "respiratory_rate": 22}, 7, True, RiskLevel.HIGH,
            MonitoringFrequency.CONTINUOUS, HIGH_RESPONSE, id="7 with a 3",
        ),
    ],
)  # fmt: skip
def test_risk_monitoring_and_response(
    changes: dict, total: int, single_3: bool, risk: RiskLevel, monitoring: MonitoringFrequency, response: str
) -> None:
    result = scored(**changes)
    assert result.total == total
    assert result.single_parameter_scored_3 is single_3
    assert result.risk_level is risk
    assert result.monitoring is monitoring
    assert result.clinical_response == response


@pytest.mark.parametrize(
    ("total", "single_3", "expected"),
    [
        (0, False, RiskLevel.LOW),
        (1, False, RiskLevel.LOW),
        (4, False, RiskLevel.LOW),
        (3, True, RiskLevel.LOW_MEDIUM),
        (4, True, RiskLevel.LOW_MEDIUM),
        (5, False, RiskLevel.MEDIUM),
        (5, True, RiskLevel.MEDIUM),
        (6, False, RiskLevel.MEDIUM),
        (6, True, RiskLevel.MEDIUM),
        (7, False, RiskLevel.HIGH),
        (7, True, RiskLevel.HIGH),
        (20, True, RiskLevel.HIGH),
    ],
)
def test_risk_level_table(total: int, single_3: bool, expected: RiskLevel) -> None:
    assert risk_level(total, single_3) is expected


def test_enum_numbers_match_the_contract() -> None:
    assert [int(m) for m in Spo2Scale] == [1, 2]
    assert [(m.name, int(m)) for m in Consciousness] == [
        ("ALERT", 1),
        ("NEW_CONFUSION", 2),
        ("VOICE", 3),
        ("PAIN", 4),
        ("UNRESPONSIVE", 5),
    ]
    assert [(m.name, int(m)) for m in RiskLevel] == [("LOW", 1), ("LOW_MEDIUM", 2), ("MEDIUM", 3), ("HIGH", 4)]
    assert [(m.name, int(m)) for m in MonitoringFrequency] == [
        ("TWELVE_HOURLY", 1),
        ("FOUR_TO_SIX_HOURLY", 2),
        ("HOURLY", 3),
        ("CONTINUOUS", 4),
    ]


# --- Plausibility limits and other invalid input -------------------------------------------------

LIMITS = [
    ("respiratory_rate", 0, 80),
    ("spo2", 50, 100),
    ("systolic_bp", 40, 300),
    ("pulse", 20, 300),
    ("temperature", 25.0, 45.0),
]


@pytest.mark.parametrize(("field", "low", "high"), LIMITS)
def test_plausibility_limits_are_inclusive(field: str, low: float, high: float) -> None:
    for value in (low, high, float(low), float(high)):
        assert getattr(read_vital_signs(RawVitalSigns(**{field: value})), field) == value


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("respiratory_rate", -1),
        ("respiratory_rate", -0.01),
        ("respiratory_rate", 80.01),
        ("respiratory_rate", 80.4),  # would round to 80: the limit applies to the value as sent
        ("respiratory_rate", 81),
        ("spo2", 49.99),
        ("spo2", 49.5),
        ("spo2", 100.01),
        ("spo2", 100.4),
        ("spo2", 101),
        ("systolic_bp", 39.99),
        ("systolic_bp", 39),
        ("systolic_bp", 300.01),
        ("systolic_bp", 301),
        ("pulse", 19.99),
        ("pulse", 19),
        ("pulse", 300.01),
        ("pulse", 301),
        ("temperature", 24.99),
        ("temperature", 24.9),
        ("temperature", 45.01),
        ("temperature", 45.04),  # would round to 45.0
        ("temperature", 45.1),
        ("temperature", 10**400),
    ],
)
def test_values_just_outside_the_limits_are_rejected(field: str, value: float) -> None:
    found = violations(RawVitalSigns(**{field: value}), "vital_signs.")
    assert [f for f, _ in found] == [f"vital_signs.{field}"]
    assert "from" in found[0][1]


@pytest.mark.parametrize("field", [name for name, _, _ in LIMITS])
@pytest.mark.parametrize("value", [math.nan, math.inf, -math.inf])
def test_nan_and_infinities_are_rejected(field: str, value: float) -> None:
    assert violations(RawVitalSigns(**{field: value})) == [(field, "must be a finite number")]


@pytest.mark.parametrize("value", [3, -1, 99, True])
def test_unknown_spo2_scale_is_rejected(value: int) -> None:
    assert [f for f, _ in violations(RawVitalSigns(spo2_scale=value), "v.")] == ["v.spo2_scale"]


@pytest.mark.parametrize("value", [6, -1, 100, True])
def test_unknown_consciousness_is_rejected(value: int) -> None:
    assert [f for f, _ in violations(RawVitalSigns(consciousness=value), "v.")] == ["v.consciousness"]


@pytest.mark.parametrize("field", [name for name, _, _ in LIMITS])
def test_a_measurement_that_is_not_a_number_is_rejected(field: str) -> None:
    assert violations(RawVitalSigns(**{field: "36.5"})) == [(field, "must be a number")]


def test_on_oxygen_must_be_a_bool() -> None:
    assert [f for f, _ in violations(RawVitalSigns(on_oxygen=1))] == ["on_oxygen"]  # type: ignore[arg-type]


def test_every_problem_is_reported_at_once_with_its_field_name() -> None:
    raw = RawVitalSigns(
        respiratory_rate=math.nan,
        spo2=101,
        spo2_scale=7,
        on_oxygen=True,
        systolic_bp=39,
        pulse=70,
        consciousness=9,
        temperature=math.inf,
    )
    found = violations(raw, "vital_signs.")
    assert sorted(f for f, _ in found) == [
        "vital_signs.consciousness",
        "vital_signs.respiratory_rate",
        "vital_signs.spo2",
        "vital_signs.spo2_scale",
        "vital_signs.systolic_bp",
        "vital_signs.temperature",
    ]
    # Descriptions name the rule, never the patient's value.
    assert not any("101" in description or "39" in description for _, description in found)


def test_absent_values_are_not_an_error_when_reading() -> None:
    values = read_vital_signs(RawVitalSigns())
    assert values.missing_parameters() == PARAMETERS
    assert values.is_complete is False
    assert values.consciousness is None


# --- Incomplete sets -----------------------------------------------------------------------------


def test_missing_parameters_are_named_in_chart_order() -> None:
    values = read_vital_signs(dataclasses.replace(NORMAL, pulse=None, on_oxygen=None, consciousness=0))
    assert values.missing_parameters() == ("on_oxygen", "pulse", "consciousness")
    assert values.is_complete is False


def test_require_complete_names_every_missing_parameter() -> None:
    values = read_vital_signs(dataclasses.replace(NORMAL, temperature=None, respiratory_rate=None))
    with pytest.raises(InvalidArgument) as caught:
        require_complete(values, field_prefix="vital_signs.")
    assert [(v.field, v.description) for v in caught.value.violations] == [
        ("vital_signs.respiratory_rate", "required for a NEWS2 score"),
        ("vital_signs.temperature", "required for a NEWS2 score"),
    ]


def test_require_complete_accepts_a_complete_set() -> None:
    values = read_vital_signs(NORMAL)
    assert values.is_complete is True
    require_complete(values)


@pytest.mark.parametrize("parameter", PARAMETERS)
def test_an_incomplete_set_is_never_scored(parameter: str) -> None:
    absent = 0 if parameter == "consciousness" else None
    values = read_vital_signs(dataclasses.replace(NORMAL, **{parameter: absent}))
    with pytest.raises(InvalidArgument) as caught:
        score(values)
    assert [v.field for v in caught.value.violations] == [parameter]


def test_parameter_scores_tuple_is_in_chart_order() -> None:
    result = scored(
        respiratory_rate=25, spo2=92, on_oxygen=True, systolic_bp=105, pulse=115, consciousness=1, temperature=38.5
    )
    assert result.parameter_scores.as_tuple() == (3, 2, 2, 1, 2, 0, 1)
    assert result.total == 11


def test_vital_signs_construction_rejects_unknown_enum_members() -> None:
    values = read_vital_signs(NORMAL)
    with pytest.raises(TypeError):
        VitalSigns(**{**dataclasses.asdict(values), "consciousness": 2})


def test_the_domain_imports_neither_grpc_nor_sqlalchemy_nor_protobuf() -> None:
    code = (
        "import sys, services.news2.domain.scoring, services.news2.domain.trend, services.news2.domain.fhir\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] in {'grpc', 'sqlalchemy', 'fhir'}"
        " or m.startswith('google.protobuf')))"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "[]"
