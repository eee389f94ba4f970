"""Every account, session, token and audit query."""

from __future__ import annotations

from datetime import datetime
from typing import Any, cast

from sqlalchemy import CursorResult, delete, func, or_, select, update
from sqlalchemy.orm import Session

from app.accounts.models import ApiToken, AuditEvent, User, UserSession


def get_user(session: Session, user_id: int) -> User | None:
    return session.get(User, user_id)


def get_user_by_name(session: Session, username: str) -> User | None:
    return session.scalar(select(User).where(User.username == username))


def count_users(session: Session, role: str | None = None) -> int:
    q = select(func.count(User.id))
    if role:
        q = q.where(User.role == role)
    return session.scalar(q) or 0


def list_users(session: Session) -> list[User]:
    return list(session.scalars(select(User).order_by(User.id)))


def add(session: Session, obj: object) -> None:
    session.add(obj)
    session.flush()


def get_session_by_hash(session: Session, token_hash: str, now: datetime) -> UserSession | None:
    return session.scalar(select(UserSession).where(UserSession.token_hash == token_hash, UserSession.expires_at > now))


def delete_session(session: Session, token_hash: str) -> None:
    session.execute(delete(UserSession).where(UserSession.token_hash == token_hash))


def get_token_and_user_by_hash(session: Session, token_hash: str) -> tuple[ApiToken, User | None] | None:
    """The token with this hash and its user, in one query (every API request asks); revoked or expired tokens
    included (the caller says which it is)."""
    row = session.execute(
        select(ApiToken, User).outerjoin(User, User.id == ApiToken.user_id).where(ApiToken.token_hash == token_hash)
    ).first()
    return None if row is None else (row[0], row[1])


def get_token(session: Session, token_id: int) -> ApiToken | None:
    return session.get(ApiToken, token_id)


def list_tokens(session: Session, user_id: int | None = None) -> list[tuple[ApiToken, str]]:
    """Tokens with their owner's user name, oldest first; every user's when ``user_id`` is None."""
    q = select(ApiToken, User.username).join(User, User.id == ApiToken.user_id).order_by(ApiToken.id)
    if user_id is not None:
        q = q.where(ApiToken.user_id == user_id)
    return [(token, username) for token, username in session.execute(q)]


def revoke_user_tokens(session: Session, user_id: int, now: datetime) -> list[int]:
    """Revoke every token of the user not yet revoked; returns their ids."""
    ids = list(
        session.scalars(
            select(ApiToken.id).where(ApiToken.user_id == user_id, ApiToken.revoked_at.is_(None)).order_by(ApiToken.id)
        )
    )
    if ids:
        session.execute(
            update(ApiToken)
            .where(ApiToken.id.in_(ids))
            .values(revoked_at=now)
            .execution_options(synchronize_session=False)
        )
    return ids


def delete_user_sessions(session: Session, user_id: int, keep_hash: str | None = None) -> int:
    """End the user's browser sessions (all but ``keep_hash``); returns how many."""
    q = delete(UserSession).where(UserSession.user_id == user_id)
    if keep_hash is not None:
        q = q.where(UserSession.token_hash != keep_hash)
    result = session.execute(q.execution_options(synchronize_session=False))
    return cast("CursorResult[Any]", result).rowcount


def lock_active_admins(session: Session) -> None:
    """Lock the active admins' rows until the transaction ends, with a write that changes nothing: on PostgreSQL
    concurrent callers queue on the row locks; on SQLite, as the transaction's first statement, it takes the writer
    lock before anything is read (a read first would pin a snapshot that another writer could make stale)."""
    session.execute(
        update(User)
        .where(User.role == "admin", User.is_active.is_(True))
        .values(role=User.role)
        .execution_options(synchronize_session=False)
    )


def count_active_admins(session: Session) -> int:
    return session.scalar(select(func.count(User.id)).where(User.role == "admin", User.is_active.is_(True))) or 0


def list_audit(session: Session, limit: int = 200, object_type: str | None = None) -> list[AuditEvent]:
    q = select(AuditEvent).order_by(AuditEvent.id.desc()).limit(limit)
    if object_type:
        q = q.where(AuditEvent.object_type == object_type)
    return list(session.scalars(q))


def touch_token(session: Session, token_id: int, now: datetime, not_since: datetime) -> bool:
    """Set the token's ``last_used_at`` to ``now`` unless it was set after ``not_since``; True when written."""
    result = session.execute(
        update(ApiToken)
        .where(ApiToken.id == token_id, or_(ApiToken.last_used_at.is_(None), ApiToken.last_used_at < not_since))
        .values(last_used_at=now)
        .execution_options(synchronize_session=False)
    )
    return cast("CursorResult[Any]", result).rowcount == 1


def login_failures_since(
    session: Session, since: datetime, *, username: str | None = None, address: str | None = None, limit: int
) -> list[datetime]:
    """Times of failed sign-ins after ``since`` for a user name and/or an address, newest first, at most ``limit``."""
    q = select(AuditEvent.created_at).where(AuditEvent.action == "login.failure", AuditEvent.created_at > since)
    if username is not None:
        q = q.where(AuditEvent.detail["username"].as_string() == username)
    if address is not None:
        q = q.where(AuditEvent.detail["address"].as_string() == address)
    return list(session.scalars(q.order_by(AuditEvent.created_at.desc()).limit(limit)))


def last_login_success(session: Session, username: str) -> datetime | None:
    """When ``username`` last signed in successfully (from the audit log), or None."""
    return session.scalar(
        select(func.max(AuditEvent.created_at)).where(
            AuditEvent.action == "login.success", AuditEvent.detail["username"].as_string() == username
        )
    )
