"""Saved views: a reader's named filters, and one-time reveals of new token secrets."""
from __future__ import annotations

import hashlib
import secrets
from datetime import timedelta

import sqlalchemy as sa

from ..extensions import db
from ..models import SavedView, TokenReveal, utcnow

# A reader keeps at most this many views (the sidebar stays a list, not a database).
MAX_SAVED_VIEWS = 50
# How long a new token's secret waits for the page that shows it.
REVEAL_SECONDS = 300

views = SavedView.__table__
reveals = TokenReveal.__table__


def saved_views_max() -> int:
    return MAX_SAVED_VIEWS


def saved_views(tenant_id: int, reader: str) -> list[dict]:
    rows = db.session.execute(
        sa.select(views.c.id, views.c.name, views.c.query)
        .where(views.c.tenant_id == tenant_id, views.c.reader == reader).order_by(views.c.name, views.c.id)
    ).mappings()
    return [dict(r) for r in rows]


def save_view(tenant_id: int, reader: str, name: str, query: str) -> int | None:
    """Save (or, by the same name, replace) a view; None when the reader has MAX_SAVED_VIEWS others."""
    existing = db.session.execute(
        sa.select(views.c.id).where(views.c.tenant_id == tenant_id, views.c.reader == reader, views.c.name == name)
    ).scalar()
    if existing is not None:
        db.session.execute(sa.update(views).where(views.c.id == existing).values(query=query, created_at=utcnow()))
        db.session.commit()
        return existing
    count = db.session.execute(
        sa.select(sa.func.count()).select_from(views).where(views.c.tenant_id == tenant_id, views.c.reader == reader)
    ).scalar_one()
    if count >= MAX_SAVED_VIEWS:
        return None
    view_id = db.session.execute(sa.insert(views).values(
        tenant_id=tenant_id, reader=reader, name=name, query=query, created_at=utcnow())).inserted_primary_key[0]
    db.session.commit()
    return view_id


def delete_view(tenant_id: int, reader: str, view_id: int) -> bool:
    deleted = db.session.execute(sa.delete(views).where(
        views.c.id == view_id, views.c.tenant_id == tenant_id, views.c.reader == reader)).rowcount
    db.session.commit()
    return bool(deleted)


def _key_hash(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def hold_secret(tenant_id: int, token_id: int, secret: str) -> str:
    """Keep a new token's secret for one showing; returns the random key that fetches it."""
    key = secrets.token_urlsafe(24)
    now = utcnow()
    db.session.execute(sa.delete(reveals).where(reveals.c.expires_at < now))  # what nobody came back for
    db.session.execute(sa.insert(reveals).values(key_hash=_key_hash(key), tenant_id=tenant_id, token_id=token_id,
                                                 secret=secret, expires_at=now + timedelta(seconds=REVEAL_SECONDS)))
    db.session.commit()
    return key


def take_secret(tenant_id: int, key: str) -> tuple[int, str] | None:
    """The held (token id, secret) for `key`, deleted as it is read: it shows once."""
    condition = sa.and_(reveals.c.key_hash == _key_hash(key), reveals.c.tenant_id == tenant_id)
    row = db.session.execute(sa.select(reveals.c.token_id, reveals.c.secret, reveals.c.expires_at).where(condition)).first()
    if row is None:
        return None
    deleted = db.session.execute(sa.delete(reveals).where(condition)).rowcount
    db.session.commit()
    if not deleted or row.expires_at < utcnow():
        return None  # another request took it first, or it waited too long
    return row.token_id, row.secret
