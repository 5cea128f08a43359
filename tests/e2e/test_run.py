"""`shipper run` end to end, as the README's first command runs it: shipped config, demo fleet, http pushes."""
import http.client
import json
import os
import re
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest
from tests.conftest import REPO
from tests.waiting import wait_until

TOKEN = "run-test-token-5d4c3b2a"


def count(db: Path, table: str, where: str = "1") -> int:
    if not db.exists():
        return 0
    conn = sqlite3.connect(db)
    try:
        return conn.execute(f'SELECT count(*) FROM "{table}" WHERE {where}').fetchone()[0]
    except sqlite3.OperationalError:
        return 0
    finally:
        conn.close()


def settled_count(db: Path, table: str, quiet_seconds: float = 1.5) -> int:
    """The row count once it has not changed for `quiet_seconds`."""
    last = [count(db, table), time.monotonic()]

    def settled() -> bool:
        now = count(db, table)
        if now != last[0]:
            last[:] = [now, time.monotonic()]
        return time.monotonic() - last[1] >= quiet_seconds
    wait_until(settled)
    return last[0]


@pytest.fixture
def running(tmp_path):
    """The shipped config.toml, with the http source on a free port."""
    text = (REPO / "config.toml").read_text().replace('listen = "127.0.0.1:8787"', 'listen = "127.0.0.1:0"')
    (tmp_path / "config.toml").write_text(text)
    env = dict(os.environ, SHIPPER_WEBHOOK_TOKEN=TOKEN)
    proc = subprocess.Popen([sys.executable, "-m", "shipper", "run"], cwd=tmp_path, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    lines = []
    port = None
    while port is None:
        line = proc.stdout.readline().decode()
        assert line, "shipper run exited early:\n" + "".join(lines)
        lines.append(line)
        match = re.search(r"listening on http://127\.0\.0\.1:(\d+)", line)
        port = int(match.group(1)) if match else None
    proc.port, proc.db, proc.cwd, proc.env = port, tmp_path / "shipper-demo" / "events.db", tmp_path, env
    yield proc
    if proc.poll() is None:
        proc.kill()
        proc.wait()


def post(port, body, token=TOKEN):
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    conn.request("POST", "/", body=body, headers={"X-Shipper-Token": token})
    response = conn.getresponse()
    response.read()
    conn.close()
    return response.status


def test_demo_fleet_lands_pushes_land_and_sigterm_stops_cleanly(running, fixtures_dir):
    wait_until(lambda: count(running.db, "ecs-events") >= 60)  # 20 instances' history
    demo = settled_count(running.db, "ecs-events")  # the demo is paced: wait until all of it landed
    assert count(running.db, "ecs-events", "zone_id = '' OR charge_type = '' OR tags = ''") == 0  # described

    search = subprocess.run([sys.executable, "-m", "shipper", "search", "state: Running", "--json"],
                            cwd=running.cwd, capture_output=True, timeout=60)
    assert search.returncode == 0, search.stderr
    some_instance = json.loads(search.stdout.splitlines()[0])["instance_id"]
    life = subprocess.run([sys.executable, "-m", "shipper", "lifecycle", some_instance],
                          cwd=running.cwd, capture_output=True, timeout=60)
    assert life.returncode == 0 and b"Running" in life.stdout

    sim = subprocess.run([sys.executable, "-m", "shipper", "simulate", "--instances", "4", "--seed", "99",
                          "--to", f"http://127.0.0.1:{running.port}/"],
                         cwd=running.cwd, capture_output=True, timeout=120, env=running.env)
    assert sim.returncode == 0, sim.stderr
    posted = int(re.search(rb"posted (\d+) messages: \1 accepted", sim.stderr).group(1))
    assert count(running.db, "ecs-events") == demo + posted  # 200 means committed: no waiting needed

    bad = [b"not json at all", b'{"ver": "1.0", "name": "Instance:StateChange", "content": {', b"\xff\xfe\xfd",
           b'{"name": 1, "content": []}', b"[1,2]", (fixtures_dir / "bad_json_not_event.json").read_bytes(),
           b'{"name": "Instance:StateChange", "content": {"x": "' + b"y" * (2 << 20) + b'"}}']  # over 1 MiB
    assert [post(running.port, body) for body in bad] == [400] * len(bad)
    assert count(running.db, "shipper-deadletter") == len(bad)
    assert count(running.db, "shipper-deadletter", "reason = 'too-large'") == 1
    assert count(running.db, "shipper-deadletter", "reason = 'bad-encoding'") == 1
    assert post(running.port, (fixtures_dir / "a_statechange_pending.json").read_bytes()) == 200  # still running

    running.send_signal(signal.SIGTERM)
    output = running.communicate(timeout=30)[0].decode()
    assert running.returncode == 0, output
    assert "stopped cleanly" in output and "Traceback" not in output
    assert TOKEN not in output
