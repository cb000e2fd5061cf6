"""Storage with its database gone: UNAVAILABLE (retryable), nothing half-written, health NOT_SERVING
while it is down and SERVING again by itself when it returns."""

from __future__ import annotations

import asyncio
import uuid

import grpc
import pytest
from grpc import aio
from grpc_health.v1 import health_pb2, health_pb2_grpc
from samhandling.storage.v1 import storage_pb2, storage_pb2_grpc

from services.platform.embedded_database import EmbeddedPostgres
from services.catalog import migrate_database
from tests.conftest import start_storage
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


async def wait_for_status(health: health_pb2_grpc.HealthStub, wanted: int, timeout: float = 15.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        response = await health.Check(health_pb2.HealthCheckRequest(service="samhandling.storage.v1.StorageService"))
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
