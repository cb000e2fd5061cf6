"""How a NEWS2 score compares with the patient's previous one, and which alerts it raises."""

from __future__ import annotations

import enum
from dataclasses import dataclass

from services.news2.domain.scoring import News2Score, RiskLevel


class RiskChange(enum.IntEnum):
    UNCHANGED = 1
    ROSE = 2
    FELL = 3


class AlertReason(enum.IntEnum):
    MEDIUM_RISK = 1
    HIGH_RISK = 2
    SINGLE_PARAMETER_SCORED_3 = 3
    ROSE_BY_2_OR_MORE = 4
    # A late entry: this assessment was measured before another, which is 2 or more points above it.
    LATER_ASSESSMENT_ROSE_BY_2_OR_MORE = 5


@dataclass(frozen=True)
class Trend:
    previous_total: int
    total_delta: int
    previous_risk_level: RiskLevel
    risk_change: RiskChange


# Explicit, so that severity never silently follows a renumbering of the wire enum.
# A rise of this many points since the previous complete assessment alerts.
RISE_ALERT_POINTS = 2
_SEVERITY = {RiskLevel.LOW: 0, RiskLevel.LOW_MEDIUM: 1, RiskLevel.MEDIUM: 2, RiskLevel.HIGH: 3}


def trend(current: News2Score, previous: News2Score | None) -> Trend | None:
    """The change since the previous complete score; None when there is none to compare with."""
    if previous is None:
        return None
    now, before = _SEVERITY[current.risk_level], _SEVERITY[previous.risk_level]
    if now > before:
        change = RiskChange.ROSE
    elif now < before:
        change = RiskChange.FELL
    else:
        change = RiskChange.UNCHANGED
    return Trend(
        previous_total=previous.total,
        total_delta=current.total - previous.total,
        previous_risk_level=previous.risk_level,
        risk_change=change,
    )


def alert_reasons(current: News2Score, trend: Trend | None) -> tuple[AlertReason, ...]:
    reasons: list[AlertReason] = []
    if current.risk_level is RiskLevel.MEDIUM:
        reasons.append(AlertReason.MEDIUM_RISK)
    if current.risk_level is RiskLevel.HIGH:
        reasons.append(AlertReason.HIGH_RISK)
    if current.single_parameter_scored_3:
        reasons.append(AlertReason.SINGLE_PARAMETER_SCORED_3)
    if trend is not None and trend.total_delta >= RISE_ALERT_POINTS:
        reasons.append(AlertReason.ROSE_BY_2_OR_MORE)
    return tuple(reasons)
