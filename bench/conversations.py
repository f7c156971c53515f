"""Conversations list benchmark: a page of `/conversations` on PostgreSQL.

Seeds a scratch database with demo events (`flask seed`), then times
`store.list_conversations` (best of 7) for the first page, a page deep in the
list and a filtered page, beside, in the same run: the full grouping it
replaces (every conversation summed, then ordered) and the feed's first page
(`list_activities`, one index range: the ceiling for any page). Walks every
page once to check the pages come out in the full grouping's order.

Usage: .venv/bin/python bench/conversations.py [--events 200000]
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import sqlalchemy as sa

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from common import flask, header, row, scratch_database  # noqa: E402


def best(fn, runs: int = 7) -> float:
    fastest = float("inf")
    for _ in range(runs):
        started = time.perf_counter()
        fn()
        fastest = min(fastest, time.perf_counter() - started)
    return fastest * 1000


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--events", type=int, default=200_000)
    args = parser.parse_args()
    with scratch_database("bench_conversations") as url:
        flask(url, "seed", "--events", str(args.events), "--tenant", "bench", "--days", "30")
        from activityweb import store
        from activityweb.app import create_app
        from activityweb.extensions import db
        from activityweb.filters import ActivityFilter

        app = create_app({"SQLALCHEMY_DATABASE_URI": url.replace("postgresql://", "postgresql+psycopg://")})
        with app.app_context():
            db.session.execute(sa.text("ANALYZE activities"))
            db.session.commit()
            tenant = store.find_tenant("bench").id
            everything = store.ConversationQuery()
            pages, page = [], store.list_conversations(tenant, everything, limit=50)
            pages.append(page)
            while page.next_after:
                page = store.list_conversations(tenant, everything, limit=50, after=page.next_after)
                pages.append(page)
            walked = [c.id for p in pages for c in p.items]
            grouped = sa.text("SELECT conversation_id FROM activities WHERE tenant_id = :t AND conversation_id IS NOT NULL "
                              "GROUP BY conversation_id ORDER BY max(occurred_at) DESC, conversation_id DESC")
            truth = [r[0] for r in db.session.execute(grouped, {"t": tenant})]
            deep = pages[len(pages) // 2 - 1].next_after
            full = sa.text(grouped.text + " LIMIT 51")

            header(f"Conversations list, {args.events:,} events, {len(truth):,} conversations, {len(pages)} pages")
            row("first page", f"{best(lambda: store.list_conversations(tenant, everything, limit=50)):.1f} ms",
                f"{best(lambda: store.list_activities(tenant, ActivityFilter(), limit=50)):.1f} ms",
                "ceiling: the feed's first page")
            row("a page half way down", f"{best(lambda: store.list_conversations(tenant, everything, limit=50, after=deep)):.1f} ms")
            row("failed=true (sums every conversation)",
                f"{best(lambda: store.list_conversations(tenant, store.ConversationQuery(failed=True), limit=50)):.1f} ms")
            row("peer: the full grouping, first page", f"{best(lambda: db.session.execute(full, {'t': tenant}).all()):.1f} ms")
            row("pages walk the full grouping's order", str(walked == truth), "", f"{len(walked):,} listed")


if __name__ == "__main__":
    main()
