"""HTTP source under load: a real `shipper run` (http source, SQLite sink) in a subprocess, measured from outside.

    .venv/bin/python -m bench.http_server [--concurrent 500] [--keepalive 1000] [--idle 2000]

(a) --keepalive GET /healthz on one keep-alive connection: p50 / p99 latency (a Nagle stall shows as ~40 ms);
(b) --concurrent pushes of distinct events on as many connections at once: how many got 200, how many
    connections were reset, wall time, and that every acknowledged event is in the store;
(c) --idle connections opened and left silent: the server's threads and RSS, and how long a good push
    takes meanwhile.
Prints the figures and writes bench/results/http_server.json (min / median / max over --repeat runs).
"""
from __future__ import annotations

import argparse
import concurrent.futures
import http.client
import json
import os
import re
import socket
import sqlite3
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

from bench.stats import spread

RESULTS = Path(__file__).resolve().parents[1] / "bench" / "results"
TOKEN = "bench-token-0123456789"
CONFIG = """
[shipper]
data_dir = "{data}"
[[sources]]
type = "http"
listen = "127.0.0.1:0"
[[sinks]]
type = "sqlite"
"""


def event_body() -> bytes:
    """A CloudMonitor StateChange event with an id of its own (stored once per id)."""
    return ('{"ver": "1.0", "id": "%s", "product": "ECS", "level": "INFO", "name": "Instance:StateChange", '
            '"userId": "1543729860417752", "eventTime": "20250318T102249.760+0800", "regionId": "cn-shanghai", '
            '"resourceId": "acs:ecs:cn-shanghai:1543729860417752:instance/i-uf6a8k2m5q9t3w7x1z4c", '
            '"content": {"resourceId": "i-uf6a8k2m5q9t3w7x1z4c", "resourceType": "ALIYUN::ECS::Instance", '
            '"state": "Running"}}' % uuid.uuid4()).encode()


def start(workdir: Path) -> tuple[subprocess.Popen, int]:
    (workdir / "config.toml").write_text(CONFIG.format(data=workdir / "data"))
    proc = subprocess.Popen([sys.executable, "-m", "shipper", "run"], cwd=workdir, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, env=dict(os.environ, SHIPPER_WEBHOOK_TOKEN=TOKEN))
    while True:
        line = proc.stdout.readline().decode()
        if not line:
            sys.exit("shipper run exited before listening")
        match = re.search(r"listening on http://127\.0\.0\.1:(\d+)", line)
        if match:
            return proc, int(match.group(1))


def push(port: int, body: bytes) -> int | str:
    try:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
        conn.request("POST", "/", body=body, headers={"X-Shipper-Token": TOKEN})
        response = conn.getresponse()
        response.read()
        conn.close()
        return response.status
    except OSError as e:
        return type(e).__name__


def concurrent_pushes(port: int, n: int, db: Path) -> None:
    t0 = time.monotonic()
    with concurrent.futures.ThreadPoolExecutor(n) as pool:
        answers = list(pool.map(lambda _: push(port, event_body()), range(n)))
    elapsed = time.monotonic() - t0
    ok = answers.count(200)
    stored = sqlite3.connect(db).execute('SELECT count(*) FROM "ecs-events"').fetchone()[0]
    others = sorted({a for a in answers if a != 200}, key=str)
    print(f"(b) {n} concurrent pushes: {ok} answered 200, {n - ok} not ({others}); {elapsed:.2f} s; "
          f"{stored} events stored")
    return {"concurrent_answered_200": ok, "concurrent_not_200": n - ok, "concurrent_seconds": elapsed,
            "concurrent_stored": stored}


def keepalive(port: int, n: int) -> None:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    latencies = []
    for _ in range(n):
        t0 = time.perf_counter()
        conn.request("GET", "/healthz")
        conn.getresponse().read()
        latencies.append(time.perf_counter() - t0)
    conn.close()
    latencies.sort()
    print(f"(a) {n} keep-alive GET /healthz: p50 {latencies[n // 2] * 1000:.2f} ms, "
          f"p99 {latencies[int(n * 0.99)] * 1000:.2f} ms, max {latencies[-1] * 1000:.2f} ms")
    return {"keepalive_p50_ms": latencies[n // 2] * 1000, "keepalive_p99_ms": latencies[int(n * 0.99)] * 1000}


def threads_rss(pid: int) -> tuple[int, float]:
    status = dict(line.split(":", 1) for line in Path(f"/proc/{pid}/status").read_text().splitlines())
    return int(status["Threads"]), int(status["VmRSS"].split()[0]) / 1024


def idle_flood(proc: subprocess.Popen, port: int, n: int) -> None:
    before = threads_rss(proc.pid)
    sockets = [socket.create_connection(("127.0.0.1", port)) for _ in range(n)]
    time.sleep(1)
    during = threads_rss(proc.pid)
    t0 = time.monotonic()
    status = push(port, event_body())
    took = time.monotonic() - t0
    for s in sockets:
        s.close()
    print(f"(c) {n} idle connections: threads/RSS MiB before {before}, during {during}; a good push "
          f"meanwhile: {status} in {took * 1000:.0f} ms")
    return {"idle_threads": during[0], "idle_rss_mib": during[1], "idle_rss_growth_mib": during[1] - before[1],
            "idle_good_push_ms": took * 1000 if status == 200 else float("inf")}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--concurrent", type=int, default=500)
    parser.add_argument("--keepalive", type=int, default=1000)
    parser.add_argument("--idle", type=int, default=2000)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    runs = []
    for _ in range(args.repeat):
        with tempfile.TemporaryDirectory() as tmp:
            proc, port = start(Path(tmp))
            try:
                run = keepalive(port, args.keepalive)  # first: the commits of (b) would share the CPU with it
                run |= concurrent_pushes(port, args.concurrent, Path(tmp) / "data" / "events.db")
                run |= idle_flood(proc, port, args.idle)
                runs.append(run)
            finally:
                proc.terminate()
                proc.wait(30)
    result = {"date": time.strftime("%Y-%m-%d %H:%M"), "params": vars(args),
              **{key: spread([r[key] for r in runs]) for key in runs[0]}}
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "http_server.json").write_text(json.dumps(result, indent=2) + "\n")



if __name__ == "__main__":
    main()
