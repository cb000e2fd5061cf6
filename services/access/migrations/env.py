"""Alembic environment of the access service. Run through `samhandling migrate`, which passes the URL in."""

from services.access.adapters.models import Base
from services.platform.migrations import run_environment

run_environment(Base.metadata, version_table="alembic_version_access")
