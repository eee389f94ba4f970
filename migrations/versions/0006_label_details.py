"""labels: anomaly types per project, a type and a comment per labeled range (issue 15)

Revision ID: 0006_label_details
Revises: 0005_webhooks
Create Date: 2026-12-03 12:30:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0006_label_details"
down_revision: str | None = "0005_webhooks"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("project", schema=None) as batch_op:
        # every existing project has the one default type
        batch_op.add_column(sa.Column("anomaly_types", sa.JSON(), server_default='["anomaly"]', nullable=False))
    with op.batch_alter_table("label", schema=None) as batch_op:
        batch_op.add_column(sa.Column("label_type", sa.String(length=40), nullable=True))
        batch_op.add_column(sa.Column("comment", sa.String(length=1000), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("label", schema=None) as batch_op:
        batch_op.drop_column("comment")
        batch_op.drop_column("label_type")
    with op.batch_alter_table("project", schema=None) as batch_op:
        batch_op.drop_column("anomaly_types")
