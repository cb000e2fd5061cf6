"""The grpc.aio server every service runs: interceptors, the standard health service, reflection,
limits (message size, streams per connection, the server's own deadline, per-client rate and
streams), and graceful shutdown (SIGTERM → health NOT_SERVING → in-flight calls finish within the
grace period → exit 0)."""

from __future__ import annotations

import asyncio
import logging
import signal
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field

from grpc import aio
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from services.platform.interceptors import standard_interceptors
from services.platform.rate_limits import ServerLimits
from services.platform.tokens import TokenVerifier

log = logging.getLogger(__name__)

MESSAGE_SIZE_MARGIN = 1024 * 1024  # room above the payload limit for the rest of the message
METADATA_SOFT_LIMIT = 32 * 1024
SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING


@dataclass
class ServiceDefinition:
    """What a service contributes to the shared server."""

    # Fully qualified protobuf service name, e.g. samhandling.storage.v1.StorageService.
    full_name: str
    register: Callable[[aio.Server], None]
    # Started after the server is up (e.g. a database health monitor), cancelled at shutdown.
    background: Sequence[Callable[[RunningServer], Awaitable[None]]] = ()
    # Awaited before the server starts listening (e.g. check the database role); may raise to refuse.
    startup: Callable[[], Awaitable[None]] | None = None
    # Called when shutdown begins, before in-flight calls drain (e.g. end long-lived streams).
    draining: Callable[[], Awaitable[None]] | None = None
    # Called after the server has stopped (e.g. dispose the database engine).
    close: Callable[[], Awaitable[None]] | None = None


@dataclass
class RunningServer:
    server: aio.Server
    health: health.aio.HealthServicer
    definition: ServiceDefinition
    port: int
    grace_seconds: float
    _tasks: list[asyncio.Task[None]] = field(default_factory=list)
    _stopped: bool = False

    async def stop(self) -> None:
        """Health NOT_SERVING first (so load balancers drain), then let in-flight calls finish."""
        if self._stopped:
            return
        self._stopped = True
        await self.health.enter_graceful_shutdown()
        if self.definition.draining is not None:
            await self.definition.draining()
        await self.server.stop(self.grace_seconds)
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if self.definition.close is not None:
            await self.definition.close()

    async def set_serving(self, serving: bool) -> None:
        """Readiness: the service's own name follows its dependencies (e.g. the database). The overall
        status "" stays SERVING while the process is alive, so a liveness probe on "" does not restart
        pods during a database outage; graceful shutdown sets both to NOT_SERVING."""
        await self.health.set(self.definition.full_name, SERVING if serving else NOT_SERVING)


async def start_server(
    definition: ServiceDefinition,
    *,
    verifier: TokenVerifier,
    host: str,
    port: int,
    max_payload_bytes: int,
    grace_seconds: float,
    limits: ServerLimits | None = None,
) -> RunningServer:
    """Binds host:port (port 0 picks a free one, for tests) and starts serving. `limits` defaults to
    the settings' defaults; pass `ServerLimits.from_settings(settings)` to apply the configured ones."""
    if definition.startup is not None:
        await definition.startup()
    limits = limits or ServerLimits()
    max_message = max_message_bytes(max_payload_bytes)
    server = aio.server(
        interceptors=standard_interceptors(verifier, limits=limits),
        options=[
            # A larger message is refused by the transport (RESOURCE_EXHAUSTED) before any handler runs.
            ("grpc.max_receive_message_length", max_message),
            ("grpc.max_send_message_length", max_message),
            # HTTP/2 SETTINGS_MAX_CONCURRENT_STREAMS: a client keeps at most this many calls open on
            # one connection and queues the rest until one ends; a client that ignores it has the
            # extra streams refused. gRPC's "overload protection" also counts streams that have ended
            # but are not yet freed, and refuses new ones (UNAVAILABLE) even from a client that keeps
            # to the limit; off, so a well-behaved client is held back, never failed.
            ("grpc.max_concurrent_streams", limits.max_concurrent_streams),
            ("grpc.http.overload_protection", 0),
            # Room for a large token, so that an oversized one is answered UNAUTHENTICATED by our own
            # check rather than dropped by the transport at its default 8 KiB soft limit.
            ("grpc.max_metadata_size", METADATA_SOFT_LIMIT),
            ("grpc.absolute_max_metadata_size", 2 * METADATA_SOFT_LIMIT),
            ("grpc.so_reuseport", 0),
            # Peers keep long-lived streams (Watch) open and ping every 30 s to notice a dead link;
            # accept that, or the server answers GOAWAY too_many_pings and ends the streams.
            ("grpc.keepalive_permit_without_calls", 1),
            ("grpc.http2.min_ping_interval_without_data_ms", 20_000),
            # Clients reconnect now and then, so new replicas get their share of the calls; open
            # streams may finish for an hour (watchers resume from their last sequence anyway).
            ("grpc.max_connection_age_ms", 5 * 60_000),
            ("grpc.max_connection_age_grace_ms", 60 * 60_000),
        ],
    )
    definition.register(server)
    health_servicer = health.aio.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    reflection.enable_server_reflection(
        (definition.full_name, health_pb2.DESCRIPTOR.services_by_name["Health"].full_name, reflection.SERVICE_NAME),
        server,
    )
    bound_port = server.add_insecure_port(f"{_host_for_grpc(host)}:{port}")
    if bound_port == 0:
        raise OSError(f"cannot listen on {host}:{port}")
    await server.start()
    running = RunningServer(server, health_servicer, definition, bound_port, grace_seconds)
    await running.health.set("", SERVING)
    await running.set_serving(True)
    running._tasks = [asyncio.create_task(job(running)) for job in definition.background]
    log.info("%s listening on %s:%d", definition.full_name, host, bound_port)
    return running


def max_message_bytes(max_payload_bytes: int) -> int:
    """The largest message a service sends or receives: gRPC's default, or room for one payload."""
    return max(4 * 1024 * 1024, max_payload_bytes + MESSAGE_SIZE_MARGIN)


def _host_for_grpc(host: str) -> str:
    return f"[{host}]" if ":" in host and not host.startswith("[") else host


async def serve_until_terminated(running: RunningServer) -> None:
    """Runs until SIGTERM or SIGINT, then shuts down gracefully."""
    loop = asyncio.get_running_loop()
    stop_requested = asyncio.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop_requested.set)
    server_ended = asyncio.create_task(running.server.wait_for_termination())
    stop_wait = asyncio.create_task(stop_requested.wait())
    await asyncio.wait({server_ended, stop_wait}, return_when=asyncio.FIRST_COMPLETED)
    log.info("%s shutting down (grace %.1fs)", running.definition.full_name, running.grace_seconds)
    await running.stop()
    for task in (server_ended, stop_wait):
        task.cancel()
