"""The HTTP push path of a real `shipper run` (http source -> SQLite): how fast `shipper simulate --to`
posts with its default connections, and the commit latency a CloudMonitor-like sender sees at a steady
rate (one event per request, each answered only after its commit).

    python -m bench.http_push [--repeat 3] [--rate 1000] [--seconds 10]

Writes bench/results/http_push.json; bench/report.py turns it into bench/RESULTS.md.
"""
from __future__ import annotations

import argparse
import http.client
import json
import os
import re
import subprocess
import sys
import tempfile
import threading
import time
from contextlib import contextmanager
from pathlib import Path

from bench.stats import spread

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from shipper.simulate import FleetSimulator  # noqa: E402

RESULTS = REPO / "bench" / "results"
TOKEN = "bench-http-token"
CONFIG = """
[shipper]
data_dir = "{data}"
[[sources]]
type = "http"
listen = "127.0.0.1:0"
token_env = "SHIPPER_WEBHOOK_TOKEN"
[[sinks]]
type = "sqlite"
path = "{data}/events.db"
"""


@contextmanager
def shipper_run():
    """A `shipper run` with the shipped batch settings and only the http source; yields its port."""
    with tempfile.TemporaryDirectory() as tmp:
        (Path(tmp) / "config.toml").write_text(CONFIG.format(data=tmp))
        env = dict(os.environ, SHIPPER_WEBHOOK_TOKEN=TOKEN)
        proc = subprocess.Popen([sys.executable, "-m", "shipper", "run", "--config", f"{tmp}/config.toml"],
                                cwd=tmp, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        try:
            while True:
                line = proc.stdout.readline().decode()
                if not line:
                    raise SystemExit("shipper run exited before listening")
                match = re.search(r"listening on https?://127\.0\.0\.1:(\d+)", line)
                if match:
                    break
            threading.Thread(target=proc.stdout.read, daemon=True).start()  # keep its pipe drained
            yield int(match.group(1)), tmp, env
        finally:
            proc.terminate()
            proc.wait()


def simulate_to(port: int, cwd: str, env: dict, instances: int) -> float:
    """events/s of `shipper simulate --to` with its default connections."""
    started = time.monotonic()
    out = subprocess.run([sys.executable, "-m", "shipper", "simulate", "--instances", str(instances), "--seed", "7",
                          "--to", f"http://127.0.0.1:{port}/"], cwd=cwd, env=env, capture_output=True, timeout=600)
    elapsed = time.monotonic() - started
    posted = re.search(rb"posted (\d+) messages: \1 accepted", out.stderr)
    if not posted:
        raise SystemExit(f"simulate --to failed: {out.stderr.decode()[-2000:]}")
    return int(posted.group(1)) / elapsed


def steady(port: int, rate: float, seconds: float, connections: int = 64) -> dict:
    """Pushes paced at `rate` per second over keep-alive connections; latency from send to answer."""
    bodies = [e.body for e in FleetSimulator(instances=max(int(rate * seconds) // 4, 10), seed=11,
                                                start_ms=1_760_000_000_000).events()]
    count = min(int(rate * seconds), len(bodies))
    latencies: list[float] = []
    statuses: dict[int, int] = {}
    lock = threading.Lock()
    start = time.monotonic() + 0.5
    next_index = iter(range(count))

    def worker() -> None:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        for i in next_index:  # a shared iterator: each push goes to whichever connection is free
            due = start + i / rate
            delay = due - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            sent = time.monotonic()
            conn.request("POST", "/", body=bodies[i], headers={"X-Shipper-Token": TOKEN})
            response = conn.getresponse()
            response.read()
            with lock:
                latencies.append(time.monotonic() - sent)
                statuses[response.status] = statuses.get(response.status, 0) + 1

    threads = [threading.Thread(target=worker) for _ in range(connections)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    elapsed = time.monotonic() - start
    latencies.sort()
    return {"p50_ms": latencies[len(latencies) // 2] * 1000, "p99_ms": latencies[int(len(latencies) * 0.99)] * 1000,
            "achieved_per_s": count / elapsed, "non_200": sum(n for s, n in statuses.items() if s != 200)}



def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--rate", type=float, default=1000)
    parser.add_argument("--seconds", type=float, default=10)
    parser.add_argument("--instances", type=int, default=2000, help="simulated fleet size for simulate --to")
    args = parser.parse_args()
    sim_rates, runs = [], []
    for n in range(args.repeat):
        with shipper_run() as (port, cwd, env):
            sim_rates.append(simulate_to(port, cwd, env, args.instances))
        with shipper_run() as (port, cwd, env):
            runs.append(steady(port, args.rate, args.seconds))
        print(f"run {n + 1}: simulate --to {sim_rates[-1]:,.0f} events/s; at {args.rate:.0f}/s "
              f"p50 {runs[-1]['p50_ms']:.1f} ms, p99 {runs[-1]['p99_ms']:.1f} ms", flush=True)
    result = {"date": time.strftime("%Y-%m-%d %H:%M"), "params": vars(args),
              "simulate_to_events_per_s": spread(sim_rates),
              **{key: spread([r[key] for r in runs]) for key in runs[0]}}
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "http_push.json").write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
