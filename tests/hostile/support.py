"""What the hostile-input tests share: every public RPC, enumerated from the generated descriptors (so
a new RPC is attacked without anyone remembering to add it), a generic way to call any of them and
read the outcome with its rich details, and what the embedded database holds."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from types import ModuleType
from typing import Any

import asyncpg
import grpc
from google.protobuf import descriptor as _descriptor
from google.protobuf import message_factory
from google.protobuf.message import Message
from google.rpc import error_details_pb2, status_pb2
from grpc import aio
from grpc_health.v1 import health_pb2, health_pb2_grpc
from samhandling.access.v1 import access_pb2
from samhandling.news2.v1 import news2_pb2
from samhandling.overview.v1 import overview_pb2
from samhandling.storage.v1 import storage_pb2

# One generated module per service; the short name is how the tests' fixtures know the server.
CONTRACTS: dict[str, ModuleType] = {
    "access": access_pb2,
    "overview": overview_pb2,
    "news2": news2_pb2,
    "storage": storage_pb2,
}

# Statuses a caller may get for a request that is its own fault (or allowed, OK). Anything else —
# INTERNAL, UNKNOWN, DATA_LOSS, UNIMPLEMENTED, UNAVAILABLE with the mesh up — is ours.
CLIENT_ERRORS = frozenset(
    {
        grpc.StatusCode.INVALID_ARGUMENT,
        grpc.StatusCode.NOT_FOUND,
        grpc.StatusCode.PERMISSION_DENIED,
        grpc.StatusCode.UNAUTHENTICATED,
        grpc.StatusCode.FAILED_PRECONDITION,
        grpc.StatusCode.ABORTED,
        grpc.StatusCode.OUT_OF_RANGE,
        grpc.StatusCode.RESOURCE_EXHAUSTED,
        grpc.StatusCode.ALREADY_EXISTS,
    }
)
STATUS_DETAILS_KEY = "grpc-status-details-bin"


@dataclass(frozen=True)
class Rpc:
    service: str  # access, overview, news2, storage
    method: _descriptor.MethodDescriptor

    @property
    def name(self) -> str:
        return self.method.name

    @property
    def path(self) -> str:
        return f"/{self.method.containing_service.full_name}/{self.method.name}"

    @property
    def streaming(self) -> bool:
        return self.method.server_streaming

    @property
    def request_class(self) -> type[Message]:
        return message_factory.GetMessageClass(self.method.input_type)

    @property
    def response_class(self) -> type[Message]:
        return message_factory.GetMessageClass(self.method.output_type)

    @property
    def takes_patient(self) -> bool:
        return "patient_id" in self.method.input_type.fields_by_name

    def __str__(self) -> str:
        return f"{self.service}.{self.name}"


def public_rpcs() -> list[Rpc]:
    """Every method of every service in the four contracts, in declaration order."""
    found = []
    for short, module in CONTRACTS.items():
        for service in module.DESCRIPTOR.services_by_name.values():
            for method in service.methods:
                assert not method.client_streaming, f"{method.full_name}: client streaming is not expected"
                found.append(Rpc(short, method))
    return found


RPCS = public_rpcs()


@dataclass
class Outcome:
    code: grpc.StatusCode
    message: str = ""
    reason: str | None = None
    reason_metadata: dict[str, str] = field(default_factory=dict)
    violations: tuple[tuple[str, str], ...] = ()
    other_details: tuple[str, ...] = ()
    responses: list[Message] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.code == grpc.StatusCode.OK

    def describe(self) -> str:
        return f"{self.code.name} {self.message!r} reason={self.reason} violations={list(self.violations)}"


def outcome_of_error(error: aio.AioRpcError) -> Outcome:
    outcome = Outcome(error.code(), error.details() or "")
    raw = next((value for key, value in error.trailing_metadata() or () if key == STATUS_DETAILS_KEY), None)
    if isinstance(raw, bytes):
        status = status_pb2.Status.FromString(raw)
        violations, others = [], []
        for packed in status.details:
            if packed.Is(error_details_pb2.ErrorInfo.DESCRIPTOR):
                info = error_details_pb2.ErrorInfo()
                packed.Unpack(info)
                outcome.reason, outcome.reason_metadata = info.reason, dict(info.metadata)
            elif packed.Is(error_details_pb2.BadRequest.DESCRIPTOR):
                bad = error_details_pb2.BadRequest()
                packed.Unpack(bad)
                violations += [(item.field, item.description) for item in bad.field_violations]
            else:
                others.append(packed.type_url)
        outcome.violations, outcome.other_details = tuple(violations), tuple(others)
    return outcome


async def invoke(
    channel: aio.Channel,
    rpc: Rpc,
    request: Message | bytes,
    metadata: Sequence[tuple[str, str]] = (),
    *,
    timeout: float = 10.0,
    max_responses: int = 50,
    until: Callable[[Any], bool] | None = None,
    read_for: float | None = None,
) -> Outcome:
    """Calls `rpc` with a message or with raw bytes as the serialized request (identity serializer).
    A stream is read until it ends, `max_responses` arrived, one satisfies `until`, `read_for` seconds
    passed (then the client cancels it: OK), or the deadline passes; the responses read so far are kept
    with the status it ended with."""
    raw = isinstance(request, bytes)
    serializer = None if raw else type(request).SerializeToString
    deserializer = None if raw else rpc.response_class.FromString
    responses: list[Any] = []
    try:
        if not rpc.streaming:
            call = channel.unary_unary(rpc.path, request_serializer=serializer, response_deserializer=deserializer)
            response = await call(request, metadata=tuple(metadata), timeout=timeout)
            return Outcome(grpc.StatusCode.OK, responses=[response])
        stream = channel.unary_stream(rpc.path, request_serializer=serializer, response_deserializer=deserializer)(
            request, metadata=tuple(metadata), timeout=timeout
        )
        try:
            async with asyncio.timeout(read_for):
                async for response in stream:
                    responses.append(response)
                    if len(responses) >= max_responses or (until is not None and until(response)):
                        break
        except TimeoutError:
            pass  # read long enough
        finally:
            stream.cancel()
        return Outcome(grpc.StatusCode.OK, responses=responses)
    except aio.AioRpcError as error:
        outcome = outcome_of_error(error)
        outcome.responses = responses
        return outcome


async def assert_serving(channels: dict[str, aio.Channel]) -> None:
    """Every server still answers its health check SERVING, overall and for its own service."""
    for short, channel in channels.items():
        stub = health_pb2_grpc.HealthStub(channel)
        service_name = next(iter(CONTRACTS[short].DESCRIPTOR.services_by_name.values())).full_name
        for name in ("", service_name):
            answer = await stub.Check(health_pb2.HealthCheckRequest(service=name), timeout=5)
            assert answer.status == health_pb2.HealthCheckResponse.SERVING, f"{short} {name!r} is not serving"


@dataclass(frozen=True)
class Footprint:
    """What is stored, across every tenant (counted as the superuser, past row-level security)."""

    record_versions: int
    feed_sequences: int
    objections: int
    blocks: int
    access_log: int

    @property
    def data(self) -> tuple[int, int, int, int]:
        """Everything but the access log, which holds denials by design."""
        return (self.record_versions, self.feed_sequences, self.objections, self.blocks)


FOOTPRINT_SQL = """
SELECT (SELECT count(*) FROM record_versions),
       (SELECT coalesce(sum(last_sequence), 0) FROM tenant_feeds),
       (SELECT count(*) FROM patient_objections),
       (SELECT count(*) FROM practitioner_blocks),
       (SELECT count(*) FROM access_log WHERE actor_client_id <> $1)
"""
# The client id of every subscription the hostile tests follow a feed with. A feed decides and logs each
# item it delivers, and a stream that has just ended may still be logging its last ones while the next
# call is counted: the footprint leaves this client's decisions out.
STREAM_FOLLOWER = "hostile-stream-follower"


class Ledger:
    """A superuser connection to the embedded database, for counting what calls left behind."""

    def __init__(self, connection: asyncpg.Connection) -> None:
        self.connection = connection
        self._lock = asyncio.Lock()

    async def footprint(self) -> Footprint:
        async with self._lock:
            row = await self.connection.fetchrow(FOOTPRINT_SQL, STREAM_FOLLOWER)
        return Footprint(*row)

    async def fetch(self, sql: str, *arguments: Any) -> list[asyncpg.Record]:
        async with self._lock:
            return await self.connection.fetch(sql, *arguments)
