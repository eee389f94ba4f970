"""Request/response shapes for accounts: users, passwords and API tokens (never a token's secret in a list)."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, Field

from app.accounts.service import MAX_PASSWORD, MAX_TOKEN_DAYS, MIN_PASSWORD
from app.schemas_common import UtcDateTime

Scope = Literal["read", "write", "admin"]
Password = Annotated[str, Field(min_length=MIN_PASSWORD, max_length=MAX_PASSWORD)]


def _read_only() -> list[Scope]:
    return ["read"]


class TokenCreate(BaseModel):
    name: str = Field(min_length=1, max_length=100)
    scopes: list[Scope] = Field(
        default_factory=_read_only,
        min_length=1,
        max_length=3,
        description="read ⊂ write ⊂ admin: write includes read, admin includes both (admin users only).",
    )
    expires_in_days: int | None = Field(
        None, ge=1, le=MAX_TOKEN_DAYS, description="Refused with 401 after this many days; omit for no expiry."
    )
    user_id: int | None = Field(
        None, ge=1, le=2**31 - 1, description="Admins only: create the token for this user (default: yourself)."
    )


class TokenCreated(BaseModel):
    id: int
    name: str
    prefix: str
    user_id: int
    scopes: list[str]
    expires_at: UtcDateTime | None = Field(description="UTC; null: valid until revoked.")
    token: str = Field(description="Shown once; only its hash is stored.")


class TokenOut(BaseModel):
    """A token in a list: who owns it, what it may do, when it was used; never its secret or hash."""

    id: int
    name: str
    prefix: str = Field(description="The first characters of the secret, to recognise it.")
    user_id: int
    username: str
    scopes: list[str]
    created_at: UtcDateTime
    last_used_at: UtcDateTime | None = Field(description="UTC, recorded at most once a minute.")
    expires_at: UtcDateTime | None
    revoked_at: UtcDateTime | None
    status: Literal["active", "revoked", "expired"]


class UserOut(BaseModel):
    id: int
    username: str
    role: str


class UserDetail(UserOut):
    active: bool = Field(description="false: disabled (cannot sign in; its sessions ended, its tokens revoked).")
    created_at: UtcDateTime


class UserCreate(BaseModel):
    username: str = Field(min_length=1, max_length=100, pattern=r"^[A-Za-z0-9._-]+$")
    role: Literal["admin", "analyst"]
    password: Password


class PasswordSet(BaseModel):
    password: Password


class PasswordChange(BaseModel):
    current_password: str = Field(min_length=1, max_length=MAX_PASSWORD)
    new_password: Password
