"""Server interceptors: request ids, authentication, and domain errors → rich gRPC statuses.

Each wraps the method handler so that it runs in the handler's own task, where the contextvars it
sets are visible to the servicer."""

from __future__ import annotations

import inspect
import logging
import time
import traceback
import uuid
from collections.abc import AsyncIterator, Callable
from typing import Any

import grpc
from grpc import aio

from services.platform import request_context, status
from services.platform.errors import DomainError, Unauthenticated
from services.platform.tokens import TokenVerifier

log = logging.getLogger(__name__)

# Health and reflection answer without a token, so probes and standard tools work.
UNAUTHENTICATED_PREFIXES = ("/grpc.health.v1.Health/", "/grpc.reflection.")

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


class ErrorMappingInterceptor(_WrappingInterceptor):
    """Turns domain errors into statuses with details; anything unexpected into INTERNAL without leaking."""

    def decorate(self, behaviour: Behaviour, streaming: bool, details: grpc.HandlerCallDetails) -> Behaviour:
        method = details.method

        async def fail(context: aio.ServicerContext, error: BaseException) -> None:
            request_id = request_context.request_id.get()
            if isinstance(error, DomainError):
                await context.abort_with_status(status.with_request_id(status.status_for(error), request_id))
            log.error("unexpected error in %s: %s", method, _without_message(error))
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


def _without_message(error: BaseException) -> str:
    """The error's type and where it was raised, but not its message: messages can carry patient data."""
    frames = traceback.extract_tb(error.__traceback__)[-4:]
    where = " <- ".join(
        f"{frame.filename.rsplit('/', 2)[-1]}:{frame.lineno} {frame.name}" for frame in reversed(frames)
    )
    return f"{type(error).__module__}.{type(error).__qualname__} at {where}"


def standard_interceptors(verifier: TokenVerifier) -> list[aio.ServerInterceptor]:
    """Outermost first: the request id exists before anything can fail, and auth errors are mapped."""
    return [RequestIdInterceptor(), ErrorMappingInterceptor(), AuthenticationInterceptor(verifier)]
