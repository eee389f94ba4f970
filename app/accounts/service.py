"""Accounts: users with hashed passwords (argon2), browser sessions, hashed API tokens, audit events.

Scopes of API tokens compose: ``read`` ⊂ ``write`` ⊂ ``admin``. A browser session holds every scope; what it may do
is limited by its user's role alone (``admin`` routes need an admin user). A token of a user who is not an admin
never counts its ``admin`` scope. docs/ACCOUNTS.md explains roles, scopes and every refusal a client can see.
"""

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
from app.errors import AppError, Conflict, Forbidden, NotFound, TooManyRequests, Unauthorized

_hasher = PasswordHasher()  # stateless: parameters only
TOKEN_SCOPES = ("read", "write", "admin")
"""Scopes compose: each includes the ones before it (an ``admin`` token may do what a ``write`` token may)."""
TOKEN_PREFIX = "alp_"  # noqa: S105 - a public prefix that marks our tokens in logs
MIN_PASSWORD, MAX_PASSWORD = 8, 1000
"""Password length bounds, in characters."""
MAX_TOKEN_DAYS = 3650
"""The longest expiry a token may be given, in days (ten years); a token may also never expire."""


def sha256_hex(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


# -- users -----------------------------------------------------------------------------------------------------


def count_users(session: Session) -> int:
    return repo.count_users(session)


def create_user(session: Session, username: str, role: str, password: str) -> User:
    username = username.strip()
    if not username or len(username) > 100 or not username.replace("-", "").replace("_", "").replace(".", "").isalnum():
        raise AppError("user name must be 1-100 letters, digits, '-', '_' or '.'")
    if role not in ROLES:
        raise AppError(f"role must be one of {', '.join(ROLES)}, not {role!r}")
    check_password(password)
    if repo.get_user_by_name(session, username) is not None:
        raise Conflict(f"user {username!r} already exists")
    user = User(username=username, role=role, password_hash=_hasher.hash(password))
    repo.add(session, user)
    return user


def add_user(session: Session, actor: User | None, username: str, role: str, password: str) -> User:
    """Create a user (an admin in the browser or API, or the CLI with ``actor=None``), audited."""
    user = create_user(session, username, role, password)
    audit(session, actor, "user.create", "user_account", user.id, username=user.username, role=user.role)
    return user


def check_password(password: str) -> None:
    """Refuse (400) a password that is too short or too long, saying the bound."""
    if len(password) < MIN_PASSWORD:
        raise AppError(f"password must have at least {MIN_PASSWORD} characters")
    if len(password) > MAX_PASSWORD:
        raise AppError(f"password must have at most {MAX_PASSWORD} characters")


def get_user(session: Session, user_id: int) -> User:
    user = repo.get_user(session, user_id)
    if user is None:
        raise NotFound(f"no user with id {user_id}")
    return user


def find_user(session: Session, username: str) -> User:
    """The user named ``username``; 404 naming it when there is none."""
    user = repo.get_user_by_name(session, username.strip())
    if user is None:
        raise NotFound(f"no user named {username.strip()!r}")
    return user


def list_users(session: Session) -> list[User]:
    """Every user, oldest first, disabled ones included."""
    return repo.list_users(session)


def disable_user(session: Session, actor: User | None, user_id: int) -> User:
    """Disable a user: it can no longer sign in, its browser sessions end and every token of it is revoked (one
    audit event lists them). Refused (409) for the last active admin, under a lock so that two admins disabling each
    other at once cannot both succeed. Disabling a disabled user changes nothing."""
    user = get_user(session, user_id)
    if not user.is_active:
        return user
    with session.begin_nested():  # all or nothing, also when a page catches the 409 and renders it
        if user.role == "admin":
            repo.lock_active_admins(session)  # concurrent disables of admins queue here; the count below is current
        user.is_active = False
        session.flush()
        if user.role == "admin" and repo.count_active_admins(session) == 0:
            raise Conflict(f"{user.username!r} is the last active admin; enable or create another admin first")
        ended = repo.delete_user_sessions(session, user.id)
        revoked = repo.revoke_user_tokens(session, user.id, utcnow())
        audit(
            session,
            actor,
            "user.disable",
            "user_account",
            user.id,
            username=user.username,
            sessions_ended=ended,
            tokens_revoked=revoked,
        )
    return user


def enable_user(session: Session, actor: User | None, user_id: int) -> User:
    """Let a disabled user sign in again. Its tokens stay revoked: it creates new ones."""
    user = get_user(session, user_id)
    if not user.is_active:
        user.is_active = True
        audit(session, actor, "user.enable", "user_account", user.id, username=user.username)
    return user


def set_password(
    session: Session, actor: User | None, user_id: int, password: str, keep_session: str | None = None
) -> User:
    """Set a user's password (an admin, the CLI, or the user after :func:`change_own_password`'s check). The user's
    browser sessions end, but ``keep_session`` (the caller's own cookie, so changing one's own password does not sign
    one out). API tokens are not touched: revoke them apart, or disable the user."""
    check_password(password)
    user = get_user(session, user_id)
    user.password_hash = _hasher.hash(password)
    ended = repo.delete_user_sessions(session, user.id, keep_hash=sha256_hex(keep_session) if keep_session else None)
    audit(session, actor, "user.password", "user_account", user.id, username=user.username, sessions_ended=ended)
    return user


def change_own_password(session: Session, user: User, current: str, new: str, keep_session: str | None) -> None:
    """A user changes their own password, proving the current one (403 when it is wrong: the caller records that as
    a failed sign-in, so guessing it is rate limited like /login). Their other browser sessions end."""
    if not verify_password(user, current):
        raise Forbidden("the current password is wrong")
    if new == current:
        raise AppError("the new password is the same as the current one")
    set_password(session, user, user.id, new, keep_session)


def verify_password(user: User, password: str) -> bool:
    try:
        return _hasher.verify(user.password_hash, password)
    except (VerificationError, InvalidHashError):
        return False


def authenticate(session: Session, username: str, password: str) -> User:
    """The user if the password matches; one message for unknown user and wrong password (no user probing)."""
    user = repo.get_user_by_name(session, username.strip())
    if user is None or not user.is_active:
        _hasher.hash(password)  # same cost whether or not the user exists
        raise Unauthorized("wrong user name or password")
    if not verify_password(user, password):
        raise Unauthorized("wrong user name or password")
    if _hasher.check_needs_rehash(user.password_hash):
        user.password_hash = _hasher.hash(password)
    return user


# -- browser sessions ------------------------------------------------------------------------------------------


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


# -- scopes and API tokens -------------------------------------------------------------------------------------


def scope_level(scopes: tuple[str, ...] | list[str]) -> int:
    """The broadest of ``scopes`` as an index into :data:`TOKEN_SCOPES`; -1 for none."""
    return max((TOKEN_SCOPES.index(s) for s in scopes if s in TOKEN_SCOPES), default=-1)


def scope_allows(scopes: tuple[str, ...] | list[str], needed: str) -> bool:
    """Whether a credential holding ``scopes`` may do what ``needed`` allows (read < write < admin)."""
    return scope_level(scopes) >= TOKEN_SCOPES.index(needed)


def parse_scopes(text: str) -> list[str]:
    """``"read,write"`` -> ``["read", "write"]`` (spaces and empty items ignored; validated on creation)."""
    return [s.strip() for s in text.split(",") if s.strip()]


def create_api_token(
    session: Session,
    user: User,
    name: str,
    scopes: list[str],
    caller_scopes: tuple[str, ...] = TOKEN_SCOPES,
    expires_in_days: int | None = None,
) -> tuple[ApiToken, str]:
    """A new token for ``user``; the plain text is returned once and only its SHA-256 is stored. ``caller_scopes``
    are the scopes of the credential asking (all of them for a browser session and the CLI): a token never mints a
    broader one. ``expires_in_days``: refused with 401 that many days from now; ``None``: valid until revoked."""
    bad = [s for s in scopes if s not in TOKEN_SCOPES]
    if bad or not scopes:
        raise AppError(f"scopes must be a non-empty subset of {', '.join(TOKEN_SCOPES)}, not {', '.join(scopes)!r}")
    if not user.is_active:
        raise Conflict(f"user {user.username!r} is disabled; enable it before creating tokens for it")
    if "admin" in scopes and user.role != "admin":
        raise Forbidden(
            f"only admins can hold admin-scoped tokens; {user.username!r} is an {user.role}: give it read or write"
        )
    if scope_level(scopes) > scope_level(caller_scopes):
        raise Forbidden(
            f"this credential holds scopes {', '.join(caller_scopes)}; it cannot create a token with "
            f"broader scopes ({', '.join(scopes)})"
        )
    if expires_in_days is not None and not 1 <= expires_in_days <= MAX_TOKEN_DAYS:
        raise AppError(f"the expiry must be 1 to {MAX_TOKEN_DAYS} days (or none: valid until revoked)")
    plain = TOKEN_PREFIX + secrets.token_urlsafe(32)
    now = utcnow()
    token = ApiToken(
        user_id=user.id,
        name=name.strip()[:100] or "token",
        prefix=plain[:12],
        token_hash=sha256_hex(plain),
        scopes=[s for s in TOKEN_SCOPES if s in scopes],  # canonical order, no repeats
        created_at=now,
        expires_at=now + timedelta(days=expires_in_days) if expires_in_days is not None else None,
    )
    repo.add(session, token)
    return token, plain


def issue_token(
    session: Session,
    actor: User | None,
    name: str,
    scopes: list[str],
    *,
    user_id: int | None = None,
    caller_scopes: tuple[str, ...] = TOKEN_SCOPES,
    as_admin: bool = False,
    expires_in_days: int | None = None,
) -> tuple[ApiToken, str]:
    """Create a token for ``user_id`` (default: the actor), audited; the plain text is returned once. Only an admin
    (``as_admin``, or the CLI with ``actor=None``) creates tokens for another user."""
    if user_id is None or (actor is not None and user_id == actor.id):
        if actor is None:
            raise AppError("say which user the token is for")
        owner = actor
    elif as_admin or actor is None:
        owner = get_user(session, user_id)
    else:
        raise Forbidden("only admins create tokens for other users; leave user_id out to create one of your own")
    token, plain = create_api_token(session, owner, name, scopes, caller_scopes, expires_in_days)
    audit(
        session,
        actor,
        "token.create",
        "api_token",
        token.id,
        name=token.name,
        scopes=token.scopes,
        owner_id=owner.id,
        expires_at=token.expires_at.isoformat() if token.expires_at else None,
    )
    return token, plain


@dataclass(frozen=True)
class TokenInfo:
    """A token as lists show it: never its secret or its hash."""

    id: int
    name: str
    prefix: str
    user_id: int
    username: str
    scopes: list[str]
    created_at: datetime
    last_used_at: datetime | None
    expires_at: datetime | None
    revoked_at: datetime | None
    status: str
    """``active``, ``revoked`` or ``expired``."""


def token_status(token: ApiToken, now: datetime) -> str:
    if token.revoked_at is not None:
        return "revoked"
    if token.expires_at is not None and token.expires_at <= now:
        return "expired"
    return "active"


def list_api_tokens(session: Session, user_id: int | None = None) -> list[TokenInfo]:
    """Every user's tokens (``user_id`` None) or one user's, oldest first, revoked and expired ones included."""
    now = utcnow()
    return [
        TokenInfo(
            id=t.id,
            name=t.name,
            prefix=t.prefix,
            user_id=t.user_id,
            username=username,
            scopes=list(t.scopes),
            created_at=t.created_at,
            last_used_at=t.last_used_at,
            expires_at=t.expires_at,
            revoked_at=t.revoked_at,
            status=token_status(t, now),
        )
        for t, username in repo.list_tokens(session, user_id)
    ]


def revoke_api_token(session: Session, actor: User | None, token_id: int, as_admin: bool) -> ApiToken:
    """Revoke a token: its owner may, and an admin (``as_admin``; the CLI passes ``actor=None``). Another user's
    token is "not found" to a non-admin, so ids reveal nothing. Revoking a revoked token changes nothing."""
    token = repo.get_token(session, token_id)
    if token is None or not (as_admin or actor is None or token.user_id == actor.id):
        raise NotFound(f"no API token with id {token_id}")
    if token.revoked_at is None:
        token.revoked_at = utcnow()
        audit(session, actor, "token.revoke", "api_token", token.id, name=token.name, owner_id=token.user_id)
    return token


@dataclass(frozen=True)
class TokenRefusal:
    """A bearer token was sent and is refused (401): ``message`` says why, ``code`` is its machine-readable word."""

    message: str
    code: str = "invalid_token"


UNKNOWN_TOKEN = TokenRefusal("invalid or revoked API token")


def resolve_api_token(session: Session, plain: str) -> tuple[User, ApiToken] | TokenRefusal:
    """The token's user and row, or why the token is refused; reads only (``last_used_at`` is written apart, see
    :func:`touch_token`). A token whose user is disabled is refused even if it was somehow not revoked."""
    found = repo.get_token_and_user_by_hash(session, sha256_hex(plain))
    if found is None:
        return UNKNOWN_TOKEN
    token, user = found
    if user is None or not user.is_active:
        return TokenRefusal("the user of this API token is disabled; an admin can enable it", "user_disabled")
    if token.revoked_at is not None:
        return TokenRefusal("this API token was revoked; create a new one", "token_revoked")
    if token.expires_at is not None and token.expires_at <= utcnow():
        return TokenRefusal(
            f"this API token expired at {token.expires_at:%Y-%m-%d %H:%M} UTC; create a new one", "token_expired"
        )
    return user, token


@dataclass(frozen=True)
class Identity:
    """Who a request's credential names, as plain values (resolved before the request's body is read, in a
    transaction of its own; the request's session loads ``user_id`` again)."""

    user_id: int
    username: str
    role: str
    scopes: tuple[str, ...]
    """What the credential may do: a token's scopes, less ``admin`` when its user is not an admin."""
    browser: bool
    csrf_token: str = ""
    token_id: int | None = None
    token_last_used: datetime | None = None
    granted_scopes: tuple[str, ...] = ()
    """A token's scopes as created (to explain a refusal); empty for a browser session."""


def resolve_identity(session: Session, bearer: str | None, cookie: str | None) -> Identity | TokenRefusal | None:
    """The caller of a request: a bearer token wins over a session cookie. A :class:`TokenRefusal` for a bearer token
    that is refused (401), ``None`` for an anonymous visitor or an ended browser session."""
    if bearer is not None:
        found = resolve_api_token(session, bearer)
        if isinstance(found, TokenRefusal):
            return found
        user, token = found
        granted = tuple(s for s in TOKEN_SCOPES if s in token.scopes)
        scopes = granted if user.role == "admin" else tuple(s for s in granted if s != "admin")
        return Identity(user.id, user.username, user.role, scopes, False, "", token.id, token.last_used_at, granted)
    if cookie:
        found_session = resolve_session(session, cookie)
        if found_session is None:
            return None
        user, row = found_session
        return Identity(user.id, user.username, user.role, TOKEN_SCOPES, True, row.csrf_token)
    return None


ADMINS_ONLY = "admins_only"
INSUFFICIENT_SCOPE = "insufficient_scope"
"""The ``code`` of a 403 for a caller who is not an admin, and for a token without the scope a request needs."""


def scope_refusal(
    role: str, scopes: tuple[str, ...], needed: str, *, browser: bool, granted: tuple[str, ...] = ()
) -> str | None:
    """Why a caller may not do what ``needed`` (read, write or admin) allows, or ``None`` when it may. A browser
    session holds every scope; ``admin`` also needs an admin user. The message names the scope needed; its code is
    :func:`refusal_code`."""
    if needed == "admin" and role != "admin":
        if not browser and "admin" in granted:
            return (
                f"admins only: this API token has the admin scope, but its user is an {role}; the admin scope "
                "counts only on an admin's tokens"
            )
        return "admins only"
    if browser or scope_allows(scopes, needed):
        return None
    if not scopes:
        return (
            f"this API token has no scope its user may use (it was given {', '.join(granted) or 'none'}, and its "
            f"user is no longer an admin); this request needs {needed}"
        )
    read_only = " (read-only)" if scope_level(scopes) == 0 else ""
    return f"this API token has scopes {', '.join(scopes)}{read_only}; this request needs {needed}"


def refusal_code(role: str, needed: str) -> str:
    """The ``code`` of :func:`scope_refusal`'s 403: the user's role, or the credential's scopes, falls short."""
    return ADMINS_ONLY if needed == "admin" and role != "admin" else INSUFFICIENT_SCOPE


TOUCH_EVERY_S = 60.0


class TouchThrottle:
    """Which tokens' ``last_used_at`` this app has written lately: at most one write a minute per token (what the
    database says, and what this app claimed, so a burst of requests writes once, not once each). One per app (the
    guard's), so two apps in one process, on two databases, never hold back each other's writes."""

    def __init__(self, every_s: float = TOUCH_EVERY_S, max_tokens: int = 100_000) -> None:
        self.every_s = every_s
        self.max_tokens = max_tokens
        self._claimed: dict[int, float] = {}  # token id -> monotonic time its last write was claimed
        self._lock = threading.Lock()

    def claim(self, identity: Identity) -> bool:
        """Whether this request should write its token's ``last_used_at``."""
        if identity.token_id is None:
            return False
        now_db, now = utcnow(), time.monotonic()
        if identity.token_last_used is not None and (now_db - identity.token_last_used).total_seconds() < self.every_s:
            return False
        with self._lock:
            if now - self._claimed.get(identity.token_id, -1e9) < self.every_s:
                return False
            if len(self._claimed) > self.max_tokens:  # bounded: forget everything rather than grow without end
                self._claimed.clear()
            self._claimed[identity.token_id] = now
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
