"""The MNS path under real conditions: throughput against the article's loop, a backlog after a sink outage,
a backlog with no fault, and the copies a SIGKILL leaves, each at 0 and 10 ms of injected latency.

The MNS emulator runs in its own process with `--latency-ms` standing in for the network (every response
is delayed by that much). Each measured consumer runs in a fresh process of its own, so its peak RSS is
its own and no run inherits another's state; the queue is filled from this process beforehand.

    python -m bench.mns_scenarios [--repeat 3] [--backlog 100000] [--outage 60] [--only NAME ...]

Writes bench/results/mns.json; bench/report.py turns it into bench/RESULTS.md.
"""
from __future__ import annotations

import argparse
import json
import os
import signal
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
import warnings
from contextlib import contextmanager
from pathlib import Path

from bench.stats import spread

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from mns.account import Account  # noqa: E402
from mns.mns_exception import MNSServerException  # noqa: E402
from mns.queue import Message as MnsMessage, QueueMeta  # noqa: E402

from shipper import events  # noqa: E402
from shipper.config import BatchSettings  # noqa: E402
from shipper.sources.mns import MnsSourceSettings  # noqa: E402
from shipper.cloud import Credentials  # noqa: E402
from shipper.normalize import events_from_bytes  # noqa: E402
from shipper.pipeline import Pipeline  # noqa: E402
from shipper.simulate import FleetSimulator  # noqa: E402
from shipper.sinks.sqlite import SqliteSink  # noqa: E402
from shipper.sources.mns import MnsConsumer  # noqa: E402

KEY_ID, SECRET = "LTAIbenchKEY0001", "bench-secret-not-real"
QUEUE = "bench"
RESULTS = REPO / "bench" / "results"


# -- the emulator and the queue ------------------------------------------------------------------------

@contextmanager
def emulator(latency_ms: float):
    env = dict(os.environ, ALIBABA_CLOUD_ACCESS_KEY_SECRET=SECRET)
    proc = subprocess.Popen([sys.executable, "-m", "tests.emulators.mns", "--port", "0", "--access-key-id", KEY_ID,
                             "--latency-ms", str(latency_ms)], cwd=REPO, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    try:
        yield proc.stdout.readline().decode().strip()
    finally:
        proc.terminate()
        proc.wait()


def bodies(count: int, seed: int = 1) -> list[str]:
    out: list[str] = []
    while len(out) < count:
        sim = FleetSimulator(instances=max(count // 4, 10), seed=seed, start_ms=1_760_000_000_000)
        out += [e.body.decode() for e in sim.events()]
        seed += 1000
    return out[:count]


def queue(endpoint: str):
    q = Account(endpoint, KEY_ID, SECRET).get_queue(QUEUE)
    q.set_encoding(False)
    return q


def fill(endpoint: str, messages: list[str], threads: int = 16) -> None:
    """A fresh queue holding `messages` (the SDK's 16-message batches, several senders)."""
    q = queue(endpoint)
    try:
        q.delete()
    except MNSServerException:
        pass
    q.create(QueueMeta())
    chunks = [messages[i:i + 16] for i in range(0, len(messages), 16)]

    def send(part: list[list[str]]) -> None:
        sender = queue(endpoint)
        for chunk in part:
            sender.batch_send_message([MnsMessage(body) for body in chunk])

    workers = [threading.Thread(target=send, args=(chunks[i::threads],)) for i in range(threads)]
    for w in workers:
        w.start()
    for w in workers:
        w.join()


def remaining(endpoint: str) -> int:
    with warnings.catch_warnings():  # 1.3.0 marks the counts deprecated; still the only way to read them
        warnings.simplefilter("ignore")
        meta = queue(endpoint).get_attributes()
        return meta.active_messages + meta.inactive_messages + meta.delay_messages


# -- the measured consumers (each in a process of its own) --------------------------------------------

class OutageSink:
    """The SQLite store, refusing every batch until `until` (monotonic), and counting every record it
    committed, copies included (SQLite's INSERT OR IGNORE would hide them)."""

    name = "sqlite"

    def __init__(self, path: Path, until: float):
        self.sink, self.until, self.committed = SqliteSink(path), until, 0

    def write(self, table, records):
        if time.monotonic() < self.until:
            raise RuntimeError("sink outage (injected)")
        new = self.sink.write(table, records)
        if table == events.EVENTS_TABLE:
            self.committed += len(records)
        return new

    def close(self):
        self.sink.close()


def consume(endpoint: str, db: str, expected: int, outage: float, receivers: int) -> dict:
    """shipper's consumer until the queue is empty; timings from the start and from the sink's recovery."""
    started = time.monotonic()
    sink = OutageSink(Path(db), started + outage)
    pipeline = Pipeline([sink], BatchSettings()).start()
    settings = MnsSourceSettings(endpoint=endpoint, queue=QUEUE, receivers=receivers, wait_seconds=1, max_receives=10)
    cpu_started = time.process_time()
    consumer = MnsConsumer(settings, pipeline, Credentials(KEY_ID, SECRET)).start()
    print("started", flush=True)
    while remaining(endpoint):
        time.sleep(0.2)  # GetQueueAttributes costs this process CPU too: look rarely
    elapsed = time.monotonic() - started
    cpu = time.process_time() - cpu_started
    consumer.stop()
    pipeline.close(30)
    consumer.close()
    conn = sqlite3.connect(db)
    stored = conn.execute('SELECT count(*) FROM "ecs-events"').fetchone()[0]
    dead = conn.execute('SELECT count(*) FROM "shipper-deadletter"').fetchone()[0]
    return {"seconds": elapsed, "after_recovery_seconds": elapsed - outage, "events_per_s": expected / elapsed,
            "cpu_us_per_event": cpu / expected * 1e6, "stored": stored, "copies": sink.committed - stored,
            "dead_letters": dead, "peak_rss_mb": peak_rss_mb()}


def peak_rss_mb() -> float:
    """VmHWM: this process's own peak. (ru_maxrss is kept across exec on Linux, so a child forked from a
    parent holding the 100,000 bodies would report the parent's size.)"""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def article_loop(endpoint: str, db: str, count: int) -> dict:
    """reference/baseline.md: receive one, handle it (normalize, one committed insert), delete it."""
    q = queue(endpoint)
    sink = SqliteSink(Path(db))
    done = 0
    started = time.monotonic()
    while done < count:
        try:
            m = q.receive_message(wait_seconds=5)
        except MNSServerException:
            continue  # "No Message, continue waiting"
        records = events_from_bytes(m.message_body.encode(), received_ms=int(time.time() * 1000))
        sink.write(events.EVENTS_TABLE, records)
        q.delete_message(m.receipt_handle)
        done += 1
    return {"events_per_s": count / (time.monotonic() - started)}


def measured(kind: str, *args: str) -> dict:
    """Run one measured consumer in a fresh process; its JSON result."""
    out = subprocess.run([sys.executable, "-m", "bench.mns_scenarios", "_" + kind, *args], cwd=REPO,
                         capture_output=True, timeout=3600)
    if out.returncode:
        raise SystemExit(f"{kind} failed:\n{out.stderr.decode()[-3000:]}")
    return json.loads(out.stdout.decode().splitlines()[-1])


# -- scenarios -----------------------------------------------------------------------------------------

def throughput(latency_ms: float, count: int, article_count: int, receivers: int) -> dict:
    with emulator(latency_ms) as endpoint, tempfile.TemporaryDirectory() as tmp:
        fill(endpoint, bodies(count))
        shipper = measured("consume", endpoint, f"{tmp}/s.db", str(count), "0", str(receivers))
        fill(endpoint, bodies(article_count))
        article = measured("article", endpoint, f"{tmp}/a.db", str(article_count))
    return {"shipper_events_per_s": shipper["events_per_s"], "shipper_cpu_us_per_event": shipper["cpu_us_per_event"],
            "article_events_per_s": article["events_per_s"],
            "ratio": shipper["events_per_s"] / article["events_per_s"]}


def backlog(latency_ms: float, count: int, outage: float, receivers: int) -> dict:
    with emulator(latency_ms) as endpoint, tempfile.TemporaryDirectory() as tmp:
        fill(endpoint, bodies(count))
        result = measured("consume", endpoint, f"{tmp}/s.db", str(count), str(outage), str(receivers))
    assert result["stored"] == count, f"stored {result['stored']} of {count}"
    return result


def crash(latency_ms: float, count: int, receivers: int) -> dict:
    """SIGKILL a consumer mid-stream; committed-but-not-deleted = stored rows - deleted messages."""
    with emulator(latency_ms) as endpoint, tempfile.TemporaryDirectory() as tmp:
        fill(endpoint, bodies(count))
        db = f"{tmp}/s.db"
        proc = subprocess.Popen([sys.executable, "-m", "bench.mns_scenarios", "_consume", endpoint, db, str(count),
                                 "0", str(receivers)], cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
        proc.stdout.readline()  # "started"
        while remaining(endpoint) > count // 2:
            time.sleep(0.01)
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        stored = sqlite3.connect(db).execute('SELECT count(*) FROM "ecs-events"').fetchone()[0]
        deleted = count - remaining(endpoint)
    return {"stored_at_kill": stored, "deleted_at_kill": deleted, "committed_not_deleted": stored - deleted}



def summarize(runs: list[dict]) -> dict:
    return {key: spread([r[key] for r in runs]) for key in runs[0] if isinstance(runs[0][key], (int, float))}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--events", type=int, default=20000, help="messages per throughput run")
    parser.add_argument("--backlog", type=int, default=100000, help="messages in the backlog runs")
    parser.add_argument("--outage", type=float, default=60.0, help="seconds the sink refuses in the outage runs")
    parser.add_argument("--receivers", type=int, default=4)
    parser.add_argument("--only", nargs="*", help="scenario names to run (default: all)")
    args = parser.parse_args()
    scenarios = {
        "throughput_0ms": lambda: throughput(0, args.events, 2000, args.receivers),
        "throughput_10ms": lambda: throughput(10, args.events, 300, args.receivers),
        "outage_0ms": lambda: backlog(0, args.backlog, args.outage, args.receivers),
        "outage_10ms": lambda: backlog(10, args.backlog, args.outage, args.receivers),
        "backlog_10ms": lambda: backlog(10, args.backlog, 0, args.receivers),
        "crash_0ms": lambda: crash(0, args.events, args.receivers),
        "crash_10ms": lambda: crash(10, args.events, args.receivers),
    }
    RESULTS.mkdir(exist_ok=True)
    path = RESULTS / "mns.json"
    results = json.loads(path.read_text()) if path.exists() else {}
    for name, scenario in scenarios.items():
        if args.only and name not in args.only:
            continue
        runs = []
        for n in range(args.repeat):
            runs.append(scenario())
            print(f"{name} run {n + 1}: {json.dumps({k: round(v, 2) for k, v in runs[-1].items()})}", flush=True)
        results[name] = {"params": vars(args), "date": time.strftime("%Y-%m-%d %H:%M"), **summarize(runs)}
        path.write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "_consume":
        endpoint, db, count, outage, receivers = sys.argv[2:7]
        print(json.dumps(consume(endpoint, db, int(count), float(outage), int(receivers))), flush=True)
    elif len(sys.argv) > 1 and sys.argv[1] == "_article":
        endpoint, db, count = sys.argv[2:5]
        print(json.dumps(article_loop(endpoint, db, int(count))))
    else:
        main()
