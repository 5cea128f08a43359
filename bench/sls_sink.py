"""SLS sink speed: (a) LogGroup build cost per event, (b) sustained events/s into the SLS emulator.

    /tmp/venv/bin/python -m bench.sls_sink [--events 40000] [--runs 5]

(a) builds + serializes + lz4-compresses one 4096-event PutLogs body three ways, HTTP stubbed out:
    the SDK's LogItem path (PutLogsRequest -> put_logs), the SDK's protobuf objects (LogGroupRaw ->
    put_log_raw), and the sink's direct serialization (LogEncoder -> put_log_group); median of --runs.
(b) runs the emulator in a subprocess (`python -m tests.emulators.sls`, its own GIL) and measures
    the pipeline (BatchSettings defaults) from simulated message bodies to every message acknowledged,
    and the sink alone (pre-normalized batches of 4096).
Prints a table and writes bench/results/sls_sink.json. Figures depend on the machine; nothing asserts them.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path

from aliyun.log import LogItem, PutLogsRequest
from aliyun.log.log_logs_raw_pb2 import LogGroupRaw

from shipper import events
from shipper.cloud.sls import make_client, put_log_group
from shipper.config import BatchSettings
from shipper.sinks.sls import SlsSinkSettings
from shipper.cloud import Credentials
from shipper.normalize import events_from_bytes
from shipper.pipeline import Message, Pipeline, Status
from shipper.simulate import FleetSimulator
from shipper.sinks.sls import LogEncoder, SlsSink, group_tail

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "bench" / "results" / "sls_sink.json"
CREDENTIALS = Credentials("LTAIbenchKEY0001", "benchSecret0123456789")
PROJECT = "ecs-audit"
BATCH = 4096
TAGS = [("shipper_host", "bench"), ("shipper_version", "0.1.0")]


def simulated_bodies(count: int, seed: int = 5) -> list[bytes]:
    now_ms = int(time.time() * 1000)
    simulator = FleetSimulator(instances=max(20, count // 3), seed=seed, start_ms=now_ms - 3_600_000)
    bodies = []
    for event in simulator.events():
        bodies.append(event.body)
        if len(bodies) == count:
            return bodies
    raise SystemExit(f"the simulator produced only {len(bodies)} messages")


def normalized(bodies: list[bytes]) -> list[dict]:
    now_ms = int(time.time() * 1000)
    return [record for body in bodies for record in events_from_bytes(body, received_ms=now_ms)]


# -- (a) encode cost --------------------------------------------------------------------------------

def _stub_client():
    """A real client whose transport does nothing: what is timed is building and compressing the body."""
    client = make_client("127.0.0.1:9", CREDENTIALS)
    client._send = lambda *args, **kwargs: ({}, {})
    return client


def encode_sdk_logitems(client, records: list[dict]) -> None:
    items = []
    for record in records:
        ms = int(record["event_time_ms"])
        items.append(LogItem(timestamp=ms // 1000, time_nano_part=ms % 1000 * 1_000_000,
                             contents=[(name, record[name]) for name in events.EVENT_FIELDS]))
    client.put_logs(PutLogsRequest(PROJECT, "ecs-events", "lifecycle", "bench", items, logtags=TAGS))


def encode_sdk_protobuf(client, records: list[dict]) -> None:
    group = LogGroupRaw(Topic="lifecycle", Source="bench")
    for record in records:
        ms = int(record["event_time_ms"])
        log = group.Logs.add()
        log.Time, log.Time_ns = ms // 1000, ms % 1000 * 1_000_000
        for name in events.EVENT_FIELDS:
            content = log.Contents.add()
            content.Key, content.Value = name, record[name].encode("utf-8")
    for key, value in TAGS:
        tag = group.LogTags.add()
        tag.Key, tag.Value = key, value
    client.put_log_raw(PROJECT, "ecs-events", group)


def encode_direct(client, records: list[dict], encoder=LogEncoder(events.EVENT_FIELDS)) -> None:
    logs = []
    for record in records:
        ms = int(record["event_time_ms"])
        logs.append(encoder.encode(record, ms // 1000, ms % 1000 * 1_000_000))
    body = b"".join(logs) + group_tail("lifecycle", "bench", TAGS)
    put_log_group(client, PROJECT, "ecs-events", body)


def encode_costs(records: list[dict], runs: int) -> dict[str, float]:
    client = _stub_client()
    batch = records[:BATCH]
    costs = {}
    for name, encode in (("sdk LogItem -> put_logs", encode_sdk_logitems),
                         ("sdk LogGroupRaw -> put_log_raw", encode_sdk_protobuf),
                         ("direct LogEncoder -> put_log_group", encode_direct)):
        timings = []
        for _ in range(runs):
            started = time.perf_counter()
            encode(client, batch)
            timings.append(time.perf_counter() - started)
        costs[name] = statistics.median(timings) / len(batch) * 1e6
    return costs


# -- (b) sustained throughput -----------------------------------------------------------------------

class EmulatorProcess:
    def __enter__(self) -> str:
        env = dict(os.environ, ALIBABA_CLOUD_ACCESS_KEY_ID=CREDENTIALS.access_key_id,
                   ALIBABA_CLOUD_ACCESS_KEY_SECRET=CREDENTIALS.access_key_secret)
        self.process = subprocess.Popen(
            [sys.executable, "-m", "tests.emulators.sls", "--port", "0", "--project", PROJECT],
            cwd=REPO, env=env, stdout=subprocess.PIPE, text=True)
        line = self.process.stdout.readline()  # "SLS emulator listening on 127.0.0.1:<port>"
        if "listening on" not in line:
            self.process.kill()
            raise SystemExit(f"the SLS emulator did not start: {line!r}")
        endpoint = line.rsplit(" ", 1)[1].strip()
        client = make_client(endpoint, CREDENTIALS)
        for store in ("ecs-events", "shipper-actions", "shipper-deadletter"):
            client.create_logstore(PROJECT, store, ttl=30, shard_count=2)
        return endpoint

    def __exit__(self, *exc_info) -> None:
        self.process.terminate()
        self.process.wait(timeout=10)


def pipeline_rate(endpoint: str, bodies: list[bytes]) -> float:
    sink = SlsSink(SlsSinkSettings(endpoint=endpoint, project=PROJECT), CREDENTIALS)
    pipeline = Pipeline([sink], BatchSettings()).start()
    remaining = len(bodies)
    all_done = threading.Event()
    lock = threading.Lock()

    def on_done(result) -> None:
        nonlocal remaining
        if result.status is not Status.COMMITTED:
            raise SystemExit(f"a message was not committed: {result}")
        with lock:
            remaining -= 1
            if remaining == 0:
                all_done.set()

    started = time.perf_counter()
    for body in bodies:
        pipeline.submit(Message(body, source="bench", on_done=on_done))
    all_done.wait()
    elapsed = time.perf_counter() - started
    pipeline.close(timeout=30)
    return len(bodies) / elapsed


def sink_rate(endpoint: str, records: list[dict]) -> float:
    sink = SlsSink(SlsSinkSettings(endpoint=endpoint, project=PROJECT), CREDENTIALS)
    started = time.perf_counter()
    for start in range(0, len(records), BATCH):
        sink.write(events.EVENTS_TABLE, records[start:start + BATCH])
    elapsed = time.perf_counter() - started
    sink.close()
    return len(records) / elapsed


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=40_000, help="simulated messages for (b)")
    parser.add_argument("--runs", type=int, default=5, help="repetitions for (a)")
    args = parser.parse_args(argv)

    bodies = simulated_bodies(max(args.events, BATCH))
    records = normalized(bodies)
    mean_bytes = statistics.mean(sum(len(v) for v in r.values()) for r in records[:BATCH])
    costs = encode_costs(records, args.runs)
    with EmulatorProcess() as endpoint:
        pipeline_eps = pipeline_rate(endpoint, bodies[:args.events])
    with EmulatorProcess() as endpoint:
        sink_eps = sink_rate(endpoint, records[:args.events])

    direct = costs["direct LogEncoder -> put_log_group"]
    print(f"(a) build + serialize + lz4 one {BATCH}-event PutLogs body (events of ~{mean_bytes:.0f} B), "
          f"median of {args.runs}")
    print(f"    {'path':38} {'µs/event':>9} {'× direct':>9}")
    for name, cost in costs.items():
        print(f"    {name:38} {cost:9.1f} {cost / direct:9.2f}")
    print(f"(b) into the SLS emulator (subprocess), {args.events} simulated messages")
    print(f"    {'pipeline (normalize + batch + sink)':38} {pipeline_eps:9.0f} events/s")
    print(f"    {'sink alone (batches of 4096)':38} {sink_eps:9.0f} events/s")

    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps({
        "when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "machine": {"python": platform.python_version(), "cpus": os.cpu_count()},
        "event_bytes_mean": round(mean_bytes),
        "encode_us_per_event": {name: round(cost, 2) for name, cost in costs.items()},
        "events": args.events,
        "pipeline_events_per_second": round(pipeline_eps),
        "sink_events_per_second": round(sink_eps),
    }, indent=2) + "\n")
    print(f"written to {RESULTS.relative_to(REPO)}")


if __name__ == "__main__":
    main()
