"""webhooks: subscriptions and logged deliveries (issue 14)

Revision ID: 0005_webhooks
Revises: 0004_live_points
Create Date: 2026-12-03 12:30:00
"""
from collections.abc import Sequence

import sqlalchemy as sa  # noqa: F401
from alembic import op  # noqa: F401

revision: str = "0005_webhooks"
down_revision: str | None = "0004_live_points"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    pass


def downgrade() -> None:
    pass
