"""Storage with its database gone: UNAVAILABLE (retryable), nothing half-written, health NOT_SERVING
while it is down and SERVING again by itself when it returns."""

from __future__ import annotations

import asyncio
import uuid

import grpc
import pytest
from grpc import aio
from grpc_health.v1 import health_pb2, health_pb2_grpc
from samhandling.access.v1 import access_pb2, access_pb2_grpc
from samhandling.storage.v1 import storage_pb2, storage_pb2_grpc

from services.catalog import migrate_database
from services.platform.embedded_database import EmbeddedPostgres
from tests.conftest import start_service, start_storage
from tests.support import BODO, bearer, person_number

SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING


@pytest.fixture
def own_database(tmp_path):
    postgres = EmbeddedPostgres(tmp_path)
    migrate_database(postgres.start())
    yield postgres
    postgres.stop()


def put(patient: str, key: str) -> storage_pb2.PutRecordRequest:
    return storage_pb2.PutRecordRequest(
        tenant=BODO,
        patient_id=patient,
        kind="test.outage",
        key=key,
        idempotency_key=str(uuid.uuid4()),
        payload=storage_pb2.Payload(data=b"x", content_type="text/plain"),
    )


async def wait_for_status(
    health: health_pb2_grpc.HealthStub,
    wanted: int,
    timeout: float = 15.0,
    service: str = "samhandling.storage.v1.StorageService",
) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        response = await health.Check(health_pb2.HealthCheckRequest(service=service))
        if response.status == wanted:
            return
        assert asyncio.get_running_loop().time() < deadline, f"health stayed {response.status}"
        await asyncio.sleep(0.1)


async def test_database_outage_is_unavailable_and_recovers_by_itself(settings, own_database, mint):
    running = await start_storage(settings, own_database.url)
    token, patient = mint(BODO), person_number()
    try:
        async with aio.insecure_channel(f"127.0.0.1:{running.port}") as channel:
            storage = storage_pb2_grpc.StorageServiceStub(channel)
            health = health_pb2_grpc.HealthStub(channel)
            await storage.PutRecord(put(patient, "before"), metadata=bearer(token))

            await asyncio.to_thread(own_database.stop, "fast")
            with pytest.raises(aio.AioRpcError) as down:
                await storage.PutRecord(put(patient, "during"), metadata=bearer(token), timeout=15)
            assert down.value.code() == grpc.StatusCode.UNAVAILABLE
            await wait_for_status(health, NOT_SERVING)
            # Alive, only not ready: a liveness probe on the overall status must not restart the pod.
            overall = await health.Check(health_pb2.HealthCheckRequest(service=""))
            assert overall.status == SERVING

            await asyncio.to_thread(own_database.start)
            await wait_for_status(health, SERVING)
            after = await storage.PutRecord(put(patient, "after"), metadata=bearer(token))
            with pytest.raises(aio.AioRpcError) as missing:
                await storage.GetRecord(
                    storage_pb2.GetRecordRequest(tenant=BODO, patient_id=patient, kind="test.outage", key="during"),
                    metadata=bearer(token),
                )
    finally:
        await running.stop()

    assert after.record.version == 1
    assert missing.value.code() == grpc.StatusCode.NOT_FOUND


async def test_no_access_is_granted_when_the_decision_cannot_be_logged(settings, own_database, mint):
    running = await start_service("access", settings, own_database.url)
    patient = person_number()
    token = bearer(mint(BODO, hpr_number="565505933", patient_ids=(patient,)))
    citizen = bearer(mint(BODO, citizen_id=patient))
    request = access_pb2.AuthorizeRequest(
        patient_id=patient, data_kind=access_pb2.DATA_KIND_SERVICES_OVERVIEW, action=access_pb2.ACTION_READ
    )
    try:
        async with aio.insecure_channel(f"127.0.0.1:{running.port}") as channel:
            access = access_pb2_grpc.AccessServiceStub(channel)
            health = health_pb2_grpc.HealthStub(channel)
            await access.Authorize(request, metadata=token)

            await asyncio.to_thread(own_database.stop, "fast")
            with pytest.raises(aio.AioRpcError) as down:
                await access.Authorize(request, metadata=token, timeout=15)
            assert down.value.code() == grpc.StatusCode.UNAVAILABLE
            await wait_for_status(health, NOT_SERVING, service="samhandling.access.v1.AccessService")

            await asyncio.to_thread(own_database.start)
            await wait_for_status(health, SERVING, service="samhandling.access.v1.AccessService")
            await access.Authorize(request, metadata=token)
            log = await access.ListAccessLog(access_pb2.ListAccessLogRequest(patient_id=patient), metadata=citizen)
            verdict = await access.VerifyAccessLog(access_pb2.VerifyAccessLogRequest(), metadata=token)
    finally:
        await running.stop()

    assert len(log.entries) == 2, "the call during the outage must have left no entry"
    assert verdict.intact
