"""Credentials and tenant scoping: what a token, a session or a password is worth.

The tenant of every request comes from its credential (an API token or the
session), never from the body or the query string. The rows behind
credentials are `store/accounts.py`'s; this module hashes, checks and decides.
"""
from __future__ import annotations

import hashlib
import secrets
import threading
import time
from dataclasses import dataclass
from datetime import timedelta
from functools import wraps
from typing import Callable

from flask import abort, current_app, g, request, session
from werkzeug.security import check_password_hash, generate_password_hash

from .errors import ApiError, SignInRequired
from .models import ApiToken, Tenant, User, utcnow
from .store import accounts

SCOPES = ("ingest", "read", "admin")
TOKEN_PREFIX = "aw_"
DEFAULT_TENANT = "default"
# Writing last_used_at on every call would turn each read into a write.
LAST_USED_GRANULARITY = timedelta(minutes=1)


@dataclass(frozen=True)
class Principal:
    """Who is asking: a tenant, and what they may do there."""

    tenant_id: int
    tenant_slug: str
    scopes: frozenset[str]
    token_id: int | None = None
    local: bool = False
    user_id: int | None = None
    user_email: str | None = None
    role: str | None = None

    def can(self, scope: str) -> bool:
        return scope in self.scopes or "admin" in self.scopes


# ------------------------------------------------------------------ tokens


def hash_token(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def create_token(tenant: Tenant, name: str, scopes: list[str]) -> tuple[ApiToken, str]:
    """Make a token; returns it and the secret, which is not stored and cannot be shown again."""
    unknown = [s for s in scopes if s not in SCOPES]
    if unknown or not scopes:
        raise ValueError(f"scopes are one or more of {', '.join(SCOPES)}; got {', '.join(scopes) or 'none'}")
    secret = TOKEN_PREFIX + secrets.token_urlsafe(32)
    token = accounts.add_token(tenant.id, name, secret[: len(TOKEN_PREFIX) + 6], hash_token(secret),
                               list(dict.fromkeys(scopes)))
    return token, secret


def revoke_token(token_id: int, tenant_id: int | None = None) -> ApiToken | None:
    """Revoke a token (of `tenant_id`, if given), at once in this process; None if there is no such token."""
    token = accounts.revoke_token(token_id, tenant_id)
    forget_cached_tokens()
    return token


# Recently seen tokens, so a busy producer does not cost a query per request.
# A revocation clears this process's cache at once; other processes notice
# within TOKEN_CACHE_SECONDS.
TOKEN_CACHE_SECONDS = 5.0
_token_cache: dict[str, tuple[float, "Principal | None"]] = {}
_token_cache_lock = threading.Lock()


def forget_cached_tokens() -> None:
    with _token_cache_lock:
        _token_cache.clear()


def principal_for_token(secret: str) -> Principal | None:
    """The principal a bearer secret stands for, or None if unknown or revoked."""
    token_hash = hash_token(secret)
    now_mono = time.monotonic()
    cached = _token_cache.get(token_hash)
    if cached is not None and cached[0] > now_mono:
        return cached[1]
    row = accounts.token_by_hash(token_hash)
    principal = None
    if row is not None and row.revoked_at is None:
        now = utcnow()
        if row.last_used_at is None or now - row.last_used_at > LAST_USED_GRANULARITY:
            accounts.token_used(row.id, now)
        principal = Principal(row.tenant_id, row.slug, frozenset(row.scopes.split()), token_id=row.id)
    with _token_cache_lock:
        if len(_token_cache) > 10_000:  # unknown tokens must not grow this without bound
            _token_cache.clear()
        _token_cache[token_hash] = (now_mono + TOKEN_CACHE_SECONDS, principal)
    return principal


def local_principal() -> Principal:
    tenant = accounts.get_or_create_tenant(DEFAULT_TENANT, "Default")
    return Principal(tenant.id, tenant.slug, frozenset(SCOPES), local=True, role="admin")


def bearer_secret() -> str | None:
    header = request.headers.get("Authorization", "")
    scheme, _, secret = header.partition(" ")
    if scheme.lower() == "bearer" and secret.strip():
        return secret.strip()
    return None


def authenticate_api() -> Principal:
    """The principal of an API request; raises a 401 ApiError if there is none."""
    secret = bearer_secret()
    if secret is not None:
        principal = principal_for_token(secret)
        if principal is None:
            raise ApiError(401, "invalid_token", "The bearer token is unknown or revoked.",
                           headers={"WWW-Authenticate": 'Bearer error="invalid_token"'})
        return principal
    # An empty "Bearer" is what a producer sends with its token unset; in
    # local mode that is no credential at all, like a missing header.
    header = request.headers.get("Authorization", "").strip()
    if header and header.lower() != "bearer":
        raise ApiError(401, "invalid_token", "Use `Authorization: Bearer <token>`.",
                       headers={"WWW-Authenticate": "Bearer"})
    if current_app.config.get("LOCAL_MODE"):
        return local_principal()
    raise ApiError(401, "unauthenticated", "This endpoint needs `Authorization: Bearer <token>`.",
                   headers={"WWW-Authenticate": "Bearer"})


# ------------------------------------------------------------------- people

ROLE_SCOPES = {"viewer": frozenset({"read"}), "admin": frozenset({"read", "admin"})}
MIN_PASSWORD = 10
# Checked when an email is unknown, so a wrong email costs as long as a wrong password.
_UNKNOWN_USER_HASH = generate_password_hash(secrets.token_urlsafe(16))


def normalise_email(email: str) -> str:
    return email.strip().lower()


def create_user(email: str, password: str, tenant: Tenant, role: str) -> User:
    """Make a user, or add a membership to an existing one (password unchanged)."""
    email = normalise_email(email)
    if "@" not in email or len(email) > 254:
        raise ValueError(f"{email!r} is not an email address")
    if role not in ROLE_SCOPES:
        raise ValueError(f"role is one of {', '.join(ROLE_SCOPES)}")
    password_hash = None
    if find_user(email) is None:
        if len(password) < MIN_PASSWORD:
            raise ValueError(f"a password has at least {MIN_PASSWORD} characters")
        password_hash = generate_password_hash(password)
    return accounts.add_member(email, password_hash, tenant.id, role)


def find_user(email: str) -> User | None:
    return accounts.find_user(normalise_email(email))


def check_password(email: str, password: str) -> User | None:
    """The user these credentials belong to, or None (in constant-ish time)."""
    user = find_user(email)
    if user is None:
        check_password_hash(_UNKNOWN_USER_HASH, password)
        return None
    return user if check_password_hash(user.password_hash, password) else None


def sign_in(user: User, tenant_id: int | None = None) -> bool:
    """Start a fresh session for the user, in `tenant_id` or their first tenant."""
    tenants = accounts.memberships_of(user.id)
    chosen = next((t for t in tenants if tenant_id in (None, t[0])), None)
    if chosen is None:
        return False
    session.clear()  # a new session id's worth: nothing of the old one survives
    session["user_id"] = user.id
    session["tenant_id"] = chosen[0]
    session["session_version"] = user.session_version or 0
    session.permanent = True
    accounts.signed_in(user)
    return True


def switch_tenant(principal: Principal, tenant_id: int) -> bool:
    if not any(t[0] == tenant_id for t in accounts.memberships_of(principal.user_id)):
        return False
    session["tenant_id"] = tenant_id
    return True


def sign_out() -> None:
    """End the session, and every copy of its cookie: the user's session
    version moves on, which ends their sessions in every browser (one
    version per user; there is no table of sessions)."""
    user_id = session.get("user_id")
    session.clear()
    if user_id:
        accounts.end_sessions(user_id)


def session_principal() -> Principal | None:
    """The signed-in user's principal, checked against the database each
    request so a removed membership takes effect at once."""
    user_id, tenant_id = session.get("user_id"), session.get("tenant_id")
    if not user_id or not tenant_id:
        return None
    row = accounts.membership(user_id, tenant_id)
    if row is None or row[3] != session.get("session_version"):
        session.clear()  # not a member any more, or signed out since this session began
        return None
    role, slug, email, _ = row
    return Principal(tenant_id, slug, ROLE_SCOPES[role], user_id=user_id, user_email=email, role=role)


def web_principal() -> Principal:
    """The principal of a dashboard request: everyone is the default tenant
    in local mode; otherwise the signed-in user in their current tenant.
    Looked up once per request: a page, its header and its partials ask."""
    if "web_principal" not in g:
        principal = local_principal() if current_app.config.get("LOCAL_MODE") else session_principal()
        if principal is None:
            raise SignInRequired()
        g.web_principal = principal
    return g.web_principal


def still_allowed(principal: Principal) -> Callable[[], bool]:
    """For a stream that outlives its handshake: a check that the principal
    still holds, asked now and then by the stream loop. A session ends with
    a sign-out (its version moves on) or a removed membership; a token when
    it is revoked (seen within the token cache's few seconds)."""
    if principal.local:
        return lambda: True
    if principal.token_id is not None:
        secret = bearer_secret()  # a token principal comes from this request's bearer secret
        return lambda: principal_for_token(secret) is not None
    user_id, version = principal.user_id, session.get("session_version")

    def signed_in() -> bool:
        row = accounts.membership(user_id, principal.tenant_id)
        return row is not None and row[3] == version

    return signed_in


def require_admin(principal: Principal) -> None:
    if not principal.can("admin"):
        abort(403, "Only a tenant admin can do this.")


def allowed_origins() -> set[str]:
    """This host (as the browser addressed it) plus ALLOWED_ORIGINS."""
    return {request.host_url.rstrip("/"), *current_app.config.get("ALLOWED_ORIGINS", [])}


def check_origin() -> None:
    """Refuse a cross-site WebSocket or stream: browsers always send Origin,
    and a page of another site must not ride on our user's cookies."""
    origin = request.headers.get("Origin")
    if origin is not None and origin.rstrip("/") not in allowed_origins():
        abort(403, f"Origin {origin!r} is not allowed.")


def require(scope: str):
    """Decorator for API views: authenticate, check the scope, set `g.principal`."""

    def decorator(view):
        @wraps(view)
        def wrapper(*args, **kwargs):
            principal = authenticate_api()
            if not principal.can(scope):
                raise ApiError(403, "insufficient_scope", f"This token lacks the `{scope}` scope.",
                               [{"field": "scope", "message": f"needs {scope}"}])
            g.principal = principal
            return view(*args, **kwargs)

        return wrapper

    return decorator
