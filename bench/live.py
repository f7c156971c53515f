"""Live fan-out benchmark: N dashboard sockets, events posted at R per second.

Runs gunicorn with the project's gunicorn.conf.py (gevent, 2 workers) on a
scratch PostgreSQL database in local mode, opens N feed sockets
(`/feed/ws`, the dashboard's own socket and partials), posts single events at
R per second for D seconds, and prints:

  - POST-to-receive latency p50/p99/max over every (event, socket) pair,
  - the share of (event, socket) pairs delivered,
  - server CPU (both workers, % of one core) and memory (RSS per worker).

Usage: .venv/bin/python bench/live.py [--sockets 500] [--rate 100] [--seconds 20]
The load generator shares this machine's cores with the server and
PostgreSQL, so its own CPU is printed too.
"""
from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import statistics
import sys
import multiprocessing
import threading
import time
from pathlib import Path

import psutil
import requests
from websockets.asyncio.client import connect

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import app_env, gunicorn, scratch_database  # noqa: E402

ID = re.compile(rb'data-id="([0-9a-f-]{36})"')


def percentile(values: list[float], p: float) -> float:
    if not values:
        return float("nan")
    values = sorted(values)
    return values[min(len(values) - 1, int(round(p / 100 * (len(values) - 1))))]


def post_events(base: str, rate: float, seconds: float, results) -> None:
    """Post one event every 1/rate seconds; report when each was sent.

    Open loop: each event is due at its own time and four senders keep the
    rate even when a POST is slow. Runs in a process of its own so the
    receiving sockets' event loop does not delay it through the GIL. Times
    are wall-clock (time.time), comparable across processes on one machine.
    """
    from concurrent.futures import ThreadPoolExecutor

    local = threading.local()
    sent, errors, post_ms = {}, [0], []

    def send(n):
        session = getattr(local, "session", None) or setattr(local, "session", requests.Session()) or local.session
        t = time.time()
        r = session.post(base + "/api/v1/activities",
                         json={"type": "bench.live", "title": f"Live bench {n}", "source": "bench"}, timeout=10)
        post_ms.append((time.time() - t) * 1000)
        if r.status_code == 201:
            sent[r.json()["id"]] = t
        else:
            errors[0] += 1

    interval = 1 / rate
    start = time.perf_counter()
    with ThreadPoolExecutor(4) as pool:
        n = 0
        while start + n * interval < start + seconds:
            due = start + n * interval
            if (now := time.perf_counter()) < due:
                time.sleep(due - now)
            pool.submit(send, n)
            n += 1
    results.put((sent, errors[0], post_ms))


async def run_sockets(ws_base: str, origin: str, count: int, poster, results, drain: float):
    arrivals: list[dict[bytes, float]] = [dict() for _ in range(count)]
    sockets = []
    for i in range(count):
        ws = await connect(f"{ws_base}/feed/ws", origin=origin, compression=None, max_size=None,
                           open_timeout=30, ping_interval=None)
        await ws.send(json.dumps({"since": None}))
        sockets.append(ws)
        if i % 100 == 99:
            await asyncio.sleep(0.05)
    closed_early = [0]

    async def read(i, ws):
        got = arrivals[i]
        try:
            async for message in ws:
                now = time.time()
                for match in ID.finditer(message.encode() if isinstance(message, str) else message):
                    got.setdefault(match.group(1), now)
        except Exception:
            closed_early[0] += 1

    readers = [asyncio.create_task(read(i, ws)) for i, ws in enumerate(sockets)]
    await asyncio.sleep(2.0)  # all subscribed
    poster.start()
    # Read the poster's report before joining it: a process that has put a
    # large object on a queue does not exit until someone reads it.
    report = await asyncio.to_thread(results.get)
    await asyncio.to_thread(poster.join)
    await asyncio.sleep(drain)
    for ws in sockets:
        await ws.close()
    for task in readers:
        task.cancel()
    return arrivals, closed_early[0], report


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sockets", type=int, default=500)
    parser.add_argument("--rate", type=float, default=100, help="events posted per second")
    parser.add_argument("--seconds", type=float, default=20)
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args()

    with scratch_database("aw_bench_live") as url:
        env = app_env(url, ACTIVITYWEB_LOCAL_MODE="1")
        with gunicorn("wsgi:app", env, workers=args.workers) as (base, master):
            workers = [psutil.Process(c.pid) for c in psutil.Process(master.pid).children()]
            me = psutil.Process()
            results = multiprocessing.Queue()
            poster = multiprocessing.Process(target=post_events, args=(base, args.rate, args.seconds, results))
            cpu_before = [w.cpu_times() for w in workers]
            psutil.cpu_percent()  # start the machine-wide measure
            me_before = me.cpu_times()
            wall_before = time.perf_counter()
            sockets_per_worker = []

            def count_sockets():
                time.sleep(args.seconds / 2 + 2)
                sockets_per_worker.extend(
                    sum(1 for c in w.net_connections() if c.status == "ESTABLISHED") for w in workers)

            counter = threading.Thread(target=count_sockets, daemon=True)
            counter.start()
            arrivals, closed_early, (sent_ids, post_errors, post_ms) = asyncio.run(
                run_sockets(base.replace("http://", "ws://"), base, args.sockets, poster, results, drain=3.0))
            wall = time.perf_counter() - wall_before
            per_worker = [(a.user + a.system) - (b.user + b.system)
                          for a, b in zip((w.cpu_times() for w in workers), cpu_before)]
            cpu = sum(per_worker)
            machine = psutil.cpu_percent()
            rss = [w.memory_info().rss / 2**20 for w in workers]
            me_cpu = (me.cpu_times().user + me.cpu_times().system) - (me_before.user + me_before.system)

    sent = {k.encode(): v for k, v in sent_ids.items()}
    latencies = [(got[i] - t) * 1000 for got in arrivals for i, t in sent.items() if i in got]
    expected = len(sent) * args.sockets
    delivered = len(latencies)
    print(f"live benchmark: {args.sockets} sockets x {args.rate:g} events/s for {args.seconds:g}s, "
          f"gunicorn gevent x{args.workers} on PostgreSQL, {os.cpu_count()} CPUs")
    print(f"  events posted                  {len(sent):>10,}   (POST errors: {post_errors})")
    print(f"  POST latency p50 / p99         {percentile(post_ms, 50):>10.1f} / {percentile(post_ms, 99):.1f} ms")
    print(f"  deliveries (event x socket)    {delivered:>10,} of {expected:,} = {delivered / max(expected, 1):.2%}"
          f"   (sockets closed early: {closed_early})")
    print(f"  POST-to-receive p50            {percentile(latencies, 50):>10.1f} ms")
    print(f"  POST-to-receive p99            {percentile(latencies, 99):>10.1f} ms   (floor: < 200 ms at 1,000 sockets;"
          f" peer Bun+SQLite: 17 ms at 500)")
    print(f"  POST-to-receive max            {max(latencies, default=float('nan')):>10.1f} ms")
    print(f"  mean                           {statistics.fmean(latencies) if latencies else float('nan'):>10.1f} ms")
    print(f"  server CPU (2 workers)         {cpu / wall * 100:>10.0f} % of one core over {wall:.0f}s"
          f"   (per worker: {', '.join(f'{c / wall * 100:.0f} %' for c in per_worker)})")
    print(f"  connections per worker         {', '.join(str(n) for n in sockets_per_worker)}")
    print(f"  server RSS per worker          {', '.join(f'{r:.0f} MB' for r in rss)}")
    print(f"  whole machine CPU              {machine:>10.0f} % of all {os.cpu_count()} cores")
    print(f"  load generator CPU             {me_cpu / wall * 100:>10.0f} % of one core (same machine)")


if __name__ == "__main__":
    main()
