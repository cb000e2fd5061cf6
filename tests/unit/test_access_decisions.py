"""Every access rule and every reason of `decide` / `decide_without_consent` (domain.md §3, issue 3, and the
README's feed rules: a feed needs the samhandling:feed scope, a care purpose other than BTG, and reads only).

Expected outcomes come from the rules, written out per row; nothing here is computed by the code under test."""

from __future__ import annotations

from dataclasses import dataclass, replace

import pytest

from services.access.domain.decisions import (
    AccessQuery,
    Action,
    ConsentState,
    DataKind,
    Decision,
    Reason,
    decide,
    decide_without_consent,
)
from services.platform.principal import CITIZEN_SCOPE, FEED_SCOPE, Attestation, Principal

BODO, BAERUM = "1804", "3201"
BODO_ORG, BAERUM_ORG, UNKNOWN_ORG = "972418013", "935478715", "123456785"
PATIENT, OTHER_PATIENT = "17057549955", "01019012480"
HPR, OTHER_HPR = "565501872", "565505933"

OVERVIEW, VITALS = DataKind.SERVICES_OVERVIEW, DataKind.VITAL_SIGNS
READ, WRITE = Action.READ, Action.WRITE

NOT_OBJECTED = ConsentState()
OBJECTED = ConsentState(objected=True)
BLOCKED = ConsentState(blocked_hpr_numbers=frozenset({HPR}))
OTHER_BLOCKED = ConsentState(blocked_hpr_numbers=frozenset({OTHER_HPR}))
BLOCKED_AND_OBJECTED = ConsentState(objected=True, blocked_hpr_numbers=frozenset({HPR}))
OTHER_BLOCKED_AND_OBJECTED = ConsentState(objected=True, blocked_hpr_numbers=frozenset({OTHER_HPR}))

UNSET = object()


def clinician(
    *,
    purpose: str | None = "TREAT",
    patients: tuple[str, ...] = (PATIENT,),
    tenant: str | None = BODO,
    organisation: str = BODO_ORG,
    hpr: str | None = HPR,
    attestation: object = UNSET,
    scopes: frozenset[str] = frozenset(),
    citizen: bool = False,
) -> Principal:
    return Principal(
        subject="clinician-1",
        client_id="ehr-vendor",
        organisation_number=organisation,
        unit_organisation_number=None,
        tenant=tenant,
        hpr_number=hpr,
        person_id=PATIENT if citizen else "13116900216",
        is_citizen=citizen,
        attestation=(
            Attestation(purpose_of_use=purpose, patient_ids=patients, decision_ref="ref-1")
            if attestation is UNSET
            else attestation  # type: ignore[arg-type]
        ),
        token_id="jti-1",
        scopes=scopes | ({CITIZEN_SCOPE} if citizen else frozenset()),
    )


def feeder(
    *, purpose: str | None = "TREAT", hpr: str | None = None, patients: tuple[str, ...] = (), **changes: object
) -> Principal:
    """A system following the tenant's feeds: the feed scope, by default an attestation naming no patient."""
    return clinician(purpose=purpose, patients=patients, hpr=hpr, scopes=frozenset({FEED_SCOPE}), **changes)  # type: ignore[arg-type]


def query(
    caller: Principal,
    *,
    tenant: str = BODO,
    patient: str = PATIENT,
    kind: DataKind = VITALS,
    action: Action = READ,
    feed: bool = False,
) -> AccessQuery:
    return AccessQuery(caller=caller, tenant=tenant, patient_id=patient, data_kind=kind, action=action, feed=feed)


ALLOWED = Decision(True)
ALLOWED_BTG = Decision(True, break_the_glass=True)
ALLOWED_BTG_OVER_OBJECTION = Decision(True, break_the_glass=True, overrode_objection=True)


def denied(reason: Reason, *, btg: bool = False) -> Decision:
    return Decision(False, reason, break_the_glass=btg)


@dataclass(frozen=True)
class Case:
    id: str
    query: AccessQuery
    consent: ConsentState
    expected: Decision


CASES = [
    # --- allowed, ordinary purposes ---
    *[
        Case(
            f"{purpose}-{kind.name}-{action.name}-allowed",
            query(clinician(purpose=purpose), kind=kind, action=action),
            NOT_OBJECTED,
            ALLOWED,
        )
        for purpose in ("TREAT", "ETREAT")
        for kind in (OVERVIEW, VITALS)
        for action in (READ, WRITE)
    ],
    Case("COC-overview-read-allowed", query(clinician(purpose="COC"), kind=OVERVIEW), NOT_OBJECTED, ALLOWED),
    Case(
        "COC-overview-write-allowed",
        query(clinician(purpose="COC"), kind=OVERVIEW, action=WRITE),
        NOT_OBJECTED,
        ALLOWED,
    ),
    Case(
        "patient-among-several-in-attestation",
        query(clinician(patients=(OTHER_PATIENT, PATIENT))),
        NOT_OBJECTED,
        ALLOWED,
    ),
    # --- TENANT_MISMATCH ---
    Case(
        "other-tenant",
        query(clinician(tenant=BAERUM, organisation=BAERUM_ORG)),
        NOT_OBJECTED,
        denied(Reason.TENANT_MISMATCH),
    ),
    Case(
        "unknown-org-tenant-none",
        query(clinician(tenant=None, organisation=UNKNOWN_ORG)),
        NOT_OBJECTED,
        denied(Reason.TENANT_MISMATCH),
    ),
    Case(
        "other-tenant-btg-flagged",
        query(clinician(tenant=BAERUM, organisation=BAERUM_ORG, purpose="BTG")),
        NOT_OBJECTED,
        denied(Reason.TENANT_MISMATCH, btg=True),
    ),
    Case(
        "bodo-caller-asks-baerum-tenant",
        query(clinician(), tenant=BAERUM),
        NOT_OBJECTED,
        denied(Reason.TENANT_MISMATCH),
    ),
    # --- PATIENT_NOT_IN_ATTESTATION ---
    Case("no-attestation", query(clinician(attestation=None)), NOT_OBJECTED, denied(Reason.PATIENT_NOT_IN_ATTESTATION)),
    Case(
        "other-patient",
        query(clinician(patients=(OTHER_PATIENT,))),
        NOT_OBJECTED,
        denied(Reason.PATIENT_NOT_IN_ATTESTATION),
    ),
    Case("no-patients", query(clinician(patients=())), NOT_OBJECTED, denied(Reason.PATIENT_NOT_IN_ATTESTATION)),
    Case(
        "other-patient-btg",
        query(clinician(purpose="BTG", patients=(OTHER_PATIENT,))),
        NOT_OBJECTED,
        denied(Reason.PATIENT_NOT_IN_ATTESTATION, btg=True),
    ),
    Case(
        "patient-id-prefix-is-not-the-patient",
        query(clinician(patients=(PATIENT[:-1],))),
        NOT_OBJECTED,
        denied(Reason.PATIENT_NOT_IN_ATTESTATION),
    ),
    # --- PURPOSE_NOT_ALLOWED ---
    Case("unknown-purpose", query(clinician(purpose="RESEARCH")), NOT_OBJECTED, denied(Reason.PURPOSE_NOT_ALLOWED)),
    Case("lowercase-purpose", query(clinician(purpose="treat")), NOT_OBJECTED, denied(Reason.PURPOSE_NOT_ALLOWED)),
    Case("none-purpose", query(clinician(purpose=None)), NOT_OBJECTED, denied(Reason.PURPOSE_NOT_ALLOWED)),
    Case(
        "none-purpose-overview",
        query(clinician(purpose=None), kind=OVERVIEW),
        NOT_OBJECTED,
        denied(Reason.PURPOSE_NOT_ALLOWED),
    ),
    Case(
        "COC-vitals-read",
        query(clinician(purpose="COC"), kind=VITALS, action=READ),
        NOT_OBJECTED,
        denied(Reason.PURPOSE_NOT_ALLOWED),
    ),
    Case(
        "COC-vitals-write",
        query(clinician(purpose="COC"), kind=VITALS, action=WRITE),
        NOT_OBJECTED,
        denied(Reason.PURPOSE_NOT_ALLOWED),
    ),
    # --- PRACTITIONER_BLOCKED ---
    Case("blocked", query(clinician()), BLOCKED, denied(Reason.PRACTITIONER_BLOCKED)),
    Case(
        "blocked-overview-write",
        query(clinician(), kind=OVERVIEW, action=WRITE),
        BLOCKED,
        denied(Reason.PRACTITIONER_BLOCKED),
    ),
    Case("blocked-under-btg", query(clinician(purpose="BTG")), BLOCKED, denied(Reason.PRACTITIONER_BLOCKED, btg=True)),
    Case(
        "blocked-under-btg-and-objected",
        query(clinician(purpose="BTG")),
        BLOCKED_AND_OBJECTED,
        denied(Reason.PRACTITIONER_BLOCKED, btg=True),
    ),
    Case("different-hpr-blocked", query(clinician()), OTHER_BLOCKED, ALLOWED),
    Case("different-hpr-blocked-btg", query(clinician(purpose="BTG")), OTHER_BLOCKED, ALLOWED_BTG),
    Case("token-without-hpr-not-blocked", query(clinician(hpr=None)), BLOCKED, ALLOWED),
    # --- PATIENT_OBJECTED ---
    *[
        Case(
            f"objected-{purpose}-{kind.name}",
            query(clinician(purpose=purpose), kind=kind),
            OBJECTED,
            denied(Reason.PATIENT_OBJECTED),
        )
        for purpose, kind in (("TREAT", VITALS), ("ETREAT", VITALS), ("COC", OVERVIEW), ("TREAT", OVERVIEW))
    ],
    Case("objected-write", query(clinician(), action=WRITE), OBJECTED, denied(Reason.PATIENT_OBJECTED)),
    Case("objected-other-hpr-blocked", query(clinician()), OTHER_BLOCKED_AND_OBJECTED, denied(Reason.PATIENT_OBJECTED)),
    Case("objected-btg-overrides", query(clinician(purpose="BTG")), OBJECTED, ALLOWED_BTG_OVER_OBJECTION),
    Case(
        "objected-btg-overrides-overview",
        query(clinician(purpose="BTG"), kind=OVERVIEW),
        OBJECTED,
        ALLOWED_BTG_OVER_OBJECTION,
    ),
    Case(
        "objected-btg-overrides-other-hpr-blocked",
        query(clinician(purpose="BTG")),
        OTHER_BLOCKED_AND_OBJECTED,
        ALLOWED_BTG_OVER_OBJECTION,
    ),
    # --- not a clinical access: a patient's own token; break the glass without a named clinician ---
    Case(
        "citizen-own-token", query(clinician(citizen=True, hpr=None)), NOT_OBJECTED, denied(Reason.PURPOSE_NOT_ALLOWED)
    ),
    Case(
        "citizen-own-token-overview",
        query(clinician(citizen=True, hpr=None), kind=OVERVIEW),
        NOT_OBJECTED,
        denied(Reason.PURPOSE_NOT_ALLOWED),
    ),
    Case(
        "citizen-own-token-btg",
        query(clinician(citizen=True, hpr=None, purpose="BTG")),
        NOT_OBJECTED,
        denied(Reason.PURPOSE_NOT_ALLOWED, btg=True),
    ),
    Case(
        "btg-without-hpr",
        query(clinician(purpose="BTG", hpr=None)),
        NOT_OBJECTED,
        denied(Reason.PURPOSE_NOT_ALLOWED, btg=True),
    ),
    Case(
        "btg-without-hpr-objected",
        query(clinician(purpose="BTG", hpr=None)),
        BLOCKED_AND_OBJECTED,
        denied(Reason.PURPOSE_NOT_ALLOWED, btg=True),
    ),
    Case("system-token-without-hpr-treat", query(clinician(hpr=None)), NOT_OBJECTED, ALLOWED),
    # --- BTG without objection ---
    Case("btg-vitals-read", query(clinician(purpose="BTG")), NOT_OBJECTED, ALLOWED_BTG),
    Case("btg-vitals-write", query(clinician(purpose="BTG"), action=WRITE), NOT_OBJECTED, ALLOWED_BTG),
    Case("btg-overview-read", query(clinician(purpose="BTG"), kind=OVERVIEW), NOT_OBJECTED, ALLOWED_BTG),
    # --- order of checks ---
    Case(
        "tenant-wins-over-everything",
        query(clinician(tenant=BAERUM, organisation=BAERUM_ORG, purpose="COC", patients=(OTHER_PATIENT,))),
        BLOCKED_AND_OBJECTED,
        denied(Reason.TENANT_MISMATCH),
    ),
    Case(
        "tenant-wins-over-missing-attestation",
        query(clinician(tenant=None, attestation=None)),
        BLOCKED_AND_OBJECTED,
        denied(Reason.TENANT_MISMATCH),
    ),
    Case(
        "attestation-wins-over-purpose",
        query(clinician(purpose="COC", patients=(OTHER_PATIENT,))),
        BLOCKED_AND_OBJECTED,
        denied(Reason.PATIENT_NOT_IN_ATTESTATION),
    ),
    Case(
        "purpose-wins-over-block",
        query(clinician(purpose="COC")),
        BLOCKED_AND_OBJECTED,
        denied(Reason.PURPOSE_NOT_ALLOWED),
    ),
    Case("block-wins-over-objection", query(clinician()), BLOCKED_AND_OBJECTED, denied(Reason.PRACTITIONER_BLOCKED)),
    # --- feed ---
    Case("feed-patient-not-in-attestation-allowed", query(feeder(), feed=True), NOT_OBJECTED, ALLOWED),
    Case(
        "feed-other-patient-in-attestation-allowed",
        query(feeder(patients=(OTHER_PATIENT,)), kind=OVERVIEW, feed=True),
        NOT_OBJECTED,
        ALLOWED,
    ),
    Case("feed-ETREAT-vitals-allowed", query(feeder(purpose="ETREAT"), feed=True), NOT_OBJECTED, ALLOWED),
    Case("feed-COC-overview-allowed", query(feeder(purpose="COC"), kind=OVERVIEW, feed=True), NOT_OBJECTED, ALLOWED),
    Case("feed-with-hpr-allowed", query(feeder(hpr=HPR), feed=True), NOT_OBJECTED, ALLOWED),
    Case("feed-without-feed-scope", query(clinician(), feed=True), NOT_OBJECTED, denied(Reason.FEED_NOT_ALLOWED)),
    Case(
        "feed-without-feed-scope-overview",
        query(clinician(), kind=OVERVIEW, feed=True),
        NOT_OBJECTED,
        denied(Reason.FEED_NOT_ALLOWED),
    ),
    Case(
        "feed-citizen-with-feed-scope",
        query(feeder(citizen=True), feed=True),
        NOT_OBJECTED,
        denied(Reason.FEED_NOT_ALLOWED),
    ),
    Case(
        "feed-COC-vitals-denied", query(feeder(purpose="COC"), feed=True), NOT_OBJECTED, denied(Reason.FEED_NOT_ALLOWED)
    ),
    Case(
        "feed-unknown-purpose",
        query(feeder(purpose="RESEARCH"), kind=OVERVIEW, feed=True),
        NOT_OBJECTED,
        denied(Reason.FEED_NOT_ALLOWED),
    ),
    Case(
        "feed-none-purpose",
        query(feeder(purpose=None), kind=OVERVIEW, feed=True),
        NOT_OBJECTED,
        denied(Reason.FEED_NOT_ALLOWED),
    ),
    Case(
        "feed-no-attestation", query(feeder(attestation=None), feed=True), NOT_OBJECTED, denied(Reason.FEED_NOT_ALLOWED)
    ),
    Case(
        "feed-other-tenant",
        query(feeder(tenant=BAERUM, organisation=BAERUM_ORG), feed=True),
        NOT_OBJECTED,
        denied(Reason.TENANT_MISMATCH),
    ),
    Case(
        "feed-tenant-wins-over-feed-rules",
        query(clinician(tenant=None, purpose="BTG"), action=WRITE, feed=True),
        NOT_OBJECTED,
        denied(Reason.TENANT_MISMATCH, btg=True),
    ),
    Case(
        "feed-btg-denied",
        query(feeder(purpose="BTG", hpr=HPR), feed=True),
        NOT_OBJECTED,
        denied(Reason.FEED_NOT_ALLOWED, btg=True),
    ),
    Case(
        "feed-btg-denied-overview-objected",
        query(feeder(purpose="BTG", hpr=HPR), kind=OVERVIEW, feed=True),
        OBJECTED,
        denied(Reason.FEED_NOT_ALLOWED, btg=True),
    ),
    Case("feed-write-denied", query(feeder(), action=WRITE, feed=True), NOT_OBJECTED, denied(Reason.FEED_NOT_ALLOWED)),
    Case(
        "feed-write-overview-denied",
        query(feeder(), kind=OVERVIEW, action=WRITE, feed=True),
        NOT_OBJECTED,
        denied(Reason.FEED_NOT_ALLOWED),
    ),
    Case("feed-objection-holds", query(feeder(), feed=True), OBJECTED, denied(Reason.PATIENT_OBJECTED)),
    Case(
        "feed-objection-holds-overview",
        query(feeder(purpose="COC"), kind=OVERVIEW, feed=True),
        OBJECTED,
        denied(Reason.PATIENT_OBJECTED),
    ),
    Case("feed-block-holds", query(feeder(hpr=HPR), feed=True), BLOCKED, denied(Reason.PRACTITIONER_BLOCKED)),
    Case(
        "feed-block-wins-over-objection",
        query(feeder(hpr=HPR), feed=True),
        BLOCKED_AND_OBJECTED,
        denied(Reason.PRACTITIONER_BLOCKED),
    ),
    Case("feed-without-hpr-not-blocked", query(feeder(), feed=True), BLOCKED, ALLOWED),
]


@pytest.mark.parametrize("case", CASES, ids=[case.id for case in CASES])
def test_decide(case: Case) -> None:
    assert decide(case.query, case.consent) == case.expected


@pytest.mark.parametrize("case", CASES, ids=[case.id for case in CASES])
def test_follow_up_exactly_when_break_the_glass(case: Case) -> None:
    decision = decide(case.query, case.consent)
    assert decision.follow_up is (case.query.purpose_of_use == "BTG")


# The reasons decide_without_consent gives on its own: everything before the patient's own decisions.
EARLY_REASONS = {
    Reason.TENANT_MISMATCH,
    Reason.PATIENT_NOT_IN_ATTESTATION,
    Reason.PURPOSE_NOT_ALLOWED,
    Reason.FEED_NOT_ALLOWED,
}


@pytest.mark.parametrize("case", CASES, ids=[case.id for case in CASES])
def test_decide_without_consent(case: Case) -> None:
    early = decide_without_consent(case.query)
    if not case.expected.allowed and case.expected.reason in EARLY_REASONS:
        assert early == case.expected
    else:
        assert early is None


def test_every_reason_is_covered() -> None:
    assert {case.expected.reason for case in CASES if not case.expected.allowed} == set(Reason)


def test_objection_denial_is_not_flagged_for_follow_up() -> None:
    decision = decide(query(clinician()), OBJECTED)
    assert (decision.allowed, decision.break_the_glass, decision.follow_up, decision.overrode_objection) == (
        False,
        False,
        False,
        False,
    )


def test_btg_over_objection_flags() -> None:
    decision = decide(query(clinician(purpose="BTG")), OBJECTED)
    assert decision.allowed
    assert decision.overrode_objection is True
    assert decision.follow_up is True


def test_btg_without_objection_does_not_claim_override() -> None:
    decision = decide(query(clinician(purpose="BTG")), NOT_OBJECTED)
    assert decision.allowed
    assert decision.overrode_objection is False
    assert decision.follow_up is True


def test_denied_btg_still_goes_to_follow_up() -> None:
    decision = decide(query(clinician(purpose="BTG")), BLOCKED)
    assert not decision.allowed
    assert decision.follow_up is True


def test_query_purpose_of_use() -> None:
    assert query(clinician(purpose="ETREAT")).purpose_of_use == "ETREAT"
    assert query(clinician(attestation=None)).purpose_of_use is None


def test_decision_does_not_depend_on_other_principal_fields() -> None:
    base = clinician()
    variant = replace(base, subject="someone-else", client_id="other-ehr", unit_organisation_number="974795361")
    assert decide(query(variant), NOT_OBJECTED) == ALLOWED
    assert decide(query(variant), BLOCKED) == denied(Reason.PRACTITIONER_BLOCKED)
