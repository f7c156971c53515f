"""What one Claude Code hook body may cost: bounded CPU, whatever was sent.

A 7.8 MB body with 260,000 keys took 4.5 s of CPU, and with gevent that froze
every request on the worker. Now such a body is cut before it is walked: the
test measures the worker's CPU for it on a real gunicorn beside what a plain
`json.loads` of the same body costs in the same run (a ratio, because this
shared machine's speed drifts up to 2x between days; the old walk was 40x the
parse), and a concurrent /healthz must answer within 100 ms meanwhile.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import warnings

import psutil
import pytest
import requests

from bench.common import gunicorn
from conftest import make_app, teardown_app

PINGER = """
import http.client, sys, time
host, port = sys.argv[1].removeprefix("http://").split(":")
connection = http.client.HTTPConnection(host, int(port), timeout=5)
print("ready", flush=True)
while True:
    started = time.monotonic()
    connection.request("GET", "/healthz")
    connection.getresponse().read()
    print(started, time.monotonic() - started, flush=True)
    time.sleep(0.002)
"""
# The worker may spend on one accepted body at most this share of what parsing
# the whole body costs: less than a parse means it was cut before the walk.
PARSE_SHARE_BOUND = 1.0


def many_keys(n: int = 260_000) -> bytes:
    """A PostToolUse whose tool_response has `n` keys: about 7.8 MB."""
    payload = {"hook_event_name": "PostToolUse", "session_id": "s-big", "tool_name": "Bash", "tool_use_id": "toolu_big",
               "cwd": "/work/project", "tool_input": {"command": "env | sort", "nested": {"a": 1}},
               "tool_response": {f"k{i:06d}": "v" * 14 for i in range(n)}}
    return json.dumps(payload, separators=(",", ":")).encode()


def test_a_body_with_too_many_keys_keeps_its_named_fields(client, auth_headers, app):
    body = many_keys()
    assert len(body) > 7_000_000
    response = client.post("/api/v1/integrations/claude-code", data=body,
                           headers={**auth_headers, "Content-Type": "application/json"})
    assert response.status_code == 201
    stored = client.get(response.headers["Location"], headers=auth_headers).get_json()
    assert stored["title"] == "Bash: env | sort"
    assert stored["session_id"] == "s-big" and stored["correlation_id"] == "toolu_big"
    assert "tool_response" not in stored["data"] and "7,020,194 bytes" in stored["data"]["cut"]


def test_a_batch_with_too_many_keys_is_refused_so_the_hook_splits_it(client, auth_headers):
    item = {"hook_event_name": "Notification", "session_id": "s", "message": "x", "extra": {f"k{i}": 1 for i in range(30_000)}}
    response = client.post("/api/v1/integrations/claude-code", data=json.dumps([item, item]),
                           headers={**auth_headers, "Content-Type": "application/json"})
    assert response.status_code == 413
    assert response.get_json()["error"]["code"] == "body_too_large"


def test_an_object_with_many_keys_is_cut_before_the_walk(client, auth_headers):
    payload = {"hook_event_name": "PostToolUse", "session_id": "s", "tool_name": "Read", "tool_use_id": "t-wide",
               "tool_response": {f"k{i}": "v" for i in range(5000)}}
    response = client.post("/api/v1/integrations/claude-code", json=payload, headers=auth_headers)
    data = client.get(response.headers["Location"], headers=auth_headers).get_json()["data"]
    assert len(data["tool_response"]) == 101 and data["tool_response"]["[cut]"] == "4900 more keys cut"


@pytest.mark.parametrize("text", ['"\\ud800"', '"a\\udfffb"', '"\\udc00\\ud800"'])
def test_a_lone_surrogate_in_a_hook_body_is_stored_replaced(client, auth_headers, text):
    body = ('{"hook_event_name": "UserPromptSubmit", "session_id": "s-sur", "prompt": ' + text
            + ', "cwd": ' + text + ', ' + text + ': 1}').encode()
    response = client.post("/api/v1/integrations/claude-code", data=body,
                           headers={**auth_headers, "Content-Type": "application/json"})
    assert response.status_code == 201, response.get_data(as_text=True)
    stored = client.get(response.headers["Location"], headers=auth_headers).get_json()
    assert "\ufffd" in stored["summary"] and "\ufffd" in json.dumps(stored["data"], ensure_ascii=False)


@pytest.mark.server
def test_the_260k_key_body_costs_less_cpu_than_parsing_it_while_healthz_answers(tmp_path, request):
    app = make_app("sqlite", tmp_path, request)
    try:
        from activityweb import auth, store

        with app.app_context():
            _, secret = auth.create_token(store.get_or_create_tenant("acme"), "t", ["ingest", "read"])
    finally:
        teardown_app(app)
    env = dict(os.environ, DATABASE_URL=app.config["SQLALCHEMY_DATABASE_URI"], SECRET_KEY="k" * 40, LOG_LEVEL="warning")
    env.pop("ACTIVITYWEB_LOCAL_MODE", None)
    headers = {"Authorization": f"Bearer {secret}", "Content-Type": "application/json"}
    body = many_keys()
    with gunicorn("wsgi:app", env, workers=1) as (base, master):
        worker = psutil.Process(master.pid).children()[0]
        session = requests.Session()
        url = base + "/api/v1/integrations/claude-code"

        def cpu() -> float:
            times = worker.cpu_times()
            return times.user + times.system

        assert session.post(url, data=body, headers=headers, timeout=30).status_code == 201  # warm
        costs = []
        for _ in range(3):
            before = cpu()
            assert session.post(url, data=body, headers=headers, timeout=30).status_code in (200, 201)
            costs.append(round(cpu() - before, 3))  # whole milliseconds: the kernel counts 10 ms ticks
        # The kernel counts CPU in 10 ms ticks; the cheapest of three runs is the body's own cost.
        parse = min(parse_cpu(body) for _ in range(3))
        print(f"worker CPU per 7.8 MB body: {[round(c * 1000) for c in costs]} ms; "
              f"json.loads of it here: {parse * 1000:.0f} ms")
        assert min(costs) <= PARSE_SHARE_BOUND * parse, f"worker CPU per body: {costs}, a parse: {parse:.3f}"

        # The pinger is a process of its own, so this process's sending of the
        # bodies (and its GIL) cannot delay the pings it times. Best of three
        # tries, as for the CPU: a shared machine's load only ever adds.
        tries = [ping_while_posting(base, session, url, body, headers) for _ in range(3)]
    for baseline, latencies, posting in tries:
        print(f"/healthz: {len(baseline)} answers alone, slowest {max(baseline) * 1000:.1f} ms; {len(latencies)} "
              f"during 5 posts ({posting * 1000:.0f} ms), slowest {max(latencies) * 1000:.1f} ms")
    assert all(latencies for _, latencies, _ in tries), "no /healthz answered during the posts"
    slowest = min(max(latencies) for _, latencies, _ in tries)
    load = os.getloadavg()[0]
    if load > (os.cpu_count() or 1):
        # Wall-clock latency on an oversubscribed machine measures its scheduler (the
        # pinger waits for a core), not the worker; the CPU bound above still holds.
        warnings.warn(f"/healthz latency not checked: load average {load:.1f} on {os.cpu_count()} cores "
                      f"(slowest during the posts, best of 3: {slowest * 1000:.0f} ms)")
        return
    assert slowest < 0.100, f"slowest /healthz during the posts (best of 3): {slowest * 1000:.0f} ms"


def parse_cpu(body: bytes) -> float:
    """This process's CPU seconds for one plain `json.loads` of `body`: the ceiling of the same run."""
    started = time.process_time()
    json.loads(body)
    return time.process_time() - started


def ping_while_posting(base, session, url, body, headers):
    """(latencies of pings alone, latencies of the pings that overlapped 5 posts of `body`, how long the posts took).

    The pinger prints each ping's start (CLOCK_MONOTONIC, shared by processes)
    and latency, so a ping still stalled when the posts end is counted too."""
    pinger = subprocess.Popen([sys.executable, "-c", PINGER, base], stdout=subprocess.PIPE, text=True)
    try:
        assert pinger.stdout.readline().strip() == "ready"
        # The same pings with no post: what this machine's own load costs a /healthz.
        baseline = [float(pinger.stdout.readline().split()[1]) for _ in range(60)]
        posted_from = time.monotonic()
        for _ in range(5):
            assert session.post(url, data=body, headers=headers, timeout=30).status_code in (200, 201)
        posted_to = time.monotonic()
        during = []
        while True:  # every ping that overlapped the posts, up to the first one begun after them
            started, latency = map(float, pinger.stdout.readline().split())
            if started > posted_to:
                break
            if started + latency >= posted_from:
                during.append(latency)
    finally:
        pinger.terminate()
        pinger.communicate(10)
    return baseline, during, posted_to - posted_from
