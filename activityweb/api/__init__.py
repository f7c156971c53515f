"""The JSON API under /api/v1: what producers post to and programs read from."""
from flask import Blueprint

bp = Blueprint("api", __name__, url_prefix="/api/v1")

# Every API call counts against its token (or, without one, its address).
# Registered once here: the limiter keeps blueprint limits across apps.
from ..extensions import limiter  # noqa: E402
from ..security import api_limit, credential_key  # noqa: E402

limiter.limit(api_limit, key_func=credential_key)(bp)

from . import activities, conversations, export, openapi, reading, stats, streams  # noqa: E402,F401  (routes register on import)
from . import rules  # noqa: E402,F401  (rules, channels, the test event)
from . import integrations  # noqa: E402,F401  (producer endpoints: Claude Code hooks, signed webhooks)
from . import otlp, sessions, usage  # noqa: E402,F401  (OTLP/HTTP: Claude Code's OpenTelemetry exporter)
