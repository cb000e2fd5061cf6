"""Record store: versioned records, change feed, row-level security per tenant.

Revision ID: 0001
Revises:
Create Date: 2026-11-25
"""

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

TENANT_TABLES = ("records", "record_versions", "tenant_feeds")
# current_setting(..., true) is NULL when the tenant was never set: the policy then matches nothing.
TENANT_PREDICATE = "tenant = current_setting('samhandling.tenant', true)"


def upgrade() -> None:
    op.create_table(
        "records",
        sa.Column("tenant", sa.String(4), primary_key=True),
        sa.Column("patient_id", sa.String(11), primary_key=True),
        sa.Column("kind", sa.String(64), primary_key=True),
        sa.Column("key", sa.String(200), primary_key=True),
        sa.Column("latest_version", sa.Integer, nullable=False),
    )
    op.create_table(
        "record_versions",
        sa.Column("tenant", sa.String(4), primary_key=True),
        sa.Column("patient_id", sa.String(11), primary_key=True),
        sa.Column("kind", sa.String(64), primary_key=True),
        sa.Column("key", sa.String(200), primary_key=True),
        sa.Column("version", sa.Integer, primary_key=True),
        sa.Column("sequence", sa.BigInteger, nullable=False),
        sa.Column("payload", sa.LargeBinary, nullable=False),
        sa.Column("content_type", sa.String(128), nullable=False),
        sa.Column("source_system", sa.String(200), nullable=False),
        sa.Column("organisation_number", sa.String(9), nullable=False),
        sa.Column("author_hpr_number", sa.String(20)),
        sa.Column("recorded_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.clock_timestamp()),
        sa.Column("idempotency_key", sa.String(128), nullable=False),
        sa.Column("request_fingerprint", sa.LargeBinary, nullable=False),
        sa.UniqueConstraint("tenant", "sequence", name="uq_record_versions_sequence"),
        sa.UniqueConstraint("tenant", "source_system", "idempotency_key", name="uq_record_versions_idempotency"),
    )
    op.create_table(
        "tenant_feeds",
        sa.Column("tenant", sa.String(4), primary_key=True),
        sa.Column("last_sequence", sa.BigInteger, nullable=False),
    )
    for table in TENANT_TABLES:
        op.execute(f"ALTER TABLE {table} ENABLE ROW LEVEL SECURITY")
        # FORCE: the owning role is bound by the policy too; only superusers and BYPASSRLS roles are
        # not, and the services refuse to start as one of those.
        op.execute(f"ALTER TABLE {table} FORCE ROW LEVEL SECURITY")
        op.execute(
            f"CREATE POLICY tenant_isolation ON {table} USING ({TENANT_PREDICATE}) WITH CHECK ({TENANT_PREDICATE})"
        )
    op.execute(
        """
        CREATE FUNCTION reject_record_version_change() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN
            RAISE EXCEPTION 'record_versions is append-only' USING ERRCODE = 'restrict_violation';
        END $$
        """
    )
    op.execute(
        "CREATE TRIGGER record_versions_append_only BEFORE UPDATE OR DELETE ON record_versions "
        "FOR EACH ROW EXECUTE FUNCTION reject_record_version_change()"
    )
    op.execute(
        "CREATE TRIGGER record_versions_no_truncate BEFORE TRUNCATE ON record_versions "
        "FOR EACH STATEMENT EXECUTE FUNCTION reject_record_version_change()"
    )


def downgrade() -> None:
    op.drop_table("tenant_feeds")
    op.drop_table("record_versions")
    op.drop_table("records")
    op.execute("DROP FUNCTION reject_record_version_change()")
