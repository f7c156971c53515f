"""The dashboard: server-rendered pages, the partials htmx swaps, the feed socket."""
from flask import Blueprint

bp = Blueprint("web", __name__)

from . import claude_sessions, context, conversations, reading, rules, saved_views, stats, views  # noqa: E402,F401  (routes register on import)
from .sockets import bp as sockets_bp  # noqa: E402,F401
