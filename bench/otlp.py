"""OTLP receiver benchmark on PostgreSQL under gunicorn (the Procfile's settings).

Replays Claude Code's recorded exports (tests/fixtures/otlp/protobuf/), each
made unique (its records' times shifted, so none is a duplicate), and
measures, in one run on the same server and with the same client threads:
  1. logs exports/s and the cost per stored event (POST /api/v1/otlp/v1/logs);
  2. metrics exports/s and per data point (POST /api/v1/otlp/v1/metrics);
  3. beside them, the single-event path: one hook payload per POST
     (/api/v1/integrations/claude-code), events/s and the cost per event;
  4. a resent batch (every record a duplicate): exports/s.

Usage: .venv/bin/python bench/otlp.py [--seconds 10] [--threads 4]
Needs PostgreSQL at TEST_DATABASE_URL.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import threading
import time
import uuid
from datetime import datetime, timedelta, timezone
from pathlib import Path

import requests

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import ROOT, app_env, gunicorn, header, make_token, row, scratch_database  # noqa: E402

FIXTURES = ROOT / "tests" / "fixtures"
RECORDED = FIXTURES / "otlp" / "protobuf"
PROTOBUF = "application/x-protobuf"


def recorded(signal: str) -> list[bytes]:
    found = []
    for meta_path in sorted(RECORDED.glob("*.meta.json")):
        meta = json.loads(meta_path.read_text())
        if meta["path"] == f"/v1/{signal}":
            found.append((RECORDED / meta["file"]).read_bytes())
    return found


def unique_logs(count: int) -> tuple[list[bytes], int]:
    """`count` logs exports, each a recorded one with its times shifted by its number
    (so no record repeats); and the Claude Code events (not bookkeeping) they hold."""
    from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest

    from activityweb.integrations.claude_code_otel import BOOKKEEPING
    from activityweb.integrations.otlp import attributes

    templates = []
    for body in recorded("logs"):
        message = ExportLogsServiceRequest()
        message.ParseFromString(body)
        kept = sum(1 for rl in message.resource_logs for sl in rl.scope_logs for r in sl.log_records
                   if attributes(r.attributes).get("event.name") not in BOOKKEEPING)
        if kept:
            templates.append((message, kept))
    bodies, events = [], 0
    for n in range(count):
        message, kept = templates[n % len(templates)]
        copy = type(message)()
        copy.CopyFrom(message)
        for rl in copy.resource_logs:
            for sl in rl.scope_logs:
                for record in sl.log_records:
                    record.time_unix_nano += (n + 1) * 1000
        bodies.append(copy.SerializeToString())
        events += kept
    return bodies, events / count


def unique_metrics(count: int) -> tuple[list[bytes], int]:
    from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import ExportMetricsServiceRequest

    templates = []
    for body in recorded("metrics"):
        message = ExportMetricsServiceRequest()
        message.ParseFromString(body)
        templates.append(message)
    bodies, points = [], 0
    for n in range(count):
        copy = ExportMetricsServiceRequest()
        copy.CopyFrom(templates[n % len(templates)])
        for rm in copy.resource_metrics:
            for sm in rm.scope_metrics:
                for metric in sm.metrics:
                    for point in metric.sum.data_points:
                        point.time_unix_nano += (n + 1) * 1000
                        points += 1
        bodies.append(copy.SerializeToString())
    return bodies, points / count


def hook_payloads(count: int) -> list[bytes]:
    """Single hook payloads (a recorded PreToolUse), each with its own tool_use_id and stamp."""
    base = json.loads((FIXTURES / "claude_code" / "hooks" / "PreToolUse.json").read_text())
    start = datetime.now(timezone.utc) - timedelta(hours=1)
    run = uuid.uuid4().hex[:8]
    return [json.dumps({**base, "tool_use_id": f"toolu_{run}_{n}",
                        "activityweb_occurred_at": (start + timedelta(microseconds=n)).isoformat()}).encode()
            for n in range(count)]


def drive(url: str, bodies: list[bytes], content_type: str, token: str, seconds: float, threads: int) -> dict:
    """POST bodies (each once, in order) from `threads` clients for `seconds`; requests/s and errors."""
    counter = iter(range(len(bodies)))
    lock = threading.Lock()
    done = {"requests": 0, "errors": 0}
    deadline = time.perf_counter() + seconds

    def worker():
        session = requests.Session()
        headers = {"Authorization": f"Bearer {token}", "Content-Type": content_type}
        while time.perf_counter() < deadline:
            with lock:
                n = next(counter, None)
            if n is None:
                return
            response = session.post(url, data=bodies[n], headers=headers, timeout=30)
            with lock:
                done["requests" if response.status_code in (200, 201) else "errors"] += 1

    started = time.perf_counter()
    pool = [threading.Thread(target=worker) for _ in range(threads)]
    for t in pool:
        t.start()
    for t in pool:
        t.join()
    elapsed = time.perf_counter() - started
    return {"rps": done["requests"] / elapsed, "errors": done["errors"], "requests": done["requests"]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=10)
    parser.add_argument("--threads", type=int, default=4)
    parser.add_argument("--bodies", type=int, default=3000, help="unique bodies prepared per path")
    args = parser.parse_args()
    sys.path.insert(0, str(ROOT))

    logs, events_per_export = unique_logs(args.bodies)
    metrics, points_per_export = unique_metrics(args.bodies)
    hooks = hook_payloads(args.bodies * 20)
    print(f"OTLP benchmark: gunicorn gevent x2 workers, PostgreSQL, {os.cpu_count()} CPUs, {args.seconds:g}s per "
          f"measure, {args.threads} client threads; recorded Claude Code 2.1.332 exports "
          f"({events_per_export:.1f} stored events, {points_per_export:.1f} metric points per export on average)")
    with scratch_database("aw_bench_otlp") as url:
        token = make_token(url)
        with gunicorn("wsgi:app", app_env(url)) as (base, _):
            drive(base + "/api/v1/otlp/v1/logs", logs[-50:], PROTOBUF, token, 2, args.threads)  # warm up
            log_run = drive(base + "/api/v1/otlp/v1/logs", logs[:-50], PROTOBUF, token, args.seconds, args.threads)
            metric_run = drive(base + "/api/v1/otlp/v1/metrics", metrics, PROTOBUF, token, args.seconds, args.threads)
            hook_run = drive(base + "/api/v1/integrations/claude-code", hooks, "application/json", token,
                             args.seconds, args.threads)
            resent = drive(base + "/api/v1/otlp/v1/logs", logs[:log_run["requests"]] or logs, PROTOBUF, token,
                           args.seconds, args.threads)

    log_eps = log_run["rps"] * events_per_export
    point_ps = metric_run["rps"] * points_per_export
    header("Claude Code telemetry vs hooks (ceiling column: the single-event hook POST, same run)")
    row("logs exports/s", f"{log_run['rps']:,.1f}", "", f"{log_run['errors']} errors")
    row("  events stored/s", f"{log_eps:,.0f}", f"{hook_run['rps']:,.0f}", "hook POSTs: one event each")
    row("  cost per event (threads / rate)", f"{args.threads / log_eps * 1e6:,.0f} µs",
        f"{args.threads / hook_run['rps'] * 1e6:,.0f} µs", "")
    row("metrics exports/s", f"{metric_run['rps']:,.1f}", "", f"{metric_run['errors']} errors")
    row("  points stored/s", f"{point_ps:,.0f}", "", "")
    row("  cost per point", f"{args.threads / point_ps * 1e6:,.0f} µs", "", "")
    row("resent logs exports/s (all duplicates)", f"{resent['rps']:,.1f}", "", f"{resent['errors']} errors")
    row("hook POST errors", f"{hook_run['errors']}", "", "")


if __name__ == "__main__":
    main()
