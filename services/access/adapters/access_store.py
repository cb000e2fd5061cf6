"""The access service's tables in PostgreSQL: decisions and consent changes are appended to the tenant's
hash chain in the same transaction that reads (or changes) the patient's consent, so a decision is
never made on a stale objection or block, and never granted without its log entry. Statements run
on asyncpg directly: a decision is on the path of every patient-data call in the mesh."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Sequence
from datetime import UTC, datetime

import asyncpg
from sqlalchemy.ext.asyncio import AsyncEngine

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
from services.platform.database import tenant_transaction

FOLLOW_UP_CHANNEL = "samhandling_access_follow_ups"
OBJECTION_OVERRIDDEN = "OBJECTION_OVERRIDDEN"
VERIFY_BATCH = 1000

_LOG_COLUMNS = (
    "tenant",
    "sequence",
    "entry_id",
    "decided_at",
    "patient_id",
    "actor_hpr_number",
    "actor_name",
    "actor_organisation_number",
    "actor_unit_organisation_number",
    "actor_client_id",
    "actor_is_patient",
    "purpose_of_use",
    "decision_ref",
    "data_kind",
    "action",
    "allowed",
    "reason",
    "break_the_glass",
    "follow_up",
    "on_patients_request",
    "subject_hpr_number",
    "previous_hash",
    "entry_hash",
)
_LOG = ", ".join(_LOG_COLUMNS)
_INSERT_LOG = f"INSERT INTO access_log ({_LOG}) VALUES ({', '.join(f'${n}' for n in range(1, len(_LOG_COLUMNS) + 1))})"
_REGISTRATION = (
    "registered_at, registered_by, actor_hpr_number, actor_name, actor_organisation_number,"
    " actor_unit_organisation_number, actor_client_id, documented_request"
)


class PostgresAccessStore:
    def __init__(self, engine: AsyncEngine) -> None:
        self.engine = engine

    async def decide(self, tenant: str, queries: Sequence[AccessQuery]) -> list[tuple[Decision, ChainedEntry]]:
        """Decides every query (all for `tenant`) and logs each decision, in one transaction."""
        async with tenant_transaction(self.engine, tenant) as connection:
            # The chain head first: consent changes take it too, so a decision and a consent change are
            # strictly ordered, and a decision never uses consent that a committed change has replaced.
            head = await _lock_head(connection, tenant)
            consent = await _consent_states(connection, tenant, {query.patient_id for query in queries})
            decisions = [decide(query, consent.get(query.patient_id, ConsentState())) for query in queries]
            now = datetime.now(UTC)
            entries = [
                _decision_entry(query, decision, now) for query, decision in zip(queries, decisions, strict=True)
            ]
            chained = await _append(connection, tenant, head, entries)
        return list(zip(decisions, chained, strict=True))

    async def change_consent(self, command: ConsentCommand) -> tuple[ConsentResult, ChainedEntry | None]:
        """Applies one consent change and logs it in the same transaction; a no-op change logs nothing."""
        async with tenant_transaction(self.engine, command.tenant) as connection:
            head = await _lock_head(connection, command.tenant)
            result = await _apply(connection, command)
            if not result.changed:
                return result, None
            chained = await _append(connection, command.tenant, head, [_consent_entry(command)])
        return result, chained[0]

    async def consent(self, tenant: str, patient_id: str) -> tuple[Objection | None, list[Block]]:
        async with tenant_transaction(self.engine, tenant) as connection:
            objection = await connection.fetchrow(
                f"SELECT patient_id, {_REGISTRATION} FROM patient_objections WHERE tenant = $1 AND patient_id = $2",
                tenant,
                patient_id,
            )
            blocks = await connection.fetch(
                f"SELECT patient_id, hpr_number, {_REGISTRATION} FROM practitioner_blocks"
                " WHERE tenant = $1 AND patient_id = $2 ORDER BY hpr_number",
                tenant,
                patient_id,
            )
        return (_objection(objection) if objection else None), [_block(row) for row in blocks]

    async def patient_log(self, tenant: str, patient_id: str, before: int | None, limit: int) -> list[ChainedEntry]:
        """The patient's entries, newest first, with a sequence below `before` (all when None)."""
        async with tenant_transaction(self.engine, tenant) as connection:
            rows = await connection.fetch(
                f"SELECT {_LOG} FROM access_log WHERE tenant = $1 AND patient_id = $2"
                " AND ($3::bigint IS NULL OR sequence < $3) ORDER BY sequence DESC LIMIT $4",
                tenant,
                patient_id,
                before,
                limit,
            )
        return [_chained(row) for row in rows]

    async def follow_ups(self, tenant: str, after: int, limit: int) -> list[ChainedEntry]:
        async with tenant_transaction(self.engine, tenant) as connection:
            rows = await connection.fetch(
                f"SELECT {_LOG} FROM access_log WHERE tenant = $1 AND follow_up AND sequence > $2"
                " ORDER BY sequence LIMIT $3",
                tenant,
                after,
                limit,
            )
        return [_chained(row) for row in rows]

    async def verify(self, tenant: str) -> Verification:
        """Recomputes the chain in batches, against the stored head (which catches a removed tail)."""
        verifier = ChainVerifier()
        async with tenant_transaction(self.engine, tenant) as connection:
            head = await connection.fetchrow(
                "SELECT last_sequence, last_hash FROM access_log_heads WHERE tenant = $1", tenant
            )
            # Only up to the head read above: entries committed meanwhile are checked next time.
            last = head["last_sequence"] if head else 0
            async for item in _entries_in_order(connection, tenant, last):
                if not verifier.check(item):
                    break
        if head is None:
            return verifier.result(head_sequence=0, head_hash=GENESIS_HASH)
        return verifier.result(head_sequence=head["last_sequence"], head_hash=head["last_hash"])


async def _entries_in_order(connection: asyncpg.Connection, tenant: str, last: int) -> AsyncIterator[ChainedEntry]:
    after = 0
    while True:
        rows = await connection.fetch(
            f"SELECT {_LOG} FROM access_log WHERE tenant = $1 AND sequence > $2 AND sequence <= $3"
            " ORDER BY sequence LIMIT $4",
            tenant,
            after,
            last,
            VERIFY_BATCH,
        )
        for row in rows:
            yield _chained(row)
        if len(rows) < VERIFY_BATCH:
            return
        after = rows[-1]["sequence"]


async def _consent_states(
    connection: asyncpg.Connection, tenant: str, patient_ids: set[str]
) -> dict[str, ConsentState]:
    """Objections and blocks of the patients, in one round trip (a block row has an HPR number)."""
    rows = await connection.fetch(
        "SELECT patient_id, NULL::text AS hpr_number FROM patient_objections"
        " WHERE tenant = $1 AND patient_id = ANY($2::text[])"
        " UNION ALL SELECT patient_id, hpr_number FROM practitioner_blocks"
        " WHERE tenant = $1 AND patient_id = ANY($2::text[])",
        tenant,
        list(patient_ids),
    )
    objected: set[str] = set()
    blocked: dict[str, set[str]] = {}
    for patient_id, hpr_number in rows:
        if hpr_number is None:
            objected.add(patient_id)
        else:
            blocked.setdefault(patient_id, set()).add(hpr_number)
    return {
        patient_id: ConsentState(patient_id in objected, frozenset(blocked.get(patient_id, ())))
        for patient_id in objected | blocked.keys()
    }


async def _lock_head(connection: asyncpg.Connection, tenant: str) -> tuple[int, bytes]:
    """The tenant's chain head, locked until commit: appenders (in this process or another replica)
    take turns, so the chain has exactly one order. One round trip, creating the head on first use."""
    row = await connection.fetchrow(
        "INSERT INTO access_log_heads (tenant, last_sequence, last_hash) VALUES ($1, 0, $2)"
        " ON CONFLICT (tenant) DO UPDATE SET tenant = EXCLUDED.tenant RETURNING last_sequence, last_hash",
        tenant,
        GENESIS_HASH,
    )
    return row["last_sequence"], row["last_hash"]


async def _append(
    connection: asyncpg.Connection, tenant: str, head: tuple[int, bytes], entries: Sequence[LogEntry]
) -> list[ChainedEntry]:
    """Links entries onto the chain whose head the transaction has locked, and moves the head."""
    last_sequence, last_hash = head
    chained = chain(entries, last_sequence=last_sequence, last_hash=last_hash)
    await connection.executemany(_INSERT_LOG, [_row_values(item) for item in chained])
    await connection.execute(
        "WITH moved AS (UPDATE access_log_heads SET last_sequence = $2, last_hash = $3 WHERE tenant = $1"
        " RETURNING tenant) SELECT pg_notify($4, tenant) FROM moved WHERE $5",
        tenant,
        chained[-1].sequence,
        chained[-1].entry_hash,
        FOLLOW_UP_CHANNEL,
        any(item.entry.follow_up for item in chained),
    )
    return chained


def _params(first: int, count: int) -> str:
    return ", ".join(f"${n}" for n in range(first, first + count))


_REGISTRATION_COUNT = len(_REGISTRATION.split(","))


async def _apply(connection: asyncpg.Connection, command: ConsentCommand) -> ConsentResult:
    tenant, patient_id = command.tenant, command.patient_id
    registered = _registration_values(command.registration)
    if command.change is ConsentChange.OBJECTION_REGISTERED:
        inserted = await connection.fetchval(
            f"INSERT INTO patient_objections (tenant, patient_id, {_REGISTRATION})"
            f" VALUES ($1, $2, {_params(3, _REGISTRATION_COUNT)}) ON CONFLICT DO NOTHING RETURNING patient_id",
            tenant,
            patient_id,
            *registered,
        )
        current = await connection.fetchrow(
            f"SELECT patient_id, {_REGISTRATION} FROM patient_objections WHERE tenant = $1 AND patient_id = $2",
            tenant,
            patient_id,
        )
        return ConsentResult(inserted is not None, objection=_objection(current) if current else None)
    if command.change is ConsentChange.OBJECTION_WITHDRAWN:
        deleted = await connection.fetchval(
            "DELETE FROM patient_objections WHERE tenant = $1 AND patient_id = $2 RETURNING patient_id",
            tenant,
            patient_id,
        )
        return ConsentResult(deleted is not None)
    hpr_number = command.hpr_number
    if command.change is ConsentChange.PRACTITIONER_BLOCKED:
        inserted = await connection.fetchval(
            f"INSERT INTO practitioner_blocks (tenant, patient_id, hpr_number, {_REGISTRATION})"
            f" VALUES ($1, $2, $3, {_params(4, _REGISTRATION_COUNT)}) ON CONFLICT DO NOTHING RETURNING hpr_number",
            tenant,
            patient_id,
            hpr_number,
            *registered,
        )
        current = await connection.fetchrow(
            f"SELECT patient_id, hpr_number, {_REGISTRATION} FROM practitioner_blocks"
            " WHERE tenant = $1 AND patient_id = $2 AND hpr_number = $3",
            tenant,
            patient_id,
            hpr_number,
        )
        return ConsentResult(inserted is not None, block=_block(current) if current else None)
    deleted = await connection.fetchval(
        "DELETE FROM practitioner_blocks WHERE tenant = $1 AND patient_id = $2 AND hpr_number = $3"
        " RETURNING hpr_number",
        tenant,
        patient_id,
        hpr_number,
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


def _row_values(item: ChainedEntry) -> tuple:
    """The entry's column values, in the order of `_LOG_COLUMNS`."""
    entry, actor = item.entry, item.entry.actor
    return (
        entry.tenant,
        item.sequence,
        entry.entry_id,
        entry.decided_at,
        entry.patient_id,
        actor.hpr_number,
        actor.name,
        actor.organisation_number,
        actor.unit_organisation_number,
        actor.client_id,
        actor.is_patient,
        entry.purpose_of_use,
        entry.decision_ref,
        int(entry.data_kind),
        int(entry.action),
        entry.allowed,
        entry.reason,
        entry.break_the_glass,
        entry.follow_up,
        entry.on_patients_request,
        entry.subject_hpr_number,
        item.previous_hash,
        item.entry_hash,
    )


def _chained(row: asyncpg.Record) -> ChainedEntry:
    entry = LogEntry(
        entry_id=row["entry_id"],
        tenant=row["tenant"],
        decided_at=row["decided_at"],
        patient_id=row["patient_id"],
        actor=_actor(row, is_patient=row["actor_is_patient"]),
        purpose_of_use=row["purpose_of_use"],
        decision_ref=row["decision_ref"],
        data_kind=DataKind(row["data_kind"]),
        action=Action(row["action"]),
        allowed=row["allowed"],
        reason=row["reason"],
        break_the_glass=row["break_the_glass"],
        follow_up=row["follow_up"],
        on_patients_request=row["on_patients_request"],
        subject_hpr_number=row["subject_hpr_number"],
    )
    return ChainedEntry(entry, row["sequence"], row["previous_hash"], row["entry_hash"])


def _registration_values(registration: Registration) -> tuple:
    """In the order of `_REGISTRATION`."""
    actor = registration.actor
    return (
        registration.registered_at,
        int(registration.registered_by),
        actor.hpr_number,
        actor.name,
        actor.organisation_number,
        actor.unit_organisation_number,
        actor.client_id,
        registration.documented_request,
    )


def _actor(row: asyncpg.Record, *, is_patient: bool) -> Actor:
    return Actor(
        hpr_number=row["actor_hpr_number"],
        name=row["actor_name"],
        organisation_number=row["actor_organisation_number"],
        unit_organisation_number=row["actor_unit_organisation_number"],
        client_id=row["actor_client_id"],
        is_patient=is_patient,
    )


def _registration(row: asyncpg.Record) -> Registration:
    registered_by = RegisteredBy(row["registered_by"])
    return Registration(
        registered_at=row["registered_at"],
        registered_by=registered_by,
        actor=_actor(row, is_patient=registered_by is RegisteredBy.PATIENT),
        documented_request=row["documented_request"],
    )


def _objection(row: asyncpg.Record) -> Objection:
    return Objection(row["patient_id"], _registration(row))


def _block(row: asyncpg.Record) -> Block:
    return Block(row["patient_id"], row["hpr_number"], _registration(row))
