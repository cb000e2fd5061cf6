"""The PostgreSQL connection every database-backed service shares: the async engine, transactions
scoped to one tenant (row-level security reads the tenant from a transaction-local setting), the
classification of connection failures as UNAVAILABLE, and a health monitor."""

from __future__ import annotations

import asyncio
import logging
import re
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING

import asyncpg
from opentelemetry.instrumentation.utils import suppress_instrumentation
from sqlalchemy import exc, text
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from services.platform.errors import Unavailable

if TYPE_CHECKING:
    from services.platform.server import RunningServer

log = logging.getLogger(__name__)

TENANT_SETTING = "samhandling.tenant"
# SQLSTATE classes that mean "the database is not there right now": connection exception,
# operator intervention (shutdown, cannot connect now), insufficient resources.
_UNAVAILABLE_SQLSTATE_CLASSES = ("08", "57", "53")
# Tenant codes are written into the statement that opens a tenant transaction (see below).
_TENANT_CODE = re.compile(r"[0-9A-Za-z_-]{1,32}")
# How many closed connections a transaction replaces before it gives up on the pool's (one per pool
# slot and overflow slot at most; the next attempt after that makes a new connection anyway).
_POOL_REPLACEMENTS = 40


def async_url(url: str) -> str:
    """Accepts plain postgresql:// URLs (as operators and secrets write them) and picks asyncpg."""
    parsed = make_url(url)
    if parsed.drivername in ("postgresql", "postgres", "postgresql+asyncpg"):
        return parsed.set(drivername="postgresql+asyncpg").render_as_string(hide_password=False)
    raise ValueError(f"unsupported database URL scheme {parsed.drivername!r}; use postgresql://")


def create_engine(url: str, *, pool_size: int = 10, statement_timeout_ms: int | None = None) -> AsyncEngine:
    server_settings = {"application_name": "samhandling"}
    if statement_timeout_ms:
        server_settings["statement_timeout"] = str(statement_timeout_ms)
    return create_async_engine(
        async_url(url),
        pool_size=pool_size,
        max_overflow=pool_size,
        # No pre-ping: it cost three round trips per transaction. A pooled connection the server has
        # closed is known to the driver without a round trip and replaced (tenant_transaction); one
        # that fails mid-call fails that call (UNAVAILABLE, retried by callers) and is discarded; the
        # health monitor also starts a fresh pool when the database comes back.
        pool_pre_ping=False,
        # Exception messages must not carry bound parameters: they hold patient ids and payloads.
        hide_parameters=True,
        pool_timeout=5,
        connect_args={"server_settings": server_settings, "timeout": 5},
    )


def is_unavailable(error: BaseException) -> bool:
    # InternalClientError: the driver's protocol is out of step with the server, as when the server
    # shuts down between two statements (found by tests/faults, database restart): the connection is
    # unusable, and nothing about the request is wrong.
    if isinstance(error, (OSError, asyncio.TimeoutError, asyncpg.InterfaceError, asyncpg.InternalClientError)):
        return True
    # A prepared statement the schema has changed under (a migration during a rolling deploy): the
    # driver clears its cache, and the same call succeeds when retried.
    if isinstance(error, (asyncpg.InvalidCachedStatementError, asyncpg.exceptions.OutdatedSchemaCacheError)):
        return True
    if isinstance(error, asyncpg.PostgresError):
        return str(error.sqlstate or "").startswith(_UNAVAILABLE_SQLSTATE_CLASSES)
    if isinstance(error, exc.DBAPIError):
        if error.connection_invalidated or isinstance(error, exc.InterfaceError):
            return True
        sqlstate = getattr(error.orig, "sqlstate", None) or getattr(error.orig, "pgcode", None)
        if isinstance(sqlstate, str) and sqlstate.startswith(_UNAVAILABLE_SQLSTATE_CLASSES):
            return True
        return isinstance(error, exc.OperationalError) and sqlstate is None
    return isinstance(error, exc.TimeoutError)  # the pool had no connection for us in time


@asynccontextmanager
async def tenant_transaction(engine: AsyncEngine, tenant: str) -> AsyncIterator[asyncpg.Connection]:
    """One transaction in which row-level security sees exactly `tenant`. Commits on success.

    It runs on the driver's own connection: statements go to asyncpg directly (prepared once per
    connection), without the ORM's cost per statement, and BEGIN travels with the tenant setting in
    one round trip."""
    if not _TENANT_CODE.fullmatch(tenant):
        raise ValueError("not a tenant code")
    try:
        async with engine.connect() as connection:
            driver: asyncpg.Connection = (await connection.get_raw_connection()).driver_connection
            for _ in range(_POOL_REPLACEMENTS):
                if not driver.is_closed():
                    break
                # Closed by the server since it was pooled (a restart): take another, no round trip lost.
                await connection.invalidate()
                driver = (await connection.get_raw_connection()).driver_connection
            try:
                # Inside the try: a connection whose BEGIN failed (it died with the server, or was
                # cancelled mid-statement) must not go back to the pool as it is.
                await driver.execute(f"BEGIN; SELECT set_config('{TENANT_SETTING}', '{tenant}', true)")
                yield driver
                await driver.execute("COMMIT")
            except BaseException as error:
                await _end_failed(connection, driver, error)
                raise
    except Exception as error:
        if is_unavailable(error):
            _unavailable_warnings.warn(type(error).__name__)
            raise Unavailable("the database is unavailable; retry later") from error
        raise


class _Throttled:
    """A warning at most every `interval` seconds, with how many were held back: an outage fails every
    call, and one line per call would bury everything else in the log."""

    def __init__(self, message: str, interval: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.message, self.interval, self.clock = message, interval, clock
        self.last, self.held_back = float("-inf"), 0

    def warn(self, cause: str) -> None:
        now = self.clock()
        if now - self.last < self.interval:
            self.held_back += 1
            return
        log.warning("%s: %s (%d more since the last warning)", self.message, cause, self.held_back)
        self.last, self.held_back = now, 0


_unavailable_warnings = _Throttled("database unavailable", interval=5.0)


async def _end_failed(connection, driver: asyncpg.Connection, error: BaseException) -> None:
    """Rolls back; a connection that is broken, or was cut off mid-statement, is not reused."""
    if not (isinstance(error, asyncio.CancelledError) or is_unavailable(error) or driver.is_closed()):
        try:
            await driver.execute("ROLLBACK")
            return
        except BaseException:  # failed, or cancelled: the connection may still be mid-transaction
            pass
    await connection.invalidate()


async def role_bypasses_row_security(engine: AsyncEngine) -> str | None:
    """The role name if the connection's role ignores row-level security (superuser or BYPASSRLS)."""
    async with engine.connect() as connection:
        row = (
            await connection.execute(
                text("SELECT current_user, rolsuper OR rolbypassrls FROM pg_roles WHERE rolname = current_user")
            )
        ).one()
    return row[0] if row[1] else None


async def check_reachable(engine: AsyncEngine) -> bool:
    try:
        async with engine.connect() as connection:
            await asyncio.wait_for(connection.execute(text("SELECT 1")), timeout=5)
        return True
    except Exception as error:
        if not is_unavailable(error):
            log.exception("database check failed")
        return False


def database_health_monitor(engine: AsyncEngine, interval: float) -> Callable[[RunningServer], Awaitable[None]]:
    """A background job: the service is SERVING exactly while its database answers. Its queries
    are not traced: a root span every interval would bury the traces of real calls."""

    async def monitor(running: RunningServer) -> None:
        serving = True
        while True:
            with suppress_instrumentation():
                reachable = await check_reachable(engine)
            if reachable != serving:
                log.warning("database %s", "reachable again" if reachable else "unreachable: NOT_SERVING")
                if reachable:
                    await engine.dispose()  # connections from before the outage are dead
                await running.set_serving(reachable)
                serving = reachable
            await asyncio.sleep(interval)

    return monitor
