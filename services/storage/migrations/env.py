"""Alembic environment (async). Run through `samhandling migrate`, which passes the URL in."""

from __future__ import annotations

import asyncio

from alembic import context
from sqlalchemy.ext.asyncio import create_async_engine

from services.platform.database import async_url
from services.storage.adapters.models import Base

VERSION_TABLE = "alembic_version_storage"


def _configure_and_run(connection) -> None:
    context.configure(connection=connection, target_metadata=Base.metadata, version_table=VERSION_TABLE)
    with context.begin_transaction():
        context.run_migrations()


async def _run_online(url: str) -> None:
    engine = create_async_engine(async_url(url))
    try:
        async with engine.connect() as connection:
            await connection.run_sync(_configure_and_run)
            await connection.commit()
    finally:
        await engine.dispose()


def _run() -> None:
    url = context.config.attributes["database_url"]
    if context.is_offline_mode():
        context.configure(url=url, target_metadata=Base.metadata, literal_binds=True, version_table=VERSION_TABLE)
        with context.begin_transaction():
            context.run_migrations()
    else:
        asyncio.run(_run_online(url))


_run()
