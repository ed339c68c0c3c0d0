"""Who may use the web app: users (people, with a role, logging in with a password) and API
tokens (programs, with a scope). Passwords are hashed with Argon2id (argon2-cffi); a token is
shown once and only its SHA-256 is kept. Failed logins are counted in the database, so the
limit holds across every web process.
"""

from __future__ import annotations

import hashlib
import re
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Literal

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from sqlalchemy import delete, func, select, update
from sqlalchemy.orm import Session

from services_ai_plugins.config import Config
from services_ai_plugins.errors import (
    AlreadyExistsError,
    AuthenticationError,
    InputError,
    NotFoundError,
    RateLimitedError,
)
from services_ai_plugins.infra.db import Database
from services_ai_plugins.infra.models import ApiToken, LoginAttempt, User, utcnow
from services_ai_plugins.lifecycle.rows import audit

__all__ = ["ROLES", "SCOPES", "AccountService", "TokenView", "UserView", "token_digest"]

Role = Literal["admin", "viewer"]
Scope = Literal["admin", "dashboard", "publish"]
ROLES: tuple[Role, ...] = ("admin", "viewer")
SCOPES: tuple[Scope, ...] = ("admin", "dashboard", "publish")

TOKEN_PREFIX = "sai_"  # noqa: S105 - the marker every token starts with, not a secret
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._@-]{0,63}$")
MIN_PASSWORD = 8
MAX_PASSWORD = 1024  # Argon2 takes any length; a cap keeps a login request cheap to refuse
MAX_TOKEN = 200
# A token's last use is written at most this often (every request would be a write).
TOUCH_EVERY = timedelta(minutes=1)
# An unknown name still costs one hash, so timing does not tell which names exist.
_hasher = PasswordHasher()
_DUMMY_HASH = _hasher.hash(secrets.token_hex(16))


@dataclass(frozen=True)
class UserView:
    id: int
    name: str
    role: Role
    session_version: int
    created_at: datetime
    last_login_at: datetime | None


@dataclass(frozen=True)
class TokenView:
    id: int
    name: str
    scope: Scope
    prefix: str
    created_at: datetime
    created_by: str | None
    last_used_at: datetime | None
    revoked_at: datetime | None


def _user_view(u: User) -> UserView:
    return UserView(u.id, u.name, u.role, u.session_version, u.created_at, u.last_login_at)  # type: ignore[arg-type]


def _token_view(t: ApiToken) -> TokenView:
    return TokenView(
        t.id,
        t.name,
        t.scope,  # type: ignore[arg-type]
        t.prefix,
        t.created_at,
        t.created_by,
        t.last_used_at,
        t.revoked_at,
    )


def token_digest(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8", "replace")).hexdigest()


def _check_name(name: str) -> str:
    if not _NAME.match(name):
        raise InputError(
            "user name",
            f"{name[:80]!r} must be 1-64 letters, digits or . _ @ - (starting with a letter or digit)",
        )
    return name


def _check_password(password: str) -> str:
    if len(password) < MIN_PASSWORD:
        raise InputError("password", f"must be at least {MIN_PASSWORD} characters")
    if len(password) > MAX_PASSWORD:
        raise InputError("password", f"must be at most {MAX_PASSWORD} characters")
    return password


class AccountService:
    def __init__(self, config: Config, db: Database) -> None:
        self.config = config
        self.db = db

    # -- users ------------------------------------------------------------------------------

    def create_user(self, name: str, password: str, role: str, actor: str | None = None) -> UserView:
        _check_name(name)
        _check_password(password)
        if role not in ROLES:
            raise InputError("role", f"{role!r} is not one of {', '.join(ROLES)}")
        digest = _hasher.hash(password)
        with self.db.session() as s:
            if s.scalar(select(User.id).where(User.name == name)) is not None:
                raise AlreadyExistsError("user", name)
            user = User(name=name, password_hash=digest, role=role, session_version=1, created_at=utcnow())
            s.add(user)
            audit(s, actor, "user-create", None, user=name, role=role)
            s.flush()
            return _user_view(user)

    def set_password(self, name: str, password: str, actor: str | None = None) -> UserView:
        """A new password; every session of the user ends."""
        _check_password(password)
        digest = _hasher.hash(password)
        with self.db.session() as s:
            user = self._user(s, name)
            user.password_hash = digest
            user.session_version += 1
            audit(s, actor, "user-password", None, user=name)
            return _user_view(user)

    def delete_user(self, name: str, actor: str | None = None) -> None:
        with self.db.session() as s:
            s.delete(self._user(s, name))
            audit(s, actor, "user-delete", None, user=name)

    def users(self) -> list[UserView]:
        with self.db.session() as s:
            return [_user_view(u) for u in s.scalars(select(User).order_by(User.name))]

    def session_user(self, user_id: int, version: int) -> UserView | None:
        """The user a session cookie names, if the session is still good."""
        with self.db.session() as s:
            user = s.get(User, user_id)
            if user is None or user.session_version != version:
                return None
            return _user_view(user)

    def login(self, name: str, password: str, client: str) -> UserView:
        """The user, or :class:`AuthenticationError` (the same words whatever was wrong), or
        :class:`RateLimitedError` once the name or the client failed too often."""
        name = name[:64]
        client = client[:64]
        now = utcnow()
        window = timedelta(seconds=self.config.login_window_seconds)
        limit = self.config.login_max_failures
        with self.db.session() as s:
            since = now - window
            by_name = s.scalar(
                select(func.count()).where(LoginAttempt.name == name, LoginAttempt.at >= since)
            )
            by_client = s.scalar(
                select(func.count()).where(LoginAttempt.client == client, LoginAttempt.at >= since)
            )
            if (by_name or 0) >= limit or (by_client or 0) >= 4 * limit:
                raise RateLimitedError("logins", self.config.login_window_seconds)
            user = s.scalar(select(User).where(User.name == name))
            # An unknown name costs a hash as well: timing does not tell which names exist.
            if self._verify(user.password_hash if user else _DUMMY_HASH, password) and user is not None:
                if _hasher.check_needs_rehash(user.password_hash):
                    user.password_hash = _hasher.hash(password)
                user.last_login_at = now
                s.execute(delete(LoginAttempt).where(LoginAttempt.name == name))
                audit(s, f"web:{name}", "login", None, client=client)
                return _user_view(user)
            # The failure is committed with this session (the refusal is raised after it).
            s.add(LoginAttempt(name=name, client=client, at=now))
            s.execute(delete(LoginAttempt).where(LoginAttempt.at < now - 4 * window))
        raise AuthenticationError("wrong user name or password")

    @staticmethod
    def _verify(digest: str, password: str) -> bool:
        if len(password) > MAX_PASSWORD:
            return False
        try:
            return _hasher.verify(digest, password)
        except (VerificationError, InvalidHashError):
            return False

    @staticmethod
    def _user(s: Session, name: str) -> User:
        user = s.scalar(select(User).where(User.name == name))
        if user is None:
            raise NotFoundError("user", name)
        return user

    # -- tokens -----------------------------------------------------------------------------

    def create_token(self, scope: str, name: str = "", actor: str | None = None) -> tuple[TokenView, str]:
        """A new token and its secret text (shown this once; only its hash is kept)."""
        if scope not in SCOPES:
            raise InputError("scope", f"{scope!r} is not one of {', '.join(SCOPES)}")
        if len(name) > 100:
            raise InputError("token name", "must be at most 100 characters")
        secret = TOKEN_PREFIX + secrets.token_urlsafe(32)
        with self.db.session() as s:
            row = ApiToken(
                token_sha256=token_digest(secret),
                prefix=secret[:10],
                scope=scope,
                name=name,
                created_at=utcnow(),
                created_by=actor,
            )
            s.add(row)
            s.flush()
            audit(s, actor, "token-create", None, token=row.id, scope=scope, name=name)
            return _token_view(row), secret

    def tokens(self, include_revoked: bool = False) -> list[TokenView]:
        stmt = select(ApiToken).order_by(ApiToken.id)
        if not include_revoked:
            stmt = stmt.where(ApiToken.revoked_at.is_(None))
        with self.db.session() as s:
            return [_token_view(t) for t in s.scalars(stmt)]

    def revoke_token(self, token_id: int, actor: str | None = None) -> TokenView:
        with self.db.session() as s:
            row = s.get(ApiToken, token_id)
            if row is None:
                raise NotFoundError("token", token_id)
            if row.revoked_at is None:
                row.revoked_at = utcnow()
                audit(s, actor, "token-revoke", None, token=token_id, scope=row.scope)
            return _token_view(row)

    _by_digest = select(ApiToken.id, ApiToken.scope, ApiToken.name, ApiToken.last_used_at).where(
        ApiToken.revoked_at.is_(None)
    )

    def token(self, secret: str) -> tuple[int, Scope, str] | None:
        """``(id, scope, name)`` of a live token, else None. One indexed read per request; the
        last-use time is written at most once a minute."""
        if not secret.startswith(TOKEN_PREFIX) or len(secret) > MAX_TOKEN:
            return None
        rows = self.db.read(self._by_digest.where(ApiToken.token_sha256 == token_digest(secret)))
        if not rows:
            return None
        token_id, scope, name, last_used = rows[0]
        now = utcnow()
        if last_used is None or _aware(last_used) < now - TOUCH_EVERY:
            with self.db.session() as s:
                s.execute(update(ApiToken).where(ApiToken.id == token_id).values(last_used_at=now))
        return int(token_id), scope, name


def _aware(moment: datetime) -> datetime:
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)
