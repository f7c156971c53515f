"""Liveness and readiness for load balancers and orchestrators."""
from __future__ import annotations

from functools import lru_cache

from flask import Blueprint, current_app, jsonify

from . import store

bp = Blueprint("health", __name__)


@lru_cache(maxsize=4)
def migration_heads(directory: str) -> frozenset[str]:
    from alembic.config import Config
    from alembic.script import ScriptDirectory

    config = Config()
    config.set_main_option("script_location", directory)
    return frozenset(ScriptDirectory.from_config(config).get_heads())


def readiness() -> tuple[bool, str]:
    """Whether the database answers and carries the newest migration."""
    try:
        current = store.applied_migrations()
    except Exception as exc:  # unreachable, or never migrated
        return False, f"database not ready: {type(exc).__name__}"
    heads = migration_heads(current_app.extensions["migrate"].directory)
    if current != heads:
        return False, "migrations pending: run `flask db upgrade`"
    return True, "ok"


@bp.get("/healthz")
def healthz():
    return jsonify({"status": "ok"})


@bp.get("/readyz")
def readyz():
    ready, status = readiness()
    return jsonify({"status": status}), 200 if ready else 503
