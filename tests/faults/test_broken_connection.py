"""A pooled connection whose protocol fell out of step with the server — what a database restart left
behind when a statement started just as the server's goodbye arrived (found by the database-restart
fault test: the call failed INTERNAL) — fails its call UNAVAILABLE, so callers retry, and is not reused."""

from __future__ import annotations

import asyncpg
import pytest
from asyncpg.connection import Connection

from services.platform.database import create_engine, is_unavailable, tenant_transaction
from services.platform.errors import Unavailable
from tests.support import BODO

OUT_OF_STEP = 'cannot switch to state 12; protocol is in the "failed" state'


def test_a_protocol_out_of_step_is_unavailable():
    assert is_unavailable(asyncpg.InternalClientError(OUT_OF_STEP))


async def test_a_connection_out_of_step_fails_unavailable_and_is_discarded(database, monkeypatch):
    engine = create_engine(database.url, pool_size=1)
    try:
        async with tenant_transaction(engine, BODO) as connection:
            broken = connection
        execute = Connection.execute

        async def out_of_step(self, query, *args, **kwargs):
            if self is broken:
                raise asyncpg.InternalClientError(OUT_OF_STEP)
            return await execute(self, query, *args, **kwargs)

        monkeypatch.setattr(Connection, "execute", out_of_step)
        with pytest.raises(Unavailable):
            async with tenant_transaction(engine, BODO) as connection:
                assert connection is broken  # the pool hands out the connection it has
        async with tenant_transaction(engine, BODO) as connection:
            assert connection is not broken
            assert await connection.fetchval("SELECT current_setting('samhandling.tenant')") == BODO
    finally:
        await engine.dispose()
