"""The record store on PostgreSQL: each operation is one tenant-scoped transaction (the unit of
work), and row-level security confines every statement in it to that tenant."""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import func, select, text, true, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from services.platform.database import tenant_session
from services.platform.errors import NotFound
from services.storage.adapters.models import RecordHead, RecordVersionRow, TenantFeed
from services.storage.domain.records import (
    Author,
    IdempotencyKeyReused,
    Payload,
    PutCommand,
    PutResult,
    RecordRef,
    RecordVersion,
    VersionConflict,
)

CHANGES_CHANNEL = "samhandling_record_changes"


class PostgresRecordStore:
    def __init__(self, sessions: async_sessionmaker[AsyncSession]) -> None:
        self.sessions = sessions

    async def put(self, command: PutCommand) -> PutResult:
        fingerprint = command.fingerprint()
        ref = command.ref
        async with tenant_session(self.sessions, ref.tenant) as session:
            # Requests sharing an idempotency key run one after the other, so a concurrent retry
            # finds the first one's committed version and replays it (rather than racing it and,
            # with an expected_version, being told it conflicted).
            await session.execute(
                text("SELECT pg_advisory_xact_lock(hashtextextended(:scope, 0))"),
                {"scope": f"{ref.tenant}\x1f{command.author.source_system}\x1f{command.idempotency_key}"},
            )
            earlier = await _find_by_idempotency_key(session, ref.tenant, command)
            if earlier is not None:
                if earlier.request_fingerprint != fingerprint:
                    raise IdempotencyKeyReused()
                return PutResult(_to_domain(earlier), replayed=True)
            version = await _next_version(session, ref, command.expected_version)
            values = {
                "tenant": ref.tenant,
                "patient_id": ref.patient_id,
                "kind": ref.kind,
                "key": ref.key,
                "version": version,
                "payload": command.payload.data,
                "content_type": command.payload.content_type,
                "source_system": command.author.source_system,
                "organisation_number": command.author.organisation_number,
                "author_hpr_number": command.author.hpr_number,
                "idempotency_key": command.idempotency_key,
                "request_fingerprint": fingerprint,
                "channel": CHANGES_CHANNEL,
            }
            # The tenant's feed row is taken last and in the same statement as the insert and the
            # notification, so it stays locked for one round trip and the commit: every writer of the
            # tenant waits for that lock, so its hold time bounds the tenant's write rate.
            row = (await session.execute(select(RecordVersionRow).from_statement(_APPEND_VERSION), values)).scalar_one()
        return PutResult(_to_domain(row), replayed=False)

    async def get(self, ref: RecordRef, version: int | None) -> RecordVersion:
        async with tenant_session(self.sessions, ref.tenant) as session:
            query = select(RecordVersionRow).where(*_matches(ref))
            if version is None:
                query = query.order_by(RecordVersionRow.version.desc()).limit(1)
            else:
                query = query.where(RecordVersionRow.version == version)
            row = (await session.execute(query)).scalar_one_or_none()
        if row is None:
            raise NotFound("no such record" if version is None else "no such record version")
        return _to_domain(row)

    async def versions(self, ref: RecordRef, after_version: int, limit: int) -> list[RecordVersion]:
        async with tenant_session(self.sessions, ref.tenant) as session:
            rows = await session.scalars(
                select(RecordVersionRow)
                .where(*_matches(ref), RecordVersionRow.version > after_version)
                .order_by(RecordVersionRow.version)
                .limit(limit)
            )
            return [_to_domain(row) for row in rows]

    async def latest(
        self, tenant: str, patient_id: str, kind: str, after_key: str, limit: int, *, descending: bool = False
    ) -> list[RecordVersion]:
        """One page of the latest versions by key; `after_key` is the last key of the previous page."""
        if descending:
            position = RecordHead.key < after_key if after_key else true()
            order = RecordHead.key.desc()
        else:
            position, order = RecordHead.key > after_key, RecordHead.key
        async with tenant_session(self.sessions, tenant) as session:
            rows = await session.scalars(
                select(RecordVersionRow)
                .join(
                    RecordHead,
                    (RecordHead.tenant == RecordVersionRow.tenant)
                    & (RecordHead.patient_id == RecordVersionRow.patient_id)
                    & (RecordHead.kind == RecordVersionRow.kind)
                    & (RecordHead.key == RecordVersionRow.key)
                    & (RecordHead.latest_version == RecordVersionRow.version),
                )
                .where(
                    RecordHead.tenant == tenant,
                    RecordHead.patient_id == patient_id,
                    RecordHead.kind == kind,
                    position,
                )
                .order_by(order)
                .limit(limit)
            )
            return [_to_domain(row) for row in rows]

    async def changes_after(self, tenant: str, sequence: int, kinds: Sequence[str], limit: int) -> list[RecordVersion]:
        async with tenant_session(self.sessions, tenant) as session:
            query = select(RecordVersionRow).where(
                RecordVersionRow.tenant == tenant, RecordVersionRow.sequence > sequence
            )
            if kinds:
                query = query.where(RecordVersionRow.kind.in_(kinds))
            rows = await session.scalars(query.order_by(RecordVersionRow.sequence).limit(limit))
            return [_to_domain(row) for row in rows]


def _matches(ref: RecordRef) -> tuple:
    return (
        RecordVersionRow.tenant == ref.tenant,
        RecordVersionRow.patient_id == ref.patient_id,
        RecordVersionRow.kind == ref.kind,
        RecordVersionRow.key == ref.key,
    )


_APPEND_VERSION = text(
    """
    WITH feed AS (
        INSERT INTO tenant_feeds (tenant, last_sequence) VALUES (:tenant, 1)
        ON CONFLICT (tenant) DO UPDATE SET last_sequence = tenant_feeds.last_sequence + 1
        RETURNING last_sequence
    ), written AS (
        INSERT INTO record_versions (
            tenant, patient_id, kind, key, version, sequence, payload, content_type, source_system,
            organisation_number, author_hpr_number, idempotency_key, request_fingerprint, recorded_at
        )
        -- clock_timestamp(): the time of the write itself, after the locks, so a later sequence never
        -- carries an earlier time.
        SELECT :tenant, :patient_id, :kind, :key, :version, feed.last_sequence, :payload, :content_type,
               :source_system, :organisation_number, :author_hpr_number, :idempotency_key,
               :request_fingerprint, clock_timestamp()
        FROM feed
        RETURNING *
    ), notified AS (
        SELECT pg_notify(:channel, :tenant) FROM written
    )
    SELECT written.* FROM written CROSS JOIN notified
    """
)


async def _find_by_idempotency_key(session: AsyncSession, tenant: str, command: PutCommand):
    return (
        await session.execute(
            select(RecordVersionRow).where(
                RecordVersionRow.tenant == tenant,
                RecordVersionRow.source_system == command.author.source_system,
                RecordVersionRow.idempotency_key == command.idempotency_key,
            )
        )
    ).scalar_one_or_none()


async def _next_version(session: AsyncSession, ref: RecordRef, expected: int | None) -> int:
    """Advances the record's head (locking it until commit) and returns the new version number."""
    head = (
        RecordHead.tenant == ref.tenant,
        RecordHead.patient_id == ref.patient_id,
        RecordHead.kind == ref.kind,
        RecordHead.key == ref.key,
    )
    if expected is None:
        statement = (
            pg_insert(RecordHead)
            .values(tenant=ref.tenant, patient_id=ref.patient_id, kind=ref.kind, key=ref.key, latest_version=1)
            .on_conflict_do_update(
                index_elements=["tenant", "patient_id", "kind", "key"],
                set_={"latest_version": RecordHead.latest_version + 1},
            )
            .returning(RecordHead.latest_version)
        )
    elif expected == 0:
        statement = (
            pg_insert(RecordHead)
            .values(tenant=ref.tenant, patient_id=ref.patient_id, kind=ref.kind, key=ref.key, latest_version=1)
            .on_conflict_do_nothing()
            .returning(RecordHead.latest_version)
        )
    else:
        statement = (
            update(RecordHead)
            .where(*head, RecordHead.latest_version == expected)
            .values(latest_version=RecordHead.latest_version + 1)
            .returning(RecordHead.latest_version)
        )
    version = (await session.execute(statement)).scalar_one_or_none()
    if version is None:
        current = await session.scalar(select(func.coalesce(func.max(RecordHead.latest_version), 0)).where(*head))
        raise VersionConflict(expected or 0, int(current or 0))
    return int(version)


async def _next_sequence(session: AsyncSession, tenant: str) -> int:
    statement = (
        pg_insert(TenantFeed)
        .values(tenant=tenant, last_sequence=1)
        .on_conflict_do_update(index_elements=["tenant"], set_={"last_sequence": TenantFeed.last_sequence + 1})
        .returning(TenantFeed.last_sequence)
    )
    return int((await session.execute(statement)).scalar_one())


def _to_domain(row: RecordVersionRow) -> RecordVersion:
    return RecordVersion(
        ref=RecordRef(row.tenant, row.patient_id, row.kind, row.key),
        version=row.version,
        payload=Payload(row.payload, row.content_type),
        author=Author(row.source_system, row.organisation_number, row.author_hpr_number),
        recorded_at=row.recorded_at,
        sequence=row.sequence,
    )
