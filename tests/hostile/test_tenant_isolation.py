"""Tenant isolation under attack: a caller of municipality A, holding every right it could have in A,
asks every RPC that takes a patient about a patient whose data lives in municipality B, and about a
patient nobody has ever seen — naming B's tenant, and naming its own. It must learn nothing: the two
answers (status, reason, details, body) are the same once the patient id is set aside, and nothing of
B's ever appears. B's access log must show A's attempts as what they are (denied, TENANT_MISMATCH,
the same for B's patient and the unknown one), and B's hash chain must still verify.

The RPCs are enumerated from the descriptors: an RPC that takes a `patient_id` and is missing from
the matrix fails the test."""

from __future__ import annotations

import difflib
import json
import re
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import grpc
import pytest
from google.protobuf.json_format import MessageToDict
from google.protobuf.message import Message
from google.protobuf.timestamp_pb2 import Timestamp
from samhandling.access.v1 import access_pb2
from samhandling.news2.v1 import news2_pb2
from samhandling.overview.v1 import overview_pb2
from samhandling.storage.v1 import storage_pb2

from services.overview.api.servicer import oslo_today
from tests.hostile.support import RPCS, STREAM_FOLLOWER, Outcome, Rpc, invoke
from tests.support import BAERUM, BAERUM_ORG, BODO, BODO_ORG, bearer, person_number

A, B = BODO, BAERUM
A_ORG, B_ORG = BODO_ORG, BAERUM_ORG
MARK = uuid.uuid4().hex[:12]
B_CLIENT = f"baerum-ehr-{MARK}"
B_HPR = "918273645"  # B's clinician, who writes B's data
B_BLOCKED_HPR = "817263544"  # the clinician B's patient has blocked
B_SECRET = f"B-SECRET-{MARK}"
B_KEY = f"b-key-{MARK}"
ISOLATION_KIND = "test.isolation"
A_CLIENT, A_HPR = "bodo-ehr-attacker", "565505933"


def _timestamp(moment: datetime) -> Timestamp:
    stamp = Timestamp()
    stamp.FromDatetime(moment)
    return stamp


MEASURED_AT = datetime.now(UTC).replace(microsecond=0) - timedelta(hours=2)


def vital_signs(pulse: float = 131.0) -> news2_pb2.VitalSigns:
    return news2_pb2.VitalSigns(
        respiratory_rate=26,
        spo2=91,
        on_oxygen=False,
        systolic_bp=95,
        pulse=pulse,
        consciousness=news2_pb2.CONSCIOUSNESS_ALERT,
        temperature=39.3,
        measured_at=_timestamp(MEASURED_AT),
    )


def service(marker: str) -> overview_pb2.MunicipalService:
    return overview_pb2.MunicipalService(
        service_type_code="15",
        start_date=(oslo_today() - timedelta(days=10)).isoformat(),
        description=f"Hjemmetjeneste {marker}",
        responsible_unit=overview_pb2.Unit(name=f"Hjemmesykepleien {marker}", phone="67500000"),
    )


@dataclass
class Seeded:
    """What B holds: the patients and the identifiers an attacker from A might have got hold of."""

    patient: str  # services, vital signs, a blocked clinician
    objecting_patient: str  # has objected in B
    assessment_id: str


# ---------------------------------------------------------------------------------------------
# The matrix: for each patient RPC, the strongest caller A has for it, and the request.

Build = Callable[[str, str, Seeded], Message]  # (patient, tenant, seeded) -> request


def _key() -> str:
    return str(uuid.uuid4())


MATRIX: dict[str, tuple[str, Build]] = {
    "access.Authorize": (
        "clinician",
        lambda p, t, s: access_pb2.AuthorizeRequest(
            tenant=t, patient_id=p, data_kind=access_pb2.DATA_KIND_VITAL_SIGNS, action=access_pb2.ACTION_READ
        ),
    ),
    "access.RegisterObjection": (
        "privacy_officer",
        lambda p, t, s: access_pb2.RegisterObjectionRequest(tenant=t, patient_id=p, documented_request="ref 1"),
    ),
    "access.WithdrawObjection": (
        "privacy_officer",
        lambda p, t, s: access_pb2.WithdrawObjectionRequest(tenant=t, patient_id=p, documented_request="ref 2"),
    ),
    "access.BlockPractitioner": (
        "privacy_officer",
        lambda p, t, s: access_pb2.BlockPractitionerRequest(
            tenant=t, patient_id=p, hpr_number=B_BLOCKED_HPR, documented_request="ref 3"
        ),
    ),
    "access.UnblockPractitioner": (
        "privacy_officer",
        lambda p, t, s: access_pb2.UnblockPractitionerRequest(
            tenant=t, patient_id=p, hpr_number=B_BLOCKED_HPR, documented_request="ref 4"
        ),
    ),
    "access.GetConsent": ("privacy_officer", lambda p, t, s: access_pb2.GetConsentRequest(tenant=t, patient_id=p)),
    "access.ListAccessLog": (
        "privacy_officer",
        lambda p, t, s: access_pb2.ListAccessLogRequest(tenant=t, patient_id=p, page_size=500),
    ),
    "overview.SubmitServices": (
        "clinician",
        lambda p, t, s: overview_pb2.SubmitServicesRequest(
            tenant=t, patient_id=p, services=[service("A")], idempotency_key=_key()
        ),
    ),
    "overview.GetOverview": ("clinician", lambda p, t, s: overview_pb2.GetOverviewRequest(tenant=t, patient_id=p)),
    "overview.CountActiveServices": (
        "clinician",
        lambda p, t, s: overview_pb2.CountActiveServicesRequest(tenant=t, patient_id=p),
    ),
    "overview.ExportOverview": (
        "clinician",
        lambda p, t, s: overview_pb2.ExportOverviewRequest(tenant=t, patient_id=p),
    ),
    "overview.ListSubmissions": (
        "clinician",
        lambda p, t, s: overview_pb2.ListSubmissionsRequest(tenant=t, patient_id=p, source_system=B_CLIENT),
    ),
    "news2.RecordVitalSigns": (
        "clinician",
        lambda p, t, s: news2_pb2.RecordVitalSignsRequest(
            tenant=t, patient_id=p, vital_signs=vital_signs(pulse=88), idempotency_key=_key()
        ),
    ),
    "news2.ListAssessments": (
        "clinician",
        lambda p, t, s: news2_pb2.ListAssessmentsRequest(tenant=t, patient_id=p),
    ),
    "news2.ExportAssessment": (
        "clinician",
        lambda p, t, s: news2_pb2.ExportAssessmentRequest(tenant=t, patient_id=p, assessment_id=s.assessment_id),
    ),
    "storage.PutRecord": (
        "clinician",
        lambda p, t, s: storage_pb2.PutRecordRequest(
            tenant=t,
            patient_id=p,
            kind=ISOLATION_KIND,
            key=B_KEY,
            expected_version=0,
            idempotency_key=_key(),
            payload=storage_pb2.Payload(data=b'{"from": "A"}', content_type="application/json"),
        ),
    ),
    "storage.GetRecord": (
        "clinician",
        lambda p, t, s: storage_pb2.GetRecordRequest(tenant=t, patient_id=p, kind=ISOLATION_KIND, key=B_KEY),
    ),
    "storage.ListRecordVersions": (
        "clinician",
        lambda p, t, s: storage_pb2.ListRecordVersionsRequest(tenant=t, patient_id=p, kind=ISOLATION_KIND, key=B_KEY),
    ),
    "storage.ListRecords": (
        "clinician",
        lambda p, t, s: storage_pb2.ListRecordsRequest(tenant=t, patient_id=p, kind=ISOLATION_KIND),
    ),
}

PATIENT_RPCS = [rpc for rpc in RPCS if rpc.takes_patient]


def test_every_rpc_that_takes_a_patient_is_in_the_matrix():
    missing = sorted(str(rpc) for rpc in PATIENT_RPCS if str(rpc) not in MATRIX)
    assert not missing, f"add these RPCs to the tenant isolation matrix: {missing}"
    assert set(MATRIX) == {str(rpc) for rpc in PATIENT_RPCS}, "the matrix names an RPC that takes no patient"


# ---------------------------------------------------------------------------------------------
# Comparing answers with the patient id set aside.

# Values that differ from call to call whatever the patient: positions, ids, hashes and times.
VOLATILE = frozenset(
    {
        "decision_id",
        "log_sequence",
        "decided_at",
        "sequence",
        "entry_id",
        "entry_hash",
        "previous_hash",
        "registered_at",
        "recorded_at",
        "updated_at",
        "submitted_at",
        "last_updated",
        "assessment_id",
        "previous_assessment_id",
        "next_page_token",
        # FHIR: resource ids and the bundle's time.
        "id",
        "fullUrl",
        "timestamp",
        "reference",
    }
)


MOMENT = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:")


def normalised(value: Any, patients: tuple[str, ...]) -> Any:
    if isinstance(value, dict):
        return {key: "<varies>" if key in VOLATILE else normalised(item, patients) for key, item in value.items()}
    if isinstance(value, list):
        return [normalised(item, patients) for item in value]
    if isinstance(value, str):
        if value.startswith(("{", "[")):
            try:
                return normalised(json.loads(value), patients)
            except ValueError:
                pass
        if MOMENT.match(value):
            return "<time>"
        for patient in patients:
            value = value.replace(patient, "<patient>")
        return value
    return value


def answer(outcome: Outcome, patients: tuple[str, ...]) -> dict:
    """What the caller learnt from one call."""
    return normalised(
        {
            "code": outcome.code.name,
            "message": outcome.message,
            "reason": outcome.reason,
            "reason_metadata": outcome.reason_metadata,
            "violations": [list(item) for item in outcome.violations],
            "other_details": list(outcome.other_details),
            "responses": [MessageToDict(r, preserving_proto_field_name=True) for r in outcome.responses],
        },
        patients,
    )


def difference(known: dict, unknown: dict) -> str:
    lines = [json.dumps(item, indent=1, sort_keys=True).splitlines() for item in (known, unknown)]
    return "\n".join(difflib.unified_diff(*lines, "B's patient", "unknown patient", lineterm="", n=2))


def raw_text(outcome: Outcome) -> str:
    return repr(outcome) + "".join(response.SerializeToString().decode("latin-1") for response in outcome.responses)


# ---------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def callers(mint):
    def of_a(patients: tuple[str, ...]) -> dict[str, tuple]:
        return {
            "clinician": bearer(mint(A, client_id=A_CLIENT, hpr_number=A_HPR, patient_ids=patients)),
            "privacy_officer": bearer(mint(A, client_id="bodo-privacy-portal", privacy_officer=True)),
        }

    b_officer = bearer(mint(B, client_id="baerum-privacy-portal", privacy_officer=True))
    return of_a, b_officer


async def seed_b(channels, mint) -> Seeded:
    patient, objecting = person_number(), person_number()
    as_b = bearer(mint(B, client_id=B_CLIENT, hpr_number=B_HPR, patient_ids=(patient, objecting)))
    overview = channels["overview"]
    for who in (patient, objecting):
        await invoke_ok(
            overview,
            "overview.SubmitServices",
            overview_pb2.SubmitServicesRequest(patient_id=who, services=[service(B_SECRET)], idempotency_key=_key()),
            as_b,
        )
        recorded = await invoke_ok(
            channels["news2"],
            "news2.RecordVitalSigns",
            news2_pb2.RecordVitalSignsRequest(patient_id=who, vital_signs=vital_signs(), idempotency_key=_key()),
            as_b,
        )
        await invoke_ok(
            channels["storage"],
            "storage.PutRecord",
            storage_pb2.PutRecordRequest(
                tenant=B,
                patient_id=who,
                kind=ISOLATION_KIND,
                key=B_KEY,
                idempotency_key=_key(),
                payload=storage_pb2.Payload(data=B_SECRET.encode(), content_type="text/plain"),
            ),
            as_b,
        )
    await invoke_ok(
        channels["access"],
        "access.BlockPractitioner",
        access_pb2.BlockPractitionerRequest(patient_id=patient, hpr_number=B_BLOCKED_HPR, documented_request="b-1"),
        as_b,
    )
    await invoke_ok(
        channels["access"],
        "access.RegisterObjection",
        access_pb2.RegisterObjectionRequest(patient_id=objecting, documented_request="b-2"),
        as_b,
    )
    return Seeded(patient, objecting, recorded.assessment.assessment_id)


def _rpc(name: str) -> Rpc:
    return next(rpc for rpc in RPCS if str(rpc) == name)


async def invoke_ok(channel, name: str, request: Message, metadata) -> Message:
    outcome = await invoke(channel, _rpc(name), request, metadata)
    assert outcome.ok, f"seeding {name}: {outcome.describe()}"
    return outcome.responses[0]


async def run_matrix(channels, of_a, seeded: Seeded, patient: str, tenant: str) -> dict[str, Outcome]:
    """Every patient RPC, in descriptor order, as A's strongest caller for it, about `patient`."""
    tokens = of_a((patient,))
    outcomes = {}
    for rpc in PATIENT_RPCS:
        role, build = MATRIX[str(rpc)]
        outcomes[str(rpc)] = await invoke(channels[rpc.service], rpc, build(patient, tenant, seeded), tokens[role])
    return outcomes


async def test_a_caller_of_another_municipality_learns_nothing_about_a_patient_there(channels, mint, callers, ledger):
    of_a, b_officer = callers
    seeded = await seed_b(channels, mint)
    b_log_before = await ledger.fetch("SELECT count(*) FROM access_log WHERE tenant = $1", B)

    for known in (seeded.patient, seeded.objecting_patient):
        unknown = person_number()
        for tenant in (B, "", A):
            on_known = await run_matrix(channels, of_a, seeded, known, tenant)
            on_unknown = await run_matrix(channels, of_a, seeded, unknown, tenant)
            for name in on_known:
                seen_known = answer(on_known[name], (known, unknown))
                seen_unknown = answer(on_unknown[name], (known, unknown))
                assert seen_known == seen_unknown, (
                    f"{name} naming tenant {tenant!r} tells B's patient apart:\n{difference(seen_known, seen_unknown)}"
                )
                for secret in (B_SECRET, B_CLIENT, B_ORG, B_HPR, B_BLOCKED_HPR, seeded.assessment_id):
                    if secret == B_BLOCKED_HPR and name.startswith("access."):
                        continue  # A named this HPR number itself; its echo is no leak
                    if secret == seeded.assessment_id and name == "news2.ExportAssessment":
                        continue  # likewise the assessment id A asked for
                    assert secret not in raw_text(on_known[name]), f"{name} gave A {secret!r} from B"
            if tenant == B:
                # Every attempt at B's tenant is refused as a tenant mismatch, whatever the RPC.
                refused = {name: (o.code, o.reason) for name, o in on_known.items()}
                assert set(refused.values()) == {(grpc.StatusCode.PERMISSION_DENIED, "TENANT_MISMATCH")}, refused

        # B's access log: A's attempts are there as denials, the same for B's patient as for the unknown one.
        b_entries = {}
        for who in (known, unknown):
            response = await invoke_ok(
                channels["access"],
                "access.ListAccessLog",
                access_pb2.ListAccessLogRequest(patient_id=who, page_size=500),
                b_officer,
            )
            b_entries[who] = [e for e in response.entries if e.actor.organisation_number == A_ORG]
        assert b_entries[known], "A's attempts at B's patient were not logged in B"
        assert [(e.decision, e.reason, e.data_kind, e.action) for e in b_entries[known]] == [
            (e.decision, e.reason, e.data_kind, e.action) for e in b_entries[unknown]
        ]
        assert {(e.decision, e.reason, e.tenant) for e in b_entries[known]} == {
            (access_pb2.DECISION_DENIED, "TENANT_MISMATCH", B)
        }

    # B's own data is untouched and B still sees it; B's chain verifies.
    verified = await invoke_ok(
        channels["access"], "access.VerifyAccessLog", access_pb2.VerifyAccessLogRequest(), b_officer
    )
    assert verified.intact, verified
    consent = await invoke_ok(
        channels["access"], "access.GetConsent", access_pb2.GetConsentRequest(patient_id=seeded.patient), b_officer
    )
    assert [block.hpr_number for block in consent.blocks] == [B_BLOCKED_HPR] and not consent.HasField("objection")
    b_log_after = await ledger.fetch("SELECT count(*) FROM access_log WHERE tenant = $1", B)
    assert b_log_after[0][0] > b_log_before[0][0]


CONSENT_RPCS = [name for name in MATRIX if name.startswith("access.") and name != "access.Authorize"]


@pytest.mark.parametrize("name", CONSENT_RPCS)
async def test_a_consent_call_naming_another_municipality_is_logged_there_like_a_decision(
    name, channels, callers, mint
):
    """The access contract: a caller may only reach its own tenant, and an attempt at another is logged in
    the named tenant's access log. Authorize did so; the consent and log RPCs refused without logging."""
    of_a, b_officer = callers
    patient = person_number()
    role, build = MATRIX[name]
    seeded = Seeded(patient, patient, "")

    outcome = await invoke(channels["access"], _rpc(name), build(patient, B, seeded), of_a((patient,))[role])

    assert (outcome.code, outcome.reason) == (grpc.StatusCode.PERMISSION_DENIED, "TENANT_MISMATCH")
    log = await invoke_ok(
        channels["access"],
        "access.ListAccessLog",
        access_pb2.ListAccessLogRequest(patient_id=patient),
        b_officer,
    )
    [entry] = log.entries
    action = (
        access_pb2.ACTION_READ if name in ("access.GetConsent", "access.ListAccessLog") else access_pb2.ACTION_WRITE
    )
    assert (entry.decision, entry.reason, entry.data_kind, entry.action, entry.tenant) == (
        access_pb2.DECISION_DENIED,
        "TENANT_MISMATCH",
        access_pb2.DATA_KIND_CONSENT,
        action,
        B,
    )
    assert entry.actor.organisation_number == A_ORG and entry.entry_id == outcome.reason_metadata["decision_id"]
    consent = await invoke_ok(
        channels["access"], "access.GetConsent", access_pb2.GetConsentRequest(patient_id=patient), b_officer
    )
    assert not consent.HasField("objection") and not consent.blocks


FEED_RPCS = [rpc for rpc in RPCS if rpc.streaming]


@pytest.mark.parametrize("rpc", FEED_RPCS, ids=str)
async def test_another_municipalitys_feed_is_refused_and_ones_own_carries_nothing_of_it(rpc, channels, mint):
    """Change feeds take no patient but a tenant: A may follow only its own, and its own never carries B's
    data (B's records are written before A's watch starts, so a replay from 0 would include them)."""
    patient = person_number()
    as_b = bearer(mint(B, client_id=B_CLIENT, hpr_number=B_HPR, patient_ids=(patient,)))
    await invoke_ok(
        channels["overview"],
        "overview.SubmitServices",
        overview_pb2.SubmitServicesRequest(patient_id=patient, services=[service(B_SECRET)], idempotency_key=_key()),
        as_b,
    )
    follower = bearer(mint(A, client_id=STREAM_FOLLOWER, feed=True, privacy_officer=True))
    request = rpc.request_class(tenant=B, from_sequence=0)
    if "kinds" in rpc.method.input_type.fields_by_name:
        request.kinds.append("overview.services")

    refused = await invoke(channels[rpc.service], rpc, request, follower, timeout=5)
    assert (refused.code, refused.reason) == (grpc.StatusCode.PERMISSION_DENIED, "TENANT_MISMATCH"), refused.describe()
    assert not refused.responses

    request.tenant = A
    own = await invoke(channels[rpc.service], rpc, request, follower, read_for=1.0, max_responses=1000)
    assert own.code == grpc.StatusCode.OK, own.describe()
    for secret in (B_SECRET, B_CLIENT, B_ORG, patient):
        assert secret not in raw_text(own), f"{rpc} following {A} delivered {secret!r} from {B}"
