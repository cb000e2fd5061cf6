"""SQLAlchemy models of the record store. The schema itself is owned by the Alembic migrations."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import BigInteger, DateTime, Integer, LargeBinary, String, UniqueConstraint, func
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column


class Base(DeclarativeBase):
    pass


class RecordHead(Base):
    """One row per record: its latest version. Its row lock serialises writers of the same record."""

    __tablename__ = "records"

    tenant: Mapped[str] = mapped_column(String(4), primary_key=True)
    patient_id: Mapped[str] = mapped_column(String(11), primary_key=True)
    kind: Mapped[str] = mapped_column(String(64), primary_key=True)
    key: Mapped[str] = mapped_column(String(200), primary_key=True)
    latest_version: Mapped[int] = mapped_column(Integer)


class RecordVersionRow(Base):
    """Every version ever written; append-only (a trigger rejects UPDATE and DELETE)."""

    __tablename__ = "record_versions"
    __table_args__ = (
        UniqueConstraint("tenant", "sequence", name="uq_record_versions_sequence"),
        UniqueConstraint("tenant", "source_system", "idempotency_key", name="uq_record_versions_idempotency"),
    )

    tenant: Mapped[str] = mapped_column(String(4), primary_key=True)
    patient_id: Mapped[str] = mapped_column(String(11), primary_key=True)
    kind: Mapped[str] = mapped_column(String(64), primary_key=True)
    key: Mapped[str] = mapped_column(String(200), primary_key=True)
    version: Mapped[int] = mapped_column(Integer, primary_key=True)
    sequence: Mapped[int] = mapped_column(BigInteger)
    payload: Mapped[bytes] = mapped_column(LargeBinary)
    content_type: Mapped[str] = mapped_column(String(128))
    source_system: Mapped[str] = mapped_column(String(200))
    organisation_number: Mapped[str] = mapped_column(String(9))
    author_hpr_number: Mapped[str | None] = mapped_column(String(20))
    recorded_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.clock_timestamp())
    idempotency_key: Mapped[str] = mapped_column(String(128))
    request_fingerprint: Mapped[bytes] = mapped_column(LargeBinary)


class TenantFeed(Base):
    """The tenant's change-feed position. Taking the next sequence locks this row until commit, so
    versions commit in sequence order and a reader never sees a later sequence before an earlier one."""

    __tablename__ = "tenant_feeds"

    tenant: Mapped[str] = mapped_column(String(4), primary_key=True)
    last_sequence: Mapped[int] = mapped_column(BigInteger)
