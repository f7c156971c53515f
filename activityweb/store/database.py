"""The database under the store: engine settings, the dialect, the request's connection.

Everything else in `store/` reads and writes through `extensions.db`; this
module sets the engine up and says which database it is.
"""
from __future__ import annotations

import contextlib
import sqlite3

import sqlalchemy as sa

from ..extensions import db


def _sqlite_pragmas(dbapi_connection, _record):
    # WAL lets readers run beside the writer; busy_timeout makes writers queue
    # instead of failing; foreign keys are off by default in SQLite.
    if isinstance(dbapi_connection, sqlite3.Connection):
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute("PRAGMA busy_timeout=30000")
        cursor.close()


def _engine_options(uri: str) -> dict:
    if uri.startswith("sqlite"):
        return {"connect_args": {"timeout": 30}}
    # A database host that drops packets must cost a request seconds, not the
    # kernel's minutes of SYN retries: the request then answers 503 (errors.py).
    return {"pool_size": 10, "max_overflow": 20, "pool_recycle": 1800, "connect_args": {"connect_timeout": 5}}


def init_app(app) -> None:
    """Bind the database to the app, with pools sized for it (settings given win)."""
    if not sa.event.contains(sa.engine.Engine, "connect", _sqlite_pragmas):
        sa.event.listen(sa.engine.Engine, "connect", _sqlite_pragmas)
    options = _engine_options(app.config["SQLALCHEMY_DATABASE_URI"])
    options.update(app.config.get("SQLALCHEMY_ENGINE_OPTIONS") or {})
    app.config["SQLALCHEMY_ENGINE_OPTIONS"] = options
    db.init_app(app)


def dialect() -> str:
    return db.engine.dialect.name


@contextlib.contextmanager
def autocommit_connection():
    """A connection of the caller's own, in autocommit: a statement alone is
    its own transaction, one round trip with no BEGIN and COMMIT (or
    ROLLBACK) around it. For the hot paths that run one statement at a time:
    ingest's INSERT, the live follower's page reads."""
    with db.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        yield conn


@contextlib.contextmanager
def pipeline(conn: sa.Connection):
    """psycopg's pipeline on a SQLAlchemy connection (PostgreSQL): statements
    executed on the yielded psycopg connection are sent together and waited
    for once, when the block ends; read their cursors after it.

    On ingest's path a wait costs more than a small statement does. Errors come
    out as SQLAlchemy's, as from `conn.execute`, and a connection found dead is
    invalidated, so a database that is away still answers 503 (errors.py) and
    its connection does not go back to the pool."""
    raw = conn.connection.dbapi_connection
    error = type(raw).Error
    try:
        with raw.pipeline():
            yield raw
    except error as exc:
        gone = conn.dialect.is_disconnect(exc, raw, None)
        if gone:
            conn.invalidate(exc)
        raise sa.exc.DBAPIError.instance(None, None, exc, error, connection_invalidated=gone,
                                         dialect=conn.dialect) from exc


def release() -> None:
    """Give this request's connection back to the pool: a long wait follows
    (a live socket or stream), and an idle socket must not hold a connection."""
    db.session.remove()


def applied_migrations() -> set[str]:
    """The Alembic revisions the database carries; raises if it cannot be read
    (unreachable, or never migrated)."""
    try:
        return set(db.session.execute(sa.text("SELECT version_num FROM alembic_version")).scalars())
    except Exception:
        db.session.rollback()
        raise
