"""live points: append batches with idempotency keys; scores of appended points (issue 14)

Revision ID: 0004_live_points
Revises: 0003_tokens
Create Date: 2026-12-03 12:30:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004_live_points"
down_revision: str | None = "0003_tokens"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "series_append",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("series_id", sa.Integer(), nullable=False),
        sa.Column("idempotency_key", sa.String(length=200), nullable=True),
        sa.Column("body_sha256", sa.String(length=64), nullable=False),
        sa.Column("start", sa.Integer(), nullable=False),
        sa.Column("end", sa.Integer(), nullable=False),
        sa.Column("first_timestamp", sa.String(length=64), nullable=True),
        sa.Column("last_timestamp", sa.String(length=64), nullable=True),
        sa.Column("created_by", sa.Integer(), nullable=True),
        sa.Column("scoring", sa.JSON(), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.ForeignKeyConstraint(
            ["created_by"],
            ["user_account.id"],
            name=op.f("fk_series_append_created_by_user_account"),
            ondelete="SET NULL",
        ),
        sa.ForeignKeyConstraint(
            ["series_id"], ["series.id"], name=op.f("fk_series_append_series_id_series"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_series_append")),
        sa.UniqueConstraint("series_id", "idempotency_key", name=op.f("uq_series_append_series_id_idempotency_key")),
    )
    with op.batch_alter_table("series_append", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_series_append_series_id"), ["series_id"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("series_append", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_series_append_series_id"))
    op.drop_table("series_append")
