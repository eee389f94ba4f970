"""several annotators: answers per window, consensus and adjudication (issue 15)

Revision ID: 0007_annotators
Revises: 0006_label_details
Create Date: 2026-12-03 12:30:00
"""
from collections.abc import Sequence

import sqlalchemy as sa  # noqa: F401
from alembic import op  # noqa: F401

revision: str = "0007_annotators"
down_revision: str | None = "0006_label_details"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    pass


def downgrade() -> None:
    pass
