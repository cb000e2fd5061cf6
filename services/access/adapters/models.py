"""SQLAlchemy models of the access service. The schema itself is owned by the Alembic migrations."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import BigInteger, Boolean, DateTime, LargeBinary, SmallInteger, String
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column


class Base(DeclarativeBase):
    pass


class AccessLogRow(Base):
    """One decision or consent change; append-only (a trigger rejects UPDATE, DELETE and TRUNCATE)."""

    __tablename__ = "access_log"

    tenant: Mapped[str] = mapped_column(String(4), primary_key=True)
    sequence: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    entry_id: Mapped[str] = mapped_column(String(36), unique=True)
    decided_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    patient_id: Mapped[str] = mapped_column(String(11))
    actor_hpr_number: Mapped[str | None] = mapped_column(String(9))
    actor_name: Mapped[str | None] = mapped_column(String(200))
    actor_organisation_number: Mapped[str] = mapped_column(String(9))
    actor_unit_organisation_number: Mapped[str | None] = mapped_column(String(9))
    actor_client_id: Mapped[str] = mapped_column(String(200))
    actor_is_patient: Mapped[bool] = mapped_column(Boolean)
    purpose_of_use: Mapped[str | None] = mapped_column(String(10))
    decision_ref: Mapped[str | None] = mapped_column(String(200))
    data_kind: Mapped[int] = mapped_column(SmallInteger)
    action: Mapped[int] = mapped_column(SmallInteger)
    allowed: Mapped[bool] = mapped_column(Boolean)
    reason: Mapped[str | None] = mapped_column(String(40))
    break_the_glass: Mapped[bool] = mapped_column(Boolean)
    follow_up: Mapped[bool] = mapped_column(Boolean)
    on_patients_request: Mapped[bool] = mapped_column(Boolean)
    subject_hpr_number: Mapped[str | None] = mapped_column(String(9))
    previous_hash: Mapped[bytes] = mapped_column(LargeBinary)
    entry_hash: Mapped[bytes] = mapped_column(LargeBinary)


class AccessLogHead(Base):
    """The tenant's chain head. Appending locks this row until commit, so the chain has one order."""

    __tablename__ = "access_log_heads"

    tenant: Mapped[str] = mapped_column(String(4), primary_key=True)
    last_sequence: Mapped[int] = mapped_column(BigInteger)
    last_hash: Mapped[bytes] = mapped_column(LargeBinary)


class _Registration:
    registered_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    registered_by: Mapped[int] = mapped_column(SmallInteger)
    actor_hpr_number: Mapped[str | None] = mapped_column(String(9))
    actor_name: Mapped[str | None] = mapped_column(String(200))
    actor_organisation_number: Mapped[str] = mapped_column(String(9))
    actor_unit_organisation_number: Mapped[str | None] = mapped_column(String(9))
    actor_client_id: Mapped[str] = mapped_column(String(200))
    documented_request: Mapped[str | None] = mapped_column(String(200))


class ObjectionRow(_Registration, Base):
    """A patient's current objection; withdrawing deletes it (the access log keeps the history)."""

    __tablename__ = "patient_objections"

    tenant: Mapped[str] = mapped_column(String(4), primary_key=True)
    patient_id: Mapped[str] = mapped_column(String(11), primary_key=True)


class BlockRow(_Registration, Base):
    """A clinician the patient has blocked; unblocking deletes it (the access log keeps the history)."""

    __tablename__ = "practitioner_blocks"

    tenant: Mapped[str] = mapped_column(String(4), primary_key=True)
    patient_id: Mapped[str] = mapped_column(String(11), primary_key=True)
    hpr_number: Mapped[str] = mapped_column(String(9), primary_key=True)
