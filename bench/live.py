"""Live fan-out benchmark: ActivityWeb's two sockets beside the closest peer, in one run.

For each size (sockets x events/s) and round, it measures:
  - ActivityWeb `/ws` (the JSON stream, token auth) with the Node client
    ../shared/bench/live_load.js in `aw` mode;
  - ActivityWeb `/feed/ws` (the dashboard socket and its partials, a
    signed-in session) with bench/feed_load.py, the same measure in Python;
  - with --peer-dir, the peer (Bun + SQLite, `/stream`) with live_load.js in
    `peer` mode, in the same round, so its figures sit beside ours.

ActivityWeb runs under gunicorn with gunicorn.conf.py (gevent, 2 workers) on a
scratch PostgreSQL database; the peer runs `bun src/index.ts` from the
operator's copy, in a scratch directory of its own (a fresh SQLite file each
round). Each measurement gets a fresh server, warmed by 20 POSTs. Printed per
measurement: share delivered, POST-start-to-receive p50/p99/max over every
(event, socket) pair, POST p50/p99, and CPU in cores (CPU seconds / wall seconds, from the first
POST to 1 s after the last) of the server processes (gunicorn master and
workers, or bun), of PostgreSQL's backends serving the bench database, of the
client, and of the whole machine. Results go to bench/results/live-*.json.

usage: .venv/bin/python bench/live.py [--sizes 500x100,1000x100] [--seconds 10] [--rounds 2]
           [--paths ws,feed] [--peer-dir /tmp/peer/apps/server | --no-peer] [--client ../shared/bench/live_load.js]
At the end it checks issue 11's targets per size and round (our p99 beside
the peer's from the same round, the load average at each measurement).
The client, both servers and PostgreSQL share this machine's cores: compare
figures taken in one run, and note what else was running.
"""
from __future__ import annotations

import argparse
import bisect
import datetime as dt
import json
import os
import re
import resource
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Callable, Iterable

import psutil
import requests
import sqlalchemy as sa

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import PYTHON, ROOT, app_env, flask, free_port, gunicorn, make_token, scratch_database  # noqa: E402

# The shared Node client: beside the main checkout, or beside a worktree's parent.
CLIENT_CANDIDATES = (ROOT / ".." / "shared" / "bench" / "live_load.js",
                     ROOT / ".." / ".." / "shared" / "bench" / "live_load.js")
DEFAULT_CLIENT = next((c for c in CLIENT_CANDIDATES if c.is_file()), CLIENT_CANDIDATES[0])
DEFAULT_PEER_DIR = Path("/tmp/peer/apps/server")
# Issue 11's targets, checked per size at the end.
TARGET_P99_MS = {500: 20.0, 1000: 50.0}
TARGET_CORES_500 = 0.64
DEFAULT_NODE_MODULES = Path("/tmp/liveload/node_modules")
FEED_CLIENT = ROOT / "bench" / "feed_load.py"
RESULTS = ROOT / "bench" / "results"
# live_load.js waits this long after its last POST before it reports and
# exits; a client that reports no load window of its own is placed by it.
CLIENT_DRAIN_SECONDS = 4.0
# CPU is counted from the first POST to this long after the last, so the
# deliveries of the last events are in it.
CPU_TAIL_SECONDS = 1.0
WARM_UP_POSTS = 20
USER_EMAIL, USER_PASSWORD = "bench@example.com", "bench password for the live feed"


# ------------------------------------------------------------------ CPU


class CpuSampler:
    """Cumulative CPU seconds of groups of processes, sampled on a thread so
    the CPU of any window can be read afterwards. A process keeps what it used
    while it was seen, so one that starts or ends mid-run still counts."""

    def __init__(self, groups: dict[str, Callable[[], Iterable[psutil.Process]]], interval: float = 0.2):
        self.groups, self.interval = groups, interval
        self.seen: dict[str, dict[tuple, float]] = {name: {} for name in groups}
        self.samples: list[tuple[float, dict[str, float]]] = []
        self.peak_rss: dict[str, float] = {name: 0.0 for name in groups}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _sample(self) -> None:
        now, totals = time.time(), {}
        for name, processes in self.groups.items():
            seen, rss = self.seen[name], 0
            for process in processes():
                try:
                    with process.oneshot():
                        cpu = process.cpu_times()
                        seen[(process.pid, process.create_time())] = cpu.user + cpu.system
                        rss += process.memory_info().rss
                except psutil.Error:
                    pass
            totals[name] = sum(seen.values())
            self.peak_rss[name] = max(self.peak_rss[name], rss / 2**20)
        machine = psutil.cpu_times()
        totals["machine"] = sum(machine) - machine.idle - getattr(machine, "iowait", 0.0)
        self.samples.append((now, totals))

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            self._sample()

    def __enter__(self):
        self._sample()
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()
        self._sample()

    def _at(self, t: float) -> dict[str, float]:
        times = [s[0] for s in self.samples]
        i = bisect.bisect_left(times, t)
        if i == 0:
            return self.samples[0][1]
        if i == len(self.samples):
            return self.samples[-1][1]
        (t0, a), (t1, b) = self.samples[i - 1], self.samples[i]
        share = (t - t0) / (t1 - t0) if t1 > t0 else 1.0
        return {name: a[name] + (b[name] - a[name]) * share for name in a}

    def cores(self, start: float, end: float) -> dict[str, float]:
        a, b = self._at(start), self._at(end)
        return {name: (b[name] - a[name]) / (end - start) for name in a}


def tree(root: psutil.Process) -> Callable[[], list[psutil.Process]]:
    def processes():
        try:
            return [root, *root.children(recursive=True)]
        except psutil.Error:
            return []
    return processes


class PostgresProcesses:
    """The local PostgreSQL server's processes, sorted: the backends (and
    autovacuum workers) of one database, and the server's shared processes
    (postmaster, walwriter, checkpointer, ...), which serve every database.
    Backends of other databases (other people's tests) are left out."""

    def __init__(self, database: str):
        self.database = database
        self.postmasters = [p for p in psutil.process_iter(["name", "ppid"])
                            if p.info["name"] == "postgres" and not self._is_postgres(p.info["ppid"])]
        self.kind: dict[tuple, str] = {}

    @staticmethod
    def _is_postgres(pid: int) -> bool:
        try:
            return psutil.Process(pid).name() == "postgres"
        except psutil.Error:
            return False

    def _classify(self, process: psutil.Process) -> str:
        key = (process.pid, process.create_time())
        if key not in self.kind:
            # "postgres: 15/main: <user> <database> <host>(<port>) <state>" for a
            # client backend, "postgres: 15/main: walwriter" for a shared one.
            title = " ".join(process.cmdline()).split(": ")[-1].split()
            if len(title) >= 3 and re.search(r"\(\d+\)$|^\[local\]$", title[2]):
                kind = "backend" if title[1] == self.database else "other"
            elif title[:2] == ["autovacuum", "worker"]:
                kind = "backend" if title[-1:] == [self.database] else "other"
            elif title[:2] == ["parallel", "worker"]:
                kind = "other"  # whose it is is not in the title
            else:
                kind = "shared"
            self.kind[key] = kind
        return self.kind[key]

    def _of(self, kind: str) -> list[psutil.Process]:
        found = [p for p in self.postmasters if kind == "shared"]
        for postmaster in self.postmasters:
            try:
                children = postmaster.children()
            except psutil.Error:
                continue
            for child in children:
                try:
                    if self._classify(child) == kind:
                        found.append(child)
                except psutil.Error:
                    pass
        return found

    def backends(self) -> list[psutil.Process]:
        return self._of("backend")

    def shared(self) -> list[psutil.Process]:
        return self._of("shared")


# ------------------------------------------------------------ measuring


def run_client(command: list[str], env: dict, groups: dict, seconds: float) -> dict:
    """Run one load client, which prints one JSON line, sampling CPU meanwhile."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    with CpuSampler(groups) as sampler:
        started = time.time()
        done = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=seconds + 300)
        ended = time.time()
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    lines = [line for line in done.stdout.splitlines() if line.startswith("{")]
    if done.returncode != 0 or not lines:
        raise RuntimeError(f"{' '.join(command[:2])} failed ({done.returncode}): {done.stderr[-2000:]}")
    outcome = json.loads(lines[-1])
    load_ended = outcome.get("load_ended", ended - CLIENT_DRAIN_SECONDS)
    load_started = outcome.get("load_started", load_ended - seconds)
    window = (load_started, load_ended + CPU_TAIL_SECONDS)
    cores = sampler.cores(*window)
    client_cpu = (after.ru_utime + after.ru_stime) - (before.ru_utime + before.ru_stime)
    return {"client": outcome, "cpu_window_s": round(window[1] - window[0], 2),
            "cores": {name: round(value, 3) for name, value in cores.items()},
            "client_cores": round(client_cpu / (ended - started), 3),
            "server_peak_rss_mb": round(sampler.peak_rss.get("server", 0.0), 1)}


def warm_up(url: str, body: dict, headers: dict | None = None) -> None:
    """Some POSTs, each on a connection of its own so every worker gets some:
    a fresh server's first requests open pools and fill caches, and that is
    not what a round measures."""
    for _ in range(WARM_UP_POSTS):
        answer = requests.post(url, json=body, headers={"Connection": "close", **(headers or {})}, timeout=10)
        answer.raise_for_status()


def node_env(node_modules: Path) -> dict:
    return dict(os.environ, NODE_PATH=str(node_modules))


def sign_in(base: str) -> str:
    """The dashboard user's session cookie, as a Cookie header value."""
    session = requests.Session()
    page = session.get(base + "/login", timeout=10).text
    csrf = re.search(r'name="csrf[-_]token" (?:value|content)="([^"]+)"', page).group(1)
    answer = session.post(base + "/login", data={"email": USER_EMAIL, "password": USER_PASSWORD, "csrf_token": csrf},
                          allow_redirects=False, timeout=10)
    if answer.status_code != 302:
        raise RuntimeError(f"sign-in failed: {answer.status_code}")
    return "; ".join(f"{c.name}={c.value}" for c in session.cookies)


def measure_ours(path: str, url: str, token: str, size: tuple[int, int], args) -> dict:
    sockets, rate = size
    with gunicorn("wsgi:app", app_env(url), workers=args.workers) as (base, master):
        groups = {"server": tree(psutil.Process(master.pid))}
        postgres = PostgresProcesses(sa.engine.make_url(url).database)
        if postgres.postmasters:
            groups |= {"pg": postgres.backends, "pg_shared": postgres.shared}
        warm_up(base + "/api/v1/activities", {"type": "bench.warm_up", "title": "Warm-up"},
                {"Authorization": f"Bearer {token}"})
        if path == "ws":
            command = ["node", str(args.client), "aw", base, token, str(sockets), str(rate), f"{args.seconds:g}"]
            return run_client(command, node_env(args.node_modules), groups, args.seconds)
        command = [PYTHON, str(FEED_CLIENT), base, token, sign_in(base), str(sockets), str(rate), f"{args.seconds:g}"]
        return run_client(command, dict(os.environ), groups, args.seconds)


def measure_peer(script: Path, size: tuple[int, int], args) -> dict:
    sockets, rate = size
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    with tempfile.TemporaryDirectory(prefix="aw-bench-peer-") as scratch, tempfile.TemporaryFile() as log:
        # It opens `events.db` in its working directory: a fresh one each round.
        server = subprocess.Popen([str(args.bun), str(script)], cwd=scratch, stdout=subprocess.DEVNULL, stderr=log,
                                  env=dict(os.environ, SERVER_PORT=str(port)))
        try:
            deadline = time.time() + 20
            while True:
                if server.poll() is not None or time.time() > deadline:
                    log.seek(0)
                    raise RuntimeError(f"the peer did not start: {log.read().decode(errors='replace')[-2000:]}")
                try:
                    requests.get(base + "/", timeout=0.5)
                    break
                except requests.RequestException:
                    time.sleep(0.1)
            warm_up(base + "/events", {"source_app": "warm-up", "session_id": "warm-up", "hook_event_type": "WarmUp",
                                       "payload": {}})
            command = ["node", str(args.client), "peer", base, "-", str(sockets), str(rate), f"{args.seconds:g}"]
            return run_client(command, node_env(args.node_modules), {"server": tree(psutil.Process(server.pid))},
                              args.seconds)
        finally:
            server.terminate()
            try:
                server.wait(10)
            except subprocess.TimeoutExpired:
                server.kill()


# -------------------------------------------------------------- output

COLUMNS = ("size", "round", "server", "sockets", "delivered", "p50 ms", "p99 ms", "max ms", "POST p50/p99 ms",
           "server cores", "PG cores", "client cores", "machine cores", "errors")
WIDTHS = (9, 5, 20, 7, 9, 7, 7, 7, 15, 12, 8, 12, 13, 6)


def fmt(value, digits: int = 1) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def table_line(cells) -> str:
    return "  ".join(f"{cell:>{width}}" if i > 2 else f"{cell:<{width}}"
                     for i, (cell, width) in enumerate(zip(cells, WIDTHS)))


def print_row(row: dict) -> None:
    c, cores = row["client"], row["cores"]
    print(table_line((
        row["size"], str(row["round"]), row["name"], str(c["sockets"]), f"{c['share'] * 100:.2f} %",
        fmt(c["p50"]), fmt(c["p99"]), fmt(c["max"]), f"{fmt(c['post_p50'])} / {fmt(c['post_p99'])}",
        fmt(cores["server"], 2), fmt(cores.get("pg"), 2), fmt(row["client_cores"], 2), fmt(cores["machine"], 2),
        str(c["errors"]))), flush=True)


def print_verdicts(rows: list[dict]) -> None:
    """Per size and round: our p99 beside the peer's, and issue 11's targets."""
    print("  targets (issue 11): 100 % delivered; p99 <= 20 ms at 500 sockets and below the peer's p99 in the"
          " same round; p99 <= 50 ms at 1,000; server + PG cores <= 0.64 at 500 x 100")
    for (size, round_), group in _grouped(rows):
        peer = next((r for r in group if r["target"] == "peer"), None)
        for row in group:
            if row["target"] == "peer":
                continue
            c, sockets = row["client"], row["sockets"]
            cores = row["cores"]["server"] + (row["cores"].get("pg") or 0.0)
            checks = [f"delivered {'ok' if c['share'] >= 1.0 else 'NO'}"]
            if sockets in TARGET_P99_MS and c["p99"] is not None:
                checks.append(f"p99 {c['p99']:.1f} <= {TARGET_P99_MS[sockets]:g} ms "
                              f"{'ok' if c['p99'] <= TARGET_P99_MS[sockets] else 'NO'}")
            if peer and peer["client"]["p99"] and c["p99"] is not None:
                ratio = c["p99"] / peer["client"]["p99"]
                checks.append(f"p99 {ratio:.2f} x the peer's ({peer['client']['p99']:.1f} ms) "
                              f"{'ok' if ratio < 1 else 'NO'}")
            if sockets == 500:
                checks.append(f"cores {cores:.2f} <= {TARGET_CORES_500} {'ok' if cores <= TARGET_CORES_500 else 'NO'}")
            print(f"  {size} round {round_} {row['name']}: " + "; ".join(checks)
                  + f" (load average {row.get('load_average', 0):.1f})")


def _grouped(rows: list[dict]):
    keys = []
    for row in rows:
        if (row["size"], row["round"]) not in keys:
            keys.append((row["size"], row["round"]))
    return [(key, [r for r in rows if (r["size"], r["round"]) == key]) for key in keys]


def uptime() -> str:
    found = shutil.which("uptime")
    if found:
        return subprocess.run([found], capture_output=True, text=True).stdout.strip()
    return "load average: " + ", ".join(f"{x:.2f}" for x in os.getloadavg())


def git_commit() -> str:
    head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True).stdout.strip()
    dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=ROOT,
                           capture_output=True, text=True).stdout.strip()
    return head + ("-dirty" if dirty else "")


# ----------------------------------------------------------------- main


def parse_sizes(text: str) -> list[tuple[int, int]]:
    try:
        return [(int(s), int(r)) for s, r in (part.strip().split("x") for part in text.split(","))]
    except ValueError:
        raise argparse.ArgumentTypeError(f"sizes are SOCKETSxRATE[,...], e.g. 500x100,1000x100: {text!r}") from None


def parse_paths(text: str) -> list[str]:
    paths = [p.strip() for p in text.split(",") if p.strip()]
    if not paths or set(paths) - {"ws", "feed"}:
        raise argparse.ArgumentTypeError(f"paths are ws and/or feed: {text!r}")
    return paths


def peer_script(peer_dir: Path) -> Path:
    for candidate in (peer_dir / "src" / "index.ts", peer_dir / "apps" / "server" / "src" / "index.ts"):
        if candidate.is_file():
            return candidate.resolve()
    sys.exit(f"--peer-dir {peer_dir}: no src/index.ts there (see README, Benchmarks: live fan-out)")


def check_client(args) -> None:
    if not shutil.which("node"):
        sys.exit("node is not on PATH (Node 20)")
    if not args.client.is_file():
        sys.exit(f"the Node client is not at {args.client}: pass --client PATH/live_load.js")
    probe = subprocess.run(["node", "-e", "require('ws')"], env=node_env(args.node_modules), capture_output=True)
    if probe.returncode != 0:
        sys.exit(f"the ws module is not in {args.node_modules}: npm install --prefix /tmp/liveload ws@8 bun@1.4.4")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", type=parse_sizes, default=parse_sizes("500x100,1000x100"),
                        help="SOCKETSxEVENTS_PER_SECOND, comma-separated (default 500x100,1000x100)")
    parser.add_argument("--seconds", type=float, default=10, help="seconds of posting per measurement (10)")
    parser.add_argument("--rounds", type=int, default=1, help="rounds per size, each measuring every server (1)")
    parser.add_argument("--paths", type=parse_paths, default=["ws", "feed"],
                        help="ActivityWeb sockets to measure: ws (JSON /ws), feed (dashboard /feed/ws); default both")
    parser.add_argument("--peer-dir", type=Path,
                        default=DEFAULT_PEER_DIR if (DEFAULT_PEER_DIR / "src" / "index.ts").is_file() else None,
                        help="the peer's apps/server directory, prepared as the README says "
                             f"(default {DEFAULT_PEER_DIR} when it is there)")
    parser.add_argument("--no-peer", action="store_true", help="measure ActivityWeb only")
    parser.add_argument("--client", type=Path, default=DEFAULT_CLIENT, help="live_load.js (default ../shared/bench/)")
    parser.add_argument("--node-modules", type=Path, default=DEFAULT_NODE_MODULES,
                        help="where npm installed ws and bun (default /tmp/liveload/node_modules)")
    parser.add_argument("--bun", type=Path, help="the bun binary (default NODE_MODULES/.bin/bun)")
    parser.add_argument("--workers", type=int, default=2, help="gunicorn workers (2)")
    args = parser.parse_args()
    args.client = args.client.resolve()
    if args.no_peer:
        args.peer_dir = None
    args.bun = args.bun or args.node_modules / ".bin" / "bun"
    if "ws" in args.paths or args.peer_dir:
        check_client(args)
    script = None
    if args.peer_dir:
        script = peer_script(args.peer_dir)
        if not os.access(args.bun, os.X_OK):
            sys.exit(f"bun is not at {args.bun}: npm install --prefix /tmp/liveload ws@8 bun@1.4.4, or pass --bun")

    started = dt.datetime.now(dt.timezone.utc)
    report = {"started": started.isoformat(timespec="seconds"), "commit": git_commit(), "cpus": os.cpu_count(),
              "uptime_before": uptime(), "seconds": args.seconds, "workers": args.workers,
              "client": str(args.client), "peer_script": str(script) if script else None, "rows": []}
    print(f"live fan-out, {args.seconds:g} s of posting per measurement, {os.cpu_count()} CPUs, commit {report['commit']}")
    print(f"  before: {report['uptime_before']}")
    print(table_line(COLUMNS))

    with scratch_database("aw_bench_live") as url:
        token = make_token(url, "bench")
        if "feed" in args.paths:
            flask(url, "users", "create", "--email", USER_EMAIL, "--tenant", "bench", "--role", "viewer",
                  input=USER_PASSWORD + "\n")
        for sockets, rate in args.sizes:
            for round_ in range(1, args.rounds + 1):
                runs = [(f"ActivityWeb /{'ws' if p == 'ws' else 'feed/ws'}", p) for p in args.paths]
                if script:
                    runs.append(("peer /stream", "peer"))
                for name, what in runs:
                    if what == "peer":
                        result = measure_peer(script, (sockets, rate), args)
                    else:
                        result = measure_ours(what, url, token, (sockets, rate), args)
                    row = {"size": f"{sockets}x{rate}", "sockets": sockets, "rate": rate, "round": round_,
                           "name": name, "target": what, **result}
                    row["load_average"] = os.getloadavg()[0]
                    report["rows"].append(row)
                    print_row(row)

    print_verdicts(report["rows"])
    report["uptime_after"] = uptime()
    print(f"  after:  {report['uptime_after']}")
    print("  cores: CPU seconds / wall seconds from the first POST to 1 s after the last. server: gunicorn master +"
          " workers, or bun; PG: the bench database's backends; client: the load client over its whole run;"
          " machine: every process.")
    shared = [row["cores"].get("pg_shared") for row in report["rows"] if row["cores"].get("pg_shared") is not None]
    if shared:
        print(f"  PostgreSQL's shared processes (walwriter, checkpointer, ...; every database's) used "
              f"{min(shared):.2f}-{max(shared):.2f} cores beside ours.")
    RESULTS.mkdir(parents=True, exist_ok=True)
    out = RESULTS / f"live-{started.strftime('%Y%m%d-%H%M%S')}.json"
    out.write_text(json.dumps(report, indent=2) + "\n")
    print(f"  results: {out.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
