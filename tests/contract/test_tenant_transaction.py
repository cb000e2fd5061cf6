"""`tenant_transaction`: the driver-level transaction the hot paths of storage and access run in."""

from __future__ import annotations

import asyncio

import asyncpg
import pytest

from services.platform.database import create_engine, tenant_transaction
from services.platform.embedded_database import EmbeddedPostgres
from services.platform.errors import Unavailable
from tests.support import BAERUM, BODO, person_number


@pytest.fixture
async def engine(database: EmbeddedPostgres):
    engine = create_engine(database.url, pool_size=2)
    yield engine
    await engine.dispose()


async def _objections_of(engine, tenant: str, patient: str) -> int:
    async with tenant_transaction(engine, tenant) as connection:
        return await connection.fetchval("SELECT count(*) FROM patient_objections WHERE patient_id = $1", patient)


async def _insert_objection(connection, tenant: str, patient: str) -> None:
    await connection.execute(
        "INSERT INTO patient_objections (tenant, patient_id, registered_at, registered_by, actor_organisation_number,"
        " actor_client_id) VALUES ($1, $2, now(), 1, '972418013', 'test')",
        tenant,
        patient,
    )


async def test_commits_on_success_and_row_security_sees_only_the_tenant(engine):
    patient = person_number()
    async with tenant_transaction(engine, BODO) as connection:
        await _insert_objection(connection, BODO, patient)
        assert await connection.fetchval("SELECT current_setting('samhandling.tenant')") == BODO
    assert await _objections_of(engine, BODO, patient) == 1
    assert await _objections_of(engine, BAERUM, patient) == 0


async def test_a_row_of_another_tenant_is_refused_by_row_security(engine):
    with pytest.raises(Exception, match="row-level security"):
        async with tenant_transaction(engine, BODO) as connection:
            await _insert_objection(connection, BAERUM, person_number())


async def test_rolls_back_when_the_body_fails_and_the_connection_stays_usable(engine):
    patient = person_number()
    with pytest.raises(RuntimeError):
        async with tenant_transaction(engine, BODO) as connection:
            await _insert_objection(connection, BODO, patient)
            raise RuntimeError("the unit of work failed")
    for _ in range(3):  # every pooled connection is out of its transaction again
        assert await _objections_of(engine, BODO, patient) == 0


async def test_a_cancelled_transaction_is_not_committed_and_its_connection_not_reused(engine):
    patient = person_number()
    inserted = asyncio.Event()

    async def slow_unit_of_work() -> None:
        async with tenant_transaction(engine, BODO) as connection:
            await _insert_objection(connection, BODO, patient)
            inserted.set()
            await connection.execute("SELECT pg_sleep(10)")

    task = asyncio.create_task(slow_unit_of_work())
    await inserted.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert await _objections_of(engine, BODO, patient) == 0


@pytest.mark.parametrize("tenant", ["", "1804'; DROP TABLE records; --", "18 04", "x" * 33])
async def test_a_tenant_that_is_not_a_code_never_reaches_the_statement(engine, tenant: str):
    with pytest.raises(ValueError, match="not a tenant code"):
        async with tenant_transaction(engine, tenant):
            pass


async def test_an_unreachable_database_is_unavailable():
    engine = create_engine("postgresql://nobody@127.0.0.1:1/none", pool_size=1)
    try:
        with pytest.raises(Unavailable):
            async with tenant_transaction(engine, BODO):
                pass
    finally:
        await engine.dispose()


async def test_pooled_connections_the_server_closed_are_replaced_without_failing_a_call(engine, database):
    """After a database restart every pooled connection is dead; the driver knows it without a round
    trip, so a transaction takes a fresh one instead of failing (no pre-ping needed)."""
    holders = []
    for _ in range(2):  # two connections into the pool
        holders.append(tenant_transaction(engine, BODO))
    connections = [await holder.__aenter__() for holder in holders]
    pids = {connection.get_server_pid() for connection in connections}
    for holder in holders:
        await holder.__aexit__(None, None, None)
    admin = await asyncpg.connect(database.admin_url)
    try:
        await admin.execute("SELECT pg_terminate_backend(pid) FROM unnest($1::int[]) AS pid", list(pids))
    finally:
        await admin.close()
    await asyncio.sleep(0.2)  # the driver sees the sockets close

    for _ in range(3):
        async with tenant_transaction(engine, BODO) as connection:
            assert connection.get_server_pid() not in pids
