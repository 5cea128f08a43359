"""Spot drain latency: interruption event received -> last removal call, over many interruptions.

A real `shipper run` (subprocess) consumes interruption notices from the local MNS and drains each spot
instance out of two CLB vserver groups and one ALB server group on the local OpenAPI service; both
emulators run in this process. Latency per instance = the time of its last successful removal call (the
emulator's clock) minus `received_time` of its event (shipper's clock; same machine). Each run starts
fresh emulators and a fresh shipper; prints min/median/max over the runs of p50/p99/max, and per run the
mutating calls by product (CLB, ALB, NLB) with how many failed (a busy group answers IncorrectStatus and
the call is retried) and how many DescribeInstances calls were made.

    python bench/lb_drain_latency.py [--interruptions 200] [--drain-seconds 0] [--burst] [--runs 3]
"""
from __future__ import annotations

import argparse
import collections
import datetime as dt
import json
import os
import signal
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from tests.emulators.mns import MnsEmulator  # noqa: E402
from tests.emulators.openapi import OpenApiEmulator  # noqa: E402

KEY_ID, SECRET = "LTAIbenchKEY0002", "bench-secret-not-real"
QUEUE = "ecs-cms-event"
REMOVALS = ("RemoveVServerGroupBackendServers", "RemoveBackendServers", "RemoveServersFromServerGroup")
PRODUCTS = {"2014-05-15": "clb", "2020-06-16": "alb", "2022-04-30": "nlb"}


def seed(api: OpenApiEmulator, count: int) -> list[str]:
    """`count` spot instances; groups of 20 share two vserver groups on one CLB and one ALB group."""
    instances = [f"i-bp1spotbench{n:07d}" for n in range(count)]
    for instance in instances:
        api.add_instance(instance, spot_strategy="SpotAsPriceGo", name=f"spot-{instance[-4:]}")
    for g in range(0, count, 20):
        members = instances[g:g + 20]
        lb = f"lb-bench-{g // 20:03d}"
        api.add_load_balancer(lb)
        api.add_vserver_group(lb, f"rsp-{lb}-80", backends=[{"ServerId": i, "Port": 80, "Weight": 100} for i in members])
        api.add_vserver_group(lb, f"rsp-{lb}-8080", backends=[{"ServerId": i, "Port": 8080, "Weight": 50} for i in members])
        api.add_server_group("alb", f"sgp-{lb}", servers=[{"ServerId": i, "Port": 443, "Weight": 100} for i in members])
    return instances


def notice(instance: str) -> str:
    now = time.strftime("%Y%m%dT%H%M%S.000+0000", time.gmtime())
    return json.dumps({"ver": "1.0", "id": f"bench-{instance}", "product": "ECS", "level": "WARN",
                       "name": "Instance:PreemptibleInstanceInterruption", "eventTime": now,
                       "resourceId": f"acs:ecs:cn-hangzhou:1827364554637281:instance/{instance}",
                       "userId": "1827364554637281", "regionId": "cn-hangzhou",
                       "content": {"instanceId": instance, "action": "delete"}})


def epoch(text: str) -> float:
    return dt.datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


def finished(db: Path) -> int:
    """Outcome records committed so far."""
    try:
        conn = sqlite3.connect(db, timeout=10)
        return conn.execute("SELECT count(*) FROM \"shipper-actions\" WHERE finished_time != ''").fetchone()[0]
    except sqlite3.Error:
        return 0


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(p / 100 * (len(ordered) - 1))))]


def run_once(args: argparse.Namespace) -> dict:
    """One fresh shipper against fresh emulators: latencies, outcomes and the calls it made."""
    with MnsEmulator(credentials={KEY_ID: SECRET}) as mns, \
            OpenApiEmulator(credentials={KEY_ID: SECRET}, job_delay=0.2) as api, \
            tempfile.TemporaryDirectory() as tmp:
        mns.create_queue(QUEUE, visibility_timeout=60)
        instances = seed(api, args.interruptions)
        Path(tmp, "config.toml").write_text(f'''
[shipper]
data_dir = "./data"
[[sources]]
type = "mns"
endpoint = "{mns.endpoint}"
queue = "{QUEUE}"
wait_seconds = 1
[[sinks]]
type = "sqlite"
[batch]
linger_ms = 50
[hooks.lb_drain]
enabled = true
dry_run = false
drain_seconds = {args.drain_seconds}
safety_margin_seconds = 30
[openapi]
ecs_endpoint = "{api.endpoint}"
slb_endpoint = "{api.endpoint}"
alb_endpoint = "{api.endpoint}"
nlb_endpoint = "{api.endpoint}"
''')
        env = dict(os.environ, ALIBABA_CLOUD_ACCESS_KEY_ID=KEY_ID, ALIBABA_CLOUD_ACCESS_KEY_SECRET=SECRET)
        proc = subprocess.Popen([sys.executable, "-m", "shipper", "run"], cwd=tmp, env=env,
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            time.sleep(2)  # start-up
            for instance in instances:
                mns.send_message(QUEUE, notice(instance))
                if not args.burst:
                    time.sleep(0.05)
            deadline = time.monotonic() + 300
            while mns.messages(QUEUE) or finished(Path(tmp, "data", "events.db")) < len(instances):
                if time.monotonic() > deadline or proc.poll() is not None:
                    raise SystemExit("drains did not finish")
                time.sleep(0.2)
        finally:
            proc.send_signal(signal.SIGTERM)
            proc.wait(60)
        conn = sqlite3.connect(Path(tmp, "data", "events.db"))
        received = dict(conn.execute('SELECT instance_id, received_time FROM "ecs-events"'))
        outcomes = dict(conn.execute("SELECT instance_id, outcome FROM \"shipper-actions\" WHERE finished_time != ''"))
        errors = collections.Counter(code for (codes,) in conn.execute(
            "SELECT error_code FROM \"shipper-actions\" WHERE finished_time != '' AND error_code != ''")
            for code in codes.split(","))
        calls = api.calls()
        describes = api.request_counts().get("DescribeInstances", 0)
    latencies = [t - epoch(received[i]) for i, t in last_removals(calls).items() if i in received]
    return {
        "drained": len(latencies), "succeeded": sum(1 for i in instances if outcomes.get(i) == "succeeded"),
        "error_codes": dict(errors),
        "p50_s": round(statistics.median(latencies), 3), "p99_s": round(percentile(latencies, 99), 3),
        "max_s": round(max(latencies), 3),
        "calls": call_counts(calls), "describe_instances_calls": describes,
    }


def last_removals(calls: list) -> dict[str, float]:
    """instance id -> time of its last successful removal call."""
    last: dict[str, float] = {}
    for call in calls:
        if call.action in REMOVALS and not call.code:
            ids = [v for k, v in call.params.items() if k.endswith("ServerId")]
            ids += [s["ServerId"] for s in json.loads(call.params.get("BackendServers", "[]"))]
            for instance in ids:
                last[instance] = max(last.get(instance, 0.0), call.time)
    return last


def call_counts(calls: list) -> dict[str, dict[str, int]]:
    """Per product: removal calls, how many of them failed, and weight (drain) calls."""
    counts: dict[str, dict[str, int]] = {}
    for call in calls:
        product = counts.setdefault(PRODUCTS[call.version], {"removals": 0, "failed": 0, "weight_calls": 0})
        if call.action in REMOVALS:
            product["removals"] += 1
            product["failed"] += bool(call.code)
        else:
            product["weight_calls"] += 1
    return counts


def spread(values: list[float]) -> dict[str, float]:
    return {"min": min(values), "median": round(statistics.median(values), 3), "max": max(values)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--interruptions", type=int, default=200)
    parser.add_argument("--drain-seconds", type=float, default=0.0)
    parser.add_argument("--burst", action="store_true", help="send every notice at once (default: 20 per second)")
    parser.add_argument("--runs", type=int, default=3, help="independent runs (at least 3 for a spread)")
    args = parser.parse_args()
    runs = []
    for n in range(args.runs):
        runs.append(run_once(args))
        print(f"run {n + 1}/{args.runs}: {json.dumps(runs[-1])}", file=sys.stderr)
    result = {
        "interruptions": args.interruptions, "drain_seconds": args.drain_seconds,
        "arrival": "burst" if args.burst else "20/s", "runs": len(runs),
        **{key: spread([r[key] for r in runs]) for key in ("p50_s", "p99_s", "max_s")},
        "per_run": runs,
    }
    print(json.dumps(result, indent=2))
    out = REPO / "bench" / "results"
    out.mkdir(exist_ok=True)
    (out / f"lb_drain_latency{'_burst' if args.burst else ''}.json").write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
