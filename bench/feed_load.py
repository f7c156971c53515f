"""Dashboard-socket load: N `/feed/ws` sockets, R events/s posted, one JSON line.

The `/feed/ws` counterpart of ../shared/bench/live_load.js (which reads the
JSON `/ws`): it opens N dashboard sockets with a signed-in session cookie,
says `{"since": null}` on each as the page does, posts R events per second
with an API token for S seconds (the same event body as live_load.js), and
prints one JSON line with the same keys (sockets, events, share delivered,
POST-start-to-receive p50/p99/max in ms over every (event, socket) pair, POST
p50/p99, errors, MB received) plus `load_started` and `load_ended`, the wall
clock times of the first POST and the end of posting. Percentiles are taken
as live_load.js takes them, so the two clients' figures compare.

An event counts as received on a socket when its `data-id` appears in a
message; `bench/live.py` runs this as a subprocess.

usage: bench/feed_load.py BASE TOKEN COOKIE SOCKETS RATE SECONDS
"""
from __future__ import annotations

import asyncio
import json
import multiprocessing
import re
import sys
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor

import requests
from websockets.asyncio.client import connect

# The settle and drain times of live_load.js, so both clients see the same run.
SETTLE_SECONDS = 2.0
DRAIN_SECONDS = 4.0
OPEN_BATCH = 50
POSTERS = 8  # live_load.js posts over at most 8 keep-alive connections
EVENT_ID = re.compile(rb'data-id="([^"]+)"')


def pct(values: list[float], p: float) -> float | None:
    """live_load.js's percentile: the value at floor(n * p), to 0.1 ms."""
    if not values:
        return None
    values = sorted(values)
    return round(values[min(len(values) - 1, int(len(values) * p))], 1)


def body(marker: str) -> dict:
    return {"type": "tool.completed", "title": f"Bash: npm test {marker}", "source_id": marker,
            "actor_id": "agent-7", "entity_type": "tool", "entity_id": "Bash", "status": "success",
            "session_id": "sess-load", "data": {"command": "npm test", "exit_code": 0}}


def post_events(base: str, token: str, rate: float, seconds: float, go, results) -> None:
    """Open loop, in a process of its own (so the sockets' event loop cannot
    delay it through the GIL): event k is due at start + k / rate, and its
    POST starts then, even if it has to wait for one of the POSTERS. Times
    are wall clock, comparable across processes on one machine."""
    local = threading.local()
    sent, post_ms, errors = {}, [], [0]
    headers = {"Authorization": f"Bearer {token}"}
    run = uuid.uuid4().hex[:6]

    def send(k: int, t: float) -> None:
        if not hasattr(local, "session"):
            local.session = requests.Session()
        try:
            r = local.session.post(base + "/api/v1/activities", json=body(f"{run}-{k}"), headers=headers, timeout=10)
        except requests.RequestException:
            errors[0] += 1
            return
        post_ms.append((time.time() - t) * 1000)
        if r.status_code < 300:
            sent[r.json()["id"]] = t
        else:
            errors[0] += 1

    go.wait()
    count = int(rate * seconds)
    started, start = time.time(), time.perf_counter()
    with ThreadPoolExecutor(POSTERS) as pool:
        for k in range(count):
            if (wait := start + k / rate - time.perf_counter()) > 0:
                time.sleep(wait)
            pool.submit(send, k, time.time())  # its start: a wait for a free poster counts, as in live_load.js
        ended = time.time()
    results.put({"sent": sent, "post_ms": post_ms, "errors": errors[0], "events": count,
                 "load_started": started, "load_ended": ended})


async def measure(base: str, cookie: str, sockets: int, go, results) -> dict:
    ws_url = base.replace("http://", "ws://", 1) + "/feed/ws"
    arrivals: list[dict[bytes, float]] = [dict() for _ in range(sockets)]
    received, closed, errors = [0], [0], [0]

    async def open_one():
        try:
            ws = await connect(ws_url, origin=base, additional_headers={"Cookie": cookie}, compression=None,
                               max_size=None, open_timeout=30, ping_interval=None)
            await ws.send(json.dumps({"since": None}))
            return ws
        except Exception:
            errors[0] += 1
            return None

    opened = []
    for i in range(0, sockets, OPEN_BATCH):
        opened += [ws for ws in await asyncio.gather(*(open_one() for _ in range(min(OPEN_BATCH, sockets - i))))
                   if ws is not None]

    async def read(got: dict, ws) -> None:
        try:
            async for message in ws:
                now = time.time()
                data = message.encode() if isinstance(message, str) else message
                received[0] += len(data)
                for match in EVENT_ID.finditer(data):
                    got.setdefault(match.group(1).decode(), now)
        except Exception:
            pass
        closed[0] += 1

    readers = [asyncio.create_task(read(arrivals[i], ws)) for i, ws in enumerate(opened)]
    await asyncio.sleep(SETTLE_SECONDS)
    at_start = received[0]
    go.set()
    # Read the poster's report before it is joined: a process that has put a
    # large object on a queue does not exit until someone reads it.
    report = await asyncio.to_thread(results.get)
    await asyncio.sleep(DRAIN_SECONDS)
    received_mb = (received[0] - at_start) / 1e6
    closed_during = closed[0]
    for ws in opened:
        await ws.close()
    for task in readers:
        task.cancel()

    sent = report["sent"]
    latencies = [(got[i] - t) * 1000 for got in arrivals[:len(opened)] for i, t in sent.items() if i in got]
    expected = report["events"] * len(opened)
    return {"mode": "feed", "sockets": len(opened), "closed": closed_during, "events": report["events"],
            "expected": expected, "delivered": len(latencies),
            "share": round(len(latencies) / expected, 4) if expected else 0,
            "p50": pct(latencies, 0.5), "p99": pct(latencies, 0.99), "max": pct(latencies, 1),
            "post_p50": pct(report["post_ms"], 0.5), "post_p99": pct(report["post_ms"], 0.99),
            "errors": errors[0] + report["errors"], "mb": round(received_mb, 1),
            "load_started": report["load_started"], "load_ended": report["load_ended"]}


def main() -> None:
    if len(sys.argv) != 7:
        sys.exit(__doc__.strip().splitlines()[-1])
    base, token, cookie, sockets, rate, seconds = sys.argv[1:]
    go, results = multiprocessing.Event(), multiprocessing.Queue()
    poster = multiprocessing.Process(target=post_events, args=(base, token, float(rate), float(seconds), go, results),
                                     daemon=True)
    poster.start()
    try:
        outcome = asyncio.run(measure(base, cookie, int(sockets), go, results))
    finally:
        go.set()
        poster.join(30)
    print(json.dumps(outcome), flush=True)


if __name__ == "__main__":
    main()
