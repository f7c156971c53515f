"""Reads and writes as a tenant grows: the same requests at 10k, 1M (and 10M) events.

One scratch PostgreSQL database holds one tenant per size, each seeded with
`flask seed` (COPY; the rollups are kept as the rows load) over the same
number of days. One gunicorn worker (the project's config) answers. Each
read is timed client-side, median of 5 after a warm-up, and every size is
measured in the same run, so the ratio to the smallest tenant is the number
to read (absolute times drift on a shared machine; the load average is
printed). Also: export of the first 100k rows, batch ingest into the
largest tenant, and storage per event (table + indexes + rollups).

Usage: .venv/bin/python bench/scale.py [--sizes 10000,1000000] [--days 14] [--markdown]
"""
from __future__ import annotations

import argparse
import contextlib
import os
import re
import statistics
import sys
import time
import uuid
from pathlib import Path

import psycopg
import requests
import sqlalchemy as sa

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import BASE_URL, app_env, flask, gunicorn, make_token, scratch_database  # noqa: E402

PASSWORD = "bench-password-1"


def timed(session: requests.Session, url: str, repeat: int = 5, **kwargs) -> float:
    """Median milliseconds of `repeat` GETs after one warm-up."""
    assert session.get(url, timeout=120, **kwargs).status_code == 200, url
    times = []
    for _ in range(repeat):
        started = time.perf_counter()
        response = session.get(url, timeout=120, **kwargs)
        times.append((time.perf_counter() - started) * 1000)
        assert response.status_code == 200, (url, response.status_code, response.text[:300])
    return statistics.median(times)


def sample_values(url: str, tenant_id: int) -> dict:
    """Ids that exist in the tenant's data, for the id filters."""
    with psycopg.connect(url) as conn:
        def one(sql):
            return conn.execute(sql, (tenant_id,)).fetchone()[0]
        return {
            "conversation": one("SELECT conversation_id FROM activities WHERE tenant_id = %s AND conversation_id "
                                "IS NOT NULL ORDER BY occurred_at DESC LIMIT 1"),
            "correlation": one("SELECT correlation_id FROM activities WHERE tenant_id = %s AND correlation_id "
                               "IS NOT NULL ORDER BY occurred_at DESC LIMIT 1"),
            "day": one("SELECT date_trunc('day', max(occurred_at) - interval '1 day', 'UTC') FROM activities "
                       "WHERE tenant_id = %s"),
        }


def reads(values: dict) -> list[tuple[str, str]]:
    day = values["day"]
    since, until = day.strftime("%Y-%m-%dT%H:%M:%SZ"), (day.replace(hour=23)).strftime("%Y-%m-%dT%H:%M:%SZ")
    feed = "/api/v1/activities?limit=50"
    return [
        ("feed page", feed),
        ("filter type=claude.tool.*", feed + "&type=claude.tool.*"),
        ("filter source=github", feed + "&source=github"),
        ("filter actor=u-alice", feed + "&actor=u-alice"),
        ("filter entity=tool/Bash", feed + "&entity_type=tool&entity_id=Bash"),
        ("filter status=failed", feed + "&status=failed"),
        ("filter priority=critical", feed + "&priority=critical"),
        ("filter tag=deploy", feed + "&tag=deploy"),
        ("filter project=billing-api", feed + "&project=billing-api"),
        ("filter environment=production", feed + "&environment=production"),
        ("filter conversation_id", feed + f"&conversation_id={values['conversation']}"),
        ("filter session_id", feed + f"&session_id={values['conversation']}"),
        ("filter correlation_id", feed + f"&correlation_id={values['correlation']}"),
        ("filter since+until (one day)", feed + f"&since={since}&until={until}"),
        ("search q=npm test", feed + "&q=npm%20test"),
        ("conversations", "/api/v1/conversations"),
        ("conversation timeline", f"/api/v1/conversations/{values['conversation']}"),
        ("stats", "/api/v1/activities/stats"),
        ("stats type=claude.tool.*", "/api/v1/activities/stats?type=claude.tool.*"),
        ("stats source=github&status=failed", "/api/v1/activities/stats?source=github&status=failed"),
        ("stats since (part-hours)", f"/api/v1/activities/stats?since={day.strftime('%Y-%m-%dT07:31:00Z')}"),
        ("stats q=npm (scan, capped)", "/api/v1/activities/stats?q=npm"),
    ]


def explain_plans(url: str, tenant_id: int, values: dict) -> list[tuple[str, str, float]]:
    """Each feed filter's first page as the store builds it, EXPLAIN ANALYZEd:
    the indexes its plan reads and its server-side time."""
    os.environ["DATABASE_URL"] = url
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    from werkzeug.datastructures import MultiDict

    from activityweb import store
    from activityweb.app import create_app
    from activityweb.extensions import db
    from activityweb.filters import parse_filter

    app = create_app({"SQLALCHEMY_DATABASE_URI": url.replace("postgresql://", "postgresql+psycopg://", 1)})
    plans = []
    with app.app_context():
        connection = db.session.connection()
        for label, path in reads(values):
            if not path.startswith("/api/v1/activities?"):
                continue
            query = path.split("?", 1)[1].replace("%20", " ")
            flt = parse_filter(MultiDict([kv.split("=", 1) for kv in query.split("&") if not kv.startswith("limit")]))
            compiled = store.apply_filter(sa.select(store.activities).where(
                store.activities.c.tenant_id == tenant_id), flt).order_by(*store.FEED_ORDER).limit(51).compile(
                db.engine, compile_kwargs={"render_postcompile": True})
            processors = compiled._bind_processors
            params = {k: processors[k](v) if k in processors else v for k, v in compiled.params.items()}
            for _ in range(2):  # the second run, with its pages cached, as the timed reads had them
                plan = "\n".join(r[0] for r in connection.exec_driver_sql("EXPLAIN ANALYZE " + str(compiled),
                                                                           params))
            used = sorted(set(re.findall(r"(?:Index|Index Only|Bitmap Index) Scan(?: Backward)? (?:using|on) (\w+)",
                                         plan)))
            ms = float(re.search(r"Execution Time: ([\d.]+) ms", plan).group(1))
            plans.append((label, ", ".join(used) or "(no index)", ms))
        db.session.rollback()
    return plans


def page_50(session: requests.Session, base: str) -> float:
    """The 50th page of 50, reached by cursor (the cursor is fetched first, then timed)."""
    url = base + "/api/v1/activities?limit=50"
    for _ in range(49):
        cursor = session.get(url, timeout=60).json()["next_cursor"]
        if cursor is None:  # fewer than 50 pages
            break
        url = base + "/api/v1/activities?limit=50&cursor=" + cursor
    return timed(session, url)


def export_100k(session: requests.Session, base: str) -> float:
    """Seconds to stream the first 100,000 NDJSON rows of the export."""
    started = time.perf_counter()
    rows = 0
    with session.get(base + "/api/v1/activities/export?format=ndjson", stream=True, timeout=600) as response:
        for line in response.iter_lines():
            rows += bool(line)
            if rows >= 100_000:
                break
    return time.perf_counter() - started if rows >= 100_000 else float("nan")


def stats_page(url: str, base: str, slug: str) -> float:
    email = f"{slug}@bench.example"
    flask(url, "users", "create", "--email", email, "--tenant", slug, "--role", "viewer", input=PASSWORD + "\n")
    web = requests.Session()
    form = web.get(base + "/login").text
    csrf = re.search(r'name="csrf[-_]token" (?:value|content)="([^"]+)"', form).group(1)
    web.post(base + "/login", data={"email": email, "password": PASSWORD, "csrf_token": csrf})
    return timed(web, base + "/stats")


def batch_ingest(session: requests.Session, base: str, seconds: float = 8.0) -> float:
    run = uuid.uuid4().hex[:8]
    n, started = 0, time.perf_counter()
    while time.perf_counter() - started < seconds:
        body = [{"type": "bench.batch", "title": f"Batch {n}-{i}", "source": "bench", "source_id": f"{run}-{n}-{i}",
                 "status": "success", "duration_ms": i % 500} for i in range(1000)]
        assert session.post(base + "/api/v1/activities", json=body, timeout=60).status_code == 201
        n += 1
    return n * 1000 / (time.perf_counter() - started)


def storage(url: str, reindex: bool = False) -> dict:
    """Bytes per event of the table (its partitions summed), its indexes, the
    idempotency keys (a table of their own once partitioned) and the rollups;
    `reindex` first packs the indexes (seeding in random time order leaves
    them ~70 % full)."""
    with psycopg.connect(url, autocommit=True) as conn:
        if reindex:
            conn.execute("REINDEX TABLE activities")
            conn.execute("REINDEX TABLE activity_keys")
        conn.execute("VACUUM ANALYZE activities")
        conn.execute("VACUUM ANALYZE activity_keys")
        count = conn.execute("SELECT count(*) FROM activities").fetchone()[0]
        table, total = conn.execute(
            "SELECT sum(pg_table_size(relid)), sum(pg_total_relation_size(relid))"
            " FROM pg_partition_tree('activities') WHERE isleaf").fetchone()
        keys = conn.execute("SELECT pg_total_relation_size('activity_keys')").fetchone()[0]
        rollups = conn.execute("SELECT pg_total_relation_size('activity_rollups'), count(*) FROM activity_rollups"
                               ).fetchone()
        indexes = conn.execute(
            "SELECT c.relname, (SELECT sum(pg_relation_size(t.relid)) FROM pg_partition_tree(i.indexrelid) t)"
            " FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid WHERE i.indrelid = 'activities'::regclass"
            " ORDER BY 2 DESC").fetchall()
    return {"count": count, "table": table, "indexes": total - table, "keys": keys, "rollups": rollups[0],
            "rollup_rows": rollups[1], "per_index": indexes}


@contextlib.contextmanager
def kept_database(name: str):
    """The database `name`, created and migrated if missing, and kept."""
    base = sa.engine.make_url(BASE_URL)
    admin = base.set(drivername="postgresql").render_as_string(hide_password=False)
    with psycopg.connect(admin, autocommit=True) as conn:
        if not conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,)).fetchone():
            conn.execute(f'CREATE DATABASE "{name}"')
    url = base.set(database=name).render_as_string(hide_password=False)
    flask(url, "db", "upgrade")
    yield url


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", default="10000,1000000")
    parser.add_argument("--days", type=int, default=14)
    parser.add_argument("--log", default="/tmp/bench_scale_gunicorn.log", help="The server's log.")
    parser.add_argument("--keep", action="store_true",
                        help="Keep the database (aw_bench_scale) for the next run, which then reuses its tenants.")
    args = parser.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]
    results: dict[int, dict] = {}
    print(f"scale benchmark: sizes {sizes}, {args.days} days, {os.cpu_count()} CPUs, "
          f"load average at start {os.getloadavg()[0]:.2f}", flush=True)
    with (kept_database("aw_bench_scale") if args.keep else scratch_database("aw_bench_scale")) as url:
        tokens = {}
        for size in sizes:
            slug = f"t{size}"
            tokens[size] = make_token(url, slug, "ingest,read")
            if flask(url, "seed", "--tenant", slug, "--if-empty", "--events", "1").startswith("tenant"):
                print(f"reusing the {size:,} tenant", flush=True)
                continue
            started = time.perf_counter()
            flask(url, "seed", "--tenant", slug, "--events", str(size - 1), "--days", str(args.days), "--seed", "1")
            print(f"seeded {size:,} events in {time.perf_counter() - started:.0f}s", flush=True)
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute("VACUUM ANALYZE")
            ids = dict(conn.execute("SELECT slug, id FROM tenants").fetchall())
        server_log = ("--error-logfile", args.log, "--capture-output")
        with gunicorn("wsgi:app", app_env(url), workers=1, extra=server_log) as (base, _):
            for size in sizes:
                session = requests.Session()
                session.headers["Authorization"] = f"Bearer {tokens[size]}"
                values = sample_values(url, ids[f"t{size}"])
                timings = {label: timed(session, base + path) for label, path in reads(values)}
                timings["page 50 by cursor"] = page_50(session, base)
                timings["/stats page"] = stats_page(url, base, f"t{size}")
                results[size] = {"ms": timings, "export": export_100k(session, base) if size >= 100_000 else None}
                print(f"measured {size:,}", flush=True)
            # Into a tenant of its own: rows at "now" in a measured tenant would
            # sit in front of every feed walk of the next --keep run.
            largest = sizes[-1]
            session = requests.Session()
            session.headers["Authorization"] = f"Bearer {make_token(url, 'ingest', 'ingest,read')}"
            ingest_rate = batch_ingest(session, base)
        loose = storage(url)
        space = storage(url, reindex=True)
        plans = explain_plans(url, ids[f"t{sizes[-1]}"], sample_values(url, ids[f"t{sizes[-1]}"]))

    small = sizes[0]
    print(f"\nload average at end {os.getloadavg()[0]:.2f}; median of 5, ms (ratio to {small:,})\n")
    print("| read | " + " | ".join(f"{s:,} events" for s in sizes) + " |")
    print("| --- |" + " --- |" * len(sizes))
    for label in results[small]["ms"]:
        cells = [f"{results[small]['ms'][label]:.1f}"]
        for size in sizes[1:]:
            value = results[size]["ms"][label]
            cells.append(f"{value:.1f} ({value / results[small]['ms'][label]:.1f}×)")
        print(f"| {label} | " + " | ".join(cells) + " |")
    for size in sizes:
        if results[size]["export"] is not None:
            print(f"\nexport, first 100,000 NDJSON rows of {size:,}: {results[size]['export']:.1f} s "
                  f"({100_000 / results[size]['export']:,.0f} rows/s)")
    print(f"batch ingest (1,000-event POSTs, 1 client) beside the {largest:,} tenant: {ingest_rate:,.0f} events/s")
    per = space["count"]
    print(f"\nstorage as seeded: table {loose['table'] / per:.0f} B/event, "
          f"indexes {loose['indexes'] / per:.0f} B/event")
    print(f"storage after REINDEX, {per:,} events: table {space['table'] / per:.0f} B/event, "
          f"indexes {space['indexes'] / per:.0f} B/event, "
          f"idempotency keys {space['keys'] / per:.0f} B/event, "
          f"rollups {space['rollups'] / per:.1f} B/event ({space['rollup_rows']:,} rows); "
          f"total {(space['table'] + space['indexes'] + space['keys'] + space['rollups']) / per / 1024:.2f} KB/event")
    for name, size in space["per_index"]:
        print(f"  {name:<32} {size / per:6.1f} B/event")
    print(f"\nfeed filters on the {sizes[-1]:,} tenant: the indexes each plan reads (EXPLAIN ANALYZE)")
    for label, used, ms in plans:
        print(f"  {label:<34} {ms:8.1f} ms  {used}")


if __name__ == "__main__":
    main()
