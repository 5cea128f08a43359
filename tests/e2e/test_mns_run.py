"""`shipper run` / `shipper check` on an MNS queue as separate processes: SIGKILL, fatal errors, secrets."""
import os
import signal
import sqlite3
import subprocess
import sys

import pytest

from shipper.simulate import FleetSimulator
from tests.emulators.mns import MnsEmulator
from tests.waiting import wait_until

KEY_ID = "LTAIrunKEY0002"
SECRET = "run-secret-Pq7Wm3Zk1Lx5"
QUEUE = "ecs-cms-event"


@pytest.fixture
def mns():
    with MnsEmulator(credentials={KEY_ID: SECRET}) as emulator:
        emulator.create_queue(QUEUE, visibility_timeout=3)
        yield emulator


def write_config(tmp_path, endpoint, queue=QUEUE, level="info"):
    (tmp_path / "config.toml").write_text(f'''
[shipper]
log_level = "{level}"
shutdown_grace_seconds = 10
[[sources]]
type = "mns"
endpoint = "{endpoint}"
queue = "{queue}"
receivers = 2
wait_seconds = 1
[[sinks]]
type = "sqlite"
path = "./events.db"
[batch]
linger_ms = 100
max_events = 200
''')


def env(secret=SECRET):
    return dict(os.environ, ALIBABA_CLOUD_ACCESS_KEY_ID=KEY_ID, ALIBABA_CLOUD_ACCESS_KEY_SECRET=secret)


def start(tmp_path, secret=SECRET):
    return subprocess.Popen([sys.executable, "-m", "shipper", "run"], cwd=tmp_path, env=env(secret),
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)


def stored(tmp_path) -> list[str]:
    db = tmp_path / "events.db"
    if not db.exists():
        return []
    conn = sqlite3.connect(db, timeout=10)
    try:
        return [r[0] for r in conn.execute('SELECT event_uid FROM "ecs-events"')]
    except sqlite3.OperationalError:
        return []
    finally:
        conn.close()


def test_sigkill_mid_batch_loses_nothing_and_stores_each_event_once(mns, tmp_path):
    bodies = [e.body for e in FleetSimulator(instances=100, seed=5, start_ms=1_760_000_000_000).events()]
    for body in bodies:
        mns.send_message(QUEUE, body.decode())
    mns.set_latency(0.3, operation="BatchDeleteMessage")  # commits run ahead of deletes
    write_config(tmp_path, mns.endpoint)
    first = start(tmp_path)
    # Kill while a good number of committed messages wait for their (slow) delete, not at a moment when the
    # deletes have caught up: that is the case this test is about.
    wait_until(lambda: len(stored(tmp_path)) >= 100
               and len(stored(tmp_path)) - len(mns.deleted_message_ids(QUEUE)) >= 16)
    first.send_signal(signal.SIGKILL)
    first.wait(10)
    committed_before = len(stored(tmp_path))
    assert committed_before < len(bodies)  # killed mid-stream
    assert len(mns.deleted_message_ids(QUEUE)) < committed_before  # some committed, not yet deleted
    mns.clear_faults()
    second = start(tmp_path)
    wait_until(lambda: not mns.messages(QUEUE))  # the rest reappear after the visibility timeout
    second.send_signal(signal.SIGTERM)
    output = second.communicate(timeout=30)[0].decode()
    assert second.returncode == 0, output
    uids = stored(tmp_path)
    assert len(uids) == len(set(uids)) == len(bodies)


def test_missing_queue_exits_non_zero_with_one_line(mns, tmp_path):
    write_config(tmp_path, mns.endpoint, queue="not-there")
    result = subprocess.run([sys.executable, "-m", "shipper", "run"], cwd=tmp_path, env=env(),
                            capture_output=True, timeout=60)
    err = result.stderr.decode()
    assert result.returncode == 1
    assert "queue 'not-there' does not exist" in err and "Traceback" not in err


def test_wrong_secret_at_debug_level_names_the_key_and_hides_the_secret(mns, tmp_path):
    write_config(tmp_path, mns.endpoint, level="debug")
    result = subprocess.run([sys.executable, "-m", "shipper", "run"], cwd=tmp_path, env=env("bad-secret-XYZ987"),
                            capture_output=True, timeout=60)
    output = (result.stdout + result.stderr).decode()
    assert result.returncode == 1 and KEY_ID in output and "SignatureDoesNotMatch" in output
    assert "bad-secret-XYZ987" not in output


def test_debug_run_never_prints_the_secret(mns, tmp_path):
    for e in FleetSimulator(instances=3, seed=1, start_ms=1_760_000_000_000).events():
        mns.send_message(QUEUE, e.body.decode())
    mns.send_message(QUEUE, "garbage")
    write_config(tmp_path, mns.endpoint, level="debug")
    proc = start(tmp_path)
    wait_until(lambda: not mns.messages(QUEUE))
    proc.send_signal(signal.SIGTERM)
    output = proc.communicate(timeout=30)[0].decode()
    assert proc.returncode == 0, output
    assert "DEBUG" in output and SECRET not in output


def test_check_reports_each_service_one_line_each(mns, tmp_path):
    write_config(tmp_path, mns.endpoint)
    good = subprocess.run([sys.executable, "-m", "shipper", "check"], cwd=tmp_path, env=env(),
                          capture_output=True, timeout=60)
    assert good.returncode == 0, good.stdout + good.stderr
    assert f"ok   mns source: queue '{QUEUE}'" in good.stdout.decode()
    assert "ok   sqlite sink" in good.stdout.decode()
    write_config(tmp_path, mns.endpoint, queue="missing-queue")
    bad = subprocess.run([sys.executable, "-m", "shipper", "check"], cwd=tmp_path, env=env(),
                         capture_output=True, timeout=60)
    assert bad.returncode == 1
    (fail,) = [line for line in bad.stdout.decode().splitlines() if line.startswith("FAIL")]
    assert "missing-queue" in fail
