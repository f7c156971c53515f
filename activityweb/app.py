"""`create_app`: the app with its extensions, blueprints, CLI commands and error handlers."""
from __future__ import annotations

import logging
import secrets

from flask import Flask
from werkzeug.middleware.proxy_fix import ProxyFix
from werkzeug.routing import IntegerConverter

from . import live, security, store
from .api import bp as api_bp
from .api.streams import ws_bp as activity_socket_bp
from .cli import register_commands
from .config import INSTANCE_DIR, PROJECT_ROOT, check_production, from_env, is_production
from .errors import register_error_handlers
from .extensions import db, migrate, sock
from .rules import setup as rules_setup
from .health import bp as health_bp
from .web import bp as web_bp
from .web import present
from .web.account import bp as account_bp
from .web.insight_sockets import bp as insight_socket_bp
from .web.session_sockets import bp as session_socket_bp
from .web.sockets import bp as feed_socket_bp


def _dev_secret_key() -> str:
    """A per-checkout key for development, kept on disk so every worker shares it."""
    INSTANCE_DIR.mkdir(exist_ok=True)
    path = INSTANCE_DIR / "secret_key"
    if not path.exists():
        path.write_text(secrets.token_urlsafe(48))
        path.chmod(0o600)
    return path.read_text().strip()


class RowId(IntegerConverter):
    """`<id:name>`: a row id in a URL. A number past PostgreSQL's INTEGER is
    no row of ours, so it matches no route (404) instead of overflowing the query."""

    def __init__(self, url_map):
        super().__init__(url_map, min=0, max=2**31 - 1)


def create_app(config: dict | None = None) -> Flask:
    app = Flask(
        "activityweb",
        instance_path=str(INSTANCE_DIR),
        template_folder=str(PROJECT_ROOT / "templates"),
        static_folder=str(PROJECT_ROOT / "static"),
    )
    app.config.update(from_env())
    if config:
        app.config.update(config)
    check_production(app.config)
    if app.config.get("SESSION_COOKIE_SECURE") is None:
        app.config["SESSION_COOKIE_SECURE"] = is_production(app.config)
    if not app.config.get("SECRET_KEY"):
        app.config["SECRET_KEY"] = _dev_secret_key()
    # Pings every 25 s keep idle sockets through proxies and find dead peers.
    app.config.setdefault("SOCK_SERVER_OPTIONS", {"ping_interval": 25})
    app.json.sort_keys = False
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")

    store.init_app(app)
    migrate.init_app(app, db, directory=str(PROJECT_ROOT / "migrations"))
    sock.init_app(app)
    live.init_app(app)

    # Before the blueprints: their routes bind converters when they register.
    app.url_map.converters["id"] = RowId
    app.register_blueprint(api_bp)
    app.register_blueprint(activity_socket_bp)
    app.register_blueprint(health_bp)
    app.register_blueprint(web_bp)
    app.register_blueprint(feed_socket_bp)
    app.register_blueprint(insight_socket_bp)
    app.register_blueprint(session_socket_bp)
    app.register_blueprint(account_bp)
    present.register(app)
    security.init_app(app, api_bp, [activity_socket_bp, feed_socket_bp])
    if app.config.get("TRUSTED_PROXIES"):
        hops = app.config["TRUSTED_PROXIES"]
        app.wsgi_app = ProxyFix(app.wsgi_app, x_for=hops, x_proto=hops, x_host=hops)
    register_error_handlers(app)
    register_commands(app)
    rules_setup.init_app(app)
    return app
