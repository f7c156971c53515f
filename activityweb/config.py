"""Settings, read from the environment once per app.

Everything has a safe default for local development; production
(`ACTIVITYWEB_ENV=production`) refuses the unsafe ones (see `check_production`).
"""
from __future__ import annotations

import os
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parent.parent
INSTANCE_DIR = PROJECT_ROOT / "instance"


class ConfigError(RuntimeError):
    """A setting that makes the app unsafe or unable to start."""


def env_bool(name: str, default: bool = False) -> bool:
    value = os.environ.get(name)
    if value is None or value == "":
        return default
    return value.strip().lower() in {"1", "true", "yes", "on"}


def env_int(name: str, default: int) -> int:
    value = os.environ.get(name)
    return int(value) if value not in (None, "") else default


def database_uri(url: str | None) -> str:
    """Map a `DATABASE_URL` to a SQLAlchemy URI that uses psycopg 3.

    `postgres://` (Heroku style) and bare `postgresql://` would otherwise pick
    psycopg2, which is not installed.
    """
    if not url:
        INSTANCE_DIR.mkdir(exist_ok=True)
        return f"sqlite:///{INSTANCE_DIR / 'activityweb.db'}"
    for prefix in ("postgres://", "postgresql://"):
        if url.startswith(prefix):
            return "postgresql+psycopg://" + url[len(prefix):]
    return url


def from_env() -> dict:
    """The settings of this process, as a plain dict `create_app` can override."""
    env_name = os.environ.get("ACTIVITYWEB_ENV", "development")
    return {
        "ENV_NAME": env_name,
        "SECRET_KEY": os.environ.get("SECRET_KEY"),
        "SQLALCHEMY_DATABASE_URI": database_uri(os.environ.get("DATABASE_URL")),
        # Local mode: requests without credentials act as the `default`
        # tenant. Only `make run` turns it on.
        "LOCAL_MODE": env_bool("ACTIVITYWEB_LOCAL_MODE"),
        "MAX_CONTENT_LENGTH": 1024 * 1024,
        "MAX_BATCH": 1000,
        "ALLOWED_ORIGINS": [
            o.strip() for o in os.environ.get("ALLOWED_ORIGINS", "").split(",") if o.strip()
        ],
        "SQLALCHEMY_ENGINE_OPTIONS": {},
        "JSON_SORT_KEYS": False,
    }


def check_production(config: dict) -> None:
    """Refuse to run production with settings that would make it unsafe."""
    if config.get("ENV_NAME") != "production":
        return
    if not config.get("SECRET_KEY"):
        raise ConfigError(
            "ACTIVITYWEB_ENV=production needs SECRET_KEY set to a long random value; refusing to start."
        )
    if config.get("LOCAL_MODE"):
        raise ConfigError(
            "ACTIVITYWEB_LOCAL_MODE lets anyone act as the default tenant; refusing to start in production."
        )
