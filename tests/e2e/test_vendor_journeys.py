"""Vendor journeys through `samhandling up`: every service its own process, real PostgreSQL, tokens
signed by the dev key the mesh trusts, calls made as a vendor backend or a citizen portal would."""

from __future__ import annotations

import signal
import subprocess
import uuid
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import asyncpg
import grpc
import pytest
from google.protobuf.timestamp_pb2 import Timestamp
from grpc import aio
from samhandling.access.v1 import access_pb2, access_pb2_grpc
from samhandling.news2.v1 import news2_pb2, news2_pb2_grpc
from samhandling.overview.v1 import overview_pb2, overview_pb2_grpc

from services.overview.api.servicer import oslo_today
from services.platform.dev_tokens import DevTokenRequest, mint_dev_token
from services.platform.embedded_database import EmbeddedPostgres
from services.platform.settings import SERVICES, Settings
from tests.contract.test_access import error_info
from tests.e2e.processes import clean_env, free_port, start, wait_serving
from tests.support import BAERUM_ORG, BODO, BODO_ORG, bearer, person_number

pytestmark = pytest.mark.e2e
NURSE_HPR, DOCTOR_HPR = "565505933", "123456789"


class Mesh:
    def __init__(self, data_dir: Path, ports: dict[str, int]) -> None:
        self.data_dir = data_dir
        self.ports = ports
        self.settings = Settings(data_dir=data_dir)

    def target(self, service: str) -> str:
        return f"127.0.0.1:{self.ports[service]}"

    def token(self, organisation: str = BODO_ORG, **fields: object) -> tuple[tuple[str, str], ...]:
        request = DevTokenRequest(
            organisation_number=organisation,
            issuer=self.settings.token_issuer,
            audience=self.settings.token_audience,
            **fields,  # type: ignore[arg-type]
        )
        return bearer(mint_dev_token(self.settings.dev_keys_dir, request))


@pytest.fixture(scope="module")
def mesh(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Mesh]:
    data_dir = tmp_path_factory.mktemp("journeys")
    ports = {name: free_port() for name in SERVICES}
    args = ["up", "--data-dir", str(data_dir)]
    for name, port in ports.items():
        args += [f"--{name}-port", str(port)]
    process = start(args, clean_env(), data_dir / "up.log")
    try:
        for port in ports.values():
            wait_serving(f"127.0.0.1:{port}", 90)
        yield Mesh(data_dir, ports)
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


async def expect_denied(call, reason: str) -> None:
    with pytest.raises(aio.AioRpcError) as raised:
        await call
    assert raised.value.code() == grpc.StatusCode.PERMISSION_DENIED, raised.value.details()
    assert error_info(raised.value).reason == reason


async def test_the_patient_decides_and_sees_who_looked(mesh: Mesh):
    patient = person_number()
    nurse = mesh.token(client_id="legevakt-ehr", hpr_number=NURSE_HPR, patient_ids=(patient,), name="Nina Sykepleier")
    nurse_btg = mesh.token(client_id="legevakt-ehr", hpr_number=NURSE_HPR, purpose_of_use="BTG", patient_ids=(patient,))
    doctor_btg = mesh.token(
        client_id="legevakt-ehr", hpr_number=DOCTOR_HPR, purpose_of_use="BTG", patient_ids=(patient,)
    )
    citizen = mesh.token(client_id="helsenorge", citizen_id=patient)
    privacy_officer = mesh.token(client_id="privacy-portal", privacy_officer=True)
    baerum = mesh.token(BAERUM_ORG, client_id="baerum-ehr", hpr_number=NURSE_HPR, patient_ids=(patient,))
    read = overview_pb2.GetOverviewRequest(patient_id=patient)

    async with (
        aio.insecure_channel(mesh.target("overview")) as overview_channel,
        aio.insecure_channel(mesh.target("access")) as access_channel,
    ):
        overview = overview_pb2_grpc.OverviewServiceStub(overview_channel)
        access = access_pb2_grpc.AccessServiceStub(access_channel)

        assert list((await overview.GetOverview(read, metadata=nurse)).entries) == []
        await access.RegisterObjection(access_pb2.RegisterObjectionRequest(patient_id=patient), metadata=citizen)
        await expect_denied(overview.GetOverview(read, metadata=nurse), "PATIENT_OBJECTED")

        follow_ups = access.WatchFollowUps(access_pb2.WatchFollowUpsRequest(), metadata=privacy_officer)
        await overview.GetOverview(read, metadata=nurse_btg)
        async for message in follow_ups:
            if message.entry.patient_id == patient:
                assert message.entry.break_the_glass and message.entry.actor.hpr_number == NURSE_HPR
                break
        follow_ups.cancel()

        await access.BlockPractitioner(
            access_pb2.BlockPractitionerRequest(patient_id=patient, hpr_number=NURSE_HPR), metadata=citizen
        )
        await expect_denied(overview.GetOverview(read, metadata=nurse_btg), "PRACTITIONER_BLOCKED")
        await overview.GetOverview(read, metadata=doctor_btg)
        await expect_denied(
            overview.GetOverview(overview_pb2.GetOverviewRequest(tenant=BODO, patient_id=patient), metadata=baerum),
            "TENANT_MISMATCH",
        )

        log = await access.ListAccessLog(access_pb2.ListAccessLogRequest(patient_id=patient), metadata=citizen)
        seen = [(entry.actor.hpr_number, entry.purpose_of_use, entry.reason) for entry in reversed(log.entries)]
        assert seen == [
            (NURSE_HPR, "TREAT", ""),
            ("", "", "OBJECTION_REGISTERED"),
            (NURSE_HPR, "TREAT", "PATIENT_OBJECTED"),
            (NURSE_HPR, "BTG", "OBJECTION_OVERRIDDEN"),
            ("", "", "PRACTITIONER_BLOCKED"),
            (NURSE_HPR, "BTG", "PRACTITIONER_BLOCKED"),
            (DOCTOR_HPR, "BTG", "OBJECTION_OVERRIDDEN"),
            (NURSE_HPR, "TREAT", "TENANT_MISMATCH"),
        ]
        assert log.entries[-1].actor.name == "Nina Sykepleier"
        assert all(
            entry.data_kind == access_pb2.DATA_KIND_SERVICES_OVERVIEW for entry in log.entries if entry.purpose_of_use
        )

        verdict = await access.VerifyAccessLog(access_pb2.VerifyAccessLogRequest(), metadata=nurse)
        assert verdict.intact
        tampered = log.entries[-1]
        connection = await asyncpg.connect(EmbeddedPostgres(mesh.data_dir).admin_url)
        try:
            await connection.execute("SET session_replication_role = replica")
            await connection.execute(
                "UPDATE access_log SET actor_hpr_number = '999999999' WHERE entry_id = $1", tampered.entry_id
            )
        finally:
            await connection.close()
        verdict = await access.VerifyAccessLog(access_pb2.VerifyAccessLogRequest(), metadata=nurse)
        assert not verdict.intact and verdict.first_broken_entry_id == tampered.entry_id
        assert verdict.first_broken_sequence == tampered.sequence


async def test_two_sources_submit_and_legevakt_reads_the_overview(mesh: Mesh):
    patient, today = person_number(), oslo_today()

    def source(client_id: str):
        return mesh.token(client_id=client_id, hpr_number=NURSE_HPR, patient_ids=(patient,))

    def submission(*services: overview_pb2.MunicipalService) -> overview_pb2.SubmitServicesRequest:
        return overview_pb2.SubmitServicesRequest(
            patient_id=patient, services=list(services), idempotency_key=str(uuid.uuid4())
        )

    home_nursing = overview_pb2.MunicipalService(
        service_type_code="15",
        start_date=(today - timedelta(days=20)).isoformat(),
        weekly_extent="7.5",
        responsible_unit=overview_pb2.Unit(name="Hjemmesykepleien sør", phone="75555000"),
    )
    alarm = overview_pb2.MunicipalService(service_type_code="06", start_date=(today - timedelta(days=90)).isoformat())
    async with aio.insecure_channel(mesh.target("overview")) as channel:
        overview = overview_pb2_grpc.OverviewServiceStub(channel)
        await overview.SubmitServices(submission(home_nursing, alarm), metadata=source("home-care-ehr"))
        await overview.SubmitServices(submission(alarm), metadata=source("alarm-central"))
        legevakt = source("legevakt-ehr")
        compiled = await overview.GetOverview(overview_pb2.GetOverviewRequest(patient_id=patient), metadata=legevakt)
        assert [entry.service.service_type_code for entry in compiled.entries] == ["15", "6"]
        assert compiled.entries[0].service.responsible_unit.phone == "75555000"
        assert compiled.entries[0].service.weekly_hours == 7.5
        assert [s.source_system for s in compiled.entries[1].sources] == ["alarm-central", "home-care-ehr"]
        count = await overview.CountActiveServices(
            overview_pb2.CountActiveServicesRequest(patient_id=patient), metadata=legevakt
        )
        assert count.active_count == 2


async def test_legevakt_records_vital_signs_and_the_alert_reaches_a_follower(mesh: Mesh):
    patient = person_number()
    nurse = mesh.token(client_id="legevakt-ehr", hpr_number=NURSE_HPR, purpose_of_use="ETREAT", patient_ids=(patient,))
    follower = mesh.token(client_id="alert-router", feed=True)
    measured = Timestamp()
    measured.GetCurrentTime()
    high = news2_pb2.VitalSigns(
        respiratory_rate=22,
        spo2=95,
        on_oxygen=False,
        systolic_bp=105,
        pulse=112,
        consciousness=news2_pb2.CONSCIOUSNESS_ALERT,
        temperature=38.4,
        measured_at=measured,
    )
    async with aio.insecure_channel(mesh.target("news2")) as channel:
        news2 = news2_pb2_grpc.News2ServiceStub(channel)
        request = news2_pb2.RecordVitalSignsRequest(
            patient_id=patient, vital_signs=high, idempotency_key=str(uuid.uuid4())
        )
        recorded = await news2.RecordVitalSigns(request, metadata=nurse)
        assert recorded.assessment.score.total == 7
        assert recorded.assessment.score.risk_level == news2_pb2.RISK_LEVEL_HIGH
        again = await news2.RecordVitalSigns(request, metadata=nurse)
        assert again.replayed and again.assessment.assessment_id == recorded.assessment.assessment_id

        listed = await news2.ListAssessments(news2_pb2.ListAssessmentsRequest(patient_id=patient), metadata=nurse)
        assert [a.assessment_id for a in listed.assessments] == [recorded.assessment.assessment_id]

        alerts = news2.WatchAlerts(
            news2_pb2.WatchAlertsRequest(from_sequence=recorded.assessment.sequence - 1), metadata=follower
        )
        first = await alerts.read()
        alerts.cancel()
        assert first.sequence == recorded.assessment.sequence
        assert news2_pb2.ALERT_REASON_HIGH_RISK in first.reasons
