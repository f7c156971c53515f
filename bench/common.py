"""Shared pieces of the benchmarks: a scratch PostgreSQL database, a gunicorn
server started with the project's own gunicorn.conf.py, and tidy output."""
from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psycopg
import requests
import sqlalchemy as sa

ROOT = Path(__file__).resolve().parent.parent
PYTHON = sys.executable
BASE_URL = os.environ.get("TEST_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/test")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def scratch_database(name: str):
    """A new, migrated PostgreSQL database; dropped afterwards."""
    base = sa.engine.make_url(BASE_URL)
    admin = base.set(drivername="postgresql").render_as_string(hide_password=False)
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        conn.execute(f'CREATE DATABASE "{name}"')
    url = base.set(database=name).render_as_string(hide_password=False)
    try:
        flask(url, "db", "upgrade")
        yield url
    finally:
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def app_env(database_url: str, **extra) -> dict:
    env = dict(os.environ)
    env.update({"DATABASE_URL": database_url, "FLASK_APP": "wsgi", "SECRET_KEY": "bench", "LOG_LEVEL": "warning"})
    env.pop("ACTIVITYWEB_LOCAL_MODE", None)
    env.update(extra)
    return env


def flask(database_url: str, *args: str, input: str | None = None) -> str:
    result = subprocess.run([PYTHON, "-m", "flask", *args], cwd=ROOT, env=app_env(database_url),
                            capture_output=True, text=True, check=True, input=input)
    return result.stdout


def make_token(database_url: str, tenant: str = "bench", scopes: str = "ingest,read") -> str:
    with contextlib.suppress(subprocess.CalledProcessError):
        flask(database_url, "tenants", "create", tenant)
    return flask(database_url, "tokens", "create", "--tenant", tenant, "--scopes", scopes).strip().splitlines()[0]


@contextlib.contextmanager
def gunicorn(app: str, env: dict, *, workers: int = 2, port: int | None = None, extra: tuple = ()):
    """Run gunicorn with the project's config; yields (base_url, process)."""
    port = port or free_port()
    command = [PYTHON, "-m", "gunicorn", "-c", str(ROOT / "gunicorn.conf.py"), "--bind", f"127.0.0.1:{port}",
               "--workers", str(workers), *extra, app]
    # The log goes to a file, not a pipe nobody reads: a server that logs a
    # line per socket under load would fill a pipe and block on it.
    keep = os.environ.get("AW_GUNICORN_LOG")  # a path: keep the server's log there (debugging)
    log = open(keep, "ab") if keep else tempfile.TemporaryFile()
    process = subprocess.Popen(command, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=log)
    base = f"http://127.0.0.1:{port}"
    # A busy machine (other test runs) can take this long to import the app in the workers.
    deadline = time.time() + 60
    while time.time() < deadline:
        if process.poll() is not None:
            log.seek(0)
            raise RuntimeError(f"gunicorn exited: {log.read().decode(errors='replace')[-2000:]}")
        try:
            requests.get(base + "/healthz", timeout=0.5)
            break
        except requests.RequestException:
            time.sleep(0.1)
    else:
        process.kill()
        raise RuntimeError("gunicorn did not start in 60 s")
    try:
        yield base, process
    finally:
        process.terminate()
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
        log.close()


def row(label: str, value: str, ceiling: str = "", note: str = "") -> None:
    print(f"  {label:<38} {value:>22}   {ceiling:>22}   {note}")


def header(title: str) -> None:
    print(f"\n{title}")
    print(f"  {'measure':<38} {'ActivityWeb':>22}   {'ceiling (same run)':>22}")
