"""The server kit's limits over real gRPC, on real services where one fits (storage on a real
PostgreSQL, news2) and on a small probe service where a handler has to misbehave on purpose:
message size, streams per connection, per-client rate and streams, and the server's own deadline.

Nothing here asserts how fast anything is: every wait is for an event, with a generous cap that only
a broken limit reaches."""

from __future__ import annotations

import asyncio
import collections
import time
import uuid
from collections.abc import Callable

import asyncpg
import grpc
import pytest
from google.protobuf import wrappers_pb2
from google.rpc import error_details_pb2
from grpc import aio
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_status import rpc_status
from samhandling.news2.v1 import news2_pb2, news2_pb2_grpc
from samhandling.overview.v1 import overview_pb2, overview_pb2_grpc
from samhandling.storage.v1 import storage_pb2, storage_pb2_grpc

from services.catalog import build_service, build_verifier
from services.platform import request_context
from services.platform.embedded_database import ADMIN_ROLE
from services.platform.rate_limits import ServerLimits
from services.platform.server import RunningServer, ServiceDefinition, max_message_bytes, start_server
from services.platform.settings import Settings
from services.platform.status import ERROR_DOMAIN, RETRY_PUSHBACK_HEADER
from tests.support import BAERUM, BODO, bearer, person_number

PROBE = "test.v1.LimitsProbe"
KIND = "test.limits"
# The longest any wait below may take before the test gives up: only a broken limit gets there.
PATIENCE = 10.0
NO_RATE_LIMIT = {"rate_limit_per_second": 0.0}


async def until(condition: Callable[[], bool], what: str) -> None:
    deadline = time.monotonic() + PATIENCE
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"gave up waiting for {what}")
        await asyncio.sleep(0.01)


def error_details(error: aio.AioRpcError) -> tuple[error_details_pb2.ErrorInfo, error_details_pb2.RetryInfo | None]:
    status = rpc_status.from_call(error)
    assert status is not None, "no google.rpc.Status details"
    info, retry = None, None
    for detail in status.details:
        if detail.Is(error_details_pb2.ErrorInfo.DESCRIPTOR):
            info = error_details_pb2.ErrorInfo()
            detail.Unpack(info)
        elif detail.Is(error_details_pb2.RetryInfo.DESCRIPTOR):
            retry = error_details_pb2.RetryInfo()
            detail.Unpack(retry)
    assert info is not None, "no ErrorInfo"
    return info, retry


async def start_limited(
    name: str, settings: Settings, database_url: str | None = None, **limits: float
) -> RunningServer:
    """A real service, built as `samhandling serve` builds it, with the given limits."""
    return await start_server(
        build_service(name, settings, database_url),
        verifier=build_verifier(settings),
        host="127.0.0.1",
        port=0,
        max_payload_bytes=settings.max_payload_bytes,
        grace_seconds=1,
        limits=ServerLimits(**limits),
    )


def channel_to(running: RunningServer) -> aio.Channel:
    # Its own subchannel pool: a connection of its own, not one shared with another test's channel.
    return aio.insecure_channel(f"127.0.0.1:{running.port}", options=[("grpc.use_local_subchannel_pool", 1)])


# --- a probe service -------------------------------------------------------------------------------


class Probe:
    """Unary methods that hold until released, hang until cancelled, or report the deadline peers get."""

    def __init__(self) -> None:
        self.active: collections.Counter[str] = collections.Counter()
        self.peak: collections.Counter[str] = collections.Counter()
        self.release = asyncio.Event()
        self.cancelled = asyncio.Event()
        self.finished = asyncio.Event()

    async def ping(self, request, context):
        return wrappers_pb2.StringValue(value="pong")

    async def hold(self, request, context):
        tag = request.value
        self.active[tag] += 1
        self.peak[tag] = max(self.peak[tag], self.active[tag])
        try:
            await self.release.wait()
        finally:
            self.active[tag] -= 1
        return wrappers_pb2.StringValue(value=tag)

    async def hang(self, request, context):
        try:
            await asyncio.sleep(3600)
        except asyncio.CancelledError:
            self.cancelled.set()
            raise
        self.finished.set()
        return wrappers_pb2.StringValue(value="finished")

    async def peer_deadline(self, request, context):
        deadline = request_context.deadline.get()
        return wrappers_pb2.StringValue(value="none" if deadline is None else f"{deadline - time.monotonic():.3f}")

    def definition(self) -> ServiceDefinition:
        def unary(behaviour):
            return grpc.unary_unary_rpc_method_handler(
                behaviour,
                request_deserializer=wrappers_pb2.StringValue.FromString,
                response_serializer=wrappers_pb2.StringValue.SerializeToString,
            )

        methods = {
            "Ping": unary(self.ping),
            "Hold": unary(self.hold),
            "Hang": unary(self.hang),
            "PeerDeadline": unary(self.peer_deadline),
        }
        return ServiceDefinition(
            full_name=PROBE,
            register=lambda server: server.add_generic_rpc_handlers(
                (grpc.method_handlers_generic_handler(PROBE, methods),)
            ),
        )


async def start_probe(settings: Settings, **limits: float) -> tuple[Probe, RunningServer]:
    probe = Probe()
    running = await start_server(
        probe.definition(),
        verifier=build_verifier(settings),
        host="127.0.0.1",
        port=0,
        max_payload_bytes=1024,
        grace_seconds=1,
        limits=ServerLimits(**limits),
    )
    return probe, running


def probe_call(channel: aio.Channel, method: str):
    return channel.unary_unary(
        f"/{PROBE}/{method}",
        request_serializer=wrappers_pb2.StringValue.SerializeToString,
        response_deserializer=wrappers_pb2.StringValue.FromString,
    )


# --- message size ----------------------------------------------------------------------------------


async def test_an_oversized_request_is_refused_by_the_transport_and_nothing_is_stored(storage, settings, mint):
    token, patient = mint(BODO), person_number()
    too_big = max_message_bytes(settings.max_payload_bytes)  # the payload alone fills the whole message
    request = storage_pb2.PutRecordRequest(
        tenant=BODO,
        patient_id=patient,
        kind=KIND,
        key="big",
        payload=storage_pb2.Payload(data=b"x" * too_big, content_type="application/octet-stream"),
        idempotency_key=str(uuid.uuid4()),
    )

    with pytest.raises(aio.AioRpcError) as refused:
        await storage.PutRecord(request, metadata=bearer(token), timeout=PATIENCE)
    with pytest.raises(aio.AioRpcError) as missing:
        await storage.GetRecord(
            storage_pb2.GetRecordRequest(tenant=BODO, patient_id=patient, kind=KIND, key="big"),
            metadata=bearer(token),
        )

    assert refused.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert "larger than max" in refused.value.details()
    assert missing.value.code() == grpc.StatusCode.NOT_FOUND


# --- streams per connection ------------------------------------------------------------------------


async def test_streams_beyond_the_connection_limit_wait_for_a_free_one_and_other_connections_go_on(settings, mint):
    probe, running = await start_probe(settings, max_concurrent_streams=2)
    metadata = bearer(mint(BODO))
    try:
        async with channel_to(running) as first, channel_to(running) as second:
            # One call each first, so both connections have the server's SETTINGS before the test.
            await probe_call(first, "Ping")(wrappers_pb2.StringValue(), metadata=metadata)
            await probe_call(second, "Ping")(wrappers_pb2.StringValue(), metadata=metadata)
            held = [
                asyncio.ensure_future(
                    probe_call(first, "Hold")(wrappers_pb2.StringValue(value="first"), metadata=metadata)
                )
                for _ in range(5)
            ]
            await until(lambda: probe.active["first"] >= 2, "streams on the first connection")

            # Sent after the five above: served at once, on a connection of its own.
            other = asyncio.ensure_future(
                probe_call(second, "Hold")(wrappers_pb2.StringValue(value="second"), metadata=metadata)
            )
            await until(lambda: probe.active["second"] == 1, "the call on the second connection")
            assert probe.active["first"] == 2 and not any(call.done() for call in held)

            probe.release.set()
            answers = await asyncio.wait_for(asyncio.gather(*held, other), PATIENCE)
    finally:
        await running.stop()

    # Held back, not failed: every call was served in the end, never more than two at a time.
    assert [answer.value for answer in answers] == ["first"] * 5 + ["second"]
    assert probe.peak["first"] == 2


# --- per-client rate -------------------------------------------------------------------------------


async def test_a_client_over_its_rate_gets_resource_exhausted_with_reason_and_retry_delay(mesh_settings, mint):
    # Three calls at once, then one per 100 s: nothing refills while the test runs.
    news2 = await start_limited("news2", mesh_settings, rate_limit_per_second=0.01, rate_limit_burst=3)
    signs = news2_pb2.VitalSigns(
        respiratory_rate=16,
        spo2=97,
        on_oxygen=False,
        systolic_bp=125,
        pulse=72,
        consciousness=news2_pb2.CONSCIOUSNESS_ALERT,
        temperature=37.0,
    )
    request = news2_pb2.ScoreVitalSignsRequest(vital_signs=signs)
    vendor = mint(BODO, client_id="vendor-a", hpr_number="565505933")
    same_client_other_clinician = mint(BODO, client_id="vendor-a", hpr_number="1234567")
    try:
        async with channel_to(news2) as channel:
            stub = news2_pb2_grpc.News2ServiceStub(channel)
            for _ in range(3):
                assert (await stub.ScoreVitalSigns(request, metadata=bearer(vendor))).score.total == 0
            with pytest.raises(aio.AioRpcError) as limited:
                await stub.ScoreVitalSigns(request, metadata=(*bearer(vendor), ("x-request-id", "limited-1")))
            with pytest.raises(aio.AioRpcError) as same_client:
                await stub.ScoreVitalSigns(request, metadata=bearer(same_client_other_clinician))

            # Another system, and the same system for another municipality, have buckets of their own.
            other_vendor = await stub.ScoreVitalSigns(request, metadata=bearer(mint(BODO, client_id="vendor-b")))
            other_tenant = await stub.ScoreVitalSigns(request, metadata=bearer(mint(BAERUM, client_id="vendor-a")))
            # No token: refused by authentication, which comes first (and costs the client nothing).
            with pytest.raises(aio.AioRpcError) as anonymous:
                await stub.ScoreVitalSigns(request)
            # Health is never limited.
            health = health_pb2_grpc.HealthStub(channel)
            checks = [await health.Check(health_pb2.HealthCheckRequest()) for _ in range(10)]
    finally:
        await news2.stop()

    assert limited.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    info, retry = error_details(limited.value)
    assert (info.reason, info.domain) == ("RATE_LIMITED", ERROR_DOMAIN)
    assert retry is not None and 0 < retry.retry_delay.ToMilliseconds() <= 100_000
    trailers = dict(limited.value.trailing_metadata())
    assert trailers["x-request-id"] == "limited-1"
    assert int(trailers[RETRY_PUSHBACK_HEADER]) == retry.retry_delay.ToMilliseconds()
    assert int(info.metadata["retry_after_ms"]) == retry.retry_delay.ToMilliseconds()
    assert same_client.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED  # the client is limited, not the token
    assert other_vendor.score.total == 0 and other_tenant.score.total == 0
    assert anonymous.value.code() == grpc.StatusCode.UNAUTHENTICATED
    assert all(check.status == health_pb2.HealthCheckResponse.SERVING for check in checks)


async def test_with_the_rate_limit_off_a_client_is_not_limited(mesh_settings, mint):
    news2 = await start_limited("news2", mesh_settings, rate_limit_per_second=0, rate_limit_burst=1)
    request = news2_pb2.ScoreVitalSignsRequest()  # invalid, but only the absence of a limit matters here
    token = mint(BODO, client_id="busy-vendor")
    try:
        async with channel_to(news2) as channel:
            stub = news2_pb2_grpc.News2ServiceStub(channel)
            codes = set()
            for _ in range(20):
                with pytest.raises(aio.AioRpcError) as failed:
                    await stub.ScoreVitalSigns(request, metadata=bearer(token))
                codes.add(failed.value.code())
    finally:
        await news2.stop()
    assert codes == {grpc.StatusCode.INVALID_ARGUMENT}


# --- per-client streams ----------------------------------------------------------------------------


async def _watch(stub: storage_pb2_grpc.StorageServiceStub, token: str, after: int):
    """A storage Watch that has delivered its first change (so the server has admitted it)."""
    call = stub.Watch(storage_pb2.WatchRequest(tenant=BODO, from_sequence=after, kinds=[KIND]), metadata=bearer(token))
    first = await asyncio.wait_for(call.read(), PATIENCE)
    assert first.record.kind == KIND
    return call


async def test_a_client_may_hold_only_so_many_streams_open(settings, database, mint):
    storage = await start_limited("storage", settings, database.url, max_streams_per_client=2, **NO_RATE_LIMIT)
    watcher, other = mint(BODO, client_id="watcher-a"), mint(BODO, client_id="watcher-b")
    try:
        async with channel_to(storage) as channel:
            stub = storage_pb2_grpc.StorageServiceStub(channel)
            put = await stub.PutRecord(
                storage_pb2.PutRecordRequest(
                    tenant=BODO,
                    patient_id=person_number(),
                    kind=KIND,
                    key="watched",
                    payload=storage_pb2.Payload(data=b"{}", content_type="application/json"),
                    idempotency_key=str(uuid.uuid4()),
                ),
                metadata=bearer(watcher),
            )
            after = put.record.sequence - 1
            streams = [await _watch(stub, watcher, after), await _watch(stub, watcher, after)]

            with pytest.raises(aio.AioRpcError) as refused:
                await _watch(stub, watcher, after)
            streams.append(await _watch(stub, other, after))  # another client is not affected
            # Unary calls are not streams: still served.
            await stub.GetRecord(
                storage_pb2.GetRecordRequest(tenant=BODO, patient_id=put.record.patient_id, kind=KIND, key="watched"),
                metadata=bearer(watcher),
            )

            # A stream that ends gives its place back.
            streams.pop(0).cancel()
            replacement = None
            deadline = time.monotonic() + PATIENCE
            while replacement is None:
                try:
                    replacement = await _watch(stub, watcher, after)
                except aio.AioRpcError as error:
                    if error.code() != grpc.StatusCode.RESOURCE_EXHAUSTED or time.monotonic() > deadline:
                        raise
                    await asyncio.sleep(0.05)
            streams.append(replacement)
            for stream in streams:
                stream.cancel()
    finally:
        await storage.stop()

    assert refused.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    info, retry = error_details(refused.value)
    assert info.reason == "TOO_MANY_STREAMS" and info.metadata["limit"] == "2"
    assert retry is not None and retry.retry_delay.seconds > 0


# --- the server's deadline -------------------------------------------------------------------------


@pytest.mark.parametrize("client_timeout", [None, 1e6], ids=["no deadline", "a far deadline"])
async def test_the_server_ends_a_call_at_its_own_limit_and_cancels_the_work(settings, mint, client_timeout):
    probe, running = await start_probe(settings, max_call_seconds=0.5)
    try:
        async with channel_to(running) as channel:
            with pytest.raises(aio.AioRpcError) as late:
                await asyncio.wait_for(
                    probe_call(channel, "Hang")(
                        wrappers_pb2.StringValue(),
                        metadata=(*bearer(mint(BODO)), ("x-request-id", "slow-1")),
                        timeout=client_timeout,
                    ),
                    PATIENCE,
                )
            await asyncio.wait_for(probe.cancelled.wait(), PATIENCE)
    finally:
        await running.stop()

    assert late.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
    assert "server's limit of 0.5 s" in late.value.details()
    assert dict(late.value.trailing_metadata())["x-request-id"] == "slow-1"
    assert not probe.finished.is_set()


async def test_the_callers_shorter_deadline_cancels_the_work_too(settings, mint):
    probe, running = await start_probe(settings, max_call_seconds=30)
    try:
        async with channel_to(running) as channel:
            with pytest.raises(aio.AioRpcError) as late:
                await probe_call(channel, "Hang")(wrappers_pb2.StringValue(), metadata=bearer(mint(BODO)), timeout=0.3)
            await asyncio.wait_for(probe.cancelled.wait(), PATIENCE)
    finally:
        await running.stop()
    assert late.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
    assert not probe.finished.is_set()


async def test_peer_calls_get_the_earlier_of_the_callers_and_the_servers_deadline(settings, mint):
    _, running = await start_probe(settings, max_call_seconds=20)
    metadata = bearer(mint(BODO))
    try:
        async with channel_to(running) as channel:
            peer_deadline = probe_call(channel, "PeerDeadline")
            unbounded = float((await peer_deadline(wrappers_pb2.StringValue(), metadata=metadata)).value)
            far = float((await peer_deadline(wrappers_pb2.StringValue(), metadata=metadata, timeout=1e6)).value)
            near = float((await peer_deadline(wrappers_pb2.StringValue(), metadata=metadata, timeout=5)).value)
    finally:
        await running.stop()
    assert 10 < unbounded <= 20 and 10 < far <= 20
    assert 0 < near <= 5.1  # gRPC rounds the timeout it sends up a little


async def test_a_database_write_past_the_servers_limit_is_rolled_back(settings, database, mint):
    storage = await start_limited("storage", settings, database.url, max_call_seconds=1.0, **NO_RATE_LIMIT)
    admin = await asyncpg.connect(host=str(database.socket_dir), user=ADMIN_ROLE, database="samhandling")
    token, patient, key = mint(BODO), person_number(), str(uuid.uuid4())
    request = storage_pb2.PutRecordRequest(
        tenant=BODO,
        patient_id=patient,
        kind=KIND,
        key="slow",
        payload=storage_pb2.Payload(data=b"{}", content_type="application/json"),
        idempotency_key=key,
    )
    waiting_on_a_lock = """
        SELECT count(*) FROM pg_stat_activity
        WHERE datname = current_database() AND wait_event_type = 'Lock' AND pid <> pg_backend_pid()"""
    try:
        async with channel_to(storage) as channel:
            stub = storage_pb2_grpc.StorageServiceStub(channel)
            blocker = admin.transaction()
            await blocker.start()
            try:
                await admin.execute("LOCK TABLE tenant_feeds IN EXCLUSIVE MODE")  # holds every write
                with pytest.raises(aio.AioRpcError) as late:
                    await stub.PutRecord(request, metadata=bearer(token), timeout=PATIENCE * 3)
                # The statement was cancelled in PostgreSQL, not left queued to commit once the lock goes.
                deadline = time.monotonic() + PATIENCE
                while await admin.fetchval(waiting_on_a_lock):
                    assert time.monotonic() < deadline, "the abandoned write still waits on the lock"
                    await asyncio.sleep(0.05)
            finally:
                await blocker.rollback()

            get = storage_pb2.GetRecordRequest(tenant=BODO, patient_id=patient, kind=KIND, key="slow")
            with pytest.raises(aio.AioRpcError) as missing:
                await stub.GetRecord(get, metadata=bearer(token))
            # The same put again is a first write (the key was not used up) on a healthy connection pool.
            again = await stub.PutRecord(request, metadata=bearer(token), timeout=PATIENCE)
    finally:
        await admin.close()
        await storage.stop()

    assert late.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
    assert missing.value.code() == grpc.StatusCode.NOT_FOUND
    assert again.record.version == 1 and not again.replayed


# --- peer streams and the connection's stream limit -------------------------------------------------


async def test_watchers_beyond_storages_stream_limit_never_make_unary_calls_wait(mesh_settings, database, mint):
    """Every vendor WatchOverviews holds a storage Watch open. Those go over a connection of their own,
    so with storage's per-connection stream limit taken up by watchers, submissions still get through."""
    storage = await start_limited("storage", mesh_settings, database.url, max_concurrent_streams=2, **NO_RATE_LIMIT)
    addresses = dict(mesh_settings.addresses) | {"storage": f"127.0.0.1:{storage.port}"}
    overview = await start_limited("overview", mesh_settings.with_overrides(addresses=addresses), **NO_RATE_LIMIT)
    patient = person_number()
    source = bearer(mint(BODO, client_id="home-care-ehr", hpr_number="565505933", patient_ids=(patient,)))
    follower = bearer(mint(BODO, client_id="forwarder", purpose_of_use="TREAT", feed=True))
    watches = []
    try:
        async with channel_to(overview) as channel:
            stub = overview_pb2_grpc.OverviewServiceStub(channel)

            def submission() -> overview_pb2.SubmitServicesRequest:
                return overview_pb2.SubmitServicesRequest(
                    patient_id=patient,
                    services=[overview_pb2.MunicipalService(service_type_code="6", start_date="2026-01-05")],
                    idempotency_key=str(uuid.uuid4()),
                )

            first = await stub.SubmitServices(submission(), metadata=source, timeout=PATIENCE)
            watches = [
                stub.WatchOverviews(
                    overview_pb2.WatchOverviewsRequest(from_sequence=first.sequence - 1), metadata=follower
                )
                for _ in range(3)
            ]
            # Two are admitted by storage and deliver; the third waits for a free stream.
            for watch in watches[:2]:
                assert (await asyncio.wait_for(watch.read(), PATIENCE)).patient_id == patient

            second = await stub.SubmitServices(submission(), metadata=source, timeout=PATIENCE)
            overview_now = await stub.GetOverview(
                overview_pb2.GetOverviewRequest(patient_id=patient), metadata=source, timeout=PATIENCE
            )
    finally:
        for watch in watches:
            watch.cancel()
        await overview.stop()
        await storage.stop()
    assert second.sequence > first.sequence
    assert [entry.service.service_type_code for entry in overview_now.entries] == ["6"]
