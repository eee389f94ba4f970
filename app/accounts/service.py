"""Accounts: users with hashed passwords (argon2), browser sessions, hashed API tokens, audit events."""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass
from datetime import timedelta

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from sqlalchemy.orm import Session

from app.accounts import repository as repo
from app.accounts.models import ROLES, ApiToken, AuditEvent, User, UserSession
from app.db import utcnow
from app.errors import AppError, Conflict, Unauthorized

_hasher = PasswordHasher()  # stateless: parameters only
TOKEN_SCOPES = ("read", "write", "admin")
TOKEN_PREFIX = "alp_"  # noqa: S105 - a public prefix that marks our tokens in logs


def sha256_hex(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def create_user(session: Session, username: str, role: str, password: str) -> User:
    username = username.strip()
    if not username or len(username) > 100 or not username.replace("-", "").replace("_", "").replace(".", "").isalnum():
        raise AppError("user name must be 1-100 letters, digits, '-', '_' or '.'")
    if role not in ROLES:
        raise AppError(f"role must be one of {', '.join(ROLES)}, not {role!r}")
    if len(password) < 8:
        raise AppError("password must have at least 8 characters")
    if repo.get_user_by_name(session, username) is not None:
        raise Conflict(f"user {username!r} already exists")
    user = User(username=username, role=role, password_hash=_hasher.hash(password))
    repo.add(session, user)
    return user


def authenticate(session: Session, username: str, password: str) -> User:
    """The user if the password matches; one message for unknown user and wrong password (no user probing)."""
    user = repo.get_user_by_name(session, username.strip())
    if user is None or not user.is_active:
        _hasher.hash(password)  # same cost whether or not the user exists
        raise Unauthorized("wrong user name or password")
    try:
        _hasher.verify(user.password_hash, password)
    except (VerificationError, InvalidHashError):
        raise Unauthorized("wrong user name or password") from None
    if _hasher.check_needs_rehash(user.password_hash):
        user.password_hash = _hasher.hash(password)
    return user


@dataclass(frozen=True)
class NewSession:
    token: str
    csrf_token: str


def start_session(session: Session, user: User, hours: int) -> NewSession:
    token, csrf = secrets.token_urlsafe(32), secrets.token_urlsafe(32)
    repo.add(
        session,
        UserSession(token_hash=sha256_hex(token), user_id=user.id, csrf_token=csrf,
                    expires_at=utcnow() + timedelta(hours=hours)),
    )
    return NewSession(token, csrf)


def resolve_session(session: Session, token: str) -> tuple[User, UserSession] | None:
    row = repo.get_session_by_hash(session, sha256_hex(token), utcnow())
    if row is None:
        return None
    user = repo.get_user(session, row.user_id)
    if user is None or not user.is_active:
        return None
    return user, row


def end_session(session: Session, token: str) -> None:
    repo.delete_session(session, sha256_hex(token))


def check_csrf(user_session: UserSession, presented: str | None) -> None:
    if not presented or not hmac.compare_digest(user_session.csrf_token, presented):
        raise AppError("missing or wrong CSRF token; reload the page and try again", status=403)


def create_api_token(session: Session, user: User, name: str, scopes: list[str]) -> tuple[ApiToken, str]:
    """A new token; the plain text is returned once and only its SHA-256 is stored."""
    bad = [s for s in scopes if s not in TOKEN_SCOPES]
    if bad or not scopes:
        raise AppError(f"scopes must be a non-empty subset of {', '.join(TOKEN_SCOPES)}")
    if "admin" in scopes and user.role != "admin":
        raise AppError("only admins can hold admin-scoped tokens", status=403)
    plain = TOKEN_PREFIX + secrets.token_urlsafe(32)
    token = ApiToken(user_id=user.id, name=name[:100] or "token", prefix=plain[:12], token_hash=sha256_hex(plain),
                     scopes=list(scopes))
    repo.add(session, token)
    return token, plain


def resolve_api_token(session: Session, plain: str) -> tuple[User, ApiToken] | None:
    token = repo.get_token_by_hash(session, sha256_hex(plain))
    if token is None:
        return None
    user = repo.get_user(session, token.user_id)
    if user is None or not user.is_active:
        return None
    token.last_used_at = utcnow()
    return user, token


def audit(session: Session, actor: User | None, action: str, object_type: str, object_id: int | None,
          **detail: object) -> None:
    """Record who did what; called by every service that changes labels, rounds, versions or data."""
    repo.add(session, AuditEvent(actor_id=actor.id if actor else None, action=action, object_type=object_type,
                                 object_id=object_id, detail=detail))
