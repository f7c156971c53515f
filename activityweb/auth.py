"""Credentials and tenant scoping.

The tenant of every request comes from its credential (an API token here),
never from the body or the query string.
"""
from __future__ import annotations

import hashlib
import re
import secrets
import threading
import time
from dataclasses import dataclass
from datetime import timedelta
from functools import wraps

import sqlalchemy as sa
from flask import abort, current_app, g, request, session
from werkzeug.security import check_password_hash, generate_password_hash

from .extensions import db
from .models import ApiToken, Membership, Tenant, User, utcnow
from .errors import ApiError, SignInRequired

SCOPES = ("ingest", "read", "admin")
TOKEN_PREFIX = "aw_"
DEFAULT_TENANT = "default"
# Writing last_used_at on every call would turn each read into a write.
LAST_USED_GRANULARITY = timedelta(minutes=1)
_SLUG = re.compile(r"^[a-z0-9][a-z0-9-]{0,62}$")


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


# ----------------------------------------------------------------- tenants


def get_or_create_tenant(slug: str, name: str | None = None) -> Tenant:
    tenant = db.session.execute(sa.select(Tenant).where(Tenant.slug == slug)).scalar_one_or_none()
    if tenant is None:
        tenant = create_tenant(slug, name)
    return tenant


def create_tenant(slug: str, name: str | None = None) -> Tenant:
    if not _SLUG.match(slug):
        raise ValueError("a tenant slug is lower-case letters, digits and dashes, at most 63 characters")
    tenant = Tenant(slug=slug, name=name or slug)
    db.session.add(tenant)
    db.session.commit()
    return tenant


def tenant_by_id(tenant_id: int) -> Tenant:
    return db.session.get(Tenant, tenant_id)


def find_tenant(slug: str) -> Tenant | None:
    return db.session.execute(sa.select(Tenant).where(Tenant.slug == slug)).scalar_one_or_none()


def list_tenants() -> list[Tenant]:
    return list(db.session.execute(sa.select(Tenant).order_by(Tenant.slug)).scalars())


# ------------------------------------------------------------------ tokens


def hash_token(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def create_token(tenant: Tenant, name: str, scopes: list[str]) -> tuple[ApiToken, str]:
    """Make a token; returns it and the secret, which is not stored and cannot be shown again."""
    unknown = [s for s in scopes if s not in SCOPES]
    if unknown or not scopes:
        raise ValueError(f"scopes are one or more of {', '.join(SCOPES)}; got {', '.join(scopes) or 'none'}")
    secret = TOKEN_PREFIX + secrets.token_urlsafe(32)
    token = ApiToken(
        tenant_id=tenant.id,
        name=name,
        prefix=secret[: len(TOKEN_PREFIX) + 6],
        token_hash=hash_token(secret),
        scopes=" ".join(dict.fromkeys(scopes)),
    )
    db.session.add(token)
    db.session.commit()
    return token, secret


def list_tokens(tenant_id: int | None = None) -> list[ApiToken]:
    query = sa.select(ApiToken).order_by(ApiToken.created_at, ApiToken.id)
    if tenant_id is not None:
        query = query.where(ApiToken.tenant_id == tenant_id)
    return list(db.session.execute(query).scalars())


def revoke_token(token_id: int, tenant_id: int | None = None) -> ApiToken | None:
    query = sa.select(ApiToken).where(ApiToken.id == token_id)
    if tenant_id is not None:
        query = query.where(ApiToken.tenant_id == tenant_id)
    token = db.session.execute(query).scalar_one_or_none()
    if token is not None and token.revoked_at is None:
        token.revoked_at = utcnow()
        db.session.commit()
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
    row = db.session.execute(
        sa.select(ApiToken.id, ApiToken.tenant_id, ApiToken.scopes, ApiToken.revoked_at,
                  ApiToken.last_used_at, Tenant.slug)
        .join(Tenant, Tenant.id == ApiToken.tenant_id)
        .where(ApiToken.token_hash == token_hash)
    ).first()
    principal = None
    if row is not None and row.revoked_at is None:
        now = utcnow()
        if row.last_used_at is None or now - row.last_used_at > LAST_USED_GRANULARITY:
            db.session.execute(sa.update(ApiToken).where(ApiToken.id == row.id).values(last_used_at=now))
            db.session.commit()
        principal = Principal(row.tenant_id, row.slug, frozenset(row.scopes.split()), token_id=row.id)
    with _token_cache_lock:
        if len(_token_cache) > 10_000:  # unknown tokens must not grow this without bound
            _token_cache.clear()
        _token_cache[token_hash] = (now_mono + TOKEN_CACHE_SECONDS, principal)
    return principal


def local_principal() -> Principal:
    tenant = get_or_create_tenant(DEFAULT_TENANT, "Default")
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
    user = find_user(email)
    if user is None:
        if len(password) < MIN_PASSWORD:
            raise ValueError(f"a password has at least {MIN_PASSWORD} characters")
        user = User(email=email, password_hash=generate_password_hash(password))
        db.session.add(user)
        db.session.flush()
    membership = db.session.execute(
        sa.select(Membership).where(Membership.user_id == user.id, Membership.tenant_id == tenant.id)
    ).scalar_one_or_none()
    if membership is None:
        db.session.add(Membership(user_id=user.id, tenant_id=tenant.id, role=role))
    else:
        membership.role = role
    db.session.commit()
    return user


def find_user(email: str) -> User | None:
    return db.session.execute(sa.select(User).where(User.email == normalise_email(email))).scalar_one_or_none()


def check_password(email: str, password: str) -> User | None:
    """The user these credentials belong to, or None (in constant-ish time)."""
    user = find_user(email)
    if user is None:
        check_password_hash(_UNKNOWN_USER_HASH, password)
        return None
    return user if check_password_hash(user.password_hash, password) else None


def memberships_of(user_id: int) -> list[tuple[int, str, str]]:
    """(tenant id, tenant slug, role) of each tenant the user belongs to, by slug."""
    rows = db.session.execute(
        sa.select(Membership.tenant_id, Tenant.slug, Membership.role)
        .join(Tenant, Tenant.id == Membership.tenant_id)
        .where(Membership.user_id == user_id)
        .order_by(Tenant.slug)
    )
    return [tuple(r) for r in rows]


def sign_in(user: User, tenant_id: int | None = None) -> bool:
    """Start a fresh session for the user, in `tenant_id` or their first tenant."""
    tenants = memberships_of(user.id)
    chosen = next((t for t in tenants if tenant_id in (None, t[0])), None)
    if chosen is None:
        return False
    session.clear()  # a new session id's worth: nothing of the old one survives
    session["user_id"] = user.id
    session["tenant_id"] = chosen[0]
    session.permanent = True
    user.last_login_at = utcnow()
    db.session.commit()
    return True


def switch_tenant(principal: Principal, tenant_id: int) -> bool:
    if not any(t[0] == tenant_id for t in memberships_of(principal.user_id)):
        return False
    session["tenant_id"] = tenant_id
    return True


def sign_out() -> None:
    session.clear()


def session_principal() -> Principal | None:
    """The signed-in user's principal, checked against the database each
    request so a removed membership takes effect at once."""
    user_id, tenant_id = session.get("user_id"), session.get("tenant_id")
    if not user_id or not tenant_id:
        return None
    row = db.session.execute(
        sa.select(Membership.role, Tenant.slug, User.email)
        .join(Tenant, Tenant.id == Membership.tenant_id)
        .join(User, User.id == Membership.user_id)
        .where(Membership.user_id == user_id, Membership.tenant_id == tenant_id)
    ).first()
    if row is None:
        session.clear()
        return None
    role, slug, email = row
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
