"""The access rules of phase 1 (one municipality), as pure functions of who asks, for what, and what
the patient has decided. See ../shared/design/domain.md §3 and the access issue."""

from __future__ import annotations

import enum
from dataclasses import dataclass

from services.platform.principal import Principal


class DataKind(enum.IntEnum):
    # Numbers equal the protobuf enum numbers.
    SERVICES_OVERVIEW = 1
    VITAL_SIGNS = 2
    CONSENT = 3


class Action(enum.IntEnum):
    READ = 1
    WRITE = 2


class Reason(enum.StrEnum):
    TENANT_MISMATCH = "TENANT_MISMATCH"
    PATIENT_NOT_IN_ATTESTATION = "PATIENT_NOT_IN_ATTESTATION"
    PURPOSE_NOT_ALLOWED = "PURPOSE_NOT_ALLOWED"
    PRACTITIONER_BLOCKED = "PRACTITIONER_BLOCKED"
    PATIENT_OBJECTED = "PATIENT_OBJECTED"
    FEED_NOT_ALLOWED = "FEED_NOT_ALLOWED"


BREAK_THE_GLASS = "BTG"
# Purposes that may reach each kind of data. COC (coordination, not direct care) may read the services
# overview but not vital signs: our choice, domain.md §3.
ALLOWED_PURPOSES = {
    DataKind.SERVICES_OVERVIEW: frozenset({"TREAT", "ETREAT", "COC", BREAK_THE_GLASS}),
    DataKind.VITAL_SIGNS: frozenset({"TREAT", "ETREAT", BREAK_THE_GLASS}),
}

MESSAGES = {
    Reason.TENANT_MISMATCH: "the caller's organisation does not belong to this municipality",
    Reason.PATIENT_NOT_IN_ATTESTATION: "the token's trust-framework attestation does not name this patient",
    Reason.PURPOSE_NOT_ALLOWED: "the attested purpose of use does not allow this kind of data",
    Reason.PRACTITIONER_BLOCKED: "the patient has blocked this clinician",
    Reason.PATIENT_OBJECTED: "the patient has objected to sharing; only break the glass may override it",
    Reason.FEED_NOT_ALLOWED: "following a feed needs a system token with the samhandling:feed scope, a care "
    "purpose other than BTG, and reads only",
}


@dataclass(frozen=True)
class AccessQuery:
    """One request for a decision: the caller, the tenant whose data is asked for, and what."""

    caller: Principal
    tenant: str
    patient_id: str
    data_kind: DataKind
    action: Action
    # Following the tenant's feed rather than reading a patient the caller has open.
    feed: bool = False

    @property
    def purpose_of_use(self) -> str | None:
        return self.caller.attestation.purpose_of_use if self.caller.attestation else None


@dataclass(frozen=True)
class ConsentState:
    """What the patient has decided, as far as one decision needs it."""

    objected: bool = False
    blocked_hpr_numbers: frozenset[str] = frozenset()


@dataclass(frozen=True)
class Decision:
    allowed: bool
    reason: Reason | None = None
    break_the_glass: bool = False
    # Allowed only because break the glass overrode the patient's objection.
    overrode_objection: bool = False

    @property
    def follow_up(self) -> bool:
        """Every break-the-glass decision goes to the privacy officer, allowed or not."""
        return self.break_the_glass


def decide_without_consent(query: AccessQuery) -> Decision | None:
    """The denials that need nothing from the database, or None when consent decides."""
    caller, btg = query.caller, query.purpose_of_use == BREAK_THE_GLASS
    if caller.tenant is None or caller.tenant != query.tenant:
        return Decision(False, Reason.TENANT_MISMATCH, break_the_glass=btg)
    if query.feed:
        return _feed_denial(query)
    attestation = caller.attestation
    if attestation is None or query.patient_id not in attestation.patient_ids:
        return Decision(False, Reason.PATIENT_NOT_IN_ATTESTATION, break_the_glass=btg)
    if attestation.purpose_of_use not in ALLOWED_PURPOSES.get(query.data_kind, frozenset()):
        return Decision(False, Reason.PURPOSE_NOT_ALLOWED, break_the_glass=btg)
    if caller.is_citizen or (btg and caller.hpr_number is None):
        # A patient's own token is not a clinical access; break the glass is a named clinician's act.
        return Decision(False, Reason.PURPOSE_NOT_ALLOWED, break_the_glass=btg)
    return None


def _feed_denial(query: AccessQuery) -> Decision | None:
    """A feed delivers one patient's item after another to a system that has none of them open, so it
    needs its own scope, a care purpose, and never break the glass (that is for one patient in front
    of a clinician)."""
    caller, purpose = query.caller, query.purpose_of_use
    allowed = ALLOWED_PURPOSES.get(query.data_kind, frozenset()) - {BREAK_THE_GLASS}
    if not caller.may_follow_feeds or purpose not in allowed or query.action is not Action.READ:
        return Decision(False, Reason.FEED_NOT_ALLOWED, break_the_glass=purpose == BREAK_THE_GLASS)
    return None


def decide(query: AccessQuery, consent: ConsentState) -> Decision:
    early = decide_without_consent(query)
    if early is not None:
        return early
    btg = query.purpose_of_use == BREAK_THE_GLASS
    hpr_number = query.caller.hpr_number
    if hpr_number is not None and hpr_number in consent.blocked_hpr_numbers:
        return Decision(False, Reason.PRACTITIONER_BLOCKED, break_the_glass=btg)
    if consent.objected and not btg:
        return Decision(False, Reason.PATIENT_OBJECTED)
    return Decision(True, break_the_glass=btg, overrode_objection=consent.objected and btg)
