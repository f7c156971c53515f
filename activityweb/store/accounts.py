"""Accounts: tenants, API tokens, users and their memberships, integration secrets.

The rows only: what a credential is worth (hashing, principals, signature
checks) is decided in `auth.py` and `integrations/signing.py`, which call these.
"""
from __future__ import annotations

import re
from datetime import datetime

import sqlalchemy as sa

from ..extensions import db
from ..models import ApiToken, IntegrationSecret, Membership, Tenant, User, utcnow

_SLUG = re.compile(r"^[a-z0-9][a-z0-9-]{0,62}$")

# ------------------------------------------------------------------ tenants


def find_tenant(slug: str) -> Tenant | None:
    return db.session.execute(sa.select(Tenant).where(Tenant.slug == slug)).scalar_one_or_none()


def create_tenant(slug: str, name: str | None = None) -> Tenant:
    if not _SLUG.match(slug):
        raise ValueError("a tenant slug is lower-case letters, digits and dashes, at most 63 characters")
    tenant = Tenant(slug=slug, name=name or slug)
    db.session.add(tenant)
    db.session.commit()
    return tenant


def get_or_create_tenant(slug: str, name: str | None = None) -> Tenant:
    return find_tenant(slug) or create_tenant(slug, name)


def tenant_by_id(tenant_id: int) -> Tenant:
    return db.session.get(Tenant, tenant_id)


def list_tenants() -> list[Tenant]:
    return list(db.session.execute(sa.select(Tenant).order_by(Tenant.slug)).scalars())


# ------------------------------------------------------------------- tokens


def add_token(tenant_id: int, name: str, prefix: str, token_hash: str, scopes: list[str]) -> ApiToken:
    token = ApiToken(tenant_id=tenant_id, name=name, prefix=prefix, token_hash=token_hash, scopes=" ".join(scopes))
    db.session.add(token)
    db.session.commit()
    return token


def list_tokens(tenant_id: int | None = None) -> list[ApiToken]:
    query = sa.select(ApiToken).order_by(ApiToken.created_at, ApiToken.id)
    if tenant_id is not None:
        query = query.where(ApiToken.tenant_id == tenant_id)
    return list(db.session.execute(query).scalars())


def revoke_token(token_id: int, tenant_id: int | None = None) -> ApiToken | None:
    """Revoke a token (of `tenant_id`, if given); returns it, or None if there is no such token."""
    query = sa.select(ApiToken).where(ApiToken.id == token_id)
    if tenant_id is not None:
        query = query.where(ApiToken.tenant_id == tenant_id)
    token = db.session.execute(query).scalar_one_or_none()
    if token is not None and token.revoked_at is None:
        token.revoked_at = utcnow()
        db.session.commit()
    return token


def token_by_hash(token_hash: str):
    """The token with this hash and its tenant's slug (a row: id, tenant_id,
    scopes, revoked_at, last_used_at, slug), or None."""
    return db.session.execute(
        sa.select(ApiToken.id, ApiToken.tenant_id, ApiToken.scopes, ApiToken.revoked_at,
                  ApiToken.last_used_at, Tenant.slug)
        .join(Tenant, Tenant.id == ApiToken.tenant_id)
        .where(ApiToken.token_hash == token_hash)
    ).first()


def token_used(token_id: int, when: datetime) -> None:
    db.session.execute(sa.update(ApiToken).where(ApiToken.id == token_id).values(last_used_at=when))
    db.session.commit()


# -------------------------------------------------------------------- people


def find_user(email: str) -> User | None:
    """The user with this (already normalised) email."""
    return db.session.execute(sa.select(User).where(User.email == email)).scalar_one_or_none()


def add_member(email: str, password_hash: str | None, tenant_id: int, role: str) -> User:
    """Give the user `role` in the tenant, making the user first (with
    `password_hash`) if there is none with this email; one transaction."""
    user = find_user(email)
    if user is None:
        user = User(email=email, password_hash=password_hash)
        db.session.add(user)
        db.session.flush()
    membership = db.session.execute(
        sa.select(Membership).where(Membership.user_id == user.id, Membership.tenant_id == tenant_id)
    ).scalar_one_or_none()
    if membership is None:
        db.session.add(Membership(user_id=user.id, tenant_id=tenant_id, role=role))
    else:
        membership.role = role
    db.session.commit()
    return user


def memberships_of(user_id: int) -> list[tuple[int, str, str]]:
    """(tenant id, tenant slug, role) of each tenant the user belongs to, by slug."""
    rows = db.session.execute(
        sa.select(Membership.tenant_id, Tenant.slug, Membership.role)
        .join(Tenant, Tenant.id == Membership.tenant_id)
        .where(Membership.user_id == user_id)
        .order_by(Tenant.slug)
    )
    return [tuple(r) for r in rows]


def membership(user_id: int, tenant_id: int) -> tuple[str, str, str, int] | None:
    """(role, tenant slug, email, session version) of the user in the tenant, or None if not a member."""
    row = db.session.execute(
        sa.select(Membership.role, Tenant.slug, User.email, User.session_version)
        .join(Tenant, Tenant.id == Membership.tenant_id)
        .join(User, User.id == Membership.user_id)
        .where(Membership.user_id == user_id, Membership.tenant_id == tenant_id)
    ).first()
    return tuple(row) if row else None


def signed_in(user: User) -> None:
    user.last_login_at = utcnow()
    db.session.commit()


def end_sessions(user_id: int) -> None:
    """Increment the user's session version: every session begun before ends."""
    db.session.execute(sa.update(User).where(User.id == user_id)
                       .values(session_version=User.session_version + 1))
    db.session.commit()


# ------------------------------------------------------- integration secrets


def secret_holders(integration: str, name: str = ""):
    """Rows (secret, tenant id, tenant slug) of every tenant with a secret for
    this integration (and webhook name), oldest first."""
    return db.session.execute(
        sa.select(IntegrationSecret.secret, Tenant.id, Tenant.slug)
        .join(Tenant, Tenant.id == IntegrationSecret.tenant_id)
        .where(IntegrationSecret.integration == integration, IntegrationSecret.name == name)
        .order_by(IntegrationSecret.id)
    ).all()


def save_secret(tenant_id: int, integration: str, name: str, secret: str) -> None:
    """Store or replace the tenant's secret for an integration."""
    row = db.session.execute(
        sa.select(IntegrationSecret).where(
            IntegrationSecret.tenant_id == tenant_id,
            IntegrationSecret.integration == integration,
            IntegrationSecret.name == name,
        )
    ).scalar_one_or_none()
    if row is None:
        db.session.add(IntegrationSecret(tenant_id=tenant_id, integration=integration, name=name, secret=secret))
    else:
        row.secret, row.created_at = secret, utcnow()
    db.session.commit()


def list_secrets(tenant_id: int | None = None) -> list[IntegrationSecret]:
    query = sa.select(IntegrationSecret).order_by(IntegrationSecret.tenant_id, IntegrationSecret.integration,
                                                  IntegrationSecret.name)
    if tenant_id is not None:
        query = query.where(IntegrationSecret.tenant_id == tenant_id)
    return list(db.session.execute(query).scalars())
