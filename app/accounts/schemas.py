"""Request/response shapes for accounts."""

from __future__ import annotations

from pydantic import BaseModel, Field


class TokenCreate(BaseModel):
    name: str = Field(min_length=1, max_length=100)
    scopes: list[str] = Field(default_factory=lambda: ["read"], max_length=3)


class TokenCreated(BaseModel):
    id: int
    name: str
    prefix: str
    scopes: list[str]
    token: str = Field(description="Shown once; only its hash is stored.")


class UserOut(BaseModel):
    id: int
    username: str
    role: str
