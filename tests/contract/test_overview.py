"""The overview service over real gRPC, in the in-process mesh (overview → access → storage →
PostgreSQL), as two source systems and a legevakt would call it."""

from __future__ import annotations

import json
import uuid
from datetime import date, timedelta

import grpc
import pytest
from fhir.resources.R4B.bundle import Bundle
from grpc import aio
from samhandling.access.v1 import access_pb2
from samhandling.overview.v1 import overview_pb2, overview_pb2_grpc

from services.overview.api.servicer import oslo_today
from tests.contract.test_access import error_info, field_violations
from tests.support import BAERUM, BODO, bearer, person_number

HOME_CARE, NURSING_HOME, LEGEVAKT = "home-care-ehr", "nursing-home-ehr", "legevakt-ehr"
NURSE_HPR = "565505933"
UNIT = overview_pb2.Unit(name="Hjemmesykepleien sone sør", organisation_number="972418013", phone="75555000")


@pytest.fixture
async def overview(overview_server):
    async with aio.insecure_channel(f"127.0.0.1:{overview_server.port}") as channel:
        yield overview_pb2_grpc.OverviewServiceStub(channel)


@pytest.fixture
def patient() -> str:
    return person_number()


@pytest.fixture
def as_source(mint, patient):
    def _as(client_id: str, tenant: str = BODO, purpose: str = "TREAT", patients=None):
        return bearer(
            mint(
                tenant,
                client_id=client_id,
                hpr_number=NURSE_HPR,
                purpose_of_use=purpose,
                patient_ids=tuple(patients or (patient,)),
            )
        )

    return _as


def service(code: str, start: date, end: date | None = None, **fields) -> overview_pb2.MunicipalService:
    return overview_pb2.MunicipalService(
        service_type_code=code,
        start_date=start.isoformat(),
        end_date=end.isoformat() if end else "",
        responsible_unit=fields.pop("responsible_unit", UNIT),
        **fields,
    )


def submit(patient: str, *services: overview_pb2.MunicipalService, key: str | None = None):
    return overview_pb2.SubmitServicesRequest(
        patient_id=patient, services=list(services), idempotency_key=key or str(uuid.uuid4())
    )


async def get(overview, patient, metadata) -> overview_pb2.GetOverviewResponse:
    return await overview.GetOverview(overview_pb2.GetOverviewRequest(patient_id=patient), metadata=metadata)


async def test_two_sources_compile_into_one_overview_and_a_replacement_keeps_the_other(
    overview, patient, as_source, storage
):
    today = oslo_today()
    first = await overview.SubmitServices(
        submit(
            patient,
            service("01", today - timedelta(days=30), weekly_extent="5 timer"),
            service("6", today - timedelta(days=300)),
        ),
        metadata=as_source(HOME_CARE),
    )
    assert first.source_system == HOME_CARE and first.version == 1
    assert [s.service_type_code for s in first.services] == ["1", "6"]
    assert first.services[0].service_type_display == "Praktisk bistand - daglige gjøremål"
    assert first.services[0].weekly_hours == 5.0

    await overview.SubmitServices(
        submit(
            patient,
            service("15", today - timedelta(days=10), temporary_cessation=True),
            service("6", today - timedelta(days=200)),
        ),
        metadata=as_source(NURSING_HOME),
    )
    compiled = await get(overview, patient, as_source(LEGEVAKT))
    statuses = [(entry.service.service_type_code, entry.status) for entry in compiled.entries]
    assert statuses == [
        ("1", overview_pb2.SERVICE_STATUS_ACTIVE),
        ("6", overview_pb2.SERVICE_STATUS_ACTIVE),
        ("15", overview_pb2.SERVICE_STATUS_ON_HOLD),
    ]
    alarm = compiled.entries[1]
    assert sorted(source.source_system for source in alarm.sources) == [HOME_CARE, NURSING_HOME]
    assert compiled.active_count == 2

    # Home care replaces its list: practical help ended yesterday, the alarm is no longer theirs.
    second = await overview.SubmitServices(
        submit(patient, service("1", today - timedelta(days=30), today - timedelta(days=1))),
        metadata=as_source(HOME_CARE),
    )
    assert second.version == 2
    compiled = await get(overview, patient, as_source(LEGEVAKT))
    statuses = [(entry.service.service_type_code, entry.status) for entry in compiled.entries]
    assert statuses == [
        ("6", overview_pb2.SERVICE_STATUS_ACTIVE),
        ("15", overview_pb2.SERVICE_STATUS_ON_HOLD),
        ("1", overview_pb2.SERVICE_STATUS_ENDED),
    ]
    assert [source.source_system for source in compiled.entries[0].sources] == [NURSING_HOME]

    count = await overview.CountActiveServices(
        overview_pb2.CountActiveServicesRequest(patient_id=patient), metadata=as_source(LEGEVAKT)
    )
    assert count.active_count == compiled.active_count == 1

    history = await overview.ListSubmissions(
        overview_pb2.ListSubmissionsRequest(patient_id=patient, source_system=HOME_CARE), metadata=as_source(LEGEVAKT)
    )
    assert [(s.version, len(s.services)) for s in history.submissions] == [(1, 2), (2, 1)]


async def test_an_empty_list_means_the_source_delivers_nothing_now(overview, patient, as_source):
    today = oslo_today()
    await overview.SubmitServices(submit(patient, service("6", today)), metadata=as_source(HOME_CARE))
    await overview.SubmitServices(submit(patient), metadata=as_source(HOME_CARE))
    assert list((await get(overview, patient, as_source(LEGEVAKT))).entries) == []


async def test_an_unknown_patient_has_an_empty_overview_and_a_zero_count(overview, patient, as_source):
    compiled = await get(overview, patient, as_source(LEGEVAKT))
    assert list(compiled.entries) == [] and compiled.active_count == 0
    count = await overview.CountActiveServices(
        overview_pb2.CountActiveServicesRequest(patient_id=patient), metadata=as_source(LEGEVAKT)
    )
    assert count.active_count == 0 and count.as_of_date == oslo_today().isoformat()


async def test_the_same_idempotency_key_stores_once(overview, patient, as_source, storage):
    request = submit(patient, service("6", oslo_today()), key="submission-1")
    first = await overview.SubmitServices(request, metadata=as_source(HOME_CARE))
    again = await overview.SubmitServices(request, metadata=as_source(HOME_CARE))
    assert not first.replayed and again.replayed and again.sequence == first.sequence
    history = await overview.ListSubmissions(
        overview_pb2.ListSubmissionsRequest(patient_id=patient), metadata=as_source(HOME_CARE)
    )
    assert len(history.submissions) == 1


async def test_local_codes_are_accepted_only_in_the_local_code_system(overview, patient, as_source):
    physio = overview_pb2.MunicipalService(
        code_system=overview_pb2.CODE_SYSTEM_LOCAL,
        service_type_code="FYSIO",
        local_display="Fysioterapi",
        start_date=oslo_today().isoformat(),
    )
    await overview.SubmitServices(submit(patient, physio), metadata=as_source(HOME_CARE))
    [entry] = (await get(overview, patient, as_source(LEGEVAKT))).entries
    assert entry.local and entry.service.service_type_display == "Fysioterapi"

    national = overview_pb2.MunicipalService(service_type_code="FYSIO", start_date=oslo_today().isoformat())
    with pytest.raises(aio.AioRpcError) as raised:
        await overview.SubmitServices(submit(patient, national), metadata=as_source(HOME_CARE))
    assert field_violations(raised.value) == ["services[0].service_type_code"]


@pytest.mark.parametrize(
    ("bad", "field"),
    [
        ({"service_type_code": "99"}, "services[1].service_type_code"),
        ({"start_date": "2026-12-01", "end_date": "2026-11-01"}, "services[1].end_date"),
        ({"end_date": "01.12.2026"}, "services[1].end_date"),
        ({"description": "x" * 501}, "services[1].description"),
        (
            {"responsible_unit": overview_pb2.Unit(name="Sone", organisation_number="123456789")},
            "services[1].responsible_unit.organisation_number",
        ),
    ],
)
async def test_bad_entries_are_rejected_by_field_and_index_and_nothing_is_stored(
    overview, patient, as_source, bad, field
):
    good = service("6", oslo_today())
    fields = {"service_type_code": "1", "start_date": oslo_today().isoformat()} | bad
    with pytest.raises(aio.AioRpcError) as raised:
        await overview.SubmitServices(
            submit(patient, good, overview_pb2.MunicipalService(**fields)), metadata=as_source(HOME_CARE)
        )
    assert raised.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert field_violations(raised.value) == [field]
    assert list((await get(overview, patient, as_source(LEGEVAKT))).entries) == []


async def test_too_many_services_in_one_submission(overview, patient, as_source):
    many = [service("6", oslo_today())] * 201
    with pytest.raises(aio.AioRpcError) as raised:
        await overview.SubmitServices(submit(patient, *many), metadata=as_source(HOME_CARE))
    assert field_violations(raised.value) == ["services"]


async def test_a_patient_id_failing_its_check_digits_is_invalid(overview, as_source):
    with pytest.raises(aio.AioRpcError) as raised:
        await overview.GetOverview(
            overview_pb2.GetOverviewRequest(patient_id="01019012481"), metadata=as_source(LEGEVAKT)
        )
    assert raised.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert field_violations(raised.value) == ["patient_id"]


async def test_a_baerum_token_never_sees_bodo_patients(overview, patient, as_source):
    await overview.SubmitServices(submit(patient, service("6", oslo_today())), metadata=as_source(HOME_CARE))
    baerum = as_source(LEGEVAKT, tenant=BAERUM)
    with pytest.raises(aio.AioRpcError) as raised:
        await overview.GetOverview(overview_pb2.GetOverviewRequest(tenant=BODO, patient_id=patient), metadata=baerum)
    assert raised.value.code() == grpc.StatusCode.PERMISSION_DENIED
    assert error_info(raised.value).reason == "TENANT_MISMATCH"
    # In its own area, Bærum sees what it sees for any patient it knows nothing about.
    assert list((await get(overview, patient, baerum)).entries) == []


async def test_a_patient_objection_stops_reads_and_writes(overview, access, mint, patient, as_source):
    await access.RegisterObjection(
        access_pb2.RegisterObjectionRequest(patient_id=patient), metadata=bearer(mint(BODO, citizen_id=patient))
    )
    for call in (
        get(overview, patient, as_source(LEGEVAKT)),
        overview.SubmitServices(submit(patient, service("6", oslo_today())), metadata=as_source(HOME_CARE)),
    ):
        with pytest.raises(aio.AioRpcError) as raised:
            await call
        assert raised.value.code() == grpc.StatusCode.PERMISSION_DENIED
        assert error_info(raised.value).reason == "PATIENT_OBJECTED"
    broken_glass = await get(overview, patient, as_source(LEGEVAKT, purpose="BTG"))
    assert list(broken_glass.entries) == []


async def test_watch_resumes_from_a_sequence_without_gaps_or_repeats(overview, mint, as_source):
    patients = [person_number() for _ in range(3)]
    sequences = []
    for patient in patients:
        response = await overview.SubmitServices(
            submit(patient, service("6", oslo_today())), metadata=as_source(HOME_CARE, patients=(patient,))
        )
        sequences.append(response.sequence)
    follower = bearer(mint(BODO, client_id="forwarder", purpose_of_use="TREAT", feed=True))
    seen = []
    stream = overview.WatchOverviews(
        overview_pb2.WatchOverviewsRequest(from_sequence=sequences[0] - 1), metadata=follower
    )
    async for message in stream:
        seen.append((message.sequence, message.patient_id))
        if message.sequence >= sequences[0]:
            break
    stream.cancel()
    stream = overview.WatchOverviews(overview_pb2.WatchOverviewsRequest(from_sequence=seen[-1][0]), metadata=follower)
    async for message in stream:
        seen.append((message.sequence, message.patient_id))
        assert len(message.overview.entries) == 1
        if message.sequence >= sequences[-1]:
            break
    stream.cancel()
    mine = [entry for entry in seen if entry[1] in patients]
    assert mine == list(zip(sequences, patients, strict=True))
    assert [sequence for sequence, _ in seen] == sorted({sequence for sequence, _ in seen})


async def test_the_overview_exports_as_a_valid_fhir_bundle_of_episodes_of_care(overview, patient, as_source):
    today = oslo_today()
    await overview.SubmitServices(
        submit(
            patient,
            service("15", today - timedelta(days=3), weekly_extent="7,5 timer"),
            service("18", today + timedelta(days=5)),
            service("6", today - timedelta(days=3), temporary_cessation=True),
        ),
        metadata=as_source(HOME_CARE),
    )
    exported = await overview.ExportOverview(
        overview_pb2.ExportOverviewRequest(patient_id=patient), metadata=as_source(LEGEVAKT)
    )
    bundle = json.loads(exported.fhir_json)
    Bundle.model_validate(bundle)
    episodes = [entry["resource"] for entry in bundle["entry"]]
    assert [episode["status"] for episode in episodes] == ["active", "onhold", "planned"]
    coding = episodes[0]["type"][0]["coding"][0]
    assert coding["system"] == "urn:oid:2.16.578.1.12.4.1.1.9151" and coding["code"] == "15"
    assert episodes[0]["patient"]["identifier"]["value"] == patient
    assert "application/fhir+json" in exported.content_type


async def test_following_the_feed_needs_the_feed_scope(overview, as_source):
    stream = overview.WatchOverviews(overview_pb2.WatchOverviewsRequest(), metadata=as_source(LEGEVAKT))
    with pytest.raises(aio.AioRpcError) as raised:
        await stream.read()
    assert raised.value.code() == grpc.StatusCode.PERMISSION_DENIED
    assert error_info(raised.value).reason == "FEED_NOT_ALLOWED"


async def test_the_feed_leaves_out_patients_who_objected(overview, access, mint, as_source):
    objector, other = person_number(), person_number()
    await access.RegisterObjection(
        access_pb2.RegisterObjectionRequest(patient_id=objector), metadata=bearer(mint(BODO, citizen_id=objector))
    )
    first = await overview.SubmitServices(
        submit(objector, service("6", oslo_today())), metadata=as_source(HOME_CARE, purpose="BTG", patients=(objector,))
    )
    last = await overview.SubmitServices(
        submit(other, service("6", oslo_today())), metadata=as_source(HOME_CARE, patients=(other,))
    )
    follower = bearer(mint(BODO, client_id="forwarder", feed=True))
    stream = overview.WatchOverviews(
        overview_pb2.WatchOverviewsRequest(from_sequence=first.sequence - 1), metadata=follower
    )
    seen = []
    async for message in stream:
        seen.append(message.patient_id)
        if message.sequence >= last.sequence:
            break
    stream.cancel()
    assert other in seen and objector not in seen


async def test_a_vendor_may_use_the_same_key_for_services_and_vital_signs(overview, news2_server, patient, as_source):
    from samhandling.news2.v1 import news2_pb2, news2_pb2_grpc

    key = "visit-2026-11-26-17"
    submitted = await overview.SubmitServices(
        submit(patient, service("6", oslo_today()), key=key), metadata=as_source(HOME_CARE)
    )
    measured = news2_pb2.VitalSigns(
        respiratory_rate=16,
        spo2=97,
        on_oxygen=False,
        systolic_bp=125,
        pulse=72,
        consciousness=news2_pb2.CONSCIOUSNESS_ALERT,
        temperature=37.0,
    )
    measured.measured_at.GetCurrentTime()
    async with aio.insecure_channel(f"127.0.0.1:{news2_server.port}") as channel:
        recorded = await news2_pb2_grpc.News2ServiceStub(channel).RecordVitalSigns(
            news2_pb2.RecordVitalSignsRequest(patient_id=patient, vital_signs=measured, idempotency_key=key),
            metadata=as_source(HOME_CARE),
        )
    assert not submitted.replayed and not recorded.replayed and recorded.assessment.score.total == 0
