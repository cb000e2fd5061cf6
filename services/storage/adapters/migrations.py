"""Runs the record store's Alembic migrations against a database URL."""

from __future__ import annotations

from pathlib import Path

from services.platform import migrations

MIGRATIONS_DIR = Path(__file__).resolve().parent.parent / "migrations"


def upgrade_to_head(database_url: str) -> None:
    migrations.upgrade_to_head(MIGRATIONS_DIR, database_url)
