"""Who may change and read a patient's consent and access log (issue 3, domain.md §3)."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime

import pytest

from services.access.domain.access_log import Actor, ConsentChange
from services.access.domain.consent import (
    RegisteredBy,
    Registration,
    registration_for,
    require_consent_reader,
    require_log_reader,
    require_privacy_officer,
)
from services.platform.errors import InvalidArgument, PermissionDenied
from services.platform.principal import PRIVACY_OFFICER_SCOPE, Attestation, Principal

BODO, BAERUM = "1804", "3201"
BODO_ORG, BAERUM_ORG, UNKNOWN_ORG = "972418013", "935478715", "123456785"
UNIT_ORG = "974795361"
PATIENT, OTHER_PATIENT = "17057549955", "01019012480"
HPR = "565501872"
NOW = datetime(2025, 3, 4, 10, 15, 30, 123456, tzinfo=UTC)
REQUEST = "Journal note 2025-03-04, telephone call from the patient"


def citizen(person_id: str | None = PATIENT, *, tenant: str | None = BODO) -> Principal:
    return Principal(
        subject="citizen-1",
        client_id="citizen-portal",
        organisation_number=BODO_ORG,
        unit_organisation_number=None,
        tenant=tenant,
        hpr_number=None,
        person_id=person_id,
        is_citizen=True,
        attestation=None,
        token_id="jti-citizen",
        name="Kari Nordmann",
        scopes=frozenset({"samhandling:citizen"}),
    )


def clinician(
    *,
    patients: tuple[str, ...] = (PATIENT,),
    hpr: str | None = HPR,
    tenant: str | None = BODO,
    organisation: str = BODO_ORG,
    attested: bool = True,
    scopes: frozenset[str] = frozenset(),
) -> Principal:
    return Principal(
        subject="clinician-1",
        client_id="ehr-vendor",
        organisation_number=organisation,
        unit_organisation_number=UNIT_ORG,
        tenant=tenant,
        hpr_number=hpr,
        person_id="13116900216",
        is_citizen=False,
        attestation=Attestation(purpose_of_use="TREAT", patient_ids=patients) if attested else None,
        token_id="jti-clinician",
        name="Lege Legesen",
        scopes=scopes,
    )


def privacy_officer(*, tenant: str | None = BODO) -> Principal:
    return replace(
        clinician(hpr=None, attested=False, tenant=tenant), subject="po-1", scopes=frozenset({PRIVACY_OFFICER_SCOPE})
    )


def denied_reason(call) -> str:
    with pytest.raises(PermissionDenied) as raised:
        call()
    return raised.value.reason


def invalid_fields(call) -> list[str]:
    with pytest.raises(InvalidArgument) as raised:
        call()
    return [violation.field for violation in raised.value.violations]


# --- registration_for ---

ALL_CHANGES = list(ConsentChange)
RESTRICTING = [ConsentChange.OBJECTION_REGISTERED, ConsentChange.PRACTITIONER_BLOCKED]
LIFTING = [ConsentChange.OBJECTION_WITHDRAWN, ConsentChange.PRACTITIONER_UNBLOCKED]
BLOCK = ConsentChange.PRACTITIONER_BLOCKED

CLINICIAN_ACTOR = Actor(
    hpr_number=HPR,
    name="Lege Legesen",
    organisation_number=BODO_ORG,
    unit_organisation_number=UNIT_ORG,
    client_id="ehr-vendor",
    is_patient=False,
)


def test_change_kinds() -> None:
    assert set(ALL_CHANGES) == {*RESTRICTING, *LIFTING}


@pytest.mark.parametrize("change", ALL_CHANGES, ids=[change.name for change in ALL_CHANGES])
def test_citizen_registers_for_themself(change: ConsentChange) -> None:
    registration = registration_for(citizen(), BODO, PATIENT, "", change, NOW)
    assert registration == Registration(
        registered_at=NOW,
        registered_by=RegisteredBy.PATIENT,
        actor=Actor(
            hpr_number=None,
            name="Kari Nordmann",
            organisation_number=BODO_ORG,
            unit_organisation_number=None,
            client_id="citizen-portal",
            is_patient=True,
        ),
        documented_request=None,
    )


def test_citizen_documented_request_is_not_recorded() -> None:
    # The patient acts for themself: there is no request to document.
    assert registration_for(citizen(), BODO, PATIENT, "some text", BLOCK, NOW).documented_request is None


@pytest.mark.parametrize("change", ALL_CHANGES, ids=[change.name for change in ALL_CHANGES])
def test_citizen_for_other_patient(change: ConsentChange) -> None:
    call = lambda: registration_for(citizen(), BODO, OTHER_PATIENT, "", change, NOW)  # noqa: E731
    assert denied_reason(call) == "NOT_THE_PATIENT"


def test_citizen_for_other_patient_with_a_documented_request() -> None:
    call = lambda: registration_for(citizen(), BODO, OTHER_PATIENT, REQUEST, BLOCK, NOW)  # noqa: E731
    assert denied_reason(call) == "NOT_THE_PATIENT"


def test_citizen_without_person_id() -> None:
    assert denied_reason(lambda: registration_for(citizen(None), BODO, PATIENT, "", BLOCK, NOW)) == "NOT_THE_PATIENT"


def test_citizen_other_tenant() -> None:
    assert denied_reason(lambda: registration_for(citizen(), BAERUM, PATIENT, "", BLOCK, NOW)) == "TENANT_MISMATCH"


def test_citizen_unknown_tenant() -> None:
    call = lambda: registration_for(citizen(tenant=None), BODO, PATIENT, "", BLOCK, NOW)  # noqa: E731
    assert denied_reason(call) == "TENANT_MISMATCH"


@pytest.mark.parametrize("change", RESTRICTING, ids=[change.name for change in RESTRICTING])
@pytest.mark.parametrize("documented_request", ["", "   ", "\t\n"], ids=["empty", "spaces", "whitespace"])
def test_clinician_without_documented_request(documented_request: str, change: ConsentChange) -> None:
    call = lambda: registration_for(clinician(), BODO, PATIENT, documented_request, change, NOW)  # noqa: E731
    assert invalid_fields(call) == ["documented_request"]


@pytest.mark.parametrize("change", RESTRICTING, ids=[change.name for change in RESTRICTING])
def test_clinician_with_documented_request_may_restrict(change: ConsentChange) -> None:
    registration = registration_for(clinician(), BODO, PATIENT, f"  {REQUEST}  ", change, NOW)
    assert registration == Registration(
        registered_at=NOW,
        registered_by=RegisteredBy.CLINICIAN_ON_PATIENTS_REQUEST,
        actor=CLINICIAN_ACTOR,
        documented_request=REQUEST,  # stripped
    )


@pytest.mark.parametrize("change", LIFTING, ids=[change.name for change in LIFTING])
def test_clinician_may_not_lift_a_restriction(change: ConsentChange) -> None:
    call = lambda: registration_for(clinician(), BODO, PATIENT, REQUEST, change, NOW)  # noqa: E731
    assert denied_reason(call) == "PATIENT_OR_PRIVACY_OFFICER_REQUIRED"


@pytest.mark.parametrize("change", ALL_CHANGES, ids=[change.name for change in ALL_CHANGES])
def test_privacy_officer_on_the_patients_request(change: ConsentChange) -> None:
    registration = registration_for(privacy_officer(), BODO, PATIENT, f" {REQUEST}\n", change, NOW)
    assert registration.registered_by is RegisteredBy.PRIVACY_OFFICER_ON_PATIENTS_REQUEST
    assert registration.documented_request == REQUEST
    assert registration.registered_at == NOW
    assert registration.actor.hpr_number is None
    assert registration.actor.is_patient is False


@pytest.mark.parametrize("change", ALL_CHANGES, ids=[change.name for change in ALL_CHANGES])
def test_privacy_officer_without_documented_request(change: ConsentChange) -> None:
    call = lambda: registration_for(privacy_officer(), BODO, PATIENT, " ", change, NOW)  # noqa: E731
    assert invalid_fields(call) == ["documented_request"]


def test_privacy_officer_bad_documented_request() -> None:
    call = lambda: registration_for(privacy_officer(), BODO, PATIENT, "a\x00b", BLOCK, NOW)  # noqa: E731
    assert invalid_fields(call) == ["documented_request"]


def test_privacy_officer_of_other_tenant() -> None:
    call = lambda: registration_for(privacy_officer(tenant=BAERUM), BODO, PATIENT, REQUEST, BLOCK, NOW)  # noqa: E731
    assert denied_reason(call) == "TENANT_MISMATCH"


def test_documented_request_at_the_limit_is_accepted() -> None:
    text = "x" * 200
    assert registration_for(clinician(), BODO, PATIENT, text, BLOCK, NOW).documented_request == text


def test_documented_request_with_norwegian_letters_is_accepted() -> None:
    text = "Notat i journal: pasienten ba om sperring, Bærum/Bodø/Åsane"
    assert registration_for(clinician(), BODO, PATIENT, text, BLOCK, NOW).documented_request == text


@pytest.mark.parametrize(
    "documented_request",
    [
        "x" * 201,
        "æ" * 201,
        "line one\nline two",
        "tab\there",
        "nul\x00byte",
        "escape\x1b[31m",
        "delete\x7fchar",
        "line\u2028separator",
    ],
    ids=["201-chars", "201-non-ascii", "newline", "tab", "nul", "escape", "del", "unicode-line-separator"],
)
def test_bad_documented_request(documented_request: str) -> None:
    call = lambda: registration_for(clinician(), BODO, PATIENT, documented_request, BLOCK, NOW)  # noqa: E731
    assert invalid_fields(call) == ["documented_request"]


@pytest.mark.parametrize("change", ALL_CHANGES, ids=[change.name for change in ALL_CHANGES])
def test_clinician_without_hpr(change: ConsentChange) -> None:
    call = lambda: registration_for(clinician(hpr=None), BODO, PATIENT, REQUEST, change, NOW)  # noqa: E731
    assert denied_reason(call) == "CLINICIAN_REQUIRED"


def test_clinician_without_hpr_is_refused_before_the_request_is_checked() -> None:
    call = lambda: registration_for(clinician(hpr=None), BODO, PATIENT, "", BLOCK, NOW)  # noqa: E731
    assert denied_reason(call) == "CLINICIAN_REQUIRED"


def test_clinician_lifting_is_refused_before_the_attestation_is_checked() -> None:
    caller = clinician(patients=(OTHER_PATIENT,))
    call = lambda: registration_for(caller, BODO, PATIENT, "", ConsentChange.OBJECTION_WITHDRAWN, NOW)  # noqa: E731
    assert denied_reason(call) == "PATIENT_OR_PRIVACY_OFFICER_REQUIRED"


@pytest.mark.parametrize("change", RESTRICTING, ids=[change.name for change in RESTRICTING])
@pytest.mark.parametrize(
    "caller",
    [clinician(patients=(OTHER_PATIENT,)), clinician(patients=()), clinician(attested=False)],
    ids=["other-patient", "no-patients", "no-attestation"],
)
def test_clinician_without_the_patient_in_attestation(caller: Principal, change: ConsentChange) -> None:
    call = lambda: registration_for(caller, BODO, PATIENT, REQUEST, change, NOW)  # noqa: E731
    assert denied_reason(call) == "PATIENT_NOT_IN_ATTESTATION"


def test_attestation_is_checked_before_the_documented_request() -> None:
    call = lambda: registration_for(clinician(patients=()), BODO, PATIENT, "", BLOCK, NOW)  # noqa: E731
    assert denied_reason(call) == "PATIENT_NOT_IN_ATTESTATION"


@pytest.mark.parametrize(
    "caller",
    [clinician(tenant=BAERUM, organisation=BAERUM_ORG), clinician(tenant=None, organisation=UNKNOWN_ORG)],
    ids=["other-tenant", "unknown-organisation"],
)
def test_clinician_wrong_tenant(caller: Principal) -> None:
    assert denied_reason(lambda: registration_for(caller, BODO, PATIENT, REQUEST, BLOCK, NOW)) == "TENANT_MISMATCH"


def test_tenant_is_checked_first() -> None:
    caller = clinician(tenant=BAERUM, organisation=BAERUM_ORG, hpr=None, attested=False)
    call = lambda: registration_for(caller, BODO, PATIENT, "", ConsentChange.PRACTITIONER_UNBLOCKED, NOW)  # noqa: E731
    assert denied_reason(call) == "TENANT_MISMATCH"


# --- require_log_reader: the patient, or the privacy officer ---


@pytest.mark.parametrize(
    ("caller", "tenant", "patient", "reason"),
    [
        (citizen(), BODO, PATIENT, None),
        (privacy_officer(), BODO, PATIENT, None),
        (privacy_officer(), BODO, OTHER_PATIENT, None),
        (citizen(), BODO, OTHER_PATIENT, "NOT_THE_PATIENT"),
        (citizen(None), BODO, PATIENT, "NOT_THE_PATIENT"),
        (clinician(), BODO, PATIENT, "NOT_THE_PATIENT"),
        (clinician(hpr=None, attested=False), BODO, PATIENT, "NOT_THE_PATIENT"),
        (citizen(), BAERUM, PATIENT, "TENANT_MISMATCH"),
        (citizen(tenant=None), BODO, PATIENT, "TENANT_MISMATCH"),
        (privacy_officer(), BAERUM, PATIENT, "TENANT_MISMATCH"),
        (privacy_officer(tenant=BAERUM), BODO, PATIENT, "TENANT_MISMATCH"),
    ],
    ids=[
        "patient-own",
        "privacy-officer",
        "privacy-officer-any-patient",
        "patient-other",
        "citizen-without-pid",
        "clinician-with-attestation",
        "system-client",
        "patient-other-tenant",
        "patient-unknown-tenant",
        "privacy-officer-other-tenant",
        "privacy-officer-of-other-tenant",
    ],
)
def test_require_log_reader(caller: Principal, tenant: str, patient: str, reason: str | None) -> None:
    if reason is None:
        assert require_log_reader(caller, tenant, patient) is None
    else:
        assert denied_reason(lambda: require_log_reader(caller, tenant, patient)) == reason


# --- require_consent_reader: the patient, the privacy officer, or a clinician naming the patient ---


@pytest.mark.parametrize(
    ("caller", "tenant", "patient", "reason"),
    [
        (citizen(), BODO, PATIENT, None),
        (privacy_officer(), BODO, OTHER_PATIENT, None),
        (clinician(), BODO, PATIENT, None),
        (clinician(patients=(OTHER_PATIENT, PATIENT)), BODO, PATIENT, None),
        (citizen(), BODO, OTHER_PATIENT, "NOT_THE_PATIENT"),
        (citizen(None), BODO, PATIENT, "NOT_THE_PATIENT"),
        (clinician(patients=(OTHER_PATIENT,)), BODO, PATIENT, "PATIENT_NOT_IN_ATTESTATION"),
        (clinician(attested=False), BODO, PATIENT, "PATIENT_NOT_IN_ATTESTATION"),
        (citizen(), BAERUM, PATIENT, "TENANT_MISMATCH"),
        (clinician(tenant=BAERUM, organisation=BAERUM_ORG), BODO, PATIENT, "TENANT_MISMATCH"),
        (clinician(tenant=None, organisation=UNKNOWN_ORG), BODO, PATIENT, "TENANT_MISMATCH"),
        (privacy_officer(tenant=BAERUM), BODO, PATIENT, "TENANT_MISMATCH"),
    ],
    ids=[
        "patient-own",
        "privacy-officer",
        "clinician-naming-patient",
        "clinician-naming-several",
        "patient-other",
        "citizen-without-pid",
        "clinician-other-patient",
        "clinician-no-attestation",
        "patient-other-tenant",
        "clinician-other-tenant",
        "clinician-unknown-org",
        "privacy-officer-of-other-tenant",
    ],
)
def test_require_consent_reader(caller: Principal, tenant: str, patient: str, reason: str | None) -> None:
    if reason is None:
        assert require_consent_reader(caller, tenant, patient) is None
    else:
        assert denied_reason(lambda: require_consent_reader(caller, tenant, patient)) == reason


# --- require_privacy_officer ---


@pytest.mark.parametrize(
    ("caller", "tenant", "reason"),
    [
        (privacy_officer(), BODO, None),
        (clinician(), BODO, "PRIVACY_OFFICER_REQUIRED"),
        (citizen(), BODO, "PRIVACY_OFFICER_REQUIRED"),
        (clinician(scopes=frozenset({"samhandling:citizen"})), BODO, "PRIVACY_OFFICER_REQUIRED"),
        (privacy_officer(), BAERUM, "TENANT_MISMATCH"),
        (privacy_officer(tenant=None), BODO, "TENANT_MISMATCH"),
        (clinician(tenant=BAERUM, organisation=BAERUM_ORG), BODO, "TENANT_MISMATCH"),
    ],
    ids=[
        "privacy-officer",
        "clinician",
        "citizen",
        "other-scope",
        "privacy-officer-other-tenant",
        "privacy-officer-unknown-tenant",
        "clinician-other-tenant",
    ],
)
def test_require_privacy_officer(caller: Principal, tenant: str, reason: str | None) -> None:
    if reason is None:
        assert require_privacy_officer(caller, tenant) is None
    else:
        assert denied_reason(lambda: require_privacy_officer(caller, tenant)) == reason
