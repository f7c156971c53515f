"""Settings, read from the environment once per app.

Everything has a safe default for local development; production
(`ACTIVITYWEB_ENV=production`) refuses the unsafe ones (see `check_production`).
"""
from __future__ import annotations

import os
import re
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


def env_patterns(name: str) -> list[str]:
    """Regular expressions, one a line; a bad one stops the app at start, not at first use."""
    patterns = [line.strip() for line in os.environ.get(name, "").splitlines() if line.strip()]
    for pattern in patterns:
        try:
            re.compile(pattern)
        except re.error as exc:
            raise ConfigError(f"{name}: {pattern!r} is not a valid regular expression ({exc})") from None
    return patterns


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


ENVIRONMENTS = ("development", "production")
# HMAC-signed sessions are only as strong as their key.
MIN_SECRET_KEY = 32
LOOPBACK_HOSTS = ("localhost", "127.0.0.1", "[::1]")


def env_name() -> str:
    """ACTIVITYWEB_ENV, in any case; anything but a known name stops the app, so
    `prod` or a typo cannot start production with development's defaults."""
    raw = os.environ.get("ACTIVITYWEB_ENV", "").strip().lower() or "development"
    if raw not in ENVIRONMENTS:
        raise ConfigError(f"ACTIVITYWEB_ENV is one of {', '.join(ENVIRONMENTS)} (any case), not {raw!r}; "
                          "refusing to start.")
    return raw


def env_list(name: str, default: tuple[str, ...] = ()) -> list[str]:
    value = os.environ.get(name)
    if value is None or not value.strip():
        return list(default)
    return [item.strip().lower() for item in value.split(",") if item.strip()]


def is_production(config) -> bool:
    return str(config.get("ENV_NAME") or "").strip().lower() == "production"


def from_env() -> dict:
    """The settings of this process, as a plain dict `create_app` can override."""
    env = env_name()
    return {
        "ENV_NAME": env,
        "SECRET_KEY": os.environ.get("SECRET_KEY"),
        "SQLALCHEMY_DATABASE_URI": database_uri(os.environ.get("DATABASE_URL")),
        # Local mode: requests without credentials act as the `default`
        # tenant. Only `make run` turns it on.
        "LOCAL_MODE": env_bool("ACTIVITYWEB_LOCAL_MODE"),
        "MAX_CONTENT_LENGTH": 1024 * 1024,
        "MAX_BATCH": 1000,
        # Events queued for one live client before it counts as fallen behind.
        "LIVE_MAX_PENDING": env_int("ACTIVITYWEB_LIVE_MAX_PENDING", 2000),
        # How long such a client may then take to drain a blocked write before it is cut off.
        "LIVE_STUCK_SECONDS": 10.0,
        # How often an open live stream checks that its sign-in or token still
        # holds: a sign-out, a revoked token or a removed membership ends it.
        "LIVE_RECHECK_SECONDS": env_int("ACTIVITYWEB_LIVE_RECHECK_SECONDS", 15),
        # Host names this server answers to (a DNS-rebinding page reaches us
        # under its own name); the host of ACTIVITYWEB_PUBLIC_URL is added.
        "ALLOWED_HOSTS": env_list("ALLOWED_HOSTS", LOOPBACK_HOSTS),
        "ALLOWED_ORIGINS": [
            o.strip() for o in os.environ.get("ALLOWED_ORIGINS", "").split(",") if o.strip()
        ],
        "SQLALCHEMY_ENGINE_OPTIONS": {},
        # Sessions: the cookie is HttpOnly and SameSite=Lax always, Secure in production.
        "SESSION_COOKIE_HTTPONLY": True,
        "SESSION_COOKIE_SAMESITE": "Lax",
        # None: Secure exactly when the app is production (create_app decides,
        # after overrides); set it to force either way.
        "SESSION_COOKIE_SECURE": None,
        "PERMANENT_SESSION_LIFETIME": env_int("ACTIVITYWEB_SESSION_DAYS", 14) * 86400,
        # A dashboard tab stays open for days: its CSRF token lives as long as the session.
        "WTF_CSRF_TIME_LIMIT": None,
        # Rate limits (Flask-Limiter syntax). Memory storage is per process;
        # point RATELIMIT_STORAGE_URI at Redis to share counts between workers.
        "RATELIMIT_STORAGE_URI": os.environ.get("RATELIMIT_STORAGE_URI", "memory://"),
        "RATELIMIT_API": os.environ.get("RATELIMIT_API", "120000 per minute"),
        # Sign-in: per address and account, per address, per account (security.py).
        "RATELIMIT_LOGIN": os.environ.get("RATELIMIT_LOGIN", "10 per minute"),
        "RATELIMIT_LOGIN_ADDRESS": os.environ.get("RATELIMIT_LOGIN_ADDRESS", "30 per minute"),
        "RATELIMIT_LOGIN_ACCOUNT": os.environ.get("RATELIMIT_LOGIN_ACCOUNT", "20 per minute"),
        # Behind a reverse proxy, how many X-Forwarded-* hops to trust for the client address.
        "TRUSTED_PROXIES": env_int("ACTIVITYWEB_TRUSTED_PROXIES", 0),
        # Claude Code hooks: tool inputs, tool responses, prompts and other
        # long fields are cut to this many characters before storage.
        "CLAUDE_CODE_MAX_FIELD_CHARS": env_int("ACTIVITYWEB_CLAUDE_CODE_MAX_FIELD_CHARS", 2000),
        # Hooks post whole tool responses, which are cut before storage, so
        # their endpoint takes bodies beyond MAX_CONTENT_LENGTH.
        "CLAUDE_CODE_MAX_BODY": env_int("ACTIVITYWEB_CLAUDE_CODE_MAX_BODY", 8 * 1024 * 1024),
        # An OTLP export, on the wire and once inflated.
        "OTLP_MAX_BODY": env_int("ACTIVITYWEB_OTLP_MAX_BODY", 8 * 1024 * 1024),
        # Secret patterns masked before storage, on top of the built-in ones
        # (integrations/redact.py): regular expressions, one a line.
        "REDACT_PATTERNS": env_patterns("ACTIVITYWEB_REDACT_PATTERNS"),
        # This server's public base URL (https://host) when a proxy sits in
        # front: HubSpot signs the URL it called, which we must rebuild.
        "PUBLIC_URL": os.environ.get("ACTIVITYWEB_PUBLIC_URL", "").rstrip("/") or None,
    }


def check_production(config: dict) -> None:
    """Refuse to run production with settings that would make it unsafe."""
    if not is_production(config):
        return
    key = config.get("SECRET_KEY") or ""
    if len(key) < MIN_SECRET_KEY:
        raise ConfigError(
            f"ACTIVITYWEB_ENV=production needs SECRET_KEY set to a random value of at least {MIN_SECRET_KEY} "
            "characters; refusing to start."
        )
    if config.get("LOCAL_MODE"):
        raise ConfigError(
            "ACTIVITYWEB_LOCAL_MODE lets anyone act as the default tenant; refusing to start in production."
        )
    if list(config.get("ALLOWED_HOSTS") or []) == list(LOOPBACK_HOSTS) and not config.get("PUBLIC_URL"):
        raise ConfigError(
            "ACTIVITYWEB_ENV=production needs ALLOWED_HOSTS (the host names it serves) or ACTIVITYWEB_PUBLIC_URL; "
            "every other host is refused; refusing to start."
        )


def check_local_bind(config: dict, bind) -> None:
    """Local mode lets anyone who reaches the server act as the default tenant:
    refuse to serve it on anything but loopback."""
    if not config.get("LOCAL_MODE"):
        return
    for address in [bind] if isinstance(bind, str) else list(bind or []):
        host = address.rsplit(":", 1)[0] if not address.startswith("[") else address[: address.find("]") + 1]
        if host.lower() not in LOOPBACK_HOSTS and not host.startswith("127."):
            raise ConfigError(f"ACTIVITYWEB_LOCAL_MODE serves only loopback; bound to {address!r}; refusing to start.")
