"""Server interceptors: tracing, RPC metrics, request ids, domain errors → rich gRPC statuses, the
server's own deadline, authentication, and per-client limits (call rate, open streams).

Each wraps the method handler so that it runs in the handler's own task, where the contextvars it
sets are visible to the servicer."""

from __future__ import annotations

import asyncio
import inspect
import logging
import math
import time
import uuid
from collections.abc import AsyncIterator, Callable
from typing import Any

import grpc
from google.protobuf.message import DecodeError
from grpc import aio
from opentelemetry import metrics, trace
from opentelemetry.trace import Status, StatusCode

from services.platform import request_context, status, telemetry
from services.platform.errors import (
    DeadlineExceeded,
    DomainError,
    FieldViolation,
    InvalidArgument,
    ResourceExhausted,
    Unauthenticated,
)
from services.platform.logs import describe_error
from services.platform.principal import Principal
from services.platform.rate_limits import RateLimiter, ServerLimits, StreamCounter
from services.platform.tokens import TokenVerifier

log = logging.getLogger(__name__)

# Health and reflection answer without a token, so probes and standard tools work.
UNAUTHENTICATED_PREFIXES = ("/grpc.health.v1.Health/", "/grpc.reflection.")

# Semantic-convention attribute names, as the gRPC instrumentation records them on spans.
RPC_SERVICE, RPC_METHOD, RPC_GRPC_STATUS_CODE = "rpc.service", "rpc.method", "rpc.grpc.status_code"

Behaviour = Callable[[Any, aio.ServicerContext], Any]
Decorator = Callable[[Behaviour, bool, grpc.HandlerCallDetails], Behaviour]


def _metadata(details: grpc.HandlerCallDetails, key: str) -> str | None:
    for name, value in details.invocation_metadata or ():
        if name == key:
            return value if isinstance(value, str) else value.decode()
    return None


async def _responses(behaviour: Behaviour, request: Any, context: aio.ServicerContext) -> AsyncIterator[Any]:
    """Server-streaming behaviours are async generators, or (like the library's health Watch)
    coroutines that write through the context; both are consumed the same way here."""
    result = behaviour(request, context)
    if inspect.isawaitable(result):
        await result
        return
    async for response in result:
        yield response


def _rewrap(handler: grpc.RpcMethodHandler, decorate: Decorator, details: grpc.HandlerCallDetails):
    """The handler with its behaviour wrapped, or None for a client-streaming handler (not wrapped)."""
    if handler.unary_unary is not None:
        return grpc.unary_unary_rpc_method_handler(
            decorate(handler.unary_unary, False, details),
            request_deserializer=handler.request_deserializer,
            response_serializer=handler.response_serializer,
        )
    if handler.unary_stream is not None:
        return grpc.unary_stream_rpc_method_handler(
            decorate(handler.unary_stream, True, details),
            request_deserializer=handler.request_deserializer,
            response_serializer=handler.response_serializer,
        )
    return None


async def _reject_unsupported(_requests: Any, context: aio.ServicerContext) -> None:
    await context.abort(grpc.StatusCode.UNIMPLEMENTED, "client-streaming methods are not supported")


class _WrappingInterceptor(aio.ServerInterceptor):
    async def intercept_service(self, continuation, handler_call_details):
        handler = await continuation(handler_call_details)
        if handler is None:
            return None
        wrapped = _rewrap(handler, self.decorate, handler_call_details)
        if wrapped is not None:
            return wrapped
        return self.unwrappable(handler)

    def unwrappable(self, handler: grpc.RpcMethodHandler) -> grpc.RpcMethodHandler:
        """A client-streaming handler, which we do not wrap (reflection is one)."""
        return handler

    def decorate(self, behaviour: Behaviour, streaming: bool, details: grpc.HandlerCallDetails) -> Behaviour:
        before = self.before

        if streaming:

            async def stream(request: Any, context: aio.ServicerContext) -> AsyncIterator[Any]:
                await before(details, context)
                async for response in _responses(behaviour, request, context):
                    yield response

            return stream

        async def unary(request: Any, context: aio.ServicerContext) -> Any:
            await before(details, context)
            return await behaviour(request, context)

        return unary

    async def before(self, details: grpc.HandlerCallDetails, context: aio.ServicerContext) -> None:
        """Runs before the behaviour, in its task; subclasses override this or `decorate`."""


class RequestIdInterceptor(_WrappingInterceptor):
    """Takes the caller's x-request-id (or makes one), exposes it to handlers and echoes it back in
    the trailing metadata. Not in the initial metadata: response headers commit a call, and a
    committed call is never retried by the client's retry policy."""

    async def before(self, details: grpc.HandlerCallDetails, context: aio.ServicerContext) -> None:
        incoming = _metadata(details, request_context.REQUEST_ID_HEADER)
        value = incoming if incoming and len(incoming) <= 128 and incoming.isprintable() else str(uuid.uuid4())
        request_context.request_id.set(value)
        context.set_trailing_metadata(((request_context.REQUEST_ID_HEADER, value),))
        remaining = context.time_remaining()
        if remaining is not None:
            request_context.deadline.set(time.monotonic() + remaining)


class AuthenticationInterceptor(_WrappingInterceptor):
    """Requires `authorization: Bearer <JWT>` on every method but health and reflection."""

    def __init__(self, verifier: TokenVerifier) -> None:
        self.verifier = verifier

    def unwrappable(self, handler: grpc.RpcMethodHandler) -> grpc.RpcMethodHandler:
        # Unwrapped, it would run without a verified token: refuse it instead (none exist today).
        return grpc.stream_unary_rpc_method_handler(_reject_unsupported)

    async def intercept_service(self, continuation, handler_call_details):
        if handler_call_details.method.startswith(UNAUTHENTICATED_PREFIXES):
            return await continuation(handler_call_details)
        return await super().intercept_service(continuation, handler_call_details)

    async def before(self, details: grpc.HandlerCallDetails, context: aio.ServicerContext) -> None:
        header = _metadata(details, request_context.AUTHORIZATION_HEADER)
        if header is None:
            raise Unauthenticated("MISSING_TOKEN", "this call requires `authorization: Bearer <token>`")
        scheme, _, token = header.partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise Unauthenticated("MISSING_TOKEN", "the authorization header must be `Bearer <token>`")
        request_context.principal.set(await self.verifier.verify(token.strip()))
        request_context.bearer_token.set(token.strip())


# Unary methods whose work grows with a tenant's data, with the server's limit for them: checking the
# whole access-log chain of a large municipality takes longer than any ordinary call may.
LONG_RUNNING_SECONDS = {"/samhandling.access.v1.AccessService/VerifyAccessLog": 600.0}


class DeadlineInterceptor(_WrappingInterceptor):
    """Bounds the server's work on every unary call: by the caller's deadline, and by
    `max_call_seconds` even when the caller sent none or a far one. When time is up the handler is
    cancelled — its peer calls end, an open database transaction rolls back — and the call ends
    DEADLINE_EXCEEDED. Peer calls made meanwhile end by the same time (`request_context.deadline`).
    Server-streaming calls are long-lived by design and keep only the caller's deadline."""

    def __init__(self, max_call_seconds: float) -> None:
        self.max_call_seconds = max_call_seconds

    def decorate(self, behaviour: Behaviour, streaming: bool, details: grpc.HandlerCallDetails) -> Behaviour:
        if streaming:
            return behaviour
        limit = max(self.max_call_seconds, LONG_RUNNING_SECONDS.get(details.method, 0.0))

        async def unary(request: Any, context: aio.ServicerContext) -> Any:
            remaining = context.time_remaining()
            server_limit_first = remaining is None or remaining > limit
            budget = limit if server_limit_first else max(remaining, 0.0)
            ends = time.monotonic() + budget
            earlier = request_context.deadline.get()
            request_context.deadline.set(ends if earlier is None else min(earlier, ends))
            scope = asyncio.timeout(budget)
            try:
                async with scope:
                    return await behaviour(request, context)
            except TimeoutError:
                if not scope.expired():
                    raise  # the handler's own, not ours: an unexpected error
                if server_limit_first:
                    raise DeadlineExceeded(f"the call took longer than the server's limit of {limit:g} s") from None
                raise DeadlineExceeded("the call's deadline passed") from None

        return unary


class ErrorMappingInterceptor(_WrappingInterceptor):
    """Turns domain errors into statuses with details; anything unexpected into INTERNAL without leaking."""

    def decorate(self, behaviour: Behaviour, streaming: bool, details: grpc.HandlerCallDetails) -> Behaviour:
        method = details.method

        async def fail(context: aio.ServicerContext, error: BaseException) -> None:
            request_id = request_context.request_id.get()
            if isinstance(error, DomainError):
                await context.abort_with_status(status.with_request_id(status.status_for(error), request_id))
            log.error("unexpected error in %s: %s", method, describe_error(error))
            await context.abort_with_status(status.with_request_id(status.internal_status(request_id), request_id))

        if streaming:

            async def stream(request: Any, context: aio.ServicerContext) -> AsyncIterator[Any]:
                try:
                    async for response in _responses(behaviour, request, context):
                        yield response
                except aio.AbortError:
                    raise
                except Exception as error:
                    await fail(context, error)

            return stream

        async def unary(request: Any, context: aio.ServicerContext) -> Any:
            try:
                return await behaviour(request, context)
            except aio.AbortError:
                raise
            except Exception as error:
                await fail(context, error)

        return unary


RATE_LIMITED = "RATE_LIMITED"
TOO_MANY_STREAMS = "TOO_MANY_STREAMS"
# A client over its stream limit has streams it has forgotten about, or more watchers than it needs:
# retrying at once will not help.
STREAM_RETRY_SECONDS = 5.0


class ClientLimitsInterceptor(_WrappingInterceptor):
    """Per-client limits, after authentication (the client is the verified token's tenant and
    client_id): a token bucket for the call rate, and a cap on open server-streaming calls (Watch*).
    Over either limit the call is RESOURCE_EXHAUSTED with an ErrorInfo reason and a RetryInfo.
    Health and reflection are never limited. Peers forward the caller's token, so each service limits
    the same client on its own."""

    def __init__(self, limits: ServerLimits, *, clock: Callable[[], float] = time.monotonic) -> None:
        self.rates = (
            RateLimiter(limits.rate_limit_per_second, limits.rate_limit_burst, clock=clock)
            if limits.rate_limit_per_second > 0
            else None
        )
        self.streams = StreamCounter(limits.max_streams_per_client) if limits.max_streams_per_client > 0 else None

    async def intercept_service(self, continuation, handler_call_details):
        if handler_call_details.method.startswith(UNAUTHENTICATED_PREFIXES):
            return await continuation(handler_call_details)
        return await super().intercept_service(continuation, handler_call_details)

    def decorate(self, behaviour: Behaviour, streaming: bool, details: grpc.HandlerCallDetails) -> Behaviour:
        admit, streams = self._admit, self.streams
        if self.rates is None and (streams is None or not streaming):
            return behaviour

        if streaming:

            async def stream(request: Any, context: aio.ServicerContext) -> AsyncIterator[Any]:
                key = admit()
                if streams is not None and not streams.open(key):
                    raise ResourceExhausted(
                        TOO_MANY_STREAMS,
                        f"this client already has {streams.limit} streams open on this service; close one first",
                        {"limit": str(streams.limit)},
                        retry_after_seconds=STREAM_RETRY_SECONDS,
                    )
                try:
                    async for response in _responses(behaviour, request, context):
                        yield response
                finally:
                    if streams is not None:
                        streams.close(key)

            return stream

        async def unary(request: Any, context: aio.ServicerContext) -> Any:
            admit()
            return await behaviour(request, context)

        return unary

    def _admit(self) -> tuple[str, str]:
        """The calling client, once the rate limit lets its call through."""
        key = _client(request_context.current_principal())
        if self.rates is not None:
            wait = self.rates.acquire(key)
            if wait > 0:
                retry_ms = max(1, math.ceil(wait * 1000))
                raise ResourceExhausted(
                    RATE_LIMITED,
                    f"too many calls from this client: at most {self.rates.rate:g} per second "
                    f"(bursts of {self.rates.burst:g}); retry in {retry_ms} ms",
                    {status.RETRY_AFTER_MS: str(retry_ms)},
                    retry_after_seconds=retry_ms / 1000,
                )
        return key


def _client(caller: Principal) -> tuple[str, str]:
    """Tenant and client_id; an organisation outside the tenant table counts under its own number."""
    return (caller.tenant or f"org:{caller.organisation_number}", caller.client_id)


# Server span status: per the semantic conventions only these codes are the server's fault; the
# others (NOT_FOUND, PERMISSION_DENIED, ...) are answers, recorded as the status code attribute.
_SERVER_ERROR_CODES = frozenset(
    {
        grpc.StatusCode.UNKNOWN,
        grpc.StatusCode.DEADLINE_EXCEEDED,
        grpc.StatusCode.UNIMPLEMENTED,
        grpc.StatusCode.INTERNAL,
        grpc.StatusCode.UNAVAILABLE,
        grpc.StatusCode.DATA_LOSS,
    }
)


class RpcMetricsInterceptor(_WrappingInterceptor):
    """`rpc.server.duration` (ms) and `rpc.server.errors` per method and status code; and the final
    status code on the server span, which the tracing interceptor misses when a call ends through
    `abort_with_status` (as every domain error does). Sits just inside the tracing interceptor."""

    def __init__(self, meter: metrics.Meter) -> None:
        self.duration = meter.create_histogram(
            "rpc.server.duration", unit="ms", description="Duration of inbound RPCs, to the last response"
        )
        self.errors = meter.create_counter(
            "rpc.server.errors", unit="{call}", description="Inbound RPCs that ended with a status other than OK"
        )

    async def intercept_service(self, continuation, handler_call_details):
        if not telemetry.traced_method(handler_call_details.method):
            return await continuation(handler_call_details)
        return await super().intercept_service(continuation, handler_call_details)

    def decorate(self, behaviour: Behaviour, streaming: bool, details: grpc.HandlerCallDetails) -> Behaviour:
        service, _, method = details.method.lstrip("/").partition("/")
        labels = {RPC_SERVICE: service, RPC_METHOD: method}
        finish = self._finish

        if streaming:

            async def stream(request: Any, context: aio.ServicerContext) -> AsyncIterator[Any]:
                started, outcome = time.perf_counter(), None
                try:
                    async for response in _responses(behaviour, request, context):
                        yield response
                except BaseException as error:
                    outcome = error
                    raise
                finally:
                    finish(labels, context, started, outcome)

            return stream

        async def unary(request: Any, context: aio.ServicerContext) -> Any:
            started, outcome = time.perf_counter(), None
            try:
                return await behaviour(request, context)
            except BaseException as error:
                outcome = error
                raise
            finally:
                finish(labels, context, started, outcome)

        return unary

    def _finish(
        self, labels: dict[str, str], context: aio.ServicerContext, started: float, outcome: BaseException | None
    ) -> None:
        code = _final_code(context, outcome)
        attributes = {**labels, RPC_GRPC_STATUS_CODE: code.value[0]}
        self.duration.record((time.perf_counter() - started) * 1000, attributes)
        if code != grpc.StatusCode.OK:
            self.errors.add(1, attributes)
        span = trace.get_current_span()
        if span.is_recording():
            span.set_attribute(RPC_GRPC_STATUS_CODE, code.value[0])
            if code in _SERVER_ERROR_CODES:
                span.set_status(Status(StatusCode.ERROR, code.name))


def _final_code(context: aio.ServicerContext, outcome: BaseException | None) -> grpc.StatusCode:
    code = context.code()
    if isinstance(code, grpc.StatusCode):
        return code
    if outcome is None or isinstance(outcome, GeneratorExit):
        return grpc.StatusCode.OK
    if isinstance(outcome, asyncio.CancelledError):
        return grpc.StatusCode.CANCELLED
    return grpc.StatusCode.UNKNOWN


class _Unparseable:
    """Stands in for a request whose bytes do not parse as the method's request message."""


UNPARSEABLE = _Unparseable()


def _refuse_unparseable(request: Any) -> None:
    if request is UNPARSEABLE:
        raise InvalidArgument([FieldViolation("", "the request is not a valid message of this method's request type")])


class MalformedRequestInterceptor(aio.ServerInterceptor):
    """Bytes that do not parse as the request end INVALID_ARGUMENT, as any other bad request does (gRPC
    itself would answer UNKNOWN, naming a Python exception). Innermost, so that an unauthenticated
    caller is told that first; the parse error travels as a marker to where it can be raised."""

    async def intercept_service(self, continuation, handler_call_details):
        handler = await continuation(handler_call_details)
        if handler is None or handler.request_deserializer is None:
            return handler
        parse = handler.request_deserializer

        def guarded(data: bytes) -> Any:
            try:
                return parse(data)
            except DecodeError:
                return UNPARSEABLE

        if handler.unary_unary is not None:
            behaviour = handler.unary_unary

            async def unary(request: Any, context: aio.ServicerContext) -> Any:
                _refuse_unparseable(request)
                return await behaviour(request, context)

            return grpc.unary_unary_rpc_method_handler(
                unary, request_deserializer=guarded, response_serializer=handler.response_serializer
            )
        if handler.unary_stream is not None:
            streaming = handler.unary_stream

            async def stream(request: Any, context: aio.ServicerContext) -> AsyncIterator[Any]:
                _refuse_unparseable(request)
                async for response in _responses(streaming, request, context):
                    yield response

            return grpc.unary_stream_rpc_method_handler(
                stream, request_deserializer=guarded, response_serializer=handler.response_serializer
            )
        return handler


def standard_interceptors(
    verifier: TokenVerifier,
    *,
    limits: ServerLimits | None = None,
    tracer_provider: trace.TracerProvider | None = None,
    meter_provider: metrics.MeterProvider | None = None,
) -> list[aio.ServerInterceptor]:
    """Outermost first: the server span exists before anything else runs (so everything below logs
    its trace id), then the metrics; the request id exists before anything can fail, and every error
    below is mapped — the server's deadline (which covers token verification too), authentication,
    and the per-client limits, which need the verified caller. `limits` defaults to the settings'
    defaults. The providers default to the process's global ones (when those are the no-op ones,
    the tracing interceptor is left out)."""
    limits = limits or ServerLimits()
    return [
        *telemetry.server_tracing_interceptors(tracer_provider),
        RpcMetricsInterceptor(telemetry.rpc_meter(meter_provider)),
        RequestIdInterceptor(),
        ErrorMappingInterceptor(),
        DeadlineInterceptor(limits.max_call_seconds),
        AuthenticationInterceptor(verifier),
        ClientLimitsInterceptor(limits),
        MalformedRequestInterceptor(),
    ]
