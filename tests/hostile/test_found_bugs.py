"""Focused tests for what the hostile-input tests found: fixed bugs stay fixed, and known open ones are
pinned (strict xfail: when one is fixed the test passes, fails the run, and its marker must go)."""

from __future__ import annotations

import base64
import json
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import grpc
import pytest
from google.protobuf.timestamp_pb2 import Timestamp
from samhandling.access.v1 import access_pb2
from samhandling.news2.v1 import news2_pb2
from samhandling.overview.v1 import overview_pb2
from samhandling.storage.v1 import storage_pb2

from services.overview.api.servicer import oslo_today
from tests.bench.driver import vital_signs
from tests.hostile.support import RPCS, STREAM_FOLLOWER, Rpc, assert_serving, invoke
from tests.support import BAERUM, BODO, bearer, person_number

NURSE_HPR = "565505933"


def _rpc(name: str) -> Rpc:
    return next(rpc for rpc in RPCS if str(rpc) == name)


def _service(**fields) -> overview_pb2.MunicipalService:
    return overview_pb2.MunicipalService(
        service_type_code="15", start_date=(oslo_today() - timedelta(days=3)).isoformat(), **fields
    )


@pytest.mark.parametrize(
    ("seconds", "nanos"),
    [(253_402_300_800, 0), (-62_135_596_801, 0), (2**63 - 1, 0), (1_700_000_000, -1), (1_700_000_000, 10**9)],
)
async def test_a_next_planned_visit_outside_the_timestamp_range_is_invalid_argument(
    seconds, nanos, channels, mint, ledger
):
    """Found by fuzzing SubmitServices: the timestamp's conversion raised ValueError, so INTERNAL."""
    patient = person_number()
    token = bearer(mint(BODO, client_id="visits-ehr", hpr_number=NURSE_HPR, patient_ids=(patient,)))
    request = overview_pb2.SubmitServicesRequest(
        patient_id=patient,
        idempotency_key=str(uuid.uuid4()),
        services=[_service(), _service(next_planned_visit=Timestamp(seconds=seconds, nanos=nanos))],
    )
    before = await ledger.footprint()

    outcome = await invoke(channels["overview"], _rpc("overview.SubmitServices"), request, token)

    assert outcome.code == grpc.StatusCode.INVALID_ARGUMENT, outcome.describe()
    assert [field for field, _ in outcome.violations] == ["services[1].next_planned_visit"]
    assert (await ledger.footprint()).data == before.data


async def test_the_extremes_of_the_timestamp_range_are_accepted_as_a_next_planned_visit(channels, mint):
    patient = person_number()
    token = bearer(mint(BODO, client_id="visits-ehr", hpr_number=NURSE_HPR, patient_ids=(patient,)))
    request = overview_pb2.SubmitServicesRequest(
        patient_id=patient,
        idempotency_key=str(uuid.uuid4()),
        services=[
            _service(next_planned_visit=Timestamp(seconds=-62_135_596_800)),
            _service(next_planned_visit=Timestamp(seconds=253_402_300_799, nanos=999_999_999)),
        ],
    )
    outcome = await invoke(channels["overview"], _rpc("overview.SubmitServices"), request, token)
    assert outcome.ok, outcome.describe()
    exported = await invoke(
        channels["overview"],
        _rpc("overview.ExportOverview"),
        overview_pb2.ExportOverviewRequest(patient_id=patient),
        token,
    )
    assert exported.ok, exported.describe()


async def test_a_list_over_the_limit_is_rejected_on_its_length_alone_even_with_bad_timestamps(channels, mint):
    patient = person_number()
    token = bearer(mint(BODO, client_id="visits-ehr", hpr_number=NURSE_HPR, patient_ids=(patient,)))
    bad = _service(next_planned_visit=Timestamp(seconds=2**62))
    request = overview_pb2.SubmitServicesRequest(
        patient_id=patient, idempotency_key=str(uuid.uuid4()), services=[bad] * 201
    )
    outcome = await invoke(channels["overview"], _rpc("overview.SubmitServices"), request, token)
    assert outcome.code == grpc.StatusCode.INVALID_ARGUMENT
    assert [field for field, _ in outcome.violations] == ["services"]


# Storage checks the tenant, not which service writes a kind: a caller that reaches storage directly can
# put bytes under `overview.services` or `news2.assessment` that the service cannot decode. A read of that
# patient then ends DATA_LOSS naming the record (not INTERNAL, and never silently without it), and new
# vital signs can still be recorded for the patient.
@pytest.mark.parametrize(
    ("kind", "key", "data", "read"),
    [
        ("overview.services", "poison-ehr", b"\xff\xfe not JSON", "overview.GetOverview"),
        ("overview.services", "poison-ehr", b'{"services": 1}', "overview.CountActiveServices"),
        ("news2.assessment", "20261126T101500.000000Z-" + "0" * 32, b"null", "news2.ListAssessments"),
    ],
)
async def test_a_record_its_service_cannot_decode_is_data_loss_not_internal(kind, key, data, read, channels, mint):
    patient = person_number()
    token = bearer(mint(BODO, client_id="poison-ehr", hpr_number=NURSE_HPR, patient_ids=(patient,)))
    put = storage_pb2.PutRecordRequest(
        tenant=BODO,
        patient_id=patient,
        kind=kind,
        key=key,
        idempotency_key=str(uuid.uuid4()),
        payload=storage_pb2.Payload(data=data, content_type="application/json"),
    )
    stored = await invoke(channels["storage"], _rpc("storage.PutRecord"), put, token)
    assert stored.ok

    service = read.split(".")[0]
    request_class = _rpc(read).request_class
    outcome = await invoke(channels[service], _rpc(read), request_class(patient_id=patient), token)

    await assert_serving(channels)
    assert outcome.code == grpc.StatusCode.DATA_LOSS, outcome.describe()
    assert outcome.reason == "UNREADABLE_RECORD"
    if kind == "news2.assessment":
        signs = vital_signs()
        signs.measured_at.GetCurrentTime()
        recorded = await invoke(
            channels["news2"],
            _rpc("news2.RecordVitalSigns"),
            news2_pb2.RecordVitalSignsRequest(patient_id=patient, vital_signs=signs, idempotency_key=str(uuid.uuid4())),
            token,
        )
        assert recorded.ok, recorded.describe()


# In Bærum's tenant, so that the unreadable records these tests leave behind stay out of other tests' way.
FEED_TENANT = BAERUM


async def _poison(channels, token, patient: str, kind: str, key: str, content_type: str) -> int:
    """Writes bytes of `kind` that its service cannot read, straight into storage; returns the feed position
    just before them."""
    put = storage_pb2.PutRecordRequest(
        tenant=FEED_TENANT,
        patient_id=patient,
        kind=kind,
        key=key,
        idempotency_key=str(uuid.uuid4()),
        payload=storage_pb2.Payload(data=b'{"services": [{"service_type": 7}]', content_type=content_type),
    )
    outcome = await invoke(channels["storage"], _rpc("storage.PutRecord"), put, token)
    assert outcome.ok, outcome.describe()
    return outcome.responses[0].record.sequence - 1


async def _first(channels, name: str, request, token, wanted: Callable[[object], bool]) -> object:
    outcome = await invoke(channels[name.split(".")[0]], _rpc(name), request, token, timeout=10, until=wanted)
    found = [item for item in outcome.responses if wanted(item)]
    assert found, f"{name} ended {outcome.describe()} after {len(outcome.responses)} items, without the one wanted"
    return found[0]


async def test_an_unreadable_services_list_does_not_stop_the_overview_feed(channels, mint):
    """Found by the fuzzing: WatchOverviews ended INTERNAL at a stored list it could not read, so every
    watcher of the tenant resuming from before it died there again, for good."""
    broken, fine = person_number(), person_number()
    writer = bearer(mint(FEED_TENANT, client_id="feed-ehr", hpr_number=NURSE_HPR, patient_ids=(broken, fine)))
    start = await _poison(channels, writer, broken, "overview.services", "junk", "application/json")
    for patient in (broken, fine):  # the broken patient also gets a readable list: it cannot compile
        submit = overview_pb2.SubmitServicesRequest(
            patient_id=patient, idempotency_key=str(uuid.uuid4()), services=[_service()]
        )
        assert (await invoke(channels["overview"], _rpc("overview.SubmitServices"), submit, writer)).ok

    follower = bearer(mint(FEED_TENANT, client_id=STREAM_FOLLOWER, feed=True))
    item = await _first(
        channels,
        "overview.WatchOverviews",
        overview_pb2.WatchOverviewsRequest(from_sequence=start),
        follower,
        lambda item: item.patient_id == fine,
    )
    assert [entry.service.service_type_code for entry in item.overview.entries] == ["15"]


async def test_an_unreadable_assessment_does_not_stop_the_alert_feed(channels, mint):
    """The same for WatchAlerts: an unreadable record was passed over, but a later assessment of the same
    patient made the feed read the patient's history, which ended the feed INTERNAL, for good."""
    broken, fine = person_number(), person_number()
    writer = bearer(mint(FEED_TENANT, client_id="feed-ehr", hpr_number=NURSE_HPR, patient_ids=(broken, fine)))
    measured = Timestamp()
    measured.GetCurrentTime()
    measured.seconds -= 600
    high_risk = news2_pb2.VitalSigns(
        respiratory_rate=26, spo2=90, on_oxygen=False, systolic_bp=95, pulse=131,
        consciousness=news2_pb2.CONSCIOUSNESS_ALERT, temperature=39.3, measured_at=measured,
    )  # fmt: skip

    async def record(patient: str) -> int:
        request = news2_pb2.RecordVitalSignsRequest(
            patient_id=patient, idempotency_key=str(uuid.uuid4()), vital_signs=high_risk
        )
        outcome = await invoke(channels["news2"], _rpc("news2.RecordVitalSigns"), request, writer)
        assert outcome.ok, outcome.describe()
        return outcome.responses[0].assessment.sequence

    # A readable assessment, then an unreadable record of the same patient, then another patient's.
    start = await record(broken) - 1
    await _poison(
        channels,
        writer,
        broken,
        "news2.assessment",
        "20260101T000000.000000Z-" + "0" * 32,
        "application/vnd.samhandling.news2-assessment+json; version=1",
    )
    await record(fine)

    follower = bearer(mint(FEED_TENANT, client_id=STREAM_FOLLOWER, feed=True))
    alert = await _first(
        channels,
        "news2.WatchAlerts",
        news2_pb2.WatchAlertsRequest(from_sequence=start),
        follower,
        lambda item: item.assessment.patient_id == fine,
    )
    assert news2_pb2.ALERT_REASON_HIGH_RISK in alert.reasons


@pytest.mark.parametrize("position", [2**63, 10**30])
async def test_a_log_page_token_past_the_int64_range_is_invalid_argument(position, channels, mint, ledger):
    """Found by fuzzing ListAccessLog: the decoded position was bound as a BIGINT query parameter, and
    asyncpg's DataError made it INTERNAL."""
    officer = bearer(mint(BODO, client_id="privacy-portal", privacy_officer=True))
    token = base64.urlsafe_b64encode(f"before:{position}".encode()).decode()
    request = access_pb2.ListAccessLogRequest(patient_id=person_number(), page_token=token)
    before = await ledger.footprint()

    outcome = await invoke(channels["access"], _rpc("access.ListAccessLog"), request, officer)

    assert outcome.code == grpc.StatusCode.INVALID_ARGUMENT, outcome.describe()
    assert [field for field, _ in outcome.violations] == ["page_token"]
    assert await ledger.footprint() == before


async def test_the_largest_log_position_is_a_valid_page_token(channels, mint):
    officer = bearer(mint(BODO, client_id="privacy-portal", privacy_officer=True))
    token = base64.urlsafe_b64encode(f"before:{2**63 - 1}".encode()).decode()
    request = access_pb2.ListAccessLogRequest(patient_id=person_number(), page_token=token)
    outcome = await invoke(channels["access"], _rpc("access.ListAccessLog"), request, officer)
    assert outcome.ok and not outcome.responses[0].entries, outcome.describe()


@pytest.mark.parametrize("mutation", ["measured_at without a time zone", "a total as text", "a pulse as text"])
async def test_a_well_formed_assessment_with_wrong_types_is_data_loss_too(mutation, channels, mint):
    """The right content type and JSON shape, the wrong types: reported as unreadable when read, never a
    comparison failing later (INTERNAL), and passed over by the look-back of the next recording."""
    patient = person_number()
    token = bearer(mint(BODO, client_id="poison-ehr", hpr_number=NURSE_HPR, patient_ids=(patient,)))

    def record_request() -> news2_pb2.RecordVitalSignsRequest:
        signs = vital_signs()
        signs.measured_at.GetCurrentTime()
        return news2_pb2.RecordVitalSignsRequest(
            patient_id=patient, vital_signs=signs, idempotency_key=str(uuid.uuid4())
        )

    first = await invoke(channels["news2"], _rpc("news2.RecordVitalSigns"), record_request(), token)
    assert first.ok, first.describe()
    key = first.responses[0].assessment.assessment_id
    get = storage_pb2.GetRecordRequest(tenant=BODO, patient_id=patient, kind="news2.assessment", key=key)
    original = (await invoke(channels["storage"], _rpc("storage.GetRecord"), get, token)).responses[0].record
    body = json.loads(original.payload.data)
    if mutation == "measured_at without a time zone":
        body["measured_at"] = body["measured_at"].replace("+00:00", "")
    elif mutation == "a total as text":
        body["score"]["total"] = str(body["score"]["total"])
    else:
        body["as_scored"]["pulse"] = str(body["as_scored"]["pulse"])
    later = (datetime.now(UTC) + timedelta(hours=1)).strftime("%Y%m%dT%H%M%S.%fZ") + "-" + "f" * 32
    put = storage_pb2.PutRecordRequest(
        tenant=BODO,
        patient_id=patient,
        kind="news2.assessment",
        key=later,
        idempotency_key=str(uuid.uuid4()),
        payload=storage_pb2.Payload(data=json.dumps(body).encode(), content_type=original.payload.content_type),
    )
    assert (await invoke(channels["storage"], _rpc("storage.PutRecord"), put, token)).ok

    listed = await invoke(
        channels["news2"], _rpc("news2.ListAssessments"), news2_pb2.ListAssessmentsRequest(patient_id=patient), token
    )
    assert listed.code == grpc.StatusCode.DATA_LOSS, listed.describe()
    assert listed.reason == "UNREADABLE_RECORD"
    second = await invoke(channels["news2"], _rpc("news2.RecordVitalSigns"), record_request(), token)
    assert second.ok, second.describe()
    assert second.responses[0].assessment.trend.previous_assessment_id == key
    await assert_serving(channels)
