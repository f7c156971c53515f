"""Export memory benchmark: 1,000,000 events out of PostgreSQL, streamed.

Seeds a scratch PostgreSQL database with `flask seed --events 1000000`, runs
gunicorn with the project's gunicorn.conf.py (gevent) and downloads
`GET /api/v1/activities/export` as CSV and as NDJSON, sampling the resident
memory (RSS) of the worker that serves it every 20 ms. Prints the peak next to
the 200 MB ceiling, and the throughput next to PostgreSQL's own
`COPY (SELECT ... feed order) TO STDOUT` of the same rows (what the database
alone can send, no Python).

Usage: .venv/bin/python bench/export.py [--events 1000000] [--workers 1]
"""
from __future__ import annotations

import argparse
import sys
import threading
import time
from pathlib import Path

import psutil
import psycopg
import requests

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import app_env, flask, gunicorn, header, make_token, row, scratch_database  # noqa: E402

CEILING_MB = 200


class PeakRSS:
    """The largest RSS any worker of a gunicorn master reaches while running."""

    def __init__(self, master_pid: int, interval: float = 0.02):
        self.master = psutil.Process(master_pid)
        self.interval = interval
        self.peak = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)

    def workers_rss(self) -> int:
        return max(child.memory_info().rss for child in self.master.children())

    def _sample(self):
        while not self._stop.is_set():
            self.peak = max(self.peak, self.workers_rss())
            time.sleep(self.interval)

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()


def download(base: str, token: str, fmt: str) -> tuple[int, int, float]:
    """Bytes and lines of one export, and the seconds it took."""
    started = time.perf_counter()
    size = lines = 0
    with requests.get(f"{base}/api/v1/activities/export?format={fmt}", headers={"Authorization": f"Bearer {token}"},
                      stream=True, timeout=600) as response:
        response.raise_for_status()
        for chunk in response.iter_content(1 << 20):
            size += len(chunk)
            lines += chunk.count(b"\n")
    return size, lines, time.perf_counter() - started


def raw_copy(url: str) -> tuple[int, float]:
    """PostgreSQL alone: COPY of the same rows in feed order to CSV."""
    started = time.perf_counter()
    size = 0
    with psycopg.connect(url) as conn, conn.cursor() as cursor:
        with cursor.copy("COPY (SELECT * FROM activities ORDER BY occurred_at DESC, id DESC) "
                         "TO STDOUT WITH (FORMAT csv, HEADER)") as copy:
            for data in copy:
                size += len(data)
    return size, time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--workers", type=int, default=1, help="gunicorn workers (the export runs in one)")
    args = parser.parse_args()

    with scratch_database("aw_bench_export") as url:
        started = time.perf_counter()
        flask(url, "seed", "--events", str(args.events), "--tenant", "bench")
        print(f"seeded {args.events:,} events in {time.perf_counter() - started:.0f} s")
        token = make_token(url, "bench", "read")
        copy_bytes, copy_seconds = raw_copy(url)
        with gunicorn("wsgi:app", app_env(url), workers=args.workers) as (base, process):
            requests.get(f"{base}/api/v1/activities?limit=1", headers={"Authorization": f"Bearer {token}"}, timeout=30)
            sampler = PeakRSS(process.pid)
            idle = sampler.workers_rss()
            results = {}
            for fmt in ("csv", "ndjson"):
                with PeakRSS(process.pid) as peak:
                    results[fmt] = (*download(base, token, fmt), peak.peak)

    header(f"Export of {args.events:,} events (gunicorn gevent, {args.workers} worker(s), PostgreSQL)")
    row("worker RSS before the exports", f"{idle / 2**20:.0f} MB")
    for fmt, (size, lines, seconds, peak) in results.items():
        events = lines - 1 if fmt == "csv" else lines  # CSV has a header line (titles have no newlines here)
        row(f"{fmt}: peak worker RSS", f"{peak / 2**20:.0f} MB", f"{CEILING_MB} MB ceiling",
            "under" if peak / 2**20 < CEILING_MB else "OVER")
        row(f"{fmt}: rows/s, size", f"{events / seconds:,.0f}/s, {size / 2**20:,.0f} MB",
            f"COPY {args.events / copy_seconds:,.0f}/s", f"{seconds:.1f} s vs {copy_seconds:.1f} s")
    print(f"\n  raw COPY wrote {copy_bytes / 2**20:,.0f} MB of CSV")


if __name__ == "__main__":
    main()
