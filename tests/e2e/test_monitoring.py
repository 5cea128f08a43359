"""The monitoring port of an MNS-only `shipper run` (no http source): /metrics, /healthz, /readyz turning
unready when the SLS sink is down and ready again after; and JSON logs that parse line by line."""
import itertools
import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request

import pytest
from prometheus_client.parser import text_string_to_metric_families

from shipper.simulate import FleetSimulator
from tests.emulators.mns import MnsEmulator
from tests.emulators.sls import SlsEmulator
from tests.waiting import wait_until

KEY_ID = "LTAImonKEY0005"
SECRET = "mon-secret-Zx8Cv6Bn4Ml2"
QUEUE = "ecs-cms-event"
PROJECT = "ecs-audit"
LOGSTORES = ("ecs-events", "shipper-actions", "shipper-deadletter", "shipper-audit")
WINDOW = 1.0  # [api] ready_window_seconds


@pytest.fixture
def mns():
    with MnsEmulator(credentials={KEY_ID: SECRET}) as emulator:
        emulator.create_queue(QUEUE, visibility_timeout=5)
        yield emulator


@pytest.fixture
def sls():
    with SlsEmulator(credentials={KEY_ID: SECRET}) as emulator:
        emulator.create_project(PROJECT)
        for name in LOGSTORES:
            emulator.create_logstore(PROJECT, name)
        yield emulator


class Run:
    """`shipper run` as a subprocess, its stderr lines collected as they come."""

    def __init__(self, tmp_path):
        env = dict(os.environ, ALIBABA_CLOUD_ACCESS_KEY_ID=KEY_ID, ALIBABA_CLOUD_ACCESS_KEY_SECRET=SECRET)
        self.proc = subprocess.Popen([sys.executable, "-m", "shipper", "run"], cwd=tmp_path, env=env,
                                     stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        self.lines: list[str] = []
        self._reader = threading.Thread(target=lambda: self.lines.extend(self.proc.stderr), daemon=True)
        self._reader.start()

    def port(self) -> int:
        wait_until(lambda: any("monitoring port" in line for line in self.lines) or self.proc.poll() is not None)
        (line,) = [line for line in self.lines if "monitoring port" in line]
        return int(re.search(r"http://127\.0\.0\.1:(\d+)", line).group(1))

    def stop(self) -> int:
        self.proc.send_signal(signal.SIGTERM)
        self.proc.wait(30)
        self._reader.join(5)
        return self.proc.returncode


def write_config(tmp_path, mns_endpoint, sink: str, log_format="text", log_level="info"):
    (tmp_path / "config.toml").write_text(f'''
[shipper]
data_dir = "./data"
log_format = "{log_format}"
log_level = "{log_level}"
shutdown_grace_seconds = 10
[[sources]]
type = "mns"
endpoint = "{mns_endpoint}"
queue = "{QUEUE}"
receivers = 1
wait_seconds = 1
{sink}
[batch]
linger_ms = 50
[api]
listen = "127.0.0.1:0"
ready_window_seconds = {WINDOW}
''')


def get(port: int, path: str) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5) as answer:
            return answer.status, answer.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()


def samples(port: int) -> dict:
    """(name, frozenset of labels) -> value, from /metrics as Prometheus parses it."""
    status, body = get(port, "/metrics")
    assert status == 200
    return {(s.name, frozenset(s.labels.items())): s.value
            for family in text_string_to_metric_families(body.decode()) for s in family.samples}


def send_events(mns, count: int, seed: int) -> None:
    events = FleetSimulator(instances=count, seed=seed, start_ms=1_760_000_000_000).events()
    for event in itertools.islice(events, count):
        mns.send_message(QUEUE, event.body.decode())


def test_mns_only_run_serves_metrics_health_and_readiness_that_follows_the_sink(mns, sls, tmp_path):
    sink = f'[[sinks]]\ntype = "sls"\nendpoint = "{sls.endpoint}"\nproject = "{PROJECT}"\nretry_seconds = 0.5'
    write_config(tmp_path, mns.endpoint, sink)
    send_events(mns, 3, seed=1)
    run = Run(tmp_path)
    try:
        port = run.port()
        assert get(port, "/healthz")[0] == 200
        wait_until(lambda: len(sls.logs(PROJECT, "ecs-events")) == 3 and not mns.messages(QUEUE))
        assert get(port, "/readyz") == (200, b'{"status": "ready"}')
        mns.fail_next("InternalError", operation="BatchReceiveMessage")
        wait_until(lambda: samples(port).get(("shipper_mns_errors_total",
                                              frozenset({"operation": "receive", "code": "InternalError"}.items()))))
        source = frozenset({"source": f"mns:{QUEUE}"}.items())
        metrics = samples(port)
        assert metrics[("shipper_events_committed_total", frozenset())] == 3
        assert metrics[("shipper_event_commit_seconds_count", source)] == 3  # one per message
        assert 0 <= metrics[("shipper_seconds_since_last_commit", source)] < 60
        assert metrics[("shipper_ledger_entries", frozenset())] == 3
        assert ("process_resident_memory_bytes", frozenset()) in metrics
        assert any(name == "python_info" for name, _ in metrics)

        sls.faults.outage = True
        send_events(mns, 1, seed=2)
        went_down = time.monotonic()
        wait_until(lambda: get(port, "/readyz")[0] == 503, timeout=WINDOW + 10)
        unready_after = time.monotonic() - went_down
        status, body = get(port, "/readyz")
        assert status == 503 and list(json.loads(body)["not_ready"]) == ["sink sls"]
        assert get(port, "/healthz")[0] == 200  # alive all the same

        sls.faults.outage = False
        wait_until(lambda: get(port, "/readyz")[0] == 200, timeout=30)
        wait_until(lambda: len(sls.logs(PROJECT, "ecs-events")) == 4)
    finally:
        status = run.stop()
    assert status == 0, "".join(run.lines)
    assert unready_after < WINDOW + 5, unready_after


def test_json_logs_parse_line_by_line_and_never_hold_the_secret(mns, tmp_path):
    write_config(tmp_path, mns.endpoint, '[[sinks]]\ntype = "sqlite"\npath = "./events.db"', log_format="json",
                 log_level="debug")
    send_events(mns, 3, seed=3)
    mns.send_message(QUEUE, f"not an event {SECRET}")  # dead-lettered; the secret is in its body
    run = Run(tmp_path)
    try:
        port = run.port()
        wait_until(lambda: not mns.messages(QUEUE))
    finally:
        status = run.stop()
    assert status == 0, "".join(run.lines)
    records = [json.loads(line) for line in run.lines]  # every line is one JSON object
    assert len(records) >= 4
    assert all({"time", "level", "logger", "message"} <= set(r) for r in records)
    assert any(r["logger"] == "shipper.api" and str(port) in r["message"] for r in records)
    assert SECRET not in "".join(run.lines)
