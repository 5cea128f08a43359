"""The no-loss run: `shipper run` from an MNS queue into SLS, both failing now and then, killed twice.

2,000 events; 5% of MNS requests answer InternalError; PutLogs answers 5xx and quota errors (reference/sls.md
§5); the process is SIGKILLed twice mid-stream and restarted; batches as configured by default. Every event
must be in SLS, and the delivery ledger must keep the copies that redelivery brings (failed deletes, kills,
batches that failed half-way, a request in flight at a kill) to at most 1%.
"""
import json
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest

from shipper.normalize import events_from_bytes
from shipper.simulate import FleetSimulator
from tests.emulators.mns import MnsEmulator
from tests.emulators.sls import SlsEmulator

KEY_ID, SECRET = "LTAInolossKEY0006", "no-loss-secret-Hj5Kl7Mn9"
QUEUE, PROJECT = "ecs-cms-event", "ecs-audit"
EVENTS = 2000
CONTENT = Path(__file__).resolve().parents[2] / "dashboards"


@pytest.fixture
def mns():
    with MnsEmulator(credentials={KEY_ID: SECRET}, seed=3) as emulator:
        emulator.create_queue(QUEUE, visibility_timeout=4)
        yield emulator


@pytest.fixture
def sls():
    with SlsEmulator(credentials={KEY_ID: SECRET}, seed=3) as emulator:
        emulator.create_project(PROJECT)
        for store in ("ecs-events", "shipper-actions", "shipper-deadletter"):
            # indexed as `shipper dashboards import` does: a request in flight at a kill is looked up by event_uid
            index = json.loads((CONTENT / "index" / f"{store}.json").read_text())["index"]
            emulator.create_logstore(PROJECT, store, index=index)
        yield emulator


def start(tmp_path):
    """`shipper run`, its output appended to run.log: the fault warnings would fill a pipe nobody reads."""
    env = dict(os.environ, ALIBABA_CLOUD_ACCESS_KEY_ID=KEY_ID, ALIBABA_CLOUD_ACCESS_KEY_SECRET=SECRET)
    with open(tmp_path / "run.log", "ab") as output:
        return subprocess.Popen([sys.executable, "-m", "shipper", "run"], cwd=tmp_path, env=env,
                                stdout=output, stderr=subprocess.STDOUT)


def wait_for(proc, tmp_path, predicate, timeout: float) -> None:
    """Until predicate() holds; fails with the run's output if it does not, or if the process ends."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            output = (tmp_path / "run.log").read_text()[-5000:]
            pytest.fail(f"shipper run (exit {proc.wait()}) did not get there; its output ends:\n{output}")
        time.sleep(0.05)


def stored(sls) -> Counter:
    return Counter(log.contents["event_uid"] for log in sls.logs(PROJECT, "ecs-events"))


def test_no_event_lost_and_at_most_one_percent_copies_in_sls(mns, sls, tmp_path):
    now_ms = int(time.time() * 1000)
    simulator = FleetSimulator(instances=700, seed=12, start_ms=now_ms - 3_600_000)
    bodies = [event.body for event in simulator.events()][:EVENTS]
    expected = {record["event_uid"] for body in bodies for record in events_from_bytes(body, received_ms=now_ms)}
    assert len(bodies) == len(expected) == EVENTS
    for body in bodies:
        mns.send_message(QUEUE, body.decode())
    mns.set_error_rates({"InternalError": 0.05})
    mns.set_latency(0.15, operation="BatchDeleteMessage")  # commits run ahead of deletes: a kill leaves copies
    for code, rate in (("InternalServerError", 0.04), ("ServerBusy", 0.04),
                       ("WriteQuotaExceed", 0.03), ("ShardWriteQuotaExceed", 0.03)):
        sls.faults.set_error_rate(code, rate)
    (tmp_path / "config.toml").write_text(f'''
[shipper]
data_dir = "./data"
shutdown_grace_seconds = 10
[[sources]]
type = "mns"
endpoint = "{mns.endpoint}"
queue = "{QUEUE}"
receivers = 2
wait_seconds = 1
[[sinks]]
type = "sls"
endpoint = "{sls.endpoint}"
project = "{PROJECT}"
retry_seconds = 0.5
''')
    # retry_seconds 0.5: some batches fail after some of their requests landed, and come back.
    # A kill while a PutLogs is in flight leaves that request in SLS and pending in the ledger; the next
    # process asks SLS about it before its first write, so it costs no copy. The kill is aimed at that
    # window: it follows a request landing in the emulator, in this process.
    for killed_after in (400, 1200):
        proc = start(tmp_path)
        wait_for(proc, tmp_path, lambda: len(sls.logs(PROJECT, "ecs-events")) >= killed_after, timeout=30)
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
    assert len(stored(sls)) < EVENTS  # killed mid-stream
    proc = start(tmp_path)
    try:
        wait_for(proc, tmp_path, lambda: not mns.messages(QUEUE), timeout=60)
        proc.send_signal(signal.SIGTERM)
        proc.wait(30)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, (tmp_path / "run.log").read_text()[-5000:]
    assert mns.fault_counts().get("InternalError", 0) > 0
    uids = stored(sls)
    copies = sum(uids.values()) - len(uids)
    print(f"no-loss run: {len(expected - set(uids))} lost, {copies} copies in SLS for {EVENTS} events "
          f"({sls.request_count('GetLogs')} GetLogs about requests in flight at a kill)")
    assert set(uids) == expected, f"{len(expected - set(uids))} events lost"
    assert copies <= EVENTS // 100, f"{copies} copies in SLS for {EVENTS} events"
