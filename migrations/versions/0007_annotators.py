"""several annotators: answers per window, consensus and adjudication; review before retraining (issue 15)

Adjudications are label rows (source ``adjudicator``) and need no table of their own.

Revision ID: 0007_annotators
Revises: 0006_label_details
Create Date: 2026-12-03 12:30:00
"""
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0007_annotators"
down_revision: str | None = "0006_label_details"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("project", schema=None) as batch_op:
        batch_op.add_column(sa.Column("answers_per_window", sa.Integer(), server_default="1", nullable=False))
        # existing projects keep closing a round at its last answer; new ones get the form's grace period
        batch_op.add_column(sa.Column("review_grace_minutes", sa.Integer(), server_default="0", nullable=False))
    with op.batch_alter_table("round", schema=None) as batch_op:
        batch_op.add_column(sa.Column("review_until", sa.DateTime(), nullable=True))
        batch_op.add_column(sa.Column("submitted_by", sa.Integer(), nullable=True))
        batch_op.create_foreign_key(
            op.f("fk_round_submitted_by_user_account"), "user_account", ["submitted_by"], ["id"], ondelete="SET NULL"
        )


def downgrade() -> None:
    with op.batch_alter_table("round", schema=None) as batch_op:
        batch_op.drop_constraint(op.f("fk_round_submitted_by_user_account"), type_="foreignkey")
        batch_op.drop_column("submitted_by")
        batch_op.drop_column("review_until")
    with op.batch_alter_table("project", schema=None) as batch_op:
        batch_op.drop_column("review_grace_minutes")
        batch_op.drop_column("answers_per_window")
