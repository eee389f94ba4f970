"""safe adoption: project adoption settings, the admin's pin, each version's verdict; round status CHECK

Revision ID: 0002_adoption
Revises: 0001
Create Date: 2026-12-03 07:40:00
"""
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002_adoption"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("project", schema=None) as batch_op:
        batch_op.add_column(sa.Column("adoption_policy", sa.String(length=16), server_default="validate",
                                      nullable=False))
        batch_op.add_column(sa.Column("max_flag_share", sa.Float(), server_default="0.05", nullable=False))
        batch_op.add_column(sa.Column("follow_new_versions", sa.Boolean(), server_default=sa.true(), nullable=False))
    with op.batch_alter_table("model_version", schema=None) as batch_op:
        # versions stored before safe adoption served unconditionally: their verdict is empty
        batch_op.add_column(sa.Column("adoption", sa.JSON(), nullable=True))
    op.execute("UPDATE model_version SET adoption = '{}'")
    with op.batch_alter_table("model_version", schema=None) as batch_op:
        batch_op.alter_column("adoption", existing_type=sa.JSON(), nullable=False)


    with op.batch_alter_table("round", schema=None) as batch_op:
        batch_op.create_check_constraint("status", "status IN ('open', 'complete', 'training', 'done', 'failed')")


def downgrade() -> None:
    with op.batch_alter_table("round", schema=None) as batch_op:
        batch_op.drop_constraint("ck_round_status", type_="check")
    with op.batch_alter_table("model_version", schema=None) as batch_op:
        batch_op.drop_column("adoption")
    with op.batch_alter_table("project", schema=None) as batch_op:
        batch_op.drop_column("follow_new_versions")
        batch_op.drop_column("max_flag_share")
        batch_op.drop_column("adoption_policy")
