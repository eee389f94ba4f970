"""API tokens: expiry; users: disabled sessions and tokens (issue 14)

Revision ID: 0003_tokens
Revises: 0002_adoption
Create Date: 2026-12-03 12:30:00
"""
from collections.abc import Sequence

import sqlalchemy as sa  # noqa: F401
from alembic import op  # noqa: F401

revision: str = "0003_tokens"
down_revision: str | None = "0002_adoption"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    pass


def downgrade() -> None:
    pass
