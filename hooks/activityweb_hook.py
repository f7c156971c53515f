#!/usr/bin/env python3
"""Claude Code command hook: forward each hook event to ActivityWeb.

    {"type": "command", "command": "python3 /path/to/activityweb/hooks/activityweb_hook.py"}

(`flask claude-code settings --style command` prints the whole block.) Reads
the hook's JSON on stdin, stamps it with the time it ran, and posts it to
ACTIVITYWEB_URL (default http://127.0.0.1:5000) + /api/v1/integrations/claude-code
with ACTIVITYWEB_TOKEN. Claude Code waits for a command hook, so this one:

- gives up on the server after TIMEOUT_SECONDS, and finishes within
  BUDGET_SECONDS whatever happens;
- when the server cannot take the event, appends it to a spool
  (ACTIVITYWEB_SPOOL_DIR, default ~/.activityweb/spool/, at most
  ACTIVITYWEB_SPOOL_MAX_BYTES, 5 MiB), which the next run delivers first,
  so events arrive in the order they happened, each once;
- prints nothing on stdout (Claude Code would read it as a decision) and
  always exits 0: tracking must never block or fail Claude's work.

Standard library only. It uses the spool and delivery code of the Python
client, the `activityweb_client` package (also standard library only):
imported when it is installed (`pip install ./clients/python`) or lies beside
this file, and otherwise found in this repository's checkout
(`../clients/python`), so neither Flask nor the app is ever imported.
"""
import json
import os
import sys
import time
import uuid
from datetime import datetime, timezone
from pathlib import Path

ENDPOINT = "/api/v1/integrations/claude-code"
STAMP = "activityweb_occurred_at"  # read by activityweb/integrations/claude_code.py
# This run's own id, the event's idempotency key where Claude Code gives none:
# the spool masks secrets before writing, so a digest of the payload would
# differ between a send whose answer was lost and its later delivery.
EVENT_ID = "activityweb_event_id"
TIMEOUT_SECONDS = 0.8
BUDGET_SECONDS = 1.0
# Where the client lies in a checkout of the repository, for a hook run from there uninstalled.
CHECKOUT_CLIENT = Path(__file__).resolve().parent.parent / "clients" / "python"


def load_client():
    try:
        import activityweb_client
    except ImportError:
        sys.path.append(str(CHECKOUT_CLIENT))
        import activityweb_client
    return activityweb_client


def main(started: float) -> None:
    payload = json.loads(sys.stdin.buffer.read())
    if not isinstance(payload, dict) or not isinstance(payload.get("hook_event_name"), str):
        return  # not a hook event: the server would refuse it every time
    payload[STAMP] = datetime.now(timezone.utc).isoformat()
    payload[EVENT_ID] = uuid.uuid4().hex
    client = load_client()
    url = (os.environ.get("ACTIVITYWEB_URL") or client.DEFAULT_URL).rstrip("/") + ENDPOINT
    token = os.environ.get("ACTIVITYWEB_TOKEN")
    spool = client.Spool(client.default_spool_dir() / "claude-code.jsonl")

    def send(items: list) -> str:
        remaining = started + BUDGET_SECONDS - time.monotonic()
        if remaining < 0.05:
            return client.RETRY  # out of time: leave it for the next run
        return client.outcome(client.post_json(url, token, items, min(TIMEOUT_SECONDS, remaining)))

    if spool.has_items():
        with spool.draining() as mine:
            if mine and not client.deliver_spool(spool, send):
                spool.append([payload])  # the server is away: keep this one in order behind the rest
                return
    left = client.deliver([payload], send)
    if left:
        spool.append(left)


if __name__ == "__main__":
    began = time.monotonic()
    try:
        main(began)
    except BaseException:  # noqa: BLE001 - whatever went wrong, Claude's work goes on
        pass
    sys.exit(0)
