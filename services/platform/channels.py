"""Client channels to peer services: a deadline on every call, the caller's token, request id and
trace context (W3C `traceparent`, with a client span per call) forwarded, and retries — configured in
the channel's service config — only for methods that are safe to repeat."""

from __future__ import annotations

import json
import time
from collections.abc import Iterable

from grpc import aio

from services.platform import request_context
from services.platform.telemetry import client_tracing_interceptors

RETRYABLE_STATUS_CODES = ["UNAVAILABLE", "RESOURCE_EXHAUSTED"]


def service_config(idempotent_methods: Iterable[tuple[str, str]], *, max_attempts: int = 4) -> str:
    """Retry policy for (service, method) pairs known to be idempotent; no retries for anything else.
    Deadlines are not set here but per call by the interceptor: service-config timeouts were seen
    firing early with this gRPC release."""
    methods = [{"service": service, "method": method} for service, method in idempotent_methods]
    # Calls are spread over every address the name resolves to (in Kubernetes: every ready pod behind
    # a headless Service), not pinned to the first.
    config: dict[str, object] = {"loadBalancingConfig": [{"round_robin": {}}]}
    if methods:
        config["methodConfig"] = [
            {
                "name": methods,
                "retryPolicy": {
                    "maxAttempts": max_attempts,
                    "initialBackoff": "0.1s",
                    "maxBackoff": "2s",
                    "backoffMultiplier": 2,
                    "retryableStatusCodes": RETRYABLE_STATUS_CODES,
                },
            }
        ]
    return json.dumps(config)


class _ForwardingInterceptor:
    """Forwards request id and bearer token, and sets a deadline when the call has none (if a default
    is given: unary calls always have one; streams only when the channel asks for it)."""

    def __init__(self, default_timeout: float | None) -> None:
        self.default_timeout = default_timeout

    def _details(self, details: aio.ClientCallDetails) -> aio.ClientCallDetails:
        metadata = aio.Metadata(*(details.metadata or ()))
        token = request_context.bearer_token.get()
        if token and request_context.AUTHORIZATION_HEADER not in metadata:
            metadata.add(request_context.AUTHORIZATION_HEADER, f"Bearer {token}")
        request_id = request_context.request_id.get()
        if request_id != "-" and request_context.REQUEST_ID_HEADER not in metadata:
            metadata.add(request_context.REQUEST_ID_HEADER, request_id)
        return aio.ClientCallDetails(
            method=details.method,
            timeout=_within_caller_deadline(details.timeout if details.timeout is not None else self.default_timeout),
            metadata=metadata,
            credentials=details.credentials,
            wait_for_ready=details.wait_for_ready,
        )


def _within_caller_deadline(timeout: float | None) -> float | None:
    """No peer call outlives the call that caused it: a caller that gave up wants no more work done."""
    deadline = request_context.deadline.get()
    if deadline is None:
        return timeout
    remaining = max(deadline - time.monotonic(), 0.001)
    return remaining if timeout is None else min(timeout, remaining)


class _UnaryUnary(_ForwardingInterceptor, aio.UnaryUnaryClientInterceptor):
    async def intercept_unary_unary(self, continuation, client_call_details, request):
        return await continuation(self._details(client_call_details), request)


class _UnaryStream(_ForwardingInterceptor, aio.UnaryStreamClientInterceptor):
    async def intercept_unary_stream(self, continuation, client_call_details, request):
        return await continuation(self._details(client_call_details), request)


def open_channel(
    target: str,
    *,
    idempotent_methods: Iterable[tuple[str, str]] = (),
    timeout_seconds: float = 5.0,
    stream_timeout_seconds: float | None = None,
    own_connection: bool = False,
) -> aio.Channel:
    """A channel whose unary calls always carry a deadline (`timeout_seconds` unless the call sets
    one). Streams are long-lived by nature: they get `stream_timeout_seconds` if given, else none
    (the caller cancels them). The tracing interceptors come first, so the client span covers the
    whole call and its `traceparent` names that span. `own_connection`: the channel never shares its
    connection with another channel (gRPC shares them between channels to the same target)."""
    return aio.insecure_channel(
        target if "://" in target or target.startswith("dns:") else f"dns:///{target}",
        options=[
            ("grpc.service_config", service_config(idempotent_methods)),
            ("grpc.enable_retries", 1),
            ("grpc.keepalive_time_ms", 30_000),
            # A restarted peer is back within a second or two: reconnect quickly rather than after
            # gRPC's default 1 s, 1.6 s, … up to two minutes.
            ("grpc.initial_reconnect_backoff_ms", 100),
            ("grpc.max_reconnect_backoff_ms", 5_000),
            ("grpc.use_local_subchannel_pool", int(own_connection)),
        ],
        interceptors=[
            *client_tracing_interceptors(),
            _UnaryUnary(timeout_seconds),
            _UnaryStream(stream_timeout_seconds),
        ],
    )


# The storage methods that are safe to repeat: reads, and PutRecord because every put carries an
# idempotency key (a repeat returns the original result). Watch resumes by sequence instead.
STORAGE_IDEMPOTENT_METHODS = [
    ("samhandling.storage.v1.StorageService", method)
    for method in ("PutRecord", "GetRecord", "ListRecordVersions", "ListRecords")
]

# Authorize writes a log entry, so a repeat is not free, but it is harmless (the attempt is logged
# twice) and gRPC retries only calls that failed with UNAVAILABLE: worth it to ride out a restart.
ACCESS_RETRYABLE_METHODS = [("samhandling.access.v1.AccessService", "Authorize")]
