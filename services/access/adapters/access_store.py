"""The access service's tables in PostgreSQL: decisions and consent changes are appended to the tenant's
hash chain in the same transaction that reads (or changes) the patient's consent, so a decision is
never made on a stale objection or block, and never granted without its log entry."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Sequence
from datetime import UTC, datetime

from sqlalchemy import delete, insert, select, text
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from services.access.adapters.models import AccessLogHead, AccessLogRow, BlockRow, ObjectionRow
from services.access.domain.access_log import (
    GENESIS_HASH,
    Actor,
    ChainedEntry,
    ChainVerifier,
    ConsentChange,
    LogEntry,
    Verification,
    chain,
)
from services.access.domain.consent import (
    Block,
    ConsentCommand,
    ConsentResult,
    Objection,
    RegisteredBy,
    Registration,
    actor_of,
)
from services.access.domain.decisions import AccessQuery, Action, ConsentState, DataKind, Decision, decide
from services.platform.database import tenant_session

FOLLOW_UP_CHANNEL = "samhandling_access_follow_ups"
OBJECTION_OVERRIDDEN = "OBJECTION_OVERRIDDEN"
VERIFY_BATCH = 1000


class PostgresAccessStore:
    def __init__(self, sessions: async_sessionmaker[AsyncSession]) -> None:
        self.sessions = sessions

    async def decide(self, tenant: str, queries: Sequence[AccessQuery]) -> list[tuple[Decision, ChainedEntry]]:
        """Decides every query (all for `tenant`) and logs each decision, in one transaction."""
        async with tenant_session(self.sessions, tenant) as session:
            # The chain head first: consent changes take it too, so a decision and a consent change are
            # strictly ordered, and a decision never uses consent that a committed change has replaced.
            head = await _lock_head(session, tenant)
            consent = await _consent_states(session, tenant, {query.patient_id for query in queries})
            decisions = [decide(query, consent.get(query.patient_id, ConsentState())) for query in queries]
            now = datetime.now(UTC)
            entries = [
                _decision_entry(query, decision, now) for query, decision in zip(queries, decisions, strict=True)
            ]
            chained = await _append(session, head, entries)
        return list(zip(decisions, chained, strict=True))

    async def change_consent(self, command: ConsentCommand) -> tuple[ConsentResult, ChainedEntry | None]:
        """Applies one consent change and logs it in the same transaction; a no-op change logs nothing."""
        async with tenant_session(self.sessions, command.tenant) as session:
            head = await _lock_head(session, command.tenant)
            result = await _apply(session, command)
            if not result.changed:
                return result, None
            chained = await _append(session, head, [_consent_entry(command)])
        return result, chained[0]

    async def consent(self, tenant: str, patient_id: str) -> tuple[Objection | None, list[Block]]:
        async with tenant_session(self.sessions, tenant) as session:
            objection = await session.get(ObjectionRow, (tenant, patient_id))
            blocks = await session.scalars(
                select(BlockRow)
                .where(BlockRow.tenant == tenant, BlockRow.patient_id == patient_id)
                .order_by(BlockRow.hpr_number)
            )
            return (_objection(objection) if objection else None), [_block(row) for row in blocks]

    async def patient_log(self, tenant: str, patient_id: str, before: int | None, limit: int) -> list[ChainedEntry]:
        """The patient's entries, newest first, with a sequence below `before` (all when None)."""
        query = select(AccessLogRow).where(AccessLogRow.tenant == tenant, AccessLogRow.patient_id == patient_id)
        if before is not None:
            query = query.where(AccessLogRow.sequence < before)
        async with tenant_session(self.sessions, tenant) as session:
            rows = await session.scalars(query.order_by(AccessLogRow.sequence.desc()).limit(limit))
            return [_chained(row) for row in rows]

    async def follow_ups(self, tenant: str, after: int, limit: int) -> list[ChainedEntry]:
        async with tenant_session(self.sessions, tenant) as session:
            rows = await session.scalars(
                select(AccessLogRow)
                .where(AccessLogRow.tenant == tenant, AccessLogRow.follow_up, AccessLogRow.sequence > after)
                .order_by(AccessLogRow.sequence)
                .limit(limit)
            )
            return [_chained(row) for row in rows]

    async def verify(self, tenant: str) -> Verification:
        """Recomputes the chain in batches, against the stored head (which catches a removed tail)."""
        verifier = ChainVerifier()
        async with tenant_session(self.sessions, tenant) as session:
            head = await session.get(AccessLogHead, tenant)
            # Only up to the head read above: entries committed meanwhile are checked next time.
            last = head.last_sequence if head else 0
            async for item in _entries_in_order(session, tenant, last):
                if not verifier.check(item):
                    break
        if head is None:
            return verifier.result(head_sequence=0, head_hash=GENESIS_HASH)
        return verifier.result(head_sequence=head.last_sequence, head_hash=head.last_hash)


async def _entries_in_order(session: AsyncSession, tenant: str, last: int) -> AsyncIterator[ChainedEntry]:
    after = 0
    while True:
        rows = list(
            await session.scalars(
                select(AccessLogRow)
                .where(AccessLogRow.tenant == tenant, AccessLogRow.sequence > after, AccessLogRow.sequence <= last)
                .order_by(AccessLogRow.sequence)
                .limit(VERIFY_BATCH)
            )
        )
        for row in rows:
            yield _chained(row)
        if len(rows) < VERIFY_BATCH:
            return
        after = rows[-1].sequence


async def _consent_states(session: AsyncSession, tenant: str, patient_ids: set[str]) -> dict[str, ConsentState]:
    objected = set(
        await session.scalars(
            select(ObjectionRow.patient_id).where(
                ObjectionRow.tenant == tenant, ObjectionRow.patient_id.in_(patient_ids)
            )
        )
    )
    blocked: dict[str, set[str]] = {}
    rows = await session.execute(
        select(BlockRow.patient_id, BlockRow.hpr_number).where(
            BlockRow.tenant == tenant, BlockRow.patient_id.in_(patient_ids)
        )
    )
    for patient_id, hpr_number in rows:
        blocked.setdefault(patient_id, set()).add(hpr_number)
    return {
        patient_id: ConsentState(patient_id in objected, frozenset(blocked.get(patient_id, ())))
        for patient_id in objected | blocked.keys()
    }


async def _lock_head(session: AsyncSession, tenant: str) -> AccessLogHead:
    """The tenant's chain head, locked until commit: appenders (in this process or another replica)
    take turns, so the chain has exactly one order. One round trip, creating the head on first use."""
    upsert = (
        pg_insert(AccessLogHead)
        .values(tenant=tenant, last_sequence=0, last_hash=GENESIS_HASH)
        .on_conflict_do_update(index_elements=["tenant"], set_={"tenant": tenant})
        .returning(AccessLogHead)
    )
    return (await session.execute(select(AccessLogHead).from_statement(upsert))).scalar_one()


async def _append(session: AsyncSession, head: AccessLogHead, entries: Sequence[LogEntry]) -> list[ChainedEntry]:
    """Links entries onto the chain whose head the transaction has locked."""
    chained = chain(entries, last_sequence=head.last_sequence, last_hash=head.last_hash)
    await session.execute(insert(AccessLogRow), [_row_values(item) for item in chained])
    head.last_sequence, head.last_hash = chained[-1].sequence, chained[-1].entry_hash
    if any(item.entry.follow_up for item in chained):
        await session.execute(
            text("SELECT pg_notify(:channel, :tenant)"), {"channel": FOLLOW_UP_CHANNEL, "tenant": head.tenant}
        )
    return chained


async def _apply(session: AsyncSession, command: ConsentCommand) -> ConsentResult:
    tenant, patient_id, registration = command.tenant, command.patient_id, command.registration
    if command.change is ConsentChange.OBJECTION_REGISTERED:
        inserted = await session.scalar(
            pg_insert(ObjectionRow)
            .values(tenant=tenant, patient_id=patient_id, **_registration_values(registration))
            .on_conflict_do_nothing()
            .returning(ObjectionRow.patient_id)
        )
        current = await session.get(ObjectionRow, (tenant, patient_id), populate_existing=True)
        return ConsentResult(inserted is not None, objection=_objection(current) if current else None)
    if command.change is ConsentChange.OBJECTION_WITHDRAWN:
        deleted = await session.scalar(
            delete(ObjectionRow)
            .where(ObjectionRow.tenant == tenant, ObjectionRow.patient_id == patient_id)
            .returning(ObjectionRow.patient_id)
        )
        return ConsentResult(deleted is not None)
    hpr_number = command.hpr_number
    if command.change is ConsentChange.PRACTITIONER_BLOCKED:
        inserted = await session.scalar(
            pg_insert(BlockRow)
            .values(tenant=tenant, patient_id=patient_id, hpr_number=hpr_number, **_registration_values(registration))
            .on_conflict_do_nothing()
            .returning(BlockRow.hpr_number)
        )
        current = await session.get(BlockRow, (tenant, patient_id, hpr_number), populate_existing=True)
        return ConsentResult(inserted is not None, block=_block(current) if current else None)
    deleted = await session.scalar(
        delete(BlockRow)
        .where(BlockRow.tenant == tenant, BlockRow.patient_id == patient_id, BlockRow.hpr_number == hpr_number)
        .returning(BlockRow.hpr_number)
    )
    return ConsentResult(deleted is not None)


def _decision_entry(query: AccessQuery, decision: Decision, now: datetime) -> LogEntry:
    caller = query.caller
    return LogEntry(
        entry_id=str(uuid.uuid4()),
        tenant=query.tenant,
        decided_at=now,
        patient_id=query.patient_id,
        actor=actor_of(caller),
        purpose_of_use=query.purpose_of_use,
        decision_ref=caller.attestation.decision_ref if caller.attestation else None,
        data_kind=query.data_kind,
        action=query.action,
        allowed=decision.allowed,
        reason=_logged_reason(decision),
        break_the_glass=decision.break_the_glass,
        follow_up=decision.follow_up,
    )


def _logged_reason(decision: Decision) -> str | None:
    """Why it was denied; for an allowed access, that it overrode the patient's objection (so the
    patient and the privacy officer see it in the entry itself)."""
    if decision.reason is not None:
        return decision.reason.value
    return OBJECTION_OVERRIDDEN if decision.overrode_objection else None


def _consent_entry(command: ConsentCommand) -> LogEntry:
    registration = command.registration
    return LogEntry(
        entry_id=str(uuid.uuid4()),
        tenant=command.tenant,
        decided_at=registration.registered_at,
        patient_id=command.patient_id,
        actor=registration.actor,
        purpose_of_use=None,
        decision_ref=None,
        data_kind=DataKind.CONSENT,
        action=Action.WRITE,
        allowed=True,
        reason=command.change.value,
        break_the_glass=False,
        follow_up=False,
        on_patients_request=registration.registered_by is not RegisteredBy.PATIENT,
        subject_hpr_number=command.hpr_number,
    )


def _row_values(item: ChainedEntry) -> dict:
    entry, actor = item.entry, item.entry.actor
    return {
        "tenant": entry.tenant,
        "sequence": item.sequence,
        "entry_id": entry.entry_id,
        "decided_at": entry.decided_at,
        "patient_id": entry.patient_id,
        "actor_hpr_number": actor.hpr_number,
        "actor_name": actor.name,
        "actor_organisation_number": actor.organisation_number,
        "actor_unit_organisation_number": actor.unit_organisation_number,
        "actor_client_id": actor.client_id,
        "actor_is_patient": actor.is_patient,
        "purpose_of_use": entry.purpose_of_use,
        "decision_ref": entry.decision_ref,
        "data_kind": int(entry.data_kind),
        "action": int(entry.action),
        "allowed": entry.allowed,
        "reason": entry.reason,
        "break_the_glass": entry.break_the_glass,
        "follow_up": entry.follow_up,
        "on_patients_request": entry.on_patients_request,
        "subject_hpr_number": entry.subject_hpr_number,
        "previous_hash": item.previous_hash,
        "entry_hash": item.entry_hash,
    }


def _chained(row: AccessLogRow) -> ChainedEntry:
    entry = LogEntry(
        entry_id=row.entry_id,
        tenant=row.tenant,
        decided_at=row.decided_at,
        patient_id=row.patient_id,
        actor=_actor(row, is_patient=row.actor_is_patient),
        purpose_of_use=row.purpose_of_use,
        decision_ref=row.decision_ref,
        data_kind=DataKind(row.data_kind),
        action=Action(row.action),
        allowed=row.allowed,
        reason=row.reason,
        break_the_glass=row.break_the_glass,
        follow_up=row.follow_up,
        on_patients_request=row.on_patients_request,
        subject_hpr_number=row.subject_hpr_number,
    )
    return ChainedEntry(entry, row.sequence, row.previous_hash, row.entry_hash)


def _registration_values(registration: Registration) -> dict:
    actor = registration.actor
    return {
        "registered_at": registration.registered_at,
        "registered_by": int(registration.registered_by),
        "actor_hpr_number": actor.hpr_number,
        "actor_name": actor.name,
        "actor_organisation_number": actor.organisation_number,
        "actor_unit_organisation_number": actor.unit_organisation_number,
        "actor_client_id": actor.client_id,
        "documented_request": registration.documented_request,
    }


def _actor(row: AccessLogRow | ObjectionRow | BlockRow, *, is_patient: bool) -> Actor:
    return Actor(
        hpr_number=row.actor_hpr_number,
        name=row.actor_name,
        organisation_number=row.actor_organisation_number,
        unit_organisation_number=row.actor_unit_organisation_number,
        client_id=row.actor_client_id,
        is_patient=is_patient,
    )


def _registration(row: ObjectionRow | BlockRow) -> Registration:
    return Registration(
        registered_at=row.registered_at,
        registered_by=RegisteredBy(row.registered_by),
        actor=_actor(row, is_patient=RegisteredBy(row.registered_by) is RegisteredBy.PATIENT),
        documented_request=row.documented_request,
    )


def _objection(row: ObjectionRow) -> Objection:
    return Objection(row.patient_id, _registration(row))


def _block(row: BlockRow) -> Block:
    return Block(row.patient_id, row.hpr_number, _registration(row))
