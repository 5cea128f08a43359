"""Sustained events/s from an MNS queue into the local store: shipper's consumer vs the article's loop.

Both read the same kind of queue on the same local MNS emulator (a separate process, so it does not share
this process's GIL) and store into SQLite with the same durability (synchronous=FULL):
- shipper: MnsConsumer (several long-poll receivers, batches of 16, batched deletes) -> Pipeline -> SqliteSink;
- the article's loop (reference/baseline.md): one receive of one message, handle it (normalize, store that one
  event), one delete, strictly in sequence, one thread.
Runs alternate, each repeated; medians and their ratio are printed and written to bench/results/.

    python bench/mns_throughput.py [--events 20000] [--baseline-events 2000] [--repeat 3]
"""
from __future__ import annotations

import argparse
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from mns.account import Account  # noqa: E402
from mns.mns_exception import MNSServerException  # noqa: E402
from mns.queue import Message as MnsMessage, QueueMeta  # noqa: E402

from shipper import events  # noqa: E402
from shipper.config import BatchSettings, MnsSource  # noqa: E402
from shipper.credentials import Credentials  # noqa: E402
from shipper.normalize import events_from_bytes  # noqa: E402
from shipper.pipeline import Pipeline  # noqa: E402
from shipper.simulate import FleetSimulator  # noqa: E402
from shipper.sinks.sqlite import SqliteSink  # noqa: E402
from shipper.sources.mns import MnsConsumer  # noqa: E402

KEY_ID, SECRET = "LTAIbenchKEY0001", "bench-secret-not-real"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_emulator() -> tuple[subprocess.Popen, str]:
    port = free_port()
    env = dict(os.environ, ALIBABA_CLOUD_ACCESS_KEY_SECRET=SECRET)
    proc = subprocess.Popen([sys.executable, "-m", "tests.emulators.mns", "--port", str(port),
                             "--access-key-id", KEY_ID], cwd=REPO, env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    endpoint = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 20
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return proc, endpoint
        except OSError:
            if time.monotonic() > deadline:
                raise SystemExit("the MNS emulator did not start")
            time.sleep(0.1)


def bodies(count: int) -> list[str]:
    out: list[str] = []
    seed = 1
    while len(out) < count:
        sim = FleetSimulator(instances=max(count // 4, 10), seed=seed, start_ms=1_760_000_000_000)
        out += [e.body.decode() for e in sim.events()]
        seed += 1
    return out[:count]


def fill(endpoint: str, queue: str, messages: list[str]) -> None:
    account = Account(endpoint, KEY_ID, SECRET)
    account.get_queue(queue).create(QueueMeta())
    chunks = [messages[i:i + 16] for i in range(0, len(messages), 16)]

    def send(part: list[list[str]]) -> None:
        q = Account(endpoint, KEY_ID, SECRET).get_queue(queue)
        q.set_encoding(False)
        for chunk in part:
            q.batch_send_message([MnsMessage(body) for body in chunk])

    threads = [threading.Thread(target=send, args=(chunks[i::4],)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()


def remaining(endpoint: str, queue: str) -> int:
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        meta = Account(endpoint, KEY_ID, SECRET).get_queue(queue).get_attributes()
        return meta.active_messages + meta.inactive_messages + meta.delay_messages


def run_shipper(endpoint: str, queue: str, count: int, db: Path, receivers: int) -> tuple[float, float]:
    """(events/s, this process's CPU microseconds per event)."""
    pipeline = Pipeline([SqliteSink(db)], BatchSettings()).start()
    settings = MnsSource(endpoint=endpoint, queue=queue, receivers=receivers, wait_seconds=1)
    started = time.perf_counter()
    cpu_started = time.process_time()
    consumer = MnsConsumer(settings, pipeline, Credentials(KEY_ID, SECRET)).start()
    while remaining(endpoint, queue):
        time.sleep(0.05)
    elapsed = time.perf_counter() - started
    cpu = time.process_time() - cpu_started
    consumer.stop()
    pipeline.close(30)
    consumer.close()
    stored = SqliteSink(db)._conn.execute('SELECT count(*) FROM "ecs-events"').fetchone()[0]
    assert stored == count, f"stored {stored} of {count}"
    return count / elapsed, cpu / count * 1e6


def run_article_loop(endpoint: str, queue: str, count: int, db: Path) -> float:
    """One message at a time: receive, handle (normalize + one committed insert), delete."""
    q = Account(endpoint, KEY_ID, SECRET).get_queue(queue)
    q.set_encoding(False)
    sink = SqliteSink(db)
    done = 0
    started = time.perf_counter()
    while done < count:
        try:
            m = q.receive_message(wait_seconds=5)
        except MNSServerException:
            continue  # "No Message, continue waiting"
        records = events_from_bytes(m.message_body.encode(), received_ms=int(time.time() * 1000))
        sink.write(events.EVENTS_TABLE, records)
        q.delete_message(m.receipt_handle)
        done += 1
    elapsed = time.perf_counter() - started
    sink.close()
    return count / elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--events", type=int, default=20000)
    parser.add_argument("--baseline-events", type=int, default=2000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--receivers", type=int, default=4)
    args = parser.parse_args()
    proc, endpoint = start_emulator()
    shipper_rates, article_rates, shipper_cpu = [], [], []
    try:
        for n in range(args.repeat):
            with tempfile.TemporaryDirectory() as tmp:
                fill(endpoint, f"shipper-{n}", bodies(args.events))
                rate, cpu_us = run_shipper(endpoint, f"shipper-{n}", args.events, Path(tmp) / "s.db", args.receivers)
                shipper_rates.append(rate)
                shipper_cpu.append(cpu_us)
                fill(endpoint, f"article-{n}", bodies(args.baseline_events))
                article_rates.append(run_article_loop(endpoint, f"article-{n}", args.baseline_events,
                                                      Path(tmp) / "a.db"))
            print(f"run {n + 1}: shipper {shipper_rates[-1]:,.0f} events/s, article loop {article_rates[-1]:,.0f} events/s",
                  flush=True)
    finally:
        proc.terminate()
        proc.wait()
    result = {
        "machine": f"{os.cpu_count()} cores, Python {sys.version.split()[0]}",
        "shipper_events": args.events, "article_events": args.baseline_events, "receivers": args.receivers,
        "shipper_events_per_s": [round(r) for r in shipper_rates],
        "article_events_per_s": [round(r) for r in article_rates],
        "shipper_median": round(statistics.median(shipper_rates)),
        "shipper_cpu_us_per_event_median": round(statistics.median(shipper_cpu)),
        "article_median": round(statistics.median(article_rates)),
    }
    result["ratio"] = round(result["shipper_median"] / result["article_median"], 1)
    print(json.dumps(result, indent=2))
    out = REPO / "bench" / "results"
    out.mkdir(exist_ok=True)
    (out / "mns_throughput.json").write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
