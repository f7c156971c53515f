"""WSGI entry point: `gunicorn -c gunicorn.conf.py wsgi:app`, and FLASK_APP for the CLI."""
import sys

from activityweb.app import create_app
from activityweb.config import ConfigError

try:
    app = create_app()
except ConfigError as exc:
    # One line that says why, not a traceback: this is an operator's mistake.
    print(f"activityweb: {exc}", file=sys.stderr)
    sys.exit(3)  # gunicorn halts on a worker boot error (3) instead of respawning it
