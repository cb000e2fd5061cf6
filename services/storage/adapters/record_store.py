"""The record store on PostgreSQL: each operation is one tenant-scoped transaction (the unit of
work), and row-level security confines every statement in it to that tenant. Statements run on
asyncpg directly: this is the hot path of every call in the mesh."""

from __future__ import annotations

from collections.abc import Sequence

import asyncpg
from sqlalchemy.ext.asyncio import AsyncEngine

from services.platform.database import tenant_transaction
from services.platform.errors import NotFound
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
    def __init__(self, engine: AsyncEngine) -> None:
        self.engine = engine

    async def put(self, command: PutCommand) -> PutResult:
        fingerprint = command.fingerprint()
        ref, author = command.ref, command.author
        async with tenant_transaction(self.engine, ref.tenant) as connection:
            # Requests sharing an idempotency key run one after the other, so a concurrent retry
            # finds the first one's committed version and replays it (rather than racing it and,
            # with an expected_version, being told it conflicted). The look-up is a statement of its
            # own: its snapshot must be taken after the lock is granted.
            await connection.execute(
                "SELECT pg_advisory_xact_lock(hashtextextended($1, 0))",
                f"{ref.tenant}\x1f{author.source_system}\x1f{command.idempotency_key}",
            )
            earlier = await connection.fetchrow(
                f"SELECT {_COLUMNS} FROM record_versions"
                " WHERE tenant = $1 AND source_system = $2 AND idempotency_key = $3",
                ref.tenant,
                author.source_system,
                command.idempotency_key,
            )
            if earlier is not None:
                if earlier["request_fingerprint"] != fingerprint:
                    raise IdempotencyKeyReused()
                return PutResult(_to_domain(earlier), replayed=True)
            row = await connection.fetchrow(
                _append_statement(command.expected_version),
                ref.tenant,
                ref.patient_id,
                ref.kind,
                ref.key,
                command.payload.data,
                command.payload.content_type,
                author.source_system,
                author.organisation_number,
                author.hpr_number,
                command.idempotency_key,
                fingerprint,
                CHANGES_CHANNEL,
                *([command.expected_version] if command.expected_version else []),
            )
            if row is None:
                current = await connection.fetchval(
                    "SELECT latest_version FROM records"
                    " WHERE tenant = $1 AND patient_id = $2 AND kind = $3 AND key = $4",
                    ref.tenant,
                    ref.patient_id,
                    ref.kind,
                    ref.key,
                )
                raise VersionConflict(command.expected_version or 0, int(current or 0))
        return PutResult(_to_domain(row), replayed=False)

    async def get(self, ref: RecordRef, version: int | None) -> RecordVersion:
        where = "tenant = $1 AND patient_id = $2 AND kind = $3 AND key = $4"
        async with tenant_transaction(self.engine, ref.tenant) as connection:
            if version is None:
                row = await connection.fetchrow(
                    f"SELECT {_COLUMNS} FROM record_versions WHERE {where} ORDER BY version DESC LIMIT 1",
                    ref.tenant,
                    ref.patient_id,
                    ref.kind,
                    ref.key,
                )
            else:
                row = await connection.fetchrow(
                    f"SELECT {_COLUMNS} FROM record_versions WHERE {where} AND version = $5",
                    ref.tenant,
                    ref.patient_id,
                    ref.kind,
                    ref.key,
                    version,
                )
        if row is None:
            raise NotFound("no such record" if version is None else "no such record version")
        return _to_domain(row)

    async def versions(self, ref: RecordRef, after_version: int, limit: int) -> list[RecordVersion]:
        async with tenant_transaction(self.engine, ref.tenant) as connection:
            rows = await connection.fetch(
                f"SELECT {_COLUMNS} FROM record_versions"
                " WHERE tenant = $1 AND patient_id = $2 AND kind = $3 AND key = $4 AND version > $5"
                " ORDER BY version LIMIT $6",
                ref.tenant,
                ref.patient_id,
                ref.kind,
                ref.key,
                after_version,
                limit,
            )
        return [_to_domain(row) for row in rows]

    async def latest(
        self, tenant: str, patient_id: str, kind: str, after_key: str, limit: int, *, descending: bool = False
    ) -> list[RecordVersion]:
        """One page of the latest versions by key; `after_key` is the last key of the previous page."""
        if descending:
            position, order = ("h.key < $4" if after_key else "$4 = ''"), "h.key DESC"
        else:
            position, order = "h.key > $4", "h.key"
        async with tenant_transaction(self.engine, tenant) as connection:
            rows = await connection.fetch(
                f"SELECT {_qualified('v')} FROM records h"
                " JOIN record_versions v ON v.tenant = h.tenant AND v.patient_id = h.patient_id"
                " AND v.kind = h.kind AND v.key = h.key AND v.version = h.latest_version"
                f" WHERE h.tenant = $1 AND h.patient_id = $2 AND h.kind = $3 AND {position}"
                f" ORDER BY {order} LIMIT $5",
                tenant,
                patient_id,
                kind,
                after_key,
                limit,
            )
        return [_to_domain(row) for row in rows]

    async def changes_after(self, tenant: str, sequence: int, kinds: Sequence[str], limit: int) -> list[RecordVersion]:
        kind_filter = " AND kind = ANY($4::text[])" if kinds else ""
        async with tenant_transaction(self.engine, tenant) as connection:
            rows = await connection.fetch(
                f"SELECT {_COLUMNS} FROM record_versions WHERE tenant = $1 AND sequence > $2{kind_filter}"
                " ORDER BY sequence LIMIT $3",
                tenant,
                sequence,
                limit,
                *([list(kinds)] if kinds else []),
            )
        return [_to_domain(row) for row in rows]


_COLUMN_NAMES = (
    "tenant",
    "patient_id",
    "kind",
    "key",
    "version",
    "sequence",
    "payload",
    "content_type",
    "source_system",
    "organisation_number",
    "author_hpr_number",
    "recorded_at",
    "request_fingerprint",
)
_COLUMNS = ", ".join(_COLUMN_NAMES)


def _qualified(alias: str) -> str:
    return ", ".join(f"{alias}.{name}" for name in _COLUMN_NAMES)


# The record's head, by the kind of put: unconditional, create-only, or at an expected version. It
# yields the new version number, or no row when the condition does not hold.
_ADVANCE_HEAD = {
    "any": """
        INSERT INTO records (tenant, patient_id, kind, key, latest_version) VALUES ($1, $2, $3, $4, 1)
        ON CONFLICT (tenant, patient_id, kind, key) DO UPDATE SET latest_version = records.latest_version + 1
        RETURNING latest_version""",
    "new": """
        INSERT INTO records (tenant, patient_id, kind, key, latest_version) VALUES ($1, $2, $3, $4, 1)
        ON CONFLICT DO NOTHING
        RETURNING latest_version""",
    "expected": """
        UPDATE records SET latest_version = latest_version + 1
        WHERE tenant = $1 AND patient_id = $2 AND kind = $3 AND key = $4 AND latest_version = $13
        RETURNING latest_version""",
}

# One statement: the head (locking the record's row), then the tenant's feed row — taken last, from
# the head's output, so the locks are always taken in this order — then the version and its
# notification. The feed row stays locked for this round trip and the commit: every writer of the
# tenant waits for it, so its hold time bounds the tenant's write rate.
_APPEND_VERSION = """
    WITH head AS ({advance}
    ), feed AS (
        INSERT INTO tenant_feeds (tenant, last_sequence) SELECT $1, 1 FROM head
        ON CONFLICT (tenant) DO UPDATE SET last_sequence = tenant_feeds.last_sequence + 1
        RETURNING last_sequence
    ), written AS (
        INSERT INTO record_versions (
            tenant, patient_id, kind, key, version, sequence, payload, content_type, source_system,
            organisation_number, author_hpr_number, idempotency_key, request_fingerprint, recorded_at
        )
        -- clock_timestamp(): the time of the write itself, after the locks, so a later sequence never
        -- carries an earlier time.
        SELECT $1, $2, $3, $4, head.latest_version, feed.last_sequence, $5, $6, $7, $8, $9, $10, $11,
               clock_timestamp()
        FROM head CROSS JOIN feed
        RETURNING {columns}
    ), notified AS (
        SELECT pg_notify($12, $1) FROM written
    )
    SELECT written.* FROM written CROSS JOIN notified
"""


def _append_statement(expected_version: int | None) -> str:
    advance = "any" if expected_version is None else ("new" if expected_version == 0 else "expected")
    return _APPEND_STATEMENTS[advance]


_APPEND_STATEMENTS = {
    name: _APPEND_VERSION.format(advance=advance, columns=_COLUMNS) for name, advance in _ADVANCE_HEAD.items()
}


def _to_domain(row: asyncpg.Record) -> RecordVersion:
    return RecordVersion(
        ref=RecordRef(row["tenant"], row["patient_id"], row["kind"], row["key"]),
        version=row["version"],
        payload=Payload(row["payload"], row["content_type"]),
        author=Author(row["source_system"], row["organisation_number"], row["author_hpr_number"]),
        recorded_at=row["recorded_at"],
        sequence=row["sequence"],
    )
