"""Request-scoped values, set by the server interceptors and read by handlers and outgoing calls."""

from __future__ import annotations

from contextvars import ContextVar

from services.platform.errors import Unauthenticated
from services.platform.principal import Principal

REQUEST_ID_HEADER = "x-request-id"
AUTHORIZATION_HEADER = "authorization"

request_id: ContextVar[str] = ContextVar("request_id", default="-")
principal: ContextVar[Principal | None] = ContextVar("principal", default=None)
# The caller's bearer token, forwarded on calls to peer services so every hop can verify it.
bearer_token: ContextVar[str | None] = ContextVar("bearer_token", default=None)
# When the caller stops waiting (time.monotonic()), if it set a deadline: calls to peers end by then.
deadline: ContextVar[float | None] = ContextVar("deadline", default=None)


def current_principal() -> Principal:
    caller = principal.get()
    if caller is None:
        raise Unauthenticated("MISSING_TOKEN", "this call requires an access token")
    return caller
