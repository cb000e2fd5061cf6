"""The access service over real gRPC with a real PostgreSQL: every rule and reason, the patient's side
(objection, blocks, own log), break the glass with follow-up, and the tamper-evident log."""

from __future__ import annotations

import asyncio

import asyncpg
import grpc
import pytest
from google.rpc import error_details_pb2
from grpc import aio
from grpc_status import rpc_status
from samhandling.access.v1 import access_pb2

from tests.support import BAERUM, BODO, bearer, person_number

OVERVIEW, VITALS = access_pb2.DATA_KIND_SERVICES_OVERVIEW, access_pb2.DATA_KIND_VITAL_SIGNS
READ, WRITE = access_pb2.ACTION_READ, access_pb2.ACTION_WRITE
NURSE_HPR, DOCTOR_HPR = "565505933", "123456789"


def authorize(patient: str, kind: int = OVERVIEW, action: int = READ, tenant: str = "") -> access_pb2.AuthorizeRequest:
    return access_pb2.AuthorizeRequest(tenant=tenant, patient_id=patient, data_kind=kind, action=action)


def error_info(error: aio.AioRpcError) -> error_details_pb2.ErrorInfo:
    status = rpc_status.from_call(error)
    assert status is not None, "no google.rpc.Status details"
    for detail in status.details:
        if detail.Is(error_details_pb2.ErrorInfo.DESCRIPTOR):
            info = error_details_pb2.ErrorInfo()
            detail.Unpack(info)
            return info
    raise AssertionError("no ErrorInfo in the status details")


def field_violations(error: aio.AioRpcError) -> list[str]:
    status = rpc_status.from_call(error)
    assert status is not None
    fields = []
    for detail in status.details:
        if detail.Is(error_details_pb2.BadRequest.DESCRIPTOR):
            bad = error_details_pb2.BadRequest()
            detail.Unpack(bad)
            fields += [violation.field for violation in bad.field_violations]
    return fields


async def denied(call) -> error_details_pb2.ErrorInfo:
    with pytest.raises(aio.AioRpcError) as raised:
        await call
    assert raised.value.code() == grpc.StatusCode.PERMISSION_DENIED, raised.value.details()
    return error_info(raised.value)


@pytest.fixture
def patient() -> str:
    return person_number()


@pytest.fixture
def clinician(mint, patient):
    def _clinician(purpose: str = "TREAT", hpr: str = NURSE_HPR, tenant: str = BODO, patients=None) -> tuple:
        token = mint(tenant, hpr_number=hpr, purpose_of_use=purpose, patient_ids=tuple(patients or (patient,)))
        return bearer(token)

    return _clinician


@pytest.fixture
def citizen(mint, patient):
    return bearer(mint(BODO, citizen_id=patient))


@pytest.fixture
def privacy_officer(mint):
    return bearer(mint(BODO, privacy_officer=True, client_id="privacy-portal"))


async def patient_log(access, patient: str, citizen) -> list[access_pb2.AccessLogEntry]:
    response = await access.ListAccessLog(
        access_pb2.ListAccessLogRequest(patient_id=patient, page_size=500), metadata=citizen
    )
    return list(response.entries)


async def test_the_patient_journey_through_objection_break_the_glass_and_block(
    access, patient, clinician, citizen, privacy_officer
):
    first = await access.Authorize(authorize(patient), metadata=clinician())
    assert first.decision_id and first.tenant == BODO and not first.break_the_glass

    objection = await access.RegisterObjection(
        access_pb2.RegisterObjectionRequest(patient_id=patient), metadata=citizen
    )
    assert objection.changed and objection.objection.registered_by == access_pb2.REGISTERED_BY_PATIENT

    info = await denied(access.Authorize(authorize(patient), metadata=clinician()))
    assert info.reason == "PATIENT_OBJECTED" and info.metadata["decision_id"]

    # The privacy officer follows break-the-glass decisions from the current end of the stream.
    follow_ups = access.WatchFollowUps(access_pb2.WatchFollowUpsRequest(), metadata=privacy_officer)
    btg = await access.Authorize(authorize(patient, VITALS), metadata=clinician("BTG"))
    assert btg.break_the_glass and btg.overrode_objection
    streamed = None
    async for message in follow_ups:
        if message.entry.entry_id == btg.decision_id:
            streamed = message.entry
            break
    follow_ups.cancel()
    assert streamed is not None and streamed.follow_up and streamed.patient_id == patient

    blocked = await access.BlockPractitioner(
        access_pb2.BlockPractitionerRequest(patient_id=patient, hpr_number=NURSE_HPR), metadata=citizen
    )
    assert blocked.changed and blocked.block.hpr_number == NURSE_HPR
    info = await denied(access.Authorize(authorize(patient), metadata=clinician("BTG")))
    assert info.reason == "PRACTITIONER_BLOCKED"
    # Another clinician may still break the glass.
    other = await access.Authorize(authorize(patient), metadata=clinician("BTG", hpr=DOCTOR_HPR))
    assert other.break_the_glass

    entries = await patient_log(access, patient, citizen)
    summary = [(entry.decision, entry.reason, entry.purpose_of_use) for entry in entries]
    assert summary == [
        (access_pb2.DECISION_ALLOWED, "OBJECTION_OVERRIDDEN", "BTG"),
        (access_pb2.DECISION_DENIED, "PRACTITIONER_BLOCKED", "BTG"),
        (access_pb2.DECISION_ALLOWED, "PRACTITIONER_BLOCKED", ""),
        (access_pb2.DECISION_ALLOWED, "OBJECTION_OVERRIDDEN", "BTG"),
        (access_pb2.DECISION_DENIED, "PATIENT_OBJECTED", "TREAT"),
        (access_pb2.DECISION_ALLOWED, "OBJECTION_REGISTERED", ""),
        (access_pb2.DECISION_ALLOWED, "", "TREAT"),
    ]
    assert [entry.sequence for entry in entries] == sorted((entry.sequence for entry in entries), reverse=True)
    assert entries[3].data_kind == VITALS and entries[3].break_the_glass and entries[3].actor.hpr_number == NURSE_HPR
    assert entries[2].data_kind == access_pb2.DATA_KIND_CONSENT and entries[2].subject_hpr_number == NURSE_HPR
    assert entries[2].actor.is_patient


async def test_withdrawing_the_objection_restores_ordinary_access(access, patient, clinician, citizen):
    await access.RegisterObjection(access_pb2.RegisterObjectionRequest(patient_id=patient), metadata=citizen)
    again = await access.RegisterObjection(access_pb2.RegisterObjectionRequest(patient_id=patient), metadata=citizen)
    assert not again.changed
    assert (await denied(access.Authorize(authorize(patient), metadata=clinician()))).reason == "PATIENT_OBJECTED"
    withdrawn = await access.WithdrawObjection(
        access_pb2.WithdrawObjectionRequest(patient_id=patient), metadata=citizen
    )
    assert withdrawn.changed
    assert (await access.Authorize(authorize(patient), metadata=clinician())).decision_id
    consent = await access.GetConsent(access_pb2.GetConsentRequest(patient_id=patient), metadata=citizen)
    assert not consent.HasField("objection") and list(consent.blocks) == []


@pytest.mark.parametrize(
    ("purpose", "kind", "reason"),
    [
        ("COC", VITALS, "PURPOSE_NOT_ALLOWED"),
        ("UNKNOWN", OVERVIEW, "PURPOSE_NOT_ALLOWED"),
    ],
)
async def test_purpose_of_use_limits_the_kind_of_data(access, patient, clinician, purpose, kind, reason):
    assert (await denied(access.Authorize(authorize(patient, kind), metadata=clinician(purpose)))).reason == reason


@pytest.mark.parametrize("purpose", ["TREAT", "ETREAT", "COC"])
async def test_ordinary_purposes_may_read_the_overview(access, patient, clinician, purpose):
    granted = await access.Authorize(authorize(patient, OVERVIEW), metadata=clinician(purpose))
    assert granted.purpose_of_use == purpose and not granted.break_the_glass


@pytest.mark.parametrize("purpose", ["TREAT", "ETREAT"])
async def test_care_purposes_may_write_vital_signs(access, patient, clinician, purpose):
    assert (await access.Authorize(authorize(patient, VITALS, WRITE), metadata=clinician(purpose))).decision_id


async def test_a_patient_not_in_the_attestation_is_denied(access, patient, clinician):
    other = person_number()
    info = await denied(access.Authorize(authorize(other), metadata=clinician(patients=(patient,))))
    assert info.reason == "PATIENT_NOT_IN_ATTESTATION"


async def test_a_token_without_attestation_is_denied(access, mint, patient):
    token = mint(BODO, client_id="batch-job", extra_claims={"authorization_details": []})
    info = await denied(access.Authorize(authorize(patient), metadata=bearer(token)))
    assert info.reason == "PATIENT_NOT_IN_ATTESTATION"


async def test_another_municipality_is_denied_and_the_attempt_logged_there(access, patient, clinician, citizen):
    baerum = clinician(tenant=BAERUM)
    info = await denied(access.Authorize(authorize(patient, tenant=BODO), metadata=baerum))
    assert info.reason == "TENANT_MISMATCH"
    [entry] = await patient_log(access, patient, citizen)
    assert entry.reason == "TENANT_MISMATCH" and entry.decision == access_pb2.DECISION_DENIED
    assert entry.actor.organisation_number != "" and entry.tenant == BODO


async def test_a_municipality_outside_the_tenant_table_is_denied(access, patient, clinician):
    info = await denied(access.Authorize(authorize(patient, tenant="0301"), metadata=clinician()))
    assert info.reason == "TENANT_MISMATCH"


async def test_only_the_patient_or_the_privacy_officer_reads_the_log(
    access, mint, patient, clinician, citizen, privacy_officer
):
    await access.Authorize(authorize(patient), metadata=clinician())
    request = access_pb2.ListAccessLogRequest(patient_id=patient)
    assert (await denied(access.ListAccessLog(request, metadata=clinician()))).reason == "NOT_THE_PATIENT"
    someone_else = bearer(mint(BODO, citizen_id=person_number()))
    assert (await denied(access.ListAccessLog(request, metadata=someone_else))).reason == "NOT_THE_PATIENT"
    assert len((await access.ListAccessLog(request, metadata=citizen)).entries) == 1
    assert len((await access.ListAccessLog(request, metadata=privacy_officer)).entries) == 1


async def test_a_clinician_may_object_on_the_patients_documented_request(access, patient, clinician):
    with pytest.raises(aio.AioRpcError) as raised:
        await access.RegisterObjection(access_pb2.RegisterObjectionRequest(patient_id=patient), metadata=clinician())
    assert raised.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert field_violations(raised.value) == ["documented_request"]

    response = await access.RegisterObjection(
        access_pb2.RegisterObjectionRequest(patient_id=patient, documented_request="journal note 2026-11-26 #4411"),
        metadata=clinician(),
    )
    assert response.objection.registered_by == access_pb2.REGISTERED_BY_CLINICIAN_ON_PATIENTS_REQUEST
    assert response.objection.registered_by_actor.hpr_number == NURSE_HPR
    assert response.objection.documented_request == "journal note 2026-11-26 #4411"


async def test_a_patient_cannot_change_another_patients_consent(access, mint, patient):
    other = bearer(mint(BODO, citizen_id=person_number()))
    info = await denied(
        access.RegisterObjection(access_pb2.RegisterObjectionRequest(patient_id=patient), metadata=other)
    )
    assert info.reason == "NOT_THE_PATIENT"


async def test_the_follow_up_stream_is_for_the_privacy_officer_only(access, clinician):
    stream = access.WatchFollowUps(access_pb2.WatchFollowUpsRequest(), metadata=clinician())
    info = await denied(stream.read())
    assert info.reason == "PRIVACY_OFFICER_REQUIRED"


async def test_follow_ups_resume_from_a_sequence_without_gaps_or_repeats(access, mint, privacy_officer):
    patients = [person_number() for _ in range(3)]
    granted = []
    for patient in patients:
        token = bearer(mint(BODO, hpr_number=DOCTOR_HPR, purpose_of_use="BTG", patient_ids=(patient,)))
        granted.append(await access.Authorize(authorize(patient), metadata=token))
    start = granted[0].log_sequence - 1
    seen = []
    stream = access.WatchFollowUps(access_pb2.WatchFollowUpsRequest(from_sequence=start), metadata=privacy_officer)
    async for message in stream:
        seen.append(message.entry.sequence)
        if message.entry.sequence == granted[0].log_sequence:
            break
    stream.cancel()
    stream = access.WatchFollowUps(access_pb2.WatchFollowUpsRequest(from_sequence=seen[-1]), metadata=privacy_officer)
    async for message in stream:
        seen.append(message.entry.sequence)
        if message.entry.sequence == granted[-1].log_sequence:
            break
    stream.cancel()
    mine = [sequence for sequence in seen if sequence in {grant.log_sequence for grant in granted}]
    assert mine == [grant.log_sequence for grant in granted]
    assert len(seen) == len(set(seen)) and seen == sorted(seen)


@pytest.mark.parametrize(
    ("request_fields", "fields"),
    [
        ({"patient_id": "12345678901"}, ["patient_id"]),
        ({"data_kind": access_pb2.DATA_KIND_UNSPECIFIED}, ["data_kind"]),
        ({"data_kind": access_pb2.DATA_KIND_CONSENT}, ["data_kind"]),
        ({"action": 7}, ["action"]),
        ({"tenant": "18O4"}, ["tenant"]),
    ],
)
async def test_bad_authorize_requests_are_invalid_and_not_logged(
    access, patient, clinician, citizen, request_fields, fields
):
    request = authorize(patient)
    for name, value in request_fields.items():
        setattr(request, name, value)
    with pytest.raises(aio.AioRpcError) as raised:
        await access.Authorize(request, metadata=clinician())
    assert raised.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert field_violations(raised.value) == fields
    assert await patient_log(access, patient, citizen) == []


async def test_concurrent_decisions_form_one_unbroken_chain(access, mint):
    patients = [person_number() for _ in range(40)]
    tokens = [bearer(mint(BODO, hpr_number=NURSE_HPR, patient_ids=(patient,))) for patient in patients]
    grants = await asyncio.gather(
        *(access.Authorize(authorize(patient), metadata=token) for patient, token in zip(patients, tokens, strict=True))
    )
    sequences = sorted(grant.log_sequence for grant in grants)
    assert len(set(sequences)) == len(patients)
    verdict = await access.VerifyAccessLog(access_pb2.VerifyAccessLogRequest(), metadata=tokens[0])
    assert verdict.intact and verdict.entries_checked >= sequences[-1]


async def test_tampering_with_a_row_is_reported_at_that_entry(access, database, patient, clinician, citizen):
    granted = await access.Authorize(authorize(patient), metadata=clinician())
    await access.Authorize(authorize(patient, VITALS), metadata=clinician())
    intact = await access.VerifyAccessLog(access_pb2.VerifyAccessLogRequest(), metadata=clinician())
    assert intact.intact and intact.problem == "" and len(intact.head_hash) == 64

    connection = await asyncpg.connect(database.admin_url.replace("postgresql://", "postgresql://", 1))
    try:
        # The append-only trigger stops the application role; a superuser skipping triggers is the attacker.
        await connection.execute("SET session_replication_role = replica")
        await connection.execute(
            "UPDATE access_log SET purpose_of_use = 'COC' WHERE tenant = $1 AND entry_id = $2",
            BODO,
            granted.decision_id,
        )
        broken = await access.VerifyAccessLog(access_pb2.VerifyAccessLogRequest(), metadata=clinician())
        assert not broken.intact
        assert broken.problem == "HASH_MISMATCH"
        assert broken.first_broken_sequence == granted.log_sequence
        assert broken.first_broken_entry_id == granted.decision_id
    finally:
        await connection.execute(
            "UPDATE access_log SET purpose_of_use = 'TREAT' WHERE tenant = $1 AND entry_id = $2",
            BODO,
            granted.decision_id,
        )
        await connection.close()
    repaired = await access.VerifyAccessLog(access_pb2.VerifyAccessLogRequest(), metadata=clinician())
    assert repaired.intact


async def test_the_application_role_cannot_change_the_log(access, database, patient, clinician):
    granted = await access.Authorize(authorize(patient), metadata=clinician())
    connection = await asyncpg.connect(database.url)
    try:
        await connection.execute("SELECT set_config('samhandling.tenant', $1, false)", BODO)
        with pytest.raises(asyncpg.PostgresError, match="append-only"):
            await connection.execute("DELETE FROM access_log WHERE entry_id = $1", granted.decision_id)
    finally:
        await connection.close()


async def test_a_clinician_may_add_but_never_lift_a_restriction(access, patient, clinician, citizen):
    request = {"patient_id": patient, "hpr_number": NURSE_HPR, "documented_request": "phone call 2026-11-26"}
    await access.BlockPractitioner(access_pb2.BlockPractitionerRequest(**request), metadata=clinician(hpr=DOCTOR_HPR))
    info = await denied(
        access.UnblockPractitioner(access_pb2.UnblockPractitionerRequest(**request), metadata=clinician())
    )
    assert info.reason == "PATIENT_OR_PRIVACY_OFFICER_REQUIRED"
    info = await denied(
        access.WithdrawObjection(
            access_pb2.WithdrawObjectionRequest(patient_id=patient, documented_request="x"), metadata=clinician()
        )
    )
    assert info.reason == "PATIENT_OR_PRIVACY_OFFICER_REQUIRED"
    assert (await denied(access.Authorize(authorize(patient), metadata=clinician("BTG")))).reason == (
        "PRACTITIONER_BLOCKED"
    )
    lifted = await access.UnblockPractitioner(
        access_pb2.UnblockPractitionerRequest(patient_id=patient, hpr_number=NURSE_HPR), metadata=citizen
    )
    assert lifted.changed


async def test_a_feed_decision_needs_the_feed_scope(access, mint, patient, clinician):
    request = access_pb2.AuthorizeRequest(patient_id=patient, data_kind=OVERVIEW, action=READ, feed=True)
    other_patient = clinician(patients=(person_number(),))
    assert (await denied(access.Authorize(request, metadata=other_patient))).reason == "FEED_NOT_ALLOWED"
    system = bearer(mint(BODO, client_id="forwarder", feed=True))
    assert (await access.Authorize(request, metadata=system)).decision_id
    btg_system = bearer(mint(BODO, client_id="forwarder", feed=True, purpose_of_use="BTG"))
    assert (await denied(access.Authorize(request, metadata=btg_system))).reason == "FEED_NOT_ALLOWED"


async def test_a_malformed_attestation_fails_only_its_own_decision(access, mint):
    patients = [person_number() for _ in range(12)]
    good = [bearer(mint(BODO, hpr_number=NURSE_HPR, patient_ids=(patient,))) for patient in patients[1:]]
    odd = bearer(
        mint(
            BODO,
            hpr_number=NURSE_HPR,
            patient_ids=(patients[0],),
            purpose_of_use="TREATMENT-OF-A-VERY-LONG-KIND",
        )
    )
    calls = [access.Authorize(authorize(patients[0]), metadata=odd)]
    calls += [access.Authorize(authorize(p), metadata=t) for p, t in zip(patients[1:], good, strict=True)]
    results = await asyncio.gather(*calls, return_exceptions=True)
    assert all(isinstance(result, access_pb2.AuthorizeResponse) for result in results[1:])
    assert isinstance(results[0], aio.AioRpcError)
    assert results[0].code() == grpc.StatusCode.PERMISSION_DENIED
    assert error_info(results[0]).reason == "PURPOSE_NOT_ALLOWED"
