"""gunicorn settings: `gunicorn -c gunicorn.conf.py wsgi:app` (the Procfile's web process).

gevent workers hold thousands of idle WebSockets each. No preload: the app,
its database pools and the live LISTEN loop are made inside each worker after
fork and after gevent has patched the standard library (psycopg chooses its
wait function at import; one chosen before the patch would block the worker).
"""
import os
import sys

# Refuse unsafe production settings here, in the master, with one line.
# (activityweb.config imports only the standard library: nothing here may
# import psycopg or the app before the workers' gevent patching.)
from activityweb.config import ConfigError, check_local_bind, check_production, from_env

bind = os.environ.get("BIND", f"0.0.0.0:{os.environ.get('PORT', '8000')}")


def on_starting(server):
    """Refuse unsafe settings in the master, with one line, once the bind
    (config file, environment or --bind) is known."""
    try:
        config = from_env()
        check_production(config)
        check_local_bind(config, server.cfg.bind)
    except ConfigError as exc:
        sys.exit(f"activityweb: {exc}")


workers = int(os.environ.get("WEB_CONCURRENCY", "2"))
worker_class = "gevent"
# Open sockets per worker: dashboards and streams are long-lived connections.
worker_connections = int(os.environ.get("WORKER_CONNECTIONS", "4000"))
preload_app = False
# With gevent the timeout is the worker heartbeat, not a request limit, so
# long-lived sockets are fine.
timeout = 30
graceful_timeout = 10
keepalive = 5
accesslog = os.environ.get("ACCESS_LOG") or None
errorlog = "-"
loglevel = os.environ.get("LOG_LEVEL", "info")


def post_worker_init(worker):
    """Graceful restarts close live sockets with 1012 and end SSE streams.

    gunicorn stops a worker (SIGTERM, a HUP's replacement, `max_requests`)
    by setting `worker.alive` to false, then waits up to `graceful_timeout`
    for open connections. Long-lived sockets would hold it that long and then
    be dropped without a close code; instead a greenlet watching `alive`
    tells every socket to close with 1012 (service restart) and every stream
    to end, so clients reconnect to a live worker and resume from their position.
    """
    import gevent

    from activityweb import live

    def close_live_connections_when_stopping():
        while worker.alive:
            gevent.sleep(0.1)
        # The worker's own loop notices within a second and stops accepting;
        # closing before that would let clients reconnect to this worker.
        gevent.sleep(1.2)
        live.shutdown()

    gevent.spawn(close_live_connections_when_stopping)
