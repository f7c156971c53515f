"""`make fuzz`: schemathesis against the served OpenAPI document, on PostgreSQL.

A scratch PostgreSQL database (TEST_DATABASE_URL's server), a real gunicorn
on it, a token with every scope, and schemathesis generating requests for
every path and method the document lists, with a fixed seed so a run can be
repeated. The check is `not_a_server_error`: nothing a client sends may give
a 5xx. Exit status: schemathesis's (0: no server errors). One worker:
schemathesis's coverage phase is not thread-safe (two workers gave it
internal errors). The one path left out is the never-ending SSE stream.

    make fuzz                      # FUZZ_EXAMPLES=20 per operation, seed 12
    FUZZ_SEED=7 FUZZ_EXAMPLES=200 make fuzz
"""
from __future__ import annotations

import os
import secrets
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import PYTHON, ROOT, app_env, gunicorn, make_token, scratch_database  # noqa: E402

SEED = os.environ.get("FUZZ_SEED", "12")
EXAMPLES = os.environ.get("FUZZ_EXAMPLES", "20")


def main() -> int:
    with scratch_database(f"aw_fuzz_{secrets.token_hex(3)}") as url:
        token = make_token(url, "fuzz", "ingest,read,admin")
        # The fuzzer is one client sending thousands of requests: no rate limit.
        env = app_env(url, SECRET_KEY=secrets.token_urlsafe(40), RATELIMIT_API="1000000 per minute")
        with gunicorn("wsgi:app", env, workers=2) as (base, _):
            command = [
                str(Path(PYTHON).parent / "schemathesis"), "run", f"{base}/api/v1/openapi.json",
                "--checks", "not_a_server_error", "--header", f"Authorization: Bearer {token}",
                "--seed", SEED, "--max-examples", EXAMPLES, "--phases", "examples,coverage,fuzzing",
                "--generation-database", "none", "--request-timeout", "30", "--workers", "1",
                # The SSE stream never ends (keep-alives every few seconds), which no fuzzer can
                # read to the end; tests/test_hostile_input.py sends it the hostile filters.
                "--exclude-path", "/api/v1/activities/stream",
                "--report", "junit", "--report-dir", str(ROOT / "instance" / "fuzz-report"), "--no-color",
            ]
            print("$", " ".join(c if "Bearer" not in c else "Authorization: Bearer aw_…" for c in command), flush=True)
            return subprocess.run(command, cwd=ROOT).returncode


if __name__ == "__main__":
    sys.exit(main())
