"""NEWS2 scoring (RCP 2017, Charts 1, 2 and 4), exactly as `design/news2.md` prints it.

Values are validated and rounded half-up to the chart's resolution first (`read_vital_signs`), so
every band lookup below compares whole numbers (temperature: Decimal tenths) against the printed
band edges, lowest band first. Each lookup ends in an unconditional return: no value falls between
bands.
"""

from __future__ import annotations

import enum
import math
from dataclasses import dataclass, fields
from decimal import ROUND_HALF_UP, Decimal
from typing import TypeVar

from services.platform.errors import FieldViolation, InvalidArgument


class Spo2Scale(enum.IntEnum):
    SCALE_1 = 1
    SCALE_2 = 2


class Consciousness(enum.IntEnum):
    ALERT = 1
    NEW_CONFUSION = 2
    VOICE = 3
    PAIN = 4
    UNRESPONSIVE = 5


class RiskLevel(enum.IntEnum):
    LOW = 1
    LOW_MEDIUM = 2
    MEDIUM = 3
    HIGH = 4


class MonitoringFrequency(enum.IntEnum):
    TWELVE_HOURLY = 1
    FOUR_TO_SIX_HOURLY = 2
    HOURLY = 3
    CONTINUOUS = 4


PARAMETERS = ("respiratory_rate", "spo2", "on_oxygen", "systolic_bp", "pulse", "consciousness", "temperature")

_E = TypeVar("_E", bound=enum.IntEnum)
_WHOLE = Decimal(1)
_TENTH = Decimal("0.1")


@dataclass(frozen=True)
class _Measure:
    low: Decimal
    high: Decimal
    unit: str
    resolution: Decimal


# Plausibility limits (inclusive, on the value as sent) and chart resolution.
_MEASURES = {
    "respiratory_rate": _Measure(Decimal(0), Decimal(80), "/min", _WHOLE),
    "spo2": _Measure(Decimal(50), Decimal(100), "%", _WHOLE),
    "systolic_bp": _Measure(Decimal(40), Decimal(300), "mmHg", _WHOLE),
    "pulse": _Measure(Decimal(20), Decimal(300), "/min", _WHOLE),
    "temperature": _Measure(Decimal("25.0"), Decimal("45.0"), "°C", _TENTH),
}


@dataclass(frozen=True)
class RawVitalSigns:
    """Exactly what the caller sent; None (or 0 for the enums) means absent."""

    respiratory_rate: float | None = None
    spo2: float | None = None
    spo2_scale: int = 0  # 0 = unspecified → scale 1, the RCP default
    on_oxygen: bool | None = None
    systolic_bp: float | None = None
    pulse: float | None = None
    consciousness: int = 0
    temperature: float | None = None


@dataclass(frozen=True)
class VitalSigns:
    """Validated values, rounded to the chart's resolution: the values as scored."""

    respiratory_rate: int | None
    spo2: int | None
    spo2_scale: Spo2Scale
    on_oxygen: bool | None
    systolic_bp: int | None
    pulse: int | None
    consciousness: Consciousness | None
    temperature: Decimal | None  # one decimal place

    def __post_init__(self) -> None:
        # Guards the invariant that scoring relies on: values reach the bands already rounded.
        for name in ("respiratory_rate", "spo2", "systolic_bp", "pulse"):
            value = getattr(self, name)
            if value is not None and (isinstance(value, bool) or not isinstance(value, int)):
                raise TypeError(f"{name} must be a whole number as scored, got {type(value).__name__}")
        if self.temperature is not None and (
            not isinstance(self.temperature, Decimal)
            or not self.temperature.is_finite()
            or self.temperature != self.temperature.quantize(_TENTH)
        ):
            raise TypeError("temperature must be a Decimal with one decimal place")
        if not isinstance(self.spo2_scale, Spo2Scale):
            raise TypeError("spo2_scale must be a Spo2Scale")
        if self.consciousness is not None and not isinstance(self.consciousness, Consciousness):
            raise TypeError("consciousness must be a Consciousness")
        if self.on_oxygen is not None and not isinstance(self.on_oxygen, bool):
            raise TypeError("on_oxygen must be a bool")

    def missing_parameters(self) -> tuple[str, ...]:
        return tuple(name for name in PARAMETERS if getattr(self, name) is None)

    @property
    def is_complete(self) -> bool:
        return not self.missing_parameters()


def read_vital_signs(raw: RawVitalSigns, *, field_prefix: str = "") -> VitalSigns:
    """Validate and round what the caller sent. Reports every bad field at once; absent values are
    not an error here (see `require_complete`)."""
    violations: list[FieldViolation] = []

    def measure(name: str) -> Decimal | None:
        value = getattr(raw, name)
        if value is None:
            return None
        limits = _MEASURES[name]
        problem = _measure_problem(value, limits)
        if problem:
            violations.append(FieldViolation(field_prefix + name, problem))
            return None
        return _as_written(value).quantize(limits.resolution, rounding=ROUND_HALF_UP)

    def whole(name: str) -> int | None:
        value = measure(name)
        return None if value is None else int(value)

    def member(name: str, enum_cls: type[_E], description: str) -> _E | None:
        number = getattr(raw, name)
        if _is_int(number) and number == 0:
            return None
        try:
            if not _is_int(number):
                raise ValueError(number)
            return enum_cls(number)
        except ValueError:
            violations.append(FieldViolation(field_prefix + name, description))
            return None

    respiratory_rate = whole("respiratory_rate")
    spo2 = whole("spo2")
    scale = member("spo2_scale", Spo2Scale, "must be 1 or 2 (0 or absent means scale 1)") or Spo2Scale.SCALE_1
    if raw.on_oxygen is not None and not isinstance(raw.on_oxygen, bool):
        violations.append(FieldViolation(field_prefix + "on_oxygen", "must be true (oxygen) or false (air)"))
    systolic_bp = whole("systolic_bp")
    pulse = whole("pulse")
    consciousness = member("consciousness", Consciousness, "must be alert, new confusion, voice, pain or unresponsive")
    temperature = measure("temperature")
    if violations:
        raise InvalidArgument(violations)
    return VitalSigns(
        respiratory_rate=respiratory_rate,
        spo2=spo2,
        spo2_scale=scale,
        on_oxygen=raw.on_oxygen,
        systolic_bp=systolic_bp,
        pulse=pulse,
        consciousness=consciousness,
        temperature=temperature,
    )


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _measure_problem(value: object, limits: _Measure) -> str | None:
    if isinstance(value, float):
        if not math.isfinite(value):
            return "must be a finite number"
    elif not _is_int(value):
        return "must be a number"
    # Limits apply to the value as sent, before rounding: 80.4 /min is rejected, not scored as 80.
    if not limits.low <= _as_written(value) <= limits.high:  # type: ignore[arg-type]
        return f"must be from {limits.low} to {limits.high} {limits.unit}"
    return None


def _as_written(value: float) -> Decimal:
    """The decimal the caller wrote: repr gives the shortest text that round-trips, so 36.05 stays
    36.05 instead of the binary 36.04999…, and rounds half-up as a person would."""
    return Decimal(value) if _is_int(value) else Decimal(repr(value))


def require_complete(vital_signs: VitalSigns, *, field_prefix: str = "") -> None:
    missing = vital_signs.missing_parameters()
    if missing:
        raise InvalidArgument([FieldViolation(field_prefix + name, "required for a NEWS2 score") for name in missing])


@dataclass(frozen=True)
class ParameterScores:
    respiration_rate: int
    spo2: int
    air_or_oxygen: int
    systolic_bp: int
    pulse: int
    consciousness: int
    temperature: int

    def as_tuple(self) -> tuple[int, ...]:
        return tuple(getattr(self, field.name) for field in fields(self))


@dataclass(frozen=True)
class News2Score:
    total: int
    parameter_scores: ParameterScores
    risk_level: RiskLevel
    single_parameter_scored_3: bool
    scale: Spo2Scale
    scored_values: VitalSigns
    monitoring: MonitoringFrequency
    clinical_response: str


def score(vital_signs: VitalSigns) -> News2Score:
    """The NEWS2 score of a complete set. Raises InvalidArgument for an incomplete one: a gap is never
    filled with a normal value."""
    require_complete(vital_signs)
    v = vital_signs
    assert (
        v.respiratory_rate is not None
        and v.spo2 is not None
        and v.on_oxygen is not None
        and v.systolic_bp is not None
        and v.pulse is not None
        and v.consciousness is not None
        and v.temperature is not None
    )
    parameter_scores = ParameterScores(
        respiration_rate=_respiration_rate_score(v.respiratory_rate),
        spo2=_spo2_score(v.spo2, v.spo2_scale, on_oxygen=v.on_oxygen),
        air_or_oxygen=_air_or_oxygen_score(v.on_oxygen),
        systolic_bp=_systolic_bp_score(v.systolic_bp),
        pulse=_pulse_score(v.pulse),
        consciousness=_consciousness_score(v.consciousness),
        temperature=_temperature_score(v.temperature),
    )
    total = sum(parameter_scores.as_tuple())
    single_3 = 3 in parameter_scores.as_tuple()
    risk = risk_level(total, single_3)
    monitoring, response = _monitoring_and_response(risk, total)
    return News2Score(
        total=total,
        parameter_scores=parameter_scores,
        risk_level=risk,
        single_parameter_scored_3=single_3,
        scale=v.spo2_scale,
        scored_values=v,
        monitoring=monitoring,
        clinical_response=response,
    )


# Chart 1, one function per row. Inputs are already rounded to the chart's resolution.


def _respiration_rate_score(per_minute: int) -> int:
    if per_minute <= 8:
        return 3
    if per_minute <= 11:
        return 1
    if per_minute <= 20:
        return 0
    if per_minute <= 24:
        return 2  # no 1 on the high side
    return 3


def _spo2_score(percent: int, scale: Spo2Scale, *, on_oxygen: bool) -> int:
    if scale is Spo2Scale.SCALE_2:
        return _spo2_scale_2_score(percent, on_oxygen=on_oxygen)
    # Scale 1 never penalises a high saturation; oxygen is scored on its own line.
    if percent <= 91:
        return 3
    if percent <= 93:
        return 2
    if percent <= 95:
        return 1
    return 0


def _spo2_scale_2_score(percent: int, *, on_oxygen: bool) -> int:
    if percent <= 83:
        return 3
    if percent <= 85:
        return 2
    if percent <= 87:
        return 1
    if percent <= 92:
        return 0
    # From 93 % up the score depends on oxygen: 0 on air; on oxygen 1 / 2 / 3, on top of the +2
    # that the oxygen line adds.
    if not on_oxygen:
        return 0
    if percent <= 94:
        return 1
    if percent <= 96:
        return 2
    return 3


def _air_or_oxygen_score(on_oxygen: bool) -> int:
    return 2 if on_oxygen else 0


def _systolic_bp_score(mmhg: int) -> int:
    if mmhg <= 90:
        return 3
    if mmhg <= 100:
        return 2
    if mmhg <= 110:
        return 1
    if mmhg <= 219:
        return 0
    return 3


def _pulse_score(per_minute: int) -> int:
    if per_minute <= 40:
        return 3
    if per_minute <= 50:
        return 1
    if per_minute <= 90:
        return 0
    if per_minute <= 110:
        return 1
    if per_minute <= 130:
        return 2
    return 3


def _consciousness_score(level: Consciousness) -> int:
    # New confusion scores 3, like voice, pain and unresponsive.
    return 0 if level is Consciousness.ALERT else 3


def _temperature_score(celsius: Decimal) -> int:
    if celsius <= Decimal("35.0"):
        return 3
    if celsius <= Decimal("36.0"):
        return 1
    if celsius <= Decimal("38.0"):
        return 0
    if celsius <= Decimal("39.0"):
        return 1
    return 2  # ≥39.1 scores 2, not 3


# Charts 2 and 4, evaluated in the order news2.md prescribes.

_HIGH_RESPONSE = "emergency assessment by a team with critical-care competencies; consider transfer to HDU/ICU"
_MEDIUM_RESPONSE = "urgent assessment by a clinician competent in acute illness; monitored environment"
_LOW_MEDIUM_RESPONSE = "registered nurse informs the medical team, who decide whether to escalate"
_LOW_RESPONSE = "registered nurse assesses and decides on monitoring and escalation"
_ZERO_RESPONSE = "continue routine monitoring"


def risk_level(total: int, single_parameter_scored_3: bool) -> RiskLevel:
    if total >= 7:
        return RiskLevel.HIGH
    if total >= 5:
        return RiskLevel.MEDIUM
    if single_parameter_scored_3:
        return RiskLevel.LOW_MEDIUM
    return RiskLevel.LOW


def _monitoring_and_response(risk: RiskLevel, total: int) -> tuple[MonitoringFrequency, str]:
    if risk is RiskLevel.HIGH:
        return MonitoringFrequency.CONTINUOUS, _HIGH_RESPONSE
    if risk is RiskLevel.MEDIUM:
        return MonitoringFrequency.HOURLY, _MEDIUM_RESPONSE
    if risk is RiskLevel.LOW_MEDIUM:
        return MonitoringFrequency.HOURLY, _LOW_MEDIUM_RESPONSE
    # Low risk splits on the total: 1-4 and 0 have their own rows.
    if total >= 1:
        return MonitoringFrequency.FOUR_TO_SIX_HOURLY, _LOW_RESPONSE
    return MonitoringFrequency.TWELVE_HOURLY, _ZERO_RESPONSE
