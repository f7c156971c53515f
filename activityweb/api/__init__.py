"""The JSON API under /api/v1: what producers post to and programs read from."""
from flask import Blueprint

bp = Blueprint("api", __name__, url_prefix="/api/v1")

from . import activities, openapi, streams  # noqa: E402,F401  (routes register on import)
from . import integrations  # noqa: E402,F401  (producer endpoints: Claude Code hooks, signed webhooks)
