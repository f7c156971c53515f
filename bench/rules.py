"""Rules benchmark: what evaluating 50 rules per tenant adds to batch ingest.

In one run, on SQLite and on PostgreSQL, 1,000-event batches go through the
real ingest path (`store.add_activities`: one INSERT, the rules hook, live
delivery) alternately for a tenant with no rules (the peer: ingest as it is
without rules) and for a tenant with 50 rules of every ingest-time kind
(every, count, failure rate, cost; narrow and broad filters, with and without
cool-downs), on the same event mix. Prints the median batch time of each and
their difference, the difference within each pair of the same batch written
back to back (steadier), and (steadier still, since both halves share one
batch's conditions) the time inside the rules hook over the rest of the same
batch, median over batches. The bound is 10 %.

Usage: .venv/bin/python bench/rules.py [--batches 60] [--size 1000]
"""
from __future__ import annotations

import argparse
import json
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from common import header, row, scratch_database  # noqa: E402

TYPES = ["claude.tool.completed", "claude.tool.started", "claude.prompt.submitted", "deployment.succeeded",
         "deployment.failed", "github.push", "lead.created", "deal.won", "project.endpoint.added", "system.note"]
PROJECTS = ["billing-api", "search", "web", "mobile", "infra"]


def rules_for(project_count: int = 5) -> list[dict]:
    """50 rules: the shapes a tenant writes, most narrow, some broad."""
    rules = []
    for i in range(20):
        rules.append({"name": f"every-{i}", "condition": "every", "cooldown_seconds": 600 if i % 2 else 0,
                      "filter": f"type=deployment.failed&project={PROJECTS[i % project_count]}&priority=critical"
                      if i % 2 == 0 else f"type={TYPES[i % len(TYPES)]}&project={PROJECTS[i % project_count]}"})
    for i in range(15):
        rules.append({"name": f"count-{i}", "condition": "count", "threshold": 50 + 10 * i, "window_seconds": 600,
                      "cooldown_seconds": 900, "filter": f"status=failed&project={PROJECTS[i % project_count]}"
                      if i % 3 else f"type={TYPES[i % len(TYPES)].rsplit('.', 1)[0]}.*"})
    for i in range(10):
        rules.append({"name": f"rate-{i}", "condition": "failure_rate", "threshold": 20, "percent": 30 + 5 * i,
                      "window_seconds": 900, "cooldown_seconds": 1800,
                      "filter": f"type=deployment.*&project={PROJECTS[i % project_count]}"})
    for i in range(5):
        rules.append({"name": f"cost-{i}", "condition": "cost", "budget": 50.0 + i, "window_seconds": 86400,
                      "cooldown_seconds": 3600, "filter": "source=claude_code" + (f"&project={PROJECTS[i]}" if i else "")})
    return rules


def batch(run: str, n: int, size: int, rng: random.Random) -> bytes:
    return json.dumps([{
        "type": (kind := rng.choice(TYPES)), "title": f"Event {n}-{i}", "source": "claude_code" if kind.startswith("claude") else "api",
        "source_id": f"{run}-{n}-{i}", "actor_id": f"u-{rng.randrange(20)}", "actor_name": "Bench",
        "project": rng.choice(PROJECTS), "status": "failed" if rng.random() < 0.05 else "success",
        "priority": "critical" if rng.random() < 0.01 else "normal", "tags": ["bench"],
        "data": {"cost_usd": round(rng.random() / 100, 4)}} for i in range(size)]).encode()


def measure(database_uri: str, batches: int, size: int) -> tuple[list[float], list[float], list[float], int]:
    from activityweb import store
    from activityweb.app import create_app
    from activityweb.rules.conditions import parse_rule
    from activityweb.schemas import parse_events
    from activityweb.store import firing, outbox
    from activityweb.store import rules as store_rules

    app = create_app({"SQLALCHEMY_DATABASE_URI": database_uri, "SECRET_KEY": "bench"})
    with app.app_context():
        if database_uri.startswith("sqlite"):
            from flask_migrate import upgrade

            upgrade()
        plain = store.get_or_create_tenant("plain").id
        ruled = store.get_or_create_tenant("ruled").id
        for body in rules_for():
            store_rules.save_rule(ruled, parse_rule(body))
        rng = random.Random(7)
        times = {plain: [], ruled: []}
        shares = []  # hook time over the rest of the same batch
        in_hook = []  # seconds inside the rules hook, per batch of the tenant with rules
        hook = firing._fire_rules  # evaluating, inside ingest's hook (`insert_firing_rules`)

        def timed_hook(conn, rows):
            started = time.perf_counter()
            try:
                return hook(conn, rows)
            finally:
                in_hook.append(time.perf_counter() - started)

        firing._fire_rules = timed_hook
        wrote = []  # whether the batch's hook wrote firings
        write = firing._messages  # what every batch that writes firings builds

        def noted_write(*args):
            wrote.append(True)
            return write(*args)

        firing._messages = noted_write
        for n in range(batches + 3):
            body = batch("b", n, size, rng)
            events, _ = parse_events(body, size)
            order = (plain, ruled) if n % 2 else (ruled, plain)
            for tenant in order:
                copy = [dict(e, source_id=f"{tenant}-{e['source_id']}") for e in events]
                in_hook.clear()
                wrote.clear()
                started = time.perf_counter()
                store.add_activities(tenant, copy)
                if n >= 3:  # the first batches warm caches and prepared statements
                    times[tenant].append(time.perf_counter() - started)
                    if tenant == ruled:
                        shares.append((sum(in_hook) / (times[tenant][-1] - sum(in_hook)), bool(wrote)))
        fired = len(outbox.recent_firings(ruled, limit=100000))
        firing._fire_rules = hook
        firing._messages = write
    from activityweb import live

    live.stop(app)
    return times[plain], times[ruled], shares, fired


def report(name: str, plain: list[float], ruled: list[float], shares: list[float], fired: int, size: int) -> float:
    header(f"{name}: {len(plain)} batches of {size} events each, alternating tenants")
    p, r = statistics.median(plain) * 1000, statistics.median(ruled) * 1000
    row("median batch, tenant with 50 rules", f"{r:.1f} ms", f"{p:.1f} ms", "ceiling: the same batch, no rules")
    row("fastest batch, tenant with 50 rules", f"{min(ruled) * 1000:.1f} ms", f"{min(plain) * 1000:.1f} ms")
    row("events/s with 50 rules (median)", f"{size / r * 1000:,.0f}", f"{size / p * 1000:,.0f}")
    row("A/B difference of medians", f"{(r - p) / p * 100:+.1f} %", "", "noisy on a shared machine")
    # Each batch was written twice back to back (in alternating order), so the
    # machine's drift moves both halves of a pair together: compare within pairs.
    paired = statistics.median(b / a - 1 for a, b in zip(plain, ruled)) * 100
    row("A/B within pairs (median)", f"{paired:+.1f} %", "<= 10 %", "PASS" if paired <= 10 else "OVER")
    overhead = statistics.median(share for share, _ in shares) * 100
    row("rules hook / rest of the same batch", f"{overhead:.1f} %", "<= 10 %", "PASS" if overhead <= 10 else "OVER")
    for label, fired_here in (("  batches that wrote no firing", False), ("  batches that wrote firings", True)):
        picked = [share for share, wrote in shares if wrote == fired_here]
        if picked:
            row(label, f"{statistics.median(picked) * 100:.1f} %", f"{len(picked)} batches")
    row("firings written (cool-downs hold)", f"{fired}", "")
    return overhead


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--batches", type=int, default=60)
    parser.add_argument("--size", type=int, default=1000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as scratch:
        report("SQLite", *measure(f"sqlite:///{scratch}/bench.db", args.batches, args.size), args.size)
    with scratch_database("aw_bench_rules") as url:
        report("PostgreSQL", *measure(url.replace("postgresql://", "postgresql+psycopg://", 1), args.batches,
                                      args.size), args.size)


if __name__ == "__main__":
    main()
