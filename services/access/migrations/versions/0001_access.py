"""Access log (hash-chained, append-only), objections and blocks; row-level security per tenant.

Revision ID: 0001
Revises:
Create Date: 2026-11-26
"""

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

TENANT_TABLES = ("access_log", "access_log_heads", "patient_objections", "practitioner_blocks")
# current_setting(..., true) is NULL when the tenant was never set: the policy then matches nothing.
TENANT_PREDICATE = "tenant = current_setting('samhandling.tenant', true)"


def _actor_columns() -> list[sa.Column]:
    return [
        sa.Column("actor_hpr_number", sa.String(9)),
        sa.Column("actor_name", sa.String(200)),
        sa.Column("actor_organisation_number", sa.String(9), nullable=False),
        sa.Column("actor_unit_organisation_number", sa.String(9)),
        sa.Column("actor_client_id", sa.String(200), nullable=False),
    ]


def _registration_columns() -> list[sa.Column]:
    return [
        sa.Column("registered_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("registered_by", sa.SmallInteger, nullable=False),
        *_actor_columns(),
        sa.Column("documented_request", sa.String(200)),
    ]


def upgrade() -> None:
    op.create_table(
        "access_log",
        sa.Column("tenant", sa.String(4), primary_key=True),
        sa.Column("sequence", sa.BigInteger, primary_key=True),
        sa.Column("entry_id", sa.String(36), nullable=False, unique=True),
        sa.Column("decided_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("patient_id", sa.String(11), nullable=False),
        *_actor_columns(),
        sa.Column("actor_is_patient", sa.Boolean, nullable=False),
        sa.Column("purpose_of_use", sa.String(10)),
        sa.Column("decision_ref", sa.String(200)),
        sa.Column("data_kind", sa.SmallInteger, nullable=False),
        sa.Column("action", sa.SmallInteger, nullable=False),
        sa.Column("allowed", sa.Boolean, nullable=False),
        sa.Column("reason", sa.String(40)),
        sa.Column("break_the_glass", sa.Boolean, nullable=False),
        sa.Column("follow_up", sa.Boolean, nullable=False),
        sa.Column("on_patients_request", sa.Boolean, nullable=False),
        sa.Column("subject_hpr_number", sa.String(9)),
        sa.Column("previous_hash", sa.LargeBinary, nullable=False),
        sa.Column("entry_hash", sa.LargeBinary, nullable=False),
    )
    op.create_index("ix_access_log_patient", "access_log", ["tenant", "patient_id", "sequence"])
    op.create_index(
        "ix_access_log_follow_up", "access_log", ["tenant", "sequence"], postgresql_where=sa.text("follow_up")
    )
    op.create_table(
        "access_log_heads",
        sa.Column("tenant", sa.String(4), primary_key=True),
        sa.Column("last_sequence", sa.BigInteger, nullable=False),
        sa.Column("last_hash", sa.LargeBinary, nullable=False),
    )
    op.create_table(
        "patient_objections",
        sa.Column("tenant", sa.String(4), primary_key=True),
        sa.Column("patient_id", sa.String(11), primary_key=True),
        *_registration_columns(),
    )
    op.create_table(
        "practitioner_blocks",
        sa.Column("tenant", sa.String(4), primary_key=True),
        sa.Column("patient_id", sa.String(11), primary_key=True),
        sa.Column("hpr_number", sa.String(9), primary_key=True),
        *_registration_columns(),
    )
    for table in TENANT_TABLES:
        op.execute(f"ALTER TABLE {table} ENABLE ROW LEVEL SECURITY")
        op.execute(f"ALTER TABLE {table} FORCE ROW LEVEL SECURITY")
        op.execute(
            f"CREATE POLICY tenant_isolation ON {table} USING ({TENANT_PREDICATE}) WITH CHECK ({TENANT_PREDICATE})"
        )
    op.execute(
        """
        CREATE FUNCTION reject_access_log_change() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN
            RAISE EXCEPTION 'access_log is append-only' USING ERRCODE = 'restrict_violation';
        END $$
        """
    )
    op.execute(
        "CREATE TRIGGER access_log_append_only BEFORE UPDATE OR DELETE ON access_log "
        "FOR EACH ROW EXECUTE FUNCTION reject_access_log_change()"
    )
    op.execute(
        "CREATE TRIGGER access_log_no_truncate BEFORE TRUNCATE ON access_log "
        "FOR EACH STATEMENT EXECUTE FUNCTION reject_access_log_change()"
    )


def downgrade() -> None:
    for table in reversed(TENANT_TABLES):
        op.drop_table(table)
    op.execute("DROP FUNCTION reject_access_log_change()")
