"""a window handed to one analyst at a time (one answer per window)

Two analysts answering the same round were handed the same window; the second answer was refused with 409 and its
work lost. A window is now claimed by the analyst it is handed to for a few minutes (app/projects/review.py).

Revision ID: 0009_query_claims
Revises: 0008_round_assignees
Create Date: 2026-12-06 02:30:00
"""
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0009_query_claims"
down_revision: str | None = "0008_round_assignees"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("query", schema=None) as batch_op:
        batch_op.add_column(sa.Column("claimed_by_id", sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column("claimed_until", sa.DateTime(), nullable=True))
        batch_op.create_foreign_key(
            batch_op.f("fk_query_claimed_by_id_user_account"), "user_account", ["claimed_by_id"], ["id"],
            ondelete="SET NULL",
        )


def downgrade() -> None:
    with op.batch_alter_table("query", schema=None) as batch_op:
        batch_op.drop_constraint(batch_op.f("fk_query_claimed_by_id_user_account"), type_="foreignkey")
        batch_op.drop_column("claimed_until")
        batch_op.drop_column("claimed_by_id")
