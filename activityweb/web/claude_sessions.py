"""Claude Code sessions as they run: "Needs you" (sessions waiting on a
person) and /sessions (a lane per running session and subagent)."""
from __future__ import annotations

import json

from flask import request

from ..integrations.claude_code_otel import otel_settings
from . import bp


def otel_env_block() -> str:
    """The settings.json env block that turns Claude Code's telemetry on, for this server."""
    base = request.host_url
    return json.dumps(otel_settings(base), indent=2)


@bp.app_context_processor
def claude_session_helpers() -> dict:
    return {"otel_env_block": otel_env_block}
