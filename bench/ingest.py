"""Ingest benchmark on PostgreSQL under gunicorn (the Procfile's settings).

Measures, each beside a ceiling taken in the same run on the same machine:
  1. single-event POSTs/s with p50/p99 latency (wrk) vs a bare Flask handler
     that parses the same JSON and answers 201 under the same gunicorn config,
     and vs the same handler plus one INSERT of the event (bare_insert_app.py);
  2. batch ingest events/s (1,000-event POSTs) vs raw psycopg multi-row INSERT
     into the same table;
  3. raw psycopg single-row INSERT + COMMIT, the per-connection fsync bound.

Usage: .venv/bin/python bench/ingest.py [--seconds 10] [--connections 32]
Needs wrk (Debian: apt-get install wrk) and PostgreSQL at TEST_DATABASE_URL.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path

import psycopg
import requests

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import ROOT, app_env, gunicorn, header, make_token, row, scratch_database  # noqa: E402


def wrk(base: str, seconds: int, connections: int, token: str) -> dict:
    env = dict(os.environ, BENCH_TOKEN=token, BENCH_RUN=uuid.uuid4().hex[:8])
    out = subprocess.run(
        ["wrk", f"-t{min(2, connections)}", f"-c{connections}", f"-d{seconds}s", "--timeout", "5s",
         "-s", str(ROOT / "bench" / "post_event.lua"), base + "/api/v1/activities"],
        env=env, capture_output=True, text=True, check=True,
    ).stdout
    line = next(l for l in out.splitlines() if l.startswith("RESULT"))
    requests_, duration_us, errors, p50, p99, mean = line.split()[1:]
    return {"rps": int(requests_) / (int(duration_us) / 1e6), "errors": int(errors),
            "p50": float(p50), "p99": float(p99), "mean": float(mean), "requests": int(requests_)}


def make_batch(run: str, n: int, size: int) -> bytes:
    return json.dumps([
        {"type": "bench.batch", "title": f"Batch event {n}-{i}", "source": "bench", "source_id": f"{run}-{n}-{i}",
         "actor_id": "u-bench", "actor_name": "Bench", "status": "success", "tags": ["bench"], "data": {"i": i}}
        for i in range(size)
    ]).encode()


def batch_ingest(base: str, token: str, seconds: float, threads: int, size: int = 1000) -> dict:
    run = uuid.uuid4().hex[:8]
    bodies = [make_batch(run, n, size) for n in range(threads * 200)]
    counter = iter(range(len(bodies)))
    lock = threading.Lock()
    done = {"events": 0, "errors": 0}
    deadline = time.perf_counter() + seconds

    def worker():
        session = requests.Session()
        headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
        while time.perf_counter() < deadline:
            with lock:
                n = next(counter, None)
            if n is None:
                return
            r = session.post(base + "/api/v1/activities", data=bodies[n], headers=headers, timeout=30)
            with lock:
                if r.status_code == 201:
                    done["events"] += r.json()["created"]
                else:
                    done["errors"] += 1

    started = time.perf_counter()
    pool = [threading.Thread(target=worker) for _ in range(threads)]
    for t in pool:
        t.start()
    for t in pool:
        t.join()
    elapsed = time.perf_counter() - started
    return {"eps": done["events"] / elapsed, "errors": done["errors"]}


COLUMNS = "id, tenant_id, type, source, source_id, title, actor_id, actor_name, status, priority, tags, data, occurred_at, received_at, expires_at"


def raw_rows(run: str, start: int, count: int, tenant_id: int):
    from activityweb.ids import uuid7

    for i in range(start, start + count):
        yield (uuid7(), tenant_id, "bench.raw", "bench", f"{run}-{i}", f"Raw event {i}", "u-bench", "Bench",
               "success", "normal", json.dumps(["bench"]), json.dumps({"i": i}))


def raw_single(url: str, tenant_id: int, seconds: float) -> float:
    run, n = uuid.uuid4().hex[:8], 0
    sql = f"INSERT INTO activities ({COLUMNS}) VALUES (%s,%s,%s,%s,%s,%s,%s,%s,%s,%s,%s,%s, now(), now(), now() + interval '365 days')"
    with psycopg.connect(url) as conn:
        deadline = time.perf_counter() + seconds
        started = time.perf_counter()
        while time.perf_counter() < deadline:
            for values in raw_rows(run, n, 50, tenant_id):
                conn.execute(sql, values)
                conn.commit()
            n += 50
        return n / (time.perf_counter() - started)


def raw_multi(url: str, tenant_id: int, seconds: float, size: int = 1000, connections: int = 2) -> float:
    total = [0]
    lock = threading.Lock()

    def worker():
        run, n = uuid.uuid4().hex[:8], 0
        placeholders = ",".join(["(%s,%s,%s,%s,%s,%s,%s,%s,%s,%s,%s,%s, now(), now(), now() + interval '365 days')"] * size)
        sql = f"INSERT INTO activities ({COLUMNS}) VALUES {placeholders}"
        with psycopg.connect(url) as conn:
            deadline = time.perf_counter() + seconds
            while time.perf_counter() < deadline:
                params = [v for r in raw_rows(run, n, size, tenant_id) for v in r]
                conn.execute(sql, params)
                conn.commit()
                n += size
        with lock:
            total[0] += n

    started = time.perf_counter()
    pool = [threading.Thread(target=worker) for _ in range(connections)]
    for t in pool:
        t.start()
    for t in pool:
        t.join()
    return total[0] / (time.perf_counter() - started)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=int, default=10)
    parser.add_argument("--connections", default="1,8,32", help="wrk connection counts for single-event POSTs")
    parser.add_argument("--batch-threads", type=int, default=4)
    args = parser.parse_args()
    if not shutil.which("wrk"):
        sys.exit("bench/ingest.py needs wrk: apt-get install wrk")

    sys.path.insert(0, str(ROOT))
    print(f"ingest benchmark: gunicorn gevent x2 workers, PostgreSQL, {os.cpu_count()} CPUs, {args.seconds}s per measure")
    with scratch_database("aw_bench_ingest") as url:
        token = make_token(url)
        with psycopg.connect(url) as conn:
            tenant_id = conn.execute("SELECT id FROM tenants WHERE slug = 'bench'").fetchone()[0]
        env = app_env(url)
        levels = [int(c) for c in args.connections.split(",")]
        with gunicorn("bench.bare_app:app", env) as (base, _):
            wrk(base, 2, levels[-1], token)  # warm up
            bare = {c: wrk(base, args.seconds, c, token) for c in levels}
        with gunicorn("bench.bare_insert_app:app", env) as (base, _):
            wrk(base, 2, levels[-1], token)
            bare_insert = {c: wrk(base, args.seconds, c, token) for c in levels}
        with gunicorn("wsgi:app", env) as (base, _):
            wrk(base, 2, levels[-1], token)
            ours = {c: wrk(base, args.seconds, c, token) for c in levels}
            batch = batch_ingest(base, token, args.seconds, args.batch_threads)
        single_raw = raw_single(url, tenant_id, min(args.seconds, 5))
        multi_raw = raw_multi(url, tenant_id, args.seconds)

    for c in levels:
        o, b, bi = ours[c], bare[c], bare_insert[c]
        header(f"single-event POST, {c} concurrent connection{'s' * (c > 1)} (ceiling: bare Flask parse + 201)")
        row("requests/s", f"{o['rps']:,.0f}", f"{b['rps']:,.0f}", f"share {o['rps'] / b['rps']:.0%}, target 50%")
        row("p50 latency", f"{o['p50']:.2f} ms", f"{b['p50']:.2f} ms")
        row("p99 latency", f"{o['p99']:.2f} ms", f"{b['p99']:.2f} ms")
        row("errors", f"{o['errors']}", f"{b['errors']}")
        print("  ceiling 2: the same bare Flask plus one INSERT ... VALUES (bench/bare_insert_app.py)")
        row("requests/s", f"{o['rps']:,.0f}", f"{bi['rps']:,.0f}", f"share {o['rps'] / bi['rps']:.0%}")
        row("p50 latency", f"{o['p50']:.2f} ms", f"{bi['p50']:.2f} ms")
        row("p99 latency", f"{o['p99']:.2f} ms", f"{bi['p99']:.2f} ms")
        row("errors", f"{o['errors']}", f"{bi['errors']}")
    header("raw PostgreSQL, same table")
    row("single-row INSERT + COMMIT, 1 conn", "", f"{single_raw:,.0f} rows/s", "fsync bound per connection")
    header(f"batch ingest (1,000-event POSTs, {args.batch_threads} clients)")
    row("events/s", f"{batch['eps']:,.0f}", f"{multi_raw:,.0f}", "raw multi-row INSERT, 2 conns")
    row("share of raw multi-row rate", f"{batch['eps'] / multi_raw:.0%}", "target >= 80%")
    row("errors", f"{batch['errors']}", "")
    print("\nFor scale: the closest open-source peer (Bun + SQLite, no auth) takes 9,800 single-event POSTs/s here.")


if __name__ == "__main__":
    main()
