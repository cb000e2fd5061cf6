"""The news2 service over real gRPC through the in-process mesh (storage and access on a real
PostgreSQL): scoring, recording, history with trends, alerts with resume, idempotency, the access
rules, and the FHIR export validated with a real FHIR model library.

Expected scores come from the tables in ../shared/design/news2.md."""

from __future__ import annotations

import asyncio
import json
import math
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import grpc
import pytest
from fhir.resources.R4B.bundle import Bundle
from google.protobuf.timestamp_pb2 import Timestamp
from google.rpc import error_details_pb2
from grpc import aio
from grpc_status import rpc_status
from samhandling.access.v1 import access_pb2
from samhandling.news2.v1 import news2_pb2, news2_pb2_grpc
from samhandling.storage.v1 import storage_pb2

from tests.conftest import start_service
from tests.support import BAERUM, BODO, BODO_ORG, bearer, person_number

pb = news2_pb2
NURSE_HPR = "565505933"
CLIENT_ID = "ehr-news2"
KIND = "news2.assessment"
ALERT_TIMEOUT = 10.0

# The normal full set: every parameter in its 0 band (news2.md Chart 1).
NORMAL = {
    "respiratory_rate": 16.0,
    "spo2": 97.0,
    "on_oxygen": False,
    "systolic_bp": 125.0,
    "pulse": 72.0,
    "consciousness": pb.CONSCIOUSNESS_ALERT,
    "temperature": 37.0,
}
# Total 1, low risk: respiration 11 scores 1.
TOTAL_1 = {"respiratory_rate": 11.0}
# Total 3, low risk, no single 3: respiration 22 scores 2, temperature 38.5 scores 1.
TOTAL_3 = {"respiratory_rate": 22.0, "temperature": 38.5}
# Total 5, medium risk, no single 3: pulse 115 scores 2, systolic 105 scores 1, SpO2 94 scores 1, 38.5 °C 1.
TOTAL_5 = {"pulse": 115.0, "systolic_bp": 105.0, "spo2": 94.0, "temperature": 38.5}
# Total 3 with a single 3, low-medium risk: new confusion.
SINGLE_3 = {"consciousness": pb.CONSCIOUSNESS_NEW_CONFUSION}


def vitals(measured_at: datetime | None = None, **changes: object) -> pb.VitalSigns:
    """A full normal set with `changes` applied; a change to None leaves that parameter out."""
    values = {**NORMAL, **changes}
    message = pb.VitalSigns(**{name: value for name, value in values.items() if value is not None})
    if measured_at is not None:
        message.measured_at.CopyFrom(timestamp(measured_at))
    return message


def timestamp(moment: datetime) -> Timestamp:
    stamp = Timestamp()
    stamp.FromDatetime(moment)
    return stamp


def minutes_ago(minutes: float) -> datetime:
    return datetime.now(UTC).replace(microsecond=0) - timedelta(minutes=minutes)


def field_violations(error: aio.AioRpcError) -> list[str]:
    status = rpc_status.from_call(error)
    assert status is not None, "no google.rpc.Status details"
    fields = []
    for detail in status.details:
        if detail.Is(error_details_pb2.BadRequest.DESCRIPTOR):
            bad = error_details_pb2.BadRequest()
            detail.Unpack(bad)
            fields += [violation.field for violation in bad.field_violations]
    return fields


def error_reason(error: aio.AioRpcError) -> str:
    status = rpc_status.from_call(error)
    assert status is not None, "no google.rpc.Status details"
    for detail in status.details:
        if detail.Is(error_details_pb2.ErrorInfo.DESCRIPTOR):
            info = error_details_pb2.ErrorInfo()
            detail.Unpack(info)
            return info.reason
    raise AssertionError("no ErrorInfo in the status details")


async def rejected(call, code: grpc.StatusCode) -> aio.AioRpcError:
    with pytest.raises(aio.AioRpcError) as raised:
        await call
    assert raised.value.code() == code, raised.value.details()
    return raised.value


@pytest.fixture
async def news2(news2_server) -> AsyncIterator[news2_pb2_grpc.News2ServiceStub]:
    async with aio.insecure_channel(f"127.0.0.1:{news2_server.port}") as channel:
        yield news2_pb2_grpc.News2ServiceStub(channel)


@pytest.fixture
def patient() -> str:
    return person_number()


@pytest.fixture
def nurse(mint, patient):
    """A nurse treating `patient` (and any others named)."""

    def _nurse(*patients: str, purpose: str = "TREAT", tenant: str = BODO, hpr: str = NURSE_HPR):
        token = mint(
            tenant, hpr_number=hpr, purpose_of_use=purpose, patient_ids=patients or (patient,), client_id=CLIENT_ID
        )
        return bearer(token)

    return _nurse


@pytest.fixture
def watcher(mint):
    """The ward's alert screen: a clinical system following the tenant's feed."""
    return bearer(mint(BODO, purpose_of_use="TREAT", client_id="ward-screen", feed=True))


async def record(news2, metadata, patient: str, signs: pb.VitalSigns, key: str | None = None, tenant: str = ""):
    request = pb.RecordVitalSignsRequest(
        tenant=tenant, patient_id=patient, vital_signs=signs, idempotency_key=key or str(uuid.uuid4())
    )
    return await news2.RecordVitalSigns(request, metadata=metadata)


async def stored_records(storage, metadata, patient: str) -> list[storage_pb2.Record]:
    response = await storage.ListRecords(
        storage_pb2.ListRecordsRequest(tenant=BODO, patient_id=patient, kind=KIND, page_size=1000), metadata=metadata
    )
    return list(response.records)


async def alerts_of(news2, metadata, patient: str, after: int, count: int) -> list[pb.WatchAlertsResponse]:
    """The first `count` alerts of `patient` after sequence `after`, reading the tenant's feed."""
    stream = news2.WatchAlerts(pb.WatchAlertsRequest(from_sequence=after), metadata=metadata)
    found: list[pb.WatchAlertsResponse] = []
    try:
        async with asyncio.timeout(ALERT_TIMEOUT):
            async for alert in stream:
                if alert.assessment.patient_id == patient:
                    found.append(alert)
                    if len(found) == count:
                        break
    finally:
        stream.cancel()
    return found


# ScoreVitalSigns


async def test_score_a_full_set_as_the_chart_prints_it(news2, mint):
    # Respiration 22 → 2, SpO2 93 (scale 1) → 2, oxygen → 2, systolic 105 → 1, pulse 115 → 2,
    # new confusion → 3, 39.2 °C → 2: total 14, high risk, continuous monitoring.
    signs = vitals(
        respiratory_rate=22,
        spo2=93,
        on_oxygen=True,
        systolic_bp=105,
        pulse=115,
        consciousness=pb.CONSCIOUSNESS_NEW_CONFUSION,
        temperature=39.2,
    )
    response = await news2.ScoreVitalSigns(pb.ScoreVitalSignsRequest(vital_signs=signs), metadata=bearer(mint()))

    score = response.score
    assert score.parameter_scores == pb.ParameterScores(
        respiration_rate=2, spo2=2, air_or_oxygen=2, systolic_bp=1, pulse=2, consciousness=3, temperature=2
    )
    assert score.total == 14
    assert score.risk_level == pb.RISK_LEVEL_HIGH
    assert score.single_parameter_scored_3
    assert score.scale == pb.SPO2_SCALE_1
    assert score.minimum_monitoring == pb.MONITORING_FREQUENCY_CONTINUOUS
    assert "critical-care" in score.clinical_response


async def test_score_normal_set_is_zero_and_twelve_hourly(news2, mint):
    response = await news2.ScoreVitalSigns(pb.ScoreVitalSignsRequest(vital_signs=vitals()), metadata=bearer(mint()))
    assert response.score.total == 0
    assert response.score.risk_level == pb.RISK_LEVEL_LOW
    assert not response.score.single_parameter_scored_3
    assert response.score.minimum_monitoring == pb.MONITORING_FREQUENCY_TWELVE_HOURLY


async def test_score_scale_2_at_97_on_oxygen_is_5_points_and_medium_risk(news2, mint):
    signs = vitals(spo2=97, spo2_scale=pb.SPO2_SCALE_2, on_oxygen=True)
    response = await news2.ScoreVitalSigns(pb.ScoreVitalSignsRequest(vital_signs=signs), metadata=bearer(mint()))
    assert (response.score.parameter_scores.spo2, response.score.parameter_scores.air_or_oxygen) == (3, 2)
    assert response.score.total == 5
    assert response.score.risk_level == pb.RISK_LEVEL_MEDIUM
    assert response.score.single_parameter_scored_3
    assert response.score.scale == pb.SPO2_SCALE_2


async def test_score_rounds_half_up_and_reports_the_values_as_scored(news2, mint):
    # 20.5 /min → 21 → 2 points; 35.95 °C → 36.0 → 1 point; 95.5 % → 96 → 0 points; 110.5 mmHg → 111 → 0.
    signs = vitals(respiratory_rate=20.5, temperature=35.95, spo2=95.5, systolic_bp=110.5)
    response = await news2.ScoreVitalSigns(pb.ScoreVitalSignsRequest(vital_signs=signs), metadata=bearer(mint()))
    score = response.score
    assert (score.parameter_scores.respiration_rate, score.parameter_scores.temperature) == (2, 1)
    assert (score.parameter_scores.spo2, score.parameter_scores.systolic_bp) == (0, 0)
    assert score.total == 3
    assert score.risk_level == pb.RISK_LEVEL_LOW
    assert score.minimum_monitoring == pb.MONITORING_FREQUENCY_FOUR_TO_SIX_HOURLY
    scored = score.scored_values
    assert (scored.respiratory_rate, scored.temperature, scored.spo2, scored.systolic_bp) == (21, 36.0, 96, 111)


async def test_score_names_every_missing_parameter(news2, mint):
    error = await rejected(
        news2.ScoreVitalSigns(pb.ScoreVitalSignsRequest(), metadata=bearer(mint())), grpc.StatusCode.INVALID_ARGUMENT
    )
    assert sorted(field_violations(error)) == sorted(
        f"vital_signs.{name}"
        for name in ("respiratory_rate", "spo2", "on_oxygen", "systolic_bp", "pulse", "consciousness", "temperature")
    )

    partial = vitals(on_oxygen=None, consciousness=None)
    error = await rejected(
        news2.ScoreVitalSigns(pb.ScoreVitalSignsRequest(vital_signs=partial), metadata=bearer(mint())),
        grpc.StatusCode.INVALID_ARGUMENT,
    )
    assert sorted(field_violations(error)) == ["vital_signs.consciousness", "vital_signs.on_oxygen"]


async def test_score_rejects_nan_infinity_implausible_values_and_unknown_enums(news2, mint):
    signs = vitals(
        respiratory_rate=math.nan,
        temperature=math.inf,
        spo2=100.5,
        pulse=19.0,
        systolic_bp=None,
        consciousness=9,
        spo2_scale=7,
    )
    error = await rejected(
        news2.ScoreVitalSigns(pb.ScoreVitalSignsRequest(vital_signs=signs), metadata=bearer(mint())),
        grpc.StatusCode.INVALID_ARGUMENT,
    )
    assert sorted(field_violations(error)) == [
        "vital_signs.consciousness",
        "vital_signs.pulse",
        "vital_signs.respiratory_rate",
        "vital_signs.spo2",
        "vital_signs.spo2_scale",
        "vital_signs.systolic_bp",
        "vital_signs.temperature",
    ]


@pytest.mark.parametrize(
    ("field", "value", "valid"),
    [
        ("respiratory_rate", 80.0, True),
        ("respiratory_rate", 80.4, False),
        ("spo2", 49.9, False),
        ("systolic_bp", 300.0, True),
        ("systolic_bp", 300.1, False),
        ("pulse", 20.0, True),
        ("temperature", 24.9, False),
        ("temperature", 45.0, True),
    ],
)
async def test_score_plausibility_limits_are_inclusive(news2, mint, field, value, valid):
    call = news2.ScoreVitalSigns(
        pb.ScoreVitalSignsRequest(vital_signs=vitals(**{field: value})), metadata=bearer(mint())
    )
    if valid:
        assert (await call).HasField("score")
    else:
        error = await rejected(call, grpc.StatusCode.INVALID_ARGUMENT)
        assert field_violations(error) == [f"vital_signs.{field}"]


async def test_every_rpc_requires_a_token(news2, patient):
    calls = [
        news2.ScoreVitalSigns(pb.ScoreVitalSignsRequest(vital_signs=vitals())),
        news2.RecordVitalSigns(
            pb.RecordVitalSignsRequest(patient_id=patient, vital_signs=vitals(minutes_ago(1)), idempotency_key="k")
        ),
        news2.ListAssessments(pb.ListAssessmentsRequest(patient_id=patient)),
        news2.ExportAssessment(pb.ExportAssessmentRequest(patient_id=patient, assessment_id="x")),
    ]
    for call in calls:
        error = await rejected(call, grpc.StatusCode.UNAUTHENTICATED)
        assert error_reason(error) == "MISSING_TOKEN"
    stream = news2.WatchAlerts(pb.WatchAlertsRequest())
    with pytest.raises(aio.AioRpcError) as raised:
        async for _ in stream:
            pass
    assert raised.value.code() == grpc.StatusCode.UNAUTHENTICATED


# RecordVitalSigns and ListAssessments


async def test_record_stores_the_vital_signs_as_measured_with_score_and_provenance(news2, storage, nurse, patient):
    measured = minutes_ago(3)
    signs = vitals(measured, respiratory_rate=20.5, temperature=36.05)
    response = await record(news2, nurse(), patient, signs)

    assessment = response.assessment
    assert not response.replayed
    assert assessment.complete and assessment.version == 1
    assert (assessment.tenant, assessment.patient_id) == (BODO, patient)
    # As sent, not as scored.
    assert (assessment.vital_signs.respiratory_rate, assessment.vital_signs.temperature) == (20.5, 36.05)
    assert assessment.vital_signs.measured_at.ToDatetime(tzinfo=UTC) == measured
    # Scored as 21 /min (2 points) and 36.1 °C (0 points).
    assert assessment.score.total == 2
    assert assessment.score.scored_values.respiratory_rate == 21
    assert not assessment.missing_parameters
    assert not assessment.HasField("trend")
    assert list(assessment.alert_reasons) == []
    assert assessment.provenance.source_system == CLIENT_ID
    assert assessment.provenance.organisation_number == BODO_ORG
    assert assessment.provenance.author_hpr_number == NURSE_HPR
    assert assessment.provenance.recorded_at.ToDatetime(tzinfo=UTC) > measured

    [stored] = await stored_records(storage, nurse(), patient)
    assert stored.key == assessment.assessment_id
    assert stored.sequence == assessment.sequence
    assert json.loads(stored.payload.data)["measured"]["temperature"] == 36.05

    listed = await news2.ListAssessments(pb.ListAssessmentsRequest(patient_id=patient), metadata=nurse())
    assert list(listed.assessments) == [assessment]
    assert listed.next_page_token == ""


async def test_an_incomplete_set_is_stored_with_its_missing_parameters_and_no_score(news2, storage, nurse, patient):
    signs = vitals(minutes_ago(2), consciousness=None, temperature=None, pulse=140)
    response = await record(news2, nurse(), patient, signs)

    assessment = response.assessment
    assert not assessment.complete
    assert not assessment.HasField("score")
    assert list(assessment.missing_parameters) == ["consciousness", "temperature"]
    # Pulse 140 would score 3, but a partial set never alerts or gets a total.
    assert list(assessment.alert_reasons) == []
    assert assessment.vital_signs.pulse == 140
    assert not assessment.vital_signs.HasField("temperature")
    [stored] = await stored_records(storage, nurse(), patient)
    body = json.loads(stored.payload.data)
    assert body["score"] is None and body["complete"] is False


async def test_history_is_newest_first_with_trends_against_the_previous_complete_one(news2, nurse, patient):
    first = (await record(news2, nurse(), patient, vitals(minutes_ago(40), **TOTAL_1))).assessment
    incomplete = (await record(news2, nurse(), patient, vitals(minutes_ago(30), spo2=None))).assessment
    rose = (await record(news2, nurse(), patient, vitals(minutes_ago(20), **TOTAL_3))).assessment
    fell = (await record(news2, nurse(), patient, vitals(minutes_ago(10)))).assessment

    # Total 1 → 3: up by 2 points (an alert), risk still low.
    assert rose.trend == pb.Trend(
        previous_assessment_id=first.assessment_id,
        previous_total=1,
        total_delta=2,
        previous_risk_level=pb.RISK_LEVEL_LOW,
        risk_change=pb.RISK_CHANGE_UNCHANGED,
    )
    assert list(rose.alert_reasons) == [pb.ALERT_REASON_ROSE_BY_2_OR_MORE]
    assert fell.trend.total_delta == -3 and fell.trend.previous_assessment_id == rose.assessment_id
    assert not incomplete.HasField("trend")

    listed = await news2.ListAssessments(pb.ListAssessmentsRequest(patient_id=patient), metadata=nurse())
    assert [a.assessment_id for a in listed.assessments] == [
        fell.assessment_id,
        rose.assessment_id,
        incomplete.assessment_id,
        first.assessment_id,
    ]
    assert [a.trend.total_delta if a.HasField("trend") else None for a in listed.assessments] == [-3, 2, None, None]


async def test_history_pages_and_finds_the_previous_complete_one_beyond_the_page(news2, nurse, patient):
    # Oldest first: totals 0, 5, (incomplete), (incomplete), 1.
    totals = [{}, TOTAL_5, None, None, TOTAL_1]
    recorded = []
    for age, changes in zip((50, 40, 30, 20, 10), totals, strict=True):
        signs = vitals(minutes_ago(age), temperature=None) if changes is None else vitals(minutes_ago(age), **changes)
        recorded.append((await record(news2, nurse(), patient, signs)).assessment)

    seen, token = [], ""
    while True:
        page = await news2.ListAssessments(
            pb.ListAssessmentsRequest(patient_id=patient, page_size=2, page_token=token), metadata=nurse()
        )
        assert len(page.assessments) <= 2
        seen += list(page.assessments)
        token = page.next_page_token
        if not token:
            break
    assert [a.assessment_id for a in seen] == [a.assessment_id for a in reversed(recorded)]
    newest, medium = seen[0], seen[3]
    # The newest (total 1) is compared with the total-5 one two pages further on: down 4, risk fell.
    assert newest.trend.previous_assessment_id == recorded[1].assessment_id
    assert (newest.trend.total_delta, newest.trend.risk_change) == (-4, pb.RISK_CHANGE_FELL)
    assert (medium.trend.total_delta, medium.trend.risk_change) == (5, pb.RISK_CHANGE_ROSE)
    assert not seen[4].HasField("trend")


async def test_history_recomputes_trends_when_an_earlier_measurement_arrives_later(news2, nurse, patient):
    later = (await record(news2, nurse(), patient, vitals(minutes_ago(10), **TOTAL_3))).assessment
    assert not later.HasField("trend")
    earlier = (await record(news2, nurse(), patient, vitals(minutes_ago(60), **TOTAL_1))).assessment
    assert not earlier.HasField("trend")  # nothing before it

    listed = await news2.ListAssessments(pb.ListAssessmentsRequest(patient_id=patient), metadata=nurse())
    assert [a.assessment_id for a in listed.assessments] == [later.assessment_id, earlier.assessment_id]
    assert listed.assessments[0].trend.previous_assessment_id == earlier.assessment_id
    assert listed.assessments[0].trend.total_delta == 2


async def test_list_rejects_a_negative_page_size_and_a_foreign_page_token(news2, nurse, patient):
    error = await rejected(
        news2.ListAssessments(pb.ListAssessmentsRequest(patient_id=patient, page_size=-1), metadata=nurse()),
        grpc.StatusCode.INVALID_ARGUMENT,
    )
    assert field_violations(error) == ["page_size"]
    error = await rejected(
        news2.ListAssessments(pb.ListAssessmentsRequest(patient_id=patient, page_token="nonsense"), metadata=nurse()),
        grpc.StatusCode.INVALID_ARGUMENT,
    )
    assert field_violations(error) == ["page_token"]


# Idempotency


async def test_the_same_idempotency_key_stores_once_and_replays_the_original(news2, storage, nurse, patient):
    key = str(uuid.uuid4())
    signs = vitals(minutes_ago(5), **TOTAL_3)
    first = await record(news2, nurse(), patient, signs, key)
    # An earlier complete measurement recorded in between changes what the trend would now be…
    await record(news2, nurse(), patient, vitals(minutes_ago(30)))
    again = await record(news2, nurse(), patient, signs, key)

    # …but the retry still returns the original, untouched.
    assert again.replayed and not first.replayed
    assert again.assessment == first.assessment
    assert not again.assessment.HasField("trend")
    records = await stored_records(storage, nurse(), patient)
    assert len(records) == 2
    versions = await storage.ListRecordVersions(
        storage_pb2.ListRecordVersionsRequest(
            tenant=BODO, patient_id=patient, kind=KIND, key=first.assessment.assessment_id
        ),
        metadata=nurse(),
    )
    assert [record.version for record in versions.records] == [1]


async def test_the_same_idempotency_key_for_other_vital_signs_is_refused(news2, storage, nurse, patient):
    key = str(uuid.uuid4())
    measured = minutes_ago(5)
    await record(news2, nurse(), patient, vitals(measured), key)
    for other in (vitals(measured, pulse=73), vitals(minutes_ago(6))):
        error = await rejected(record(news2, nurse(), patient, other, key), grpc.StatusCode.FAILED_PRECONDITION)
        assert error_reason(error) == "IDEMPOTENCY_KEY_REUSED"
    assert len(await stored_records(storage, nurse(), patient)) == 1


# Rejections: nothing stored


async def test_bad_input_is_rejected_naming_every_field_and_nothing_is_stored(news2, storage, nurse, patient):
    bad = vitals(datetime.now(UTC) + timedelta(minutes=10), pulse=math.nan, spo2_scale=3)
    error = await rejected(
        news2.RecordVitalSigns(pb.RecordVitalSignsRequest(patient_id=patient, vital_signs=bad), metadata=nurse()),
        grpc.StatusCode.INVALID_ARGUMENT,
    )
    assert sorted(field_violations(error)) == [
        "idempotency_key",
        "vital_signs.measured_at",
        "vital_signs.pulse",
        "vital_signs.spo2_scale",
    ]

    cases = [
        (vitals(), ["vital_signs.measured_at"]),
        (vitals(datetime(1899, 12, 31, tzinfo=UTC)), ["vital_signs.measured_at"]),
        (vitals(minutes_ago(1), temperature=45.1), ["vital_signs.temperature"]),
        (None, ["vital_signs"]),
    ]
    for signs, fields in cases:
        request = pb.RecordVitalSignsRequest(patient_id=patient, vital_signs=signs, idempotency_key="key-1")
        error = await rejected(news2.RecordVitalSigns(request, metadata=nurse()), grpc.StatusCode.INVALID_ARGUMENT)
        assert field_violations(error) == fields

    error = await rejected(
        record(news2, nurse("12345678901"), "12345678901", vitals(minutes_ago(1))), grpc.StatusCode.INVALID_ARGUMENT
    )
    assert field_violations(error) == ["patient_id"]
    assert await stored_records(storage, nurse(), patient) == []


# Access


async def test_coordination_of_care_may_not_touch_vital_signs(news2, storage, nurse, patient):
    coc = nurse(purpose="COC")
    error = await rejected(record(news2, coc, patient, vitals(minutes_ago(1))), grpc.StatusCode.PERMISSION_DENIED)
    assert error_reason(error) == "PURPOSE_NOT_ALLOWED"
    error = await rejected(
        news2.ListAssessments(pb.ListAssessmentsRequest(patient_id=patient), metadata=coc),
        grpc.StatusCode.PERMISSION_DENIED,
    )
    assert error_reason(error) == "PURPOSE_NOT_ALLOWED"
    assert await stored_records(storage, nurse(), patient) == []


async def test_another_municipalitys_token_naming_this_tenant_is_refused(news2, storage, nurse, patient):
    baerum = nurse(tenant=BAERUM)
    error = await rejected(
        record(news2, baerum, patient, vitals(minutes_ago(1)), tenant=BODO), grpc.StatusCode.PERMISSION_DENIED
    )
    assert error_reason(error) == "TENANT_MISMATCH"
    error = await rejected(
        news2.ListAssessments(pb.ListAssessmentsRequest(tenant=BODO, patient_id=patient), metadata=baerum),
        grpc.StatusCode.PERMISSION_DENIED,
    )
    assert error_reason(error) == "TENANT_MISMATCH"
    assert await stored_records(storage, nurse(), patient) == []


async def test_a_patient_not_in_the_attestation_is_refused(news2, nurse, patient):
    other = person_number()
    error = await rejected(
        news2.ListAssessments(pb.ListAssessmentsRequest(patient_id=patient), metadata=nurse(other)),
        grpc.StatusCode.PERMISSION_DENIED,
    )
    assert error_reason(error) == "PATIENT_NOT_IN_ATTESTATION"


async def test_an_objecting_patient_is_not_recorded_listed_or_alerted(news2, access, mint, nurse, watcher, patient):
    other = person_number()
    objecting = await record(news2, nurse(), patient, vitals(minutes_ago(5), **TOTAL_5))
    shared = await record(news2, nurse(other), other, vitals(minutes_ago(5), **TOTAL_5))
    assert list(objecting.assessment.alert_reasons) == [pb.ALERT_REASON_MEDIUM_RISK]

    citizen = bearer(mint(BODO, citizen_id=patient))
    await access.RegisterObjection(access_pb2.RegisterObjectionRequest(patient_id=patient), metadata=citizen)

    error = await rejected(record(news2, nurse(), patient, vitals(minutes_ago(1))), grpc.StatusCode.PERMISSION_DENIED)
    assert error_reason(error) == "PATIENT_OBJECTED"
    error = await rejected(
        news2.ListAssessments(pb.ListAssessmentsRequest(patient_id=patient), metadata=nurse()),
        grpc.StatusCode.PERMISSION_DENIED,
    )
    assert error_reason(error) == "PATIENT_OBJECTED"
    error = await rejected(
        news2.ExportAssessment(
            pb.ExportAssessmentRequest(patient_id=patient, assessment_id=objecting.assessment.assessment_id),
            metadata=nurse(),
        ),
        grpc.StatusCode.PERMISSION_DENIED,
    )
    assert error_reason(error) == "PATIENT_OBJECTED"

    # The feed skips the objecting patient's alert (decided at delivery) and goes on with the next.
    stream = news2.WatchAlerts(pb.WatchAlertsRequest(from_sequence=objecting.assessment.sequence - 1), metadata=watcher)
    try:
        async with asyncio.timeout(ALERT_TIMEOUT):
            first = await anext(aiter(stream))
    finally:
        stream.cancel()
    assert first.sequence == shared.assessment.sequence
    assert first.assessment.patient_id == other


# WatchAlerts


async def test_alerts_stream_in_order_and_resume_from_a_sequence_exactly_once(news2, nurse, watcher, patient):
    baseline = (await record(news2, nurse(), patient, vitals(minutes_ago(60)))).assessment
    medium = (await record(news2, nurse(), patient, vitals(minutes_ago(50), **TOTAL_5))).assessment
    quiet = (await record(news2, nurse(), patient, vitals(minutes_ago(40)))).assessment
    single = (await record(news2, nurse(), patient, vitals(minutes_ago(30), **SINGLE_3))).assessment
    high = (await record(news2, nurse(), patient, vitals(minutes_ago(20), **TOTAL_5, **SINGLE_3))).assessment
    assert list(quiet.alert_reasons) == [] and list(baseline.alert_reasons) == []
    assert list(single.alert_reasons) == [pb.ALERT_REASON_SINGLE_PARAMETER_SCORED_3, pb.ALERT_REASON_ROSE_BY_2_OR_MORE]
    # Total 8 (5 + the confusion's 3): high risk, a single 3, and 5 points above the previous 3.
    assert high.score.total == 8
    assert list(high.alert_reasons) == [
        pb.ALERT_REASON_HIGH_RISK,
        pb.ALERT_REASON_SINGLE_PARAMETER_SCORED_3,
        pb.ALERT_REASON_ROSE_BY_2_OR_MORE,
    ]
    expected = [medium, single, high]

    # A watcher reads the first alert, then drops…
    [first] = await alerts_of(news2, watcher, patient, after=baseline.sequence, count=1)
    # …and a new alert is recorded while it is away.
    later = (await record(news2, nurse(), patient, vitals(minutes_ago(10), **TOTAL_5))).assessment
    expected.append(later)
    rest = await alerts_of(news2, watcher, patient, after=first.sequence, count=3)

    delivered = [first, *rest]
    assert [alert.sequence for alert in delivered] == [a.sequence for a in expected]
    assert [alert.assessment.assessment_id for alert in delivered] == [a.assessment_id for a in expected]
    assert [list(alert.reasons) for alert in delivered] == [list(a.alert_reasons) for a in expected]
    assert delivered[0].assessment == medium

    # Live: a watcher at the end of the feed sees the next alert as it is recorded.
    watching = asyncio.ensure_future(alerts_of(news2, watcher, patient, after=later.sequence, count=1))
    await asyncio.sleep(0.3)
    live = (await record(news2, nurse(), patient, vitals(minutes_ago(1), **SINGLE_3))).assessment
    [alert] = await watching
    assert alert.sequence == live.sequence


async def test_watch_rejects_a_negative_sequence_and_a_foreign_tenant(news2, watcher, mint):
    stream = news2.WatchAlerts(pb.WatchAlertsRequest(from_sequence=-1), metadata=watcher)
    with pytest.raises(aio.AioRpcError) as raised:
        async for _ in stream:
            pass
    assert raised.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert field_violations(raised.value) == ["from_sequence"]

    baerum = bearer(mint(BAERUM, hpr_number=NURSE_HPR, purpose_of_use="TREAT"))
    stream = news2.WatchAlerts(pb.WatchAlertsRequest(tenant=BODO), metadata=baerum)
    with pytest.raises(aio.AioRpcError) as raised:
        async with asyncio.timeout(ALERT_TIMEOUT):
            async for _ in stream:
                pass
    assert raised.value.code() == grpc.StatusCode.PERMISSION_DENIED
    assert error_reason(raised.value) == "TENANT_MISMATCH"


async def test_shutdown_ends_a_watch_with_unavailable_so_the_client_resumes(mesh_settings, watcher):
    running = await start_service("news2", mesh_settings)
    try:
        async with aio.insecure_channel(f"127.0.0.1:{running.port}") as channel:
            stream = news2_pb2_grpc.News2ServiceStub(channel).WatchAlerts(
                pb.WatchAlertsRequest(from_sequence=2**62), metadata=watcher
            )
            reading = asyncio.ensure_future(anext(aiter(stream)))
            await asyncio.sleep(0.5)  # the stream is following storage's feed, with nothing to send
            assert not reading.done()
            await running.stop()
            with pytest.raises(aio.AioRpcError) as raised:
                async with asyncio.timeout(ALERT_TIMEOUT):
                    await reading
    finally:
        await running.stop()
    assert raised.value.code() == grpc.StatusCode.UNAVAILABLE
    assert "resume from the last sequence" in (raised.value.details() or "")


# FHIR export


async def test_export_is_a_valid_fhir_r4_bundle_with_vital_signs_and_the_news2_observation(news2, nurse, patient):
    signs = vitals(minutes_ago(5), respiratory_rate=22, temperature=38.5, on_oxygen=True)
    assessment = (await record(news2, nurse(), patient, signs)).assessment
    assert assessment.score.total == 5  # 2 + 2 (oxygen) + 1

    response = await news2.ExportAssessment(
        pb.ExportAssessmentRequest(patient_id=patient, assessment_id=assessment.assessment_id), metadata=nurse()
    )
    assert response.content_type == "application/fhir+json; fhirVersion=4.0"
    document = json.loads(response.fhir_json)
    bundle = Bundle.model_validate(document)
    assert bundle.type == "collection"
    observations = [entry.resource for entry in bundle.entry]
    assert len(observations) == 8
    vital_signs, news2_observation = observations[:7], observations[7]
    assert all(o.category[0].coding[0].code == "vital-signs" for o in vital_signs)
    assert all(o.subject.identifier.value == patient for o in observations)
    loinc = {c.code for o in vital_signs for c in o.code.coding or () if c.system == "http://loinc.org"}
    assert loinc == {"9279-1", "2708-6", "8480-6", "8867-4", "8310-5"}
    respiration = next(o for o in vital_signs if any(c.code == "9279-1" for c in o.code.coding))
    assert (float(respiration.valueQuantity.value), respiration.valueQuantity.code) == (22, "/min")

    assert news2_observation.category[0].coding[0].code == "survey"
    assert news2_observation.code.coding[0].code == "1104051000000101"
    assert news2_observation.valueInteger == 5
    assert len(news2_observation.component) == 7
    assert sum(component.valueInteger for component in news2_observation.component) == 5
    assert {ref.reference for ref in news2_observation.derivedFrom} == {entry.fullUrl for entry in bundle.entry[:7]}


async def test_export_of_an_incomplete_set_has_no_news2_observation(news2, nurse, patient):
    assessment = (await record(news2, nurse(), patient, vitals(minutes_ago(5), pulse=None))).assessment
    response = await news2.ExportAssessment(
        pb.ExportAssessmentRequest(patient_id=patient, assessment_id=assessment.assessment_id), metadata=nurse()
    )
    bundle = Bundle.model_validate(json.loads(response.fhir_json))
    categories = [entry.resource.category[0].coding[0].code for entry in bundle.entry]
    assert categories == ["vital-signs"] * 6


async def test_export_of_an_unknown_assessment_is_not_found(news2, nurse, patient):
    unknown = f"{minutes_ago(1):%Y%m%dT%H%M%S.%fZ}-{uuid.uuid4().hex}"
    await rejected(
        news2.ExportAssessment(pb.ExportAssessmentRequest(patient_id=patient, assessment_id=unknown), metadata=nurse()),
        grpc.StatusCode.NOT_FOUND,
    )
    error = await rejected(
        news2.ExportAssessment(pb.ExportAssessmentRequest(patient_id=patient, assessment_id="../x"), metadata=nurse()),
        grpc.StatusCode.INVALID_ARGUMENT,
    )
    assert field_violations(error) == ["assessment_id"]


async def test_a_late_baseline_alerts_the_rise_it_reveals(news2, nurse, watcher, patient):
    risen = await record(news2, nurse(), patient, vitals(minutes_ago(10), **TOTAL_3))
    baseline = await record(news2, nurse(), patient, vitals(minutes_ago(60)))
    [alert] = await alerts_of(news2, watcher, patient, risen.assessment.sequence - 1, 1)
    assert alert.sequence == baseline.assessment.sequence
    assert list(alert.reasons) == [pb.ALERT_REASON_LATER_ASSESSMENT_ROSE_BY_2_OR_MORE]
    assert alert.later_assessment.assessment_id == risen.assessment.assessment_id
    assert alert.later_assessment.trend.total_delta == 3
    assert alert.later_assessment.trend.previous_assessment_id == baseline.assessment.assessment_id


async def test_concurrent_records_still_alert_the_rise(news2, nurse, watcher, patient):
    baseline, risen = await asyncio.gather(
        record(news2, nurse(), patient, vitals(minutes_ago(60))),
        record(news2, nurse(), patient, vitals(minutes_ago(10), **TOTAL_3)),
    )
    first = min(baseline.assessment.sequence, risen.assessment.sequence)
    [alert] = await alerts_of(news2, watcher, patient, first - 1, 1)
    assert alert.sequence == max(baseline.assessment.sequence, risen.assessment.sequence)
    rose = alert.later_assessment if alert.HasField("later_assessment") else alert.assessment
    assert rose.assessment_id == risen.assessment.assessment_id and rose.trend.total_delta == 3
