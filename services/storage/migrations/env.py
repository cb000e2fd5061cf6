"""Alembic environment of the record store. Run through `samhandling migrate`, which passes the URL in."""

from services.platform.migrations import run_environment
from services.storage.adapters.models import Base

run_environment(Base.metadata, version_table="alembic_version_storage")
