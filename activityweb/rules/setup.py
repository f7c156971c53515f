"""Binding rules to the app: settings, the CLI group, the in-process worker."""
from __future__ import annotations

import os

from ..config import env_bool, env_int


def settings() -> dict:
    """Rules' settings from the environment (each overridable in create_app's config)."""
    allow = os.environ.get("ACTIVITYWEB_RULES_EGRESS_ALLOW", "")
    return {
        # Hosts, addresses or networks (comma separated) rule URLs may reach
        # although they are not public: the SSRF guard's operator allow-list.
        "RULES_EGRESS_ALLOW": [a.strip() for a in allow.split(",") if a.strip()],
        "RULES_RETRY_BASE": float(os.environ.get("ACTIVITYWEB_RULES_RETRY_BASE", "2")),
        "RULES_RETRY_CAP": float(os.environ.get("ACTIVITYWEB_RULES_RETRY_CAP", "600")),
        "RULES_MAX_ATTEMPTS": env_int("ACTIVITYWEB_RULES_MAX_ATTEMPTS", 20),
        "RULES_PAUSE_AFTER": env_int("ACTIVITYWEB_RULES_PAUSE_AFTER", 10),
        "RULES_PAUSE_AFTER_SECONDS": float(os.environ.get("ACTIVITYWEB_RULES_PAUSE_AFTER_SECONDS", "3600")),
        # Settled firings (and their delivery log) are kept this long.
        "RULES_KEEP_DAYS": env_int("ACTIVITYWEB_RULES_KEEP_DAYS", 30),
        # `make run` delivers from a thread of the server; elsewhere run `flask rules worker`.
        "RULES_WORKER_THREAD": env_bool("ACTIVITYWEB_RULES_WORKER_THREAD"),
        "RULES_LINK_BASE": os.environ.get("ACTIVITYWEB_RULES_LINK_BASE", "http://127.0.0.1:5000"),
        # Email channels appear only when an SMTP server is configured.
        "SMTP_HOST": os.environ.get("ACTIVITYWEB_SMTP_HOST") or None,
        "SMTP_PORT": env_int("ACTIVITYWEB_SMTP_PORT", 25),
        "SMTP_FROM": os.environ.get("ACTIVITYWEB_SMTP_FROM") or None,
        "SMTP_USER": os.environ.get("ACTIVITYWEB_SMTP_USER") or None,
        "SMTP_PASSWORD": os.environ.get("ACTIVITYWEB_SMTP_PASSWORD") or None,
        "SMTP_STARTTLS": env_bool("ACTIVITYWEB_SMTP_STARTTLS"),
    }


def init_app(app) -> None:
    for key, value in settings().items():
        app.config.setdefault(key, value)
    from .cli import rules_group

    app.cli.add_command(rules_group)
    if app.config["RULES_WORKER_THREAD"]:
        from .worker import Worker

        app.extensions["activityweb.rules_worker"] = Worker(app, poll_seconds=0.25).start()


def wake_worker(app) -> None:
    """Tell this process's worker thread (if any) that something was written to the outbox."""
    worker = app.extensions.get("activityweb.rules_worker")
    if worker is not None:
        worker.wake.set()
