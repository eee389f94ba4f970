"""windows of a round assigned to named analysts (issue 15)

The deal itself is computed from the round's list and its windows' ranks (app/projects/assignment.py): one
nullable JSON column, no table.

Revision ID: 0008_round_assignees
Revises: 0007_annotators
Create Date: 2026-12-04 22:00:00
"""
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0008_round_assignees"
down_revision: str | None = "0007_annotators"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("round", schema=None) as batch_op:
        batch_op.add_column(sa.Column("assignee_ids", sa.JSON(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("round", schema=None) as batch_op:
        batch_op.drop_column("assignee_ids")
