"""The platform kit on a real server: request ids, error mapping, client deadlines and retries, and
graceful shutdown."""

from __future__ import annotations

import asyncio
import uuid

import asyncpg
import grpc
import pytest
from google.protobuf import wrappers_pb2
from grpc import aio
from grpc_health.v1 import health_pb2, health_pb2_grpc
from samhandling.storage.v1 import storage_pb2, storage_pb2_grpc

from services.catalog import build_verifier
from services.platform import request_context
from services.platform.channels import open_channel
from services.platform.embedded_database import ADMIN_ROLE
from services.platform.errors import NotFound
from services.platform.server import ServiceDefinition, start_server
from tests.conftest import start_storage
from tests.support import BODO, bearer, person_number

PROBE = "test.v1.ProbeService"


class Probe:
    """A tiny real service whose methods misbehave on purpose."""

    def __init__(self) -> None:
        self.attempts: dict[str, int] = {}

    def _count(self, name: str) -> int:
        self.attempts[name] = self.attempts.get(name, 0) + 1
        return self.attempts[name]

    async def flaky_read(self, request, context):
        if self._count("FlakyRead") < 3:
            await context.abort(grpc.StatusCode.UNAVAILABLE, "try again")
        return wrappers_pb2.StringValue(value="ok")

    async def flaky_write(self, request, context):
        self._count("FlakyWrite")
        await context.abort(grpc.StatusCode.UNAVAILABLE, "try again")

    async def slow(self, request, context):
        await asyncio.sleep(3)
        return wrappers_pb2.StringValue(value="late")

    async def echo_caller(self, request, context):
        caller = request_context.current_principal()
        return wrappers_pb2.StringValue(value=f"{caller.client_id}|{request_context.request_id.get()}")

    async def crash(self, request, context):
        raise RuntimeError("patient 01010112345 exploded")

    async def missing(self, request, context):
        raise NotFound("no such thing")

    async def upload(self, requests, context):
        self._count("Upload")
        return wrappers_pb2.StringValue(value="accepted without a verified token")

    def definition(self) -> ServiceDefinition:
        def handler(behaviour):
            return grpc.unary_unary_rpc_method_handler(
                behaviour,
                request_deserializer=wrappers_pb2.StringValue.FromString,
                response_serializer=wrappers_pb2.StringValue.SerializeToString,
            )

        methods = {
            "FlakyRead": handler(self.flaky_read),
            "FlakyWrite": handler(self.flaky_write),
            "Slow": handler(self.slow),
            "EchoCaller": handler(self.echo_caller),
            "Crash": handler(self.crash),
            "Missing": handler(self.missing),
            "Upload": grpc.stream_unary_rpc_method_handler(
                self.upload,
                request_deserializer=wrappers_pb2.StringValue.FromString,
                response_serializer=wrappers_pb2.StringValue.SerializeToString,
            ),
        }
        return ServiceDefinition(
            full_name=PROBE,
            register=lambda server: server.add_generic_rpc_handlers(
                (grpc.method_handlers_generic_handler(PROBE, methods),)
            ),
        )


@pytest.fixture
async def probe(settings):
    service = Probe()
    running = await start_server(
        service.definition(),
        verifier=build_verifier(settings),
        host="127.0.0.1",
        port=0,
        max_payload_bytes=1024,
        grace_seconds=1,
    )
    yield service, f"127.0.0.1:{running.port}"
    await running.stop()


def call(channel: aio.Channel, method: str):
    return channel.unary_unary(
        f"/{PROBE}/{method}",
        request_serializer=wrappers_pb2.StringValue.SerializeToString,
        response_deserializer=wrappers_pb2.StringValue.FromString,
    )


async def test_idempotent_methods_are_retried_and_others_are_not(probe, mint):
    service, target = probe
    token = mint(BODO)
    async with open_channel(target, idempotent_methods=[(PROBE, "FlakyRead")], timeout_seconds=5) as channel:
        answer = await call(channel, "FlakyRead")(wrappers_pb2.StringValue(), metadata=bearer(token))
        with pytest.raises(aio.AioRpcError) as failed:
            await call(channel, "FlakyWrite")(wrappers_pb2.StringValue(), metadata=bearer(token))

    assert answer.value == "ok" and service.attempts["FlakyRead"] == 3
    assert failed.value.code() == grpc.StatusCode.UNAVAILABLE and service.attempts["FlakyWrite"] == 1


async def test_every_call_gets_a_deadline(probe, mint):
    _, target = probe
    async with open_channel(target, timeout_seconds=0.3) as channel:
        with pytest.raises(aio.AioRpcError) as late:
            await call(channel, "Slow")(wrappers_pb2.StringValue(), metadata=bearer(mint(BODO)))
    assert late.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED


async def test_the_callers_token_and_request_id_are_forwarded_to_peers(probe, mint):
    _, target = probe
    token_var = request_context.bearer_token.set(mint(BODO, client_id="vendor-x"))
    id_var = request_context.request_id.set("req-42")
    try:
        async with open_channel(target) as channel:
            answer = await call(channel, "EchoCaller")(wrappers_pb2.StringValue())
    finally:
        request_context.bearer_token.reset(token_var)
        request_context.request_id.reset(id_var)
    assert answer.value == "vendor-x|req-42"


async def test_request_id_is_taken_from_the_caller_or_made_and_echoed(probe, mint):
    _, target = probe
    async with aio.insecure_channel(target) as channel:
        given = call(channel, "EchoCaller")(
            wrappers_pb2.StringValue(), metadata=(*bearer(mint(BODO)), ("x-request-id", "abc-123"))
        )
        made = call(channel, "EchoCaller")(wrappers_pb2.StringValue(), metadata=bearer(mint(BODO)))
        given_answer, made_answer = await given, await made
        made_header = dict(await made.trailing_metadata())["x-request-id"]
        with pytest.raises(aio.AioRpcError) as failed:
            await call(channel, "Missing")(
                wrappers_pb2.StringValue(), metadata=(*bearer(mint(BODO)), ("x-request-id", "failing-1"))
            )

    assert given_answer.value.endswith("|abc-123")
    assert dict(await given.trailing_metadata())["x-request-id"] == "abc-123"
    assert uuid.UUID(made_header) and made_answer.value.endswith(f"|{made_header}")
    assert dict(failed.value.trailing_metadata())["x-request-id"] == "failing-1"


async def test_unexpected_errors_are_internal_without_leaking_and_domain_errors_keep_their_code(probe, mint, caplog):
    _, target = probe
    async with aio.insecure_channel(target) as channel:
        with pytest.raises(aio.AioRpcError) as crashed:
            await call(channel, "Crash")(wrappers_pb2.StringValue(), metadata=bearer(mint(BODO)))
        with pytest.raises(aio.AioRpcError) as missing:
            await call(channel, "Missing")(wrappers_pb2.StringValue(), metadata=bearer(mint(BODO)))

    assert crashed.value.code() == grpc.StatusCode.INTERNAL
    assert "01010112345" not in crashed.value.details() and "request id" in crashed.value.details()
    assert "RuntimeError" in caplog.text and "01010112345" not in caplog.text
    assert (missing.value.code(), missing.value.details()) == (grpc.StatusCode.NOT_FOUND, "no such thing")


async def test_graceful_shutdown_goes_not_serving_and_lets_in_flight_calls_finish(settings, database, mint):
    running = await start_storage(settings, database.url)
    admin = await asyncpg.connect(host=str(database.socket_dir), user=ADMIN_ROLE, database="samhandling")
    token = mint(BODO)
    patient = person_number()
    async with aio.insecure_channel(f"127.0.0.1:{running.port}") as channel:
        health_updates = health_pb2_grpc.HealthStub(channel).Watch(health_pb2.HealthCheckRequest())
        assert (await health_updates.read()).status == health_pb2.HealthCheckResponse.SERVING
        blocker = admin.transaction()
        await blocker.start()
        await admin.execute("LOCK TABLE tenant_feeds IN EXCLUSIVE MODE")  # holds every write mid-flight
        in_flight = asyncio.ensure_future(
            storage_pb2_grpc.StorageServiceStub(channel).PutRecord(
                storage_pb2.PutRecordRequest(
                    tenant=BODO,
                    patient_id=patient,
                    kind="test.shutdown",
                    key="k",
                    idempotency_key=str(uuid.uuid4()),
                    payload=storage_pb2.Payload(data=b"x", content_type="text/plain"),
                ),
                metadata=bearer(token),
                timeout=10,
            )
        )
        await asyncio.sleep(0.5)
        stopping = asyncio.ensure_future(running.stop())
        update = await asyncio.wait_for(health_updates.read(), 5)
        assert update.status == health_pb2.HealthCheckResponse.NOT_SERVING
        assert not in_flight.done()
        await blocker.commit()
        response = await asyncio.wait_for(in_flight, 5)
        await asyncio.wait_for(stopping, 5)
    await admin.close()
    assert response.record.version == 1


async def test_streams_through_a_peer_channel_carry_the_token_and_no_deadline(storage_server, mint):
    token_var = request_context.bearer_token.set(mint(BODO))
    try:
        async with open_channel(f"127.0.0.1:{storage_server.port}", timeout_seconds=0.5) as channel:
            stub = storage_pb2_grpc.StorageServiceStub(channel)
            stream = stub.Watch(storage_pb2.WatchRequest(tenant=BODO, from_sequence=0))
            first = await asyncio.wait_for(stream.read(), 5)
            await asyncio.sleep(1.0)  # longer than the unary deadline: a stream must outlive it
            assert stream.done() is False
            stream.cancel()
    finally:
        request_context.bearer_token.reset(token_var)
    assert first.record.tenant == BODO


async def test_client_streaming_methods_are_refused_rather_than_run_unauthenticated(probe):
    service, target = probe
    async with aio.insecure_channel(target) as channel:
        upload = channel.stream_unary(
            f"/{PROBE}/Upload",
            request_serializer=wrappers_pb2.StringValue.SerializeToString,
            response_deserializer=wrappers_pb2.StringValue.FromString,
        )
        with pytest.raises(aio.AioRpcError) as refused:
            await upload(iter([wrappers_pb2.StringValue(value="x")]))
    assert refused.value.code() == grpc.StatusCode.UNIMPLEMENTED
    assert "Upload" not in service.attempts
