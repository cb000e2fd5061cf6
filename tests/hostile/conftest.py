"""Fixtures for the hostile-input tests: the whole in-process mesh (access, overview, news2 and storage
on real ports, one real PostgreSQL), a channel to each, and a superuser view of what is stored."""

from __future__ import annotations

from collections.abc import AsyncIterator

import asyncpg
import pytest
from grpc import aio

from services.platform.embedded_database import EmbeddedPostgres
from tests.hostile.support import Ledger


@pytest.fixture(scope="module")
async def channels(
    access_server, overview_server, news2_server, storage_server
) -> AsyncIterator[dict[str, aio.Channel]]:
    servers = {"access": access_server, "overview": overview_server, "news2": news2_server, "storage": storage_server}
    opened = {name: aio.insecure_channel(f"127.0.0.1:{server.port}") for name, server in servers.items()}
    yield opened
    for channel in opened.values():
        await channel.close()


@pytest.fixture(scope="module")
async def ledger(database: EmbeddedPostgres) -> AsyncIterator[Ledger]:
    connection = await asyncpg.connect(database.admin_url)
    yield Ledger(connection)
    await connection.close()
