"""Accounts: users with hashed passwords (argon2), browser sessions, hashed API tokens, audit events."""

from __future__ import annotations

import hashlib
import hmac
import secrets
import threading
import time
from dataclasses import dataclass
from datetime import datetime, timedelta

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from sqlalchemy.orm import Session

from app.accounts import repository as repo
from app.accounts.models import ROLES, ApiToken, AuditEvent, User, UserSession
from app.db import utcnow
from app.errors import AppError, Conflict, Forbidden, TooManyRequests, Unauthorized

_hasher = PasswordHasher()  # stateless: parameters only
TOKEN_SCOPES = ("read", "write", "admin")
"""Scopes compose: each includes the ones before it (an ``admin`` token may do what a ``write`` token may)."""
TOKEN_PREFIX = "alp_"  # noqa: S105 - a public prefix that marks our tokens in logs


def sha256_hex(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def count_users(session: Session) -> int:
    return repo.count_users(session)


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
        UserSession(
            token_hash=sha256_hex(token), user_id=user.id, csrf_token=csrf, expires_at=utcnow() + timedelta(hours=hours)
        ),
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
    check_csrf_token(user_session.csrf_token, presented)


def check_csrf_token(expected: str, presented: str | None) -> None:
    if not presented or not expected or not hmac.compare_digest(expected.encode(), presented.encode()):
        raise AppError("missing or wrong CSRF token; reload the page and try again", status=403)


def scope_level(scopes: tuple[str, ...] | list[str]) -> int:
    """The broadest of ``scopes`` as an index into :data:`TOKEN_SCOPES`; -1 for none."""
    return max((TOKEN_SCOPES.index(s) for s in scopes if s in TOKEN_SCOPES), default=-1)


def scope_allows(scopes: tuple[str, ...] | list[str], needed: str) -> bool:
    """Whether a credential holding ``scopes`` may do what ``needed`` allows (read < write < admin)."""
    return scope_level(scopes) >= TOKEN_SCOPES.index(needed)


def create_api_token(
    session: Session, user: User, name: str, scopes: list[str], caller_scopes: tuple[str, ...] = TOKEN_SCOPES
) -> tuple[ApiToken, str]:
    """A new token; the plain text is returned once and only its SHA-256 is stored. ``caller_scopes`` are the
    scopes of the credential asking (all of them for a browser session): a token never mints a broader one."""
    bad = [s for s in scopes if s not in TOKEN_SCOPES]
    if bad or not scopes:
        raise AppError(f"scopes must be a non-empty subset of {', '.join(TOKEN_SCOPES)}")
    if "admin" in scopes and user.role != "admin":
        raise AppError("only admins can hold admin-scoped tokens", status=403)
    if scope_level(scopes) > scope_level(caller_scopes):
        raise Forbidden(
            f"this credential holds scopes {', '.join(caller_scopes)}; it cannot create a token with "
            f"broader scopes ({', '.join(scopes)})"
        )
    plain = TOKEN_PREFIX + secrets.token_urlsafe(32)
    token = ApiToken(
        user_id=user.id,
        name=name[:100] or "token",
        prefix=plain[:12],
        token_hash=sha256_hex(plain),
        scopes=list(scopes),
    )
    repo.add(session, token)
    return token, plain


def resolve_api_token(session: Session, plain: str) -> tuple[User, ApiToken] | None:
    """The token's user and row; reads only (``last_used_at`` is written apart, see :func:`touch_token`)."""
    token = repo.get_token_by_hash(session, sha256_hex(plain))
    if token is None:
        return None
    user = repo.get_user(session, token.user_id)
    if user is None or not user.is_active:
        return None
    return user, token


@dataclass(frozen=True)
class Identity:
    """Who a request's credential names, as plain values (resolved before the request's body is read, in a
    transaction of its own; the request's session loads ``user_id`` again)."""

    user_id: int
    username: str
    role: str
    scopes: tuple[str, ...]
    browser: bool
    csrf_token: str = ""
    token_id: int | None = None
    token_last_used: datetime | None = None


INVALID_TOKEN = "invalid"  # noqa: S105 - a marker, not a secret: a bearer token was sent and does not resolve


def resolve_identity(session: Session, bearer: str | None, cookie: str | None) -> Identity | str | None:
    """The caller of a request: a bearer token wins over a session cookie. :data:`INVALID_TOKEN` for a bearer
    token that does not resolve (the request is refused), ``None`` for an anonymous or expired browser session."""
    if bearer is not None:
        found = resolve_api_token(session, bearer)
        if found is None:
            return INVALID_TOKEN
        user, token = found
        scopes = tuple(s for s in token.scopes if s in TOKEN_SCOPES)
        if user.role != "admin":  # a demoted admin's old token loses its admin scope
            scopes = tuple(s for s in scopes if s != "admin")
        return Identity(user.id, user.username, user.role, scopes, False, "", token.id, token.last_used_at)
    if cookie:
        found_session = resolve_session(session, cookie)
        if found_session is None:
            return None
        user, row = found_session
        return Identity(user.id, user.username, user.role, TOKEN_SCOPES, True, row.csrf_token)
    return None


TOUCH_EVERY_S = 60.0
_touched: dict[int, float] = {}  # token id -> monotonic time this process last claimed its last_used_at write
_touched_lock = threading.Lock()


def claim_touch(identity: Identity) -> bool:
    """Whether this request should write its token's ``last_used_at``: at most once a minute per token (what the
    database says, and what this process claimed, so a burst of requests writes once, not once each)."""
    if identity.token_id is None:
        return False
    now_db, now = utcnow(), time.monotonic()
    if identity.token_last_used is not None and (now_db - identity.token_last_used).total_seconds() < TOUCH_EVERY_S:
        return False
    with _touched_lock:
        if now - _touched.get(identity.token_id, -1e9) < TOUCH_EVERY_S:
            return False
        if len(_touched) > 100_000:  # bounded: forget everything rather than grow without end
            _touched.clear()
        _touched[identity.token_id] = now
    return True


def touch_token(session: Session, token_id: int) -> bool:
    """Set ``last_used_at`` unless it was set within the last minute (by any process); its own short transaction,
    never the request's, so busy tokens do not queue requests on one row lock. True when written."""
    now = utcnow()
    return repo.touch_token(session, token_id, now, not_since=now - timedelta(seconds=TOUCH_EVERY_S))


# -- sign-in: rate limit, CSRF of the form ---------------------------------------------------------------------


def check_login_allowed(
    session: Session, username: str, address: str, *, max_failures: int, max_per_address: int, window_minutes: int
) -> None:
    """Refuse (429 with ``Retry-After``) a sign-in while the account or the address has too many recent wrong
    passwords: counted from the audit log, so every web process and a restart see the same count. The check comes
    before the password is verified, so a locked account refuses even the right password."""
    now, window = utcnow(), timedelta(minutes=window_minutes)
    username = username.strip()[:100]
    last_ok = repo.last_login_success(session, username)
    since = max(now - window, last_ok) if last_ok else now - window
    recent = repo.login_failures_since(session, since, username=username, limit=max_failures)
    if len(recent) >= max_failures:
        wait = (recent[-1] + window - now).total_seconds()
        raise TooManyRequests(
            f"too many wrong passwords for this account; try again in {_minutes(wait)}", int(wait) + 1
        )
    recent = repo.login_failures_since(session, now - window, address=address, limit=max_per_address)
    if len(recent) >= max_per_address:
        wait = (recent[-1] + window - now).total_seconds()
        raise TooManyRequests(
            f"too many failed sign-ins from your address; try again in {_minutes(wait)}", int(wait) + 1
        )


def _minutes(seconds: float) -> str:
    minutes = max(1, -(-int(seconds) // 60))
    return f"{minutes} minute{'s' if minutes > 1 else ''}"


def record_login(session: Session, user: User | None, username: str, address: str, ok: bool) -> None:
    """Audit a sign-in attempt (the limiter counts these rows)."""
    audit(
        session,
        user,
        "login.success" if ok else "login.failure",
        "user_account",
        user.id if user else None,
        username=username.strip()[:100],
        address=address,
    )


def login_form_token(secret: str, nonce: str) -> str:
    """The sign-in form's CSRF token: an HMAC of the nonce in the visitor's cookie under ``ANOMALOOP_SECRET_KEY``.
    A page on another site can neither read the nonce nor compute the HMAC."""
    return hmac.new(secret.encode(), b"login:" + nonce.encode(), hashlib.sha256).hexdigest()


def check_login_form_token(secret: str, nonce: str | None, presented: str | None) -> bool:
    if not nonce or not presented or len(nonce) > 200:
        return False
    return hmac.compare_digest(login_form_token(secret, nonce), presented)


def list_audit(session: Session, limit: int = 200) -> list[AuditEvent]:
    """The newest audit events first."""
    return repo.list_audit(session, limit=limit)


def usernames(session: Session) -> dict[int, str]:
    """Every user's name by id (to show who answered or acted)."""
    return {u.id: u.username for u in repo.list_users(session)}


def audit(
    session: Session, actor: User | None, action: str, object_type: str, object_id: int | None, **detail: object
) -> None:
    """Record who did what; called by every service that changes labels, rounds, versions or data."""
    repo.add(
        session,
        AuditEvent(
            actor_id=actor.id if actor else None,
            action=action,
            object_type=object_type,
            object_id=object_id,
            detail=detail,
        ),
    )
