"""`shipper run` with the ActionTrail poller: a hook's own StartInstance comes back as a call by shipper's key."""
import os
import signal
import sqlite3
import subprocess
import sys

from shipper.trail import mask_access_key_id
from tests.e2e.test_hooks_run import KEY_ID, OPTED, QUEUE, SECRET, state_change
from tests.emulators.mns import MnsEmulator
from tests.emulators.openapi import OpenApiEmulator
from tests.waiting import wait_until

SHIPPER = {"type": "ram-user", "userName": "shipper-restarter", "principalId": "209876543210987654",
           "accountId": "1827364554637281"}


def api_calls(tmp_path) -> list[dict]:
    db = tmp_path / "data" / "events.db"
    if not db.exists():
        return []
    conn = sqlite3.connect(db)
    conn.row_factory = sqlite3.Row
    try:
        return [dict(r) for r in conn.execute('SELECT * FROM "ecs-events" WHERE category = ?', ("api-call",))]
    except sqlite3.OperationalError:
        return []
    finally:
        conn.close()


def test_a_hooks_start_instance_is_attributed_to_shippers_key(tmp_path):
    with MnsEmulator(credentials={KEY_ID: SECRET}) as mns, \
            OpenApiEmulator(credentials={KEY_ID: SECRET}, identities={KEY_ID: SHIPPER}, start_delay=0.3,
                            emit_to=(mns, QUEUE)) as api:
        mns.create_queue(QUEUE, visibility_timeout=10)
        api.add_instance(OPTED, status="Stopped", tags={"shipper:auto-restart": "true"})
        (tmp_path / "config.toml").write_text(f'''
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
[hooks.restart]
enabled = true
dry_run = false
grace_seconds = 0.2
[actiontrail]
enabled = true
interval_seconds = 0.5
[openapi]
regions = ["cn-hangzhou"]
ecs_endpoint = "{api.endpoint}"
actiontrail_endpoint = "{api.endpoint}"
''')
        env = dict(os.environ, ALIBABA_CLOUD_ACCESS_KEY_ID=KEY_ID, ALIBABA_CLOUD_ACCESS_KEY_SECRET=SECRET)
        permissions = subprocess.run([sys.executable, "-m", "shipper", "check", "--permissions"], cwd=tmp_path,
                                     env=env, capture_output=True)
        assert b"actiontrail:LookupEvents" in permissions.stdout
        proc = subprocess.Popen([sys.executable, "-m", "shipper", "run"], cwd=tmp_path, env=env,
                                stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        try:
            mns.send_message(QUEUE, state_change(OPTED, "Stopped", "stop-1"))
            wait_until(lambda: api_calls(tmp_path), timeout=20)
            proc.send_signal(signal.SIGTERM)
            output = proc.communicate(timeout=30)[0].decode()
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.communicate()
    assert proc.returncode == 0, output
    [call] = api_calls(tmp_path)
    [started] = api.trail()
    assert call["event_uid"] == f"actiontrail:{started['eventId']}:{OPTED}".lower()
    assert (call["event_name"], call["instance_id"], call["region_id"]) == ("ActionTrail:StartInstance", OPTED,
                                                                            "cn-hangzhou")
    assert (call["actor_type"], call["actor_name"], call["actor_principal_id"]) == (
        "ram-user", "shipper-restarter", SHIPPER["principalId"])
    assert call["actor_access_key_id"] == mask_access_key_id(KEY_ID) != KEY_ID
    assert "Core/" in call["user_agent"] and call["error_code"] == "" and call["source_ip"] == "127.0.0.1"
    assert SECRET not in output
