"""Alembic, shared by every service that owns tables: each keeps its own migrations directory and its
own version table, so services migrate independently against one database."""

from __future__ import annotations

import asyncio
from pathlib import Path

from alembic import command, context
from alembic.config import Config
from sqlalchemy import MetaData
from sqlalchemy.ext.asyncio import create_async_engine

from services.platform.database import async_url


def upgrade_to_head(migrations_dir: Path, database_url: str) -> None:
    """Idempotent: a database already at head is left as it is."""
    config = Config()
    config.set_main_option("script_location", str(migrations_dir))
    config.attributes["database_url"] = database_url
    command.upgrade(config, "head")


def run_environment(target_metadata: MetaData, version_table: str) -> None:
    """The body of a migrations directory's env.py."""
    url = context.config.attributes["database_url"]
    if context.is_offline_mode():
        context.configure(url=url, target_metadata=target_metadata, literal_binds=True, version_table=version_table)
        with context.begin_transaction():
            context.run_migrations()
        return

    def configure_and_run(connection) -> None:
        context.configure(connection=connection, target_metadata=target_metadata, version_table=version_table)
        with context.begin_transaction():
            context.run_migrations()

    async def run_online() -> None:
        engine = create_async_engine(async_url(url))
        try:
            async with engine.connect() as connection:
                await connection.run_sync(configure_and_run)
                await connection.commit()
        finally:
            await engine.dispose()

    asyncio.run(run_online())
