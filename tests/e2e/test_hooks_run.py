"""`shipper run` with hooks on, as production runs it: MNS in, OpenAPI out, decisions in shipper-actions."""
import json
import os
import signal
import socket
import sqlite3
import subprocess
import sys
import time
import urllib.request

import pytest

from tests.emulators.mns import MnsEmulator
from tests.emulators.openapi import REGIONS, OpenApiEmulator
from tests.waiting import wait_until

KEY_ID, SECRET = "LTAIhooksKEY0003", "hooks-secret-Mn4Bv6Cx8Z"
QUEUE = "ecs-cms-event"
OPTED = "i-bp1optedin000000001"
PLAIN = "i-bp1notopted00000002"
LOCKED = "i-bp1locked0000000003"
SPOT = "i-bp1spot00000000004"
SPOT_REGION = "cn-shanghai"     # not the first region: the drain must act where the instance is


def state_change(instance_id: str, state: str, uid: str) -> str:
    now = time.strftime("%Y%m%dT%H%M%S.000+0000", time.gmtime())
    return json.dumps({"ver": "1.0", "id": uid, "product": "ECS", "level": "INFO", "name": "Instance:StateChange",
                       "resourceId": f"acs:ecs:cn-hangzhou:1827364554637281:instance/{instance_id}",
                       "userId": "1827364554637281", "eventTime": now, "regionId": "cn-hangzhou",
                       "content": {"resourceId": instance_id, "resourceType": "ALIYUN::ECS::Instance", "state": state}})


def interruption(instance_id: str, uid: str, region: str) -> str:
    now = time.strftime("%Y%m%dT%H%M%S.000+0000", time.gmtime())
    return json.dumps({"ver": "1.0", "id": uid, "product": "ECS", "level": "WARN",
                       "name": "Instance:PreemptibleInstanceInterruption",
                       "resourceId": f"acs:ecs:{region}:1827364554637281:instance/{instance_id}",
                       "userId": "1827364554637281", "eventTime": now, "regionId": region,
                       "content": {"instanceId": instance_id, "action": "delete"}})


@pytest.fixture
def world(tmp_path):
    with MnsEmulator(credentials={KEY_ID: SECRET}) as mns, \
            OpenApiEmulator(credentials={KEY_ID: SECRET}, start_delay=0.5, emit_to=(mns, QUEUE)) as api:
        mns.create_queue(QUEUE, visibility_timeout=10)
        tag = {"shipper:auto-restart": "true"}
        api.add_instance(OPTED, status="Stopped", tags=tag, name="web-1", zone_id="cn-hangzhou-h")
        api.add_instance(PLAIN, status="Stopped")
        api.add_instance(LOCKED, status="Stopped", tags=tag, locks=("financial",))
        api.add_instance(SPOT, region_id=SPOT_REGION, spot_strategy="SpotAsPriceGo", name="spot-1")
        api.add_load_balancer("lb-web", region_id=SPOT_REGION)
        api.add_vserver_group("lb-web", "rsp-80", backends=[{"ServerId": SPOT, "Port": 80, "Weight": 100}])
        api.add_vserver_group("lb-web", "rsp-8080", backends=[{"ServerId": SPOT, "Port": 8080, "Weight": 50}])
        api.add_server_group("alb", "sgp-443", region_id=SPOT_REGION,
                             servers=[{"ServerId": SPOT, "Port": 443, "Weight": 100}])
        (tmp_path / "config.toml").write_text(f'''
[shipper]
data_dir = "./data"
[[sources]]
type = "mns"
endpoint = "{mns.endpoint}"
queue = "{QUEUE}"
receivers = 2
wait_seconds = 1
[[sinks]]
type = "sqlite"
[batch]
linger_ms = 50
[hooks.restart]
enabled = true
dry_run = false
grace_seconds = 0.5
confirm_timeout_seconds = 20
[hooks.lb_drain]
enabled = true
dry_run = false
drain_seconds = 1
safety_margin_seconds = 30
[openapi]
regions = ["cn-hangzhou", "{SPOT_REGION}"]
ecs_endpoint = "{api.endpoint}"
slb_endpoint = "{api.endpoint}"
alb_endpoint = "{api.endpoint}"
nlb_endpoint = "{api.endpoint}"
''')
        env = dict(os.environ, ALIBABA_CLOUD_ACCESS_KEY_ID=KEY_ID, ALIBABA_CLOUD_ACCESS_KEY_SECRET=SECRET)
        proc = subprocess.Popen([sys.executable, "-m", "shipper", "run"], cwd=tmp_path, env=env,
                                stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        yield mns, api, proc, tmp_path
        if proc.poll() is None:
            proc.kill()
            proc.communicate()


def actions(tmp_path) -> list[dict]:
    db = tmp_path / "data" / "events.db"
    if not db.exists():
        return []
    conn = sqlite3.connect(db)
    conn.row_factory = sqlite3.Row
    try:
        return [dict(r) for r in conn.execute('SELECT * FROM "shipper-actions" ORDER BY rowid')]
    except sqlite3.OperationalError:
        return []
    finally:
        conn.close()


def test_restart_and_drain_decide_act_record_and_only_then_delete(world):
    mns, api, proc, tmp_path = world
    for n, instance in enumerate((OPTED, PLAIN, LOCKED)):
        mns.send_message(QUEUE, state_change(instance, "Stopped", f"stop-{n}"))
    mns.send_message(QUEUE, interruption(SPOT, "spot-1", SPOT_REGION))

    def outcome(hook, instance):
        return [a for a in actions(tmp_path) if a["hook"] == hook and a["instance_id"] == instance and a["finished_time"]]

    wait_until(lambda: outcome("restart", OPTED) and outcome("lb_drain", SPOT))
    by_instance = {}
    for a in actions(tmp_path):
        by_instance.setdefault((a["hook"], a["instance_id"]), []).append(a)
    assert [(a["decision"], a["outcome"]) for a in by_instance[("restart", OPTED)]] == [("acted", "pending"), ("acted", "succeeded")]
    assert [(a["decision"], a["reason"]) for a in by_instance[("restart", PLAIN)]] == [("skipped", "not-opted-in")]
    assert [(a["decision"], a["reason"]) for a in by_instance[("restart", LOCKED)]] == [("skipped", "locked-financial")]
    assert [c.params["InstanceId"] for c in api.calls("StartInstance")] == [OPTED]  # exactly once
    assert api.instance(OPTED).status == "Running"
    drain = by_instance[("lb_drain", SPOT)]
    assert drain[-1]["outcome"] == "succeeded" and float(drain[-1]["seconds_before_reclaim"]) > 200
    removed = {c.params["VServerGroupId"]: json.loads(c.params["BackendServers"])[0]["Port"]
               for c in api.calls("RemoveVServerGroupBackendServers")}
    assert removed == {"rsp-80": "80", "rsp-8080": "8080"}
    assert [c.params["Servers.1.Port"] for c in api.calls("RemoveServersFromServerGroup")] == ["443"]
    assert {c.params["RegionId"] for c in api.calls() if c.action != "StartInstance"} == {SPOT_REGION}
    assert api.calls("StartInstance")[0].params["RegionId"] == "cn-hangzhou"

    # the emulator's own Starting/Running events came back through the queue: they land, and the
    # Running one does not trigger anything
    def states():
        conn = sqlite3.connect(tmp_path / "data" / "events.db")
        return {r[0] for r in conn.execute('SELECT state FROM "ecs-events" WHERE instance_id = ?', (OPTED,))}
    wait_until(lambda: {"Stopped", "Starting", "Running"} <= states())
    wait_until(lambda: not mns.messages(QUEUE))  # every message deleted once decided
    proc.send_signal(signal.SIGTERM)
    output = proc.communicate(timeout=30)[0].decode()
    assert proc.returncode == 0, output
    assert SECRET not in output and "WILL act on the fleet" in output
    life = subprocess.run([sys.executable, "-m", "shipper", "lifecycle", OPTED], cwd=tmp_path, capture_output=True)
    assert b"cn-hangzhou-h" in life.stdout  # zone from the hook's DescribeInstances, kept by the cache


def test_a_stopped_message_is_not_deleted_before_the_restart_decision(world):
    mns, api, proc, tmp_path = world
    api.set_latency(3.0, operation="DescribeInstances")  # the decision takes a while
    mns.send_message(QUEUE, state_change(OPTED, "Stopped", "slow-stop"))
    wait_until(lambda: any(m.state == "Inactive" for m in mns.messages(QUEUE)))
    time.sleep(2.0)  # committed by now (linger 50 ms), grace passed, DescribeInstances still answering
    assert mns.deleted_message_ids(QUEUE) == [] and not actions(tmp_path)
    wait_until(lambda: mns.deleted_message_ids(QUEUE))
    assert actions(tmp_path)[0]["decision"] == "acted"
    proc.send_signal(signal.SIGTERM)
    proc.communicate(timeout=30)


def test_check_reaches_the_openapi_service_when_hooks_are_on(world):
    mns, api, proc, tmp_path = world
    proc.kill()
    proc.communicate()
    env = dict(os.environ, ALIBABA_CLOUD_ACCESS_KEY_ID=KEY_ID, ALIBABA_CLOUD_ACCESS_KEY_SECRET=SECRET)
    good = subprocess.run([sys.executable, "-m", "shipper", "check"], cwd=tmp_path, env=env, capture_output=True)
    assert good.returncode == 0, good.stdout
    assert (b"ok   hooks (restart LIVE, lb_drain LIVE): ECS in cn-hangzhou, cn-shanghai reachable as LTAIhooksKEY0003 "
            b"(4 instances)") in good.stdout
    bad = subprocess.run([sys.executable, "-m", "shipper", "check"], cwd=tmp_path,
                         env=dict(env, ALIBABA_CLOUD_ACCESS_KEY_SECRET="wrong-one-123"), capture_output=True)
    assert bad.returncode == 1
    assert b"FAIL hooks: ECS in cn-hangzhou refused DescribeInstances" in bad.stdout
    assert b"wrong-one-123" not in bad.stdout + bad.stderr
    config = tmp_path / "config.toml"
    written = config.read_text()
    config.write_text(written.replace('regions = ["cn-hangzhou", "cn-shanghai"]', 'regions = ["all"]'))
    every = subprocess.run([sys.executable, "-m", "shipper", "check"], cwd=tmp_path, env=env, capture_output=True)
    expected = f"ok   hooks (restart LIVE, lb_drain LIVE): ECS in all {len(REGIONS)} regions reachable as"
    assert expected.encode() in every.stdout
    config.write_text(written.replace('"cn-shanghai"', '"cn-shanghia"'))
    typo = subprocess.run([sys.executable, "-m", "shipper", "check"], cwd=tmp_path, env=env, capture_output=True)
    assert typo.returncode == 1
    assert b"FAIL hooks: [openapi] regions: 'cn-shanghia' is not an ECS region" in typo.stdout


def test_shipper_run_keeps_accepted_alerts_across_a_restart(tmp_path):
    """The runner's wiring: the repeat keys live in data_dir, so a repeat after a restart does not act."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    with OpenApiEmulator(credentials={KEY_ID: SECRET}, start_delay=0.1) as api:
        api.add_instance(OPTED, status="Stopped", tags={"shipper:auto-restart": "true"})
        (tmp_path / "config.toml").write_text(f'''
[shipper]
data_dir = "./data"
[[sources]]
type = "http"
listen = "127.0.0.1:{port}"
[[sinks]]
type = "sqlite"
[batch]
linger_ms = 50
[hooks.restart]
enabled = true
dry_run = false
grace_seconds = 0
confirm_timeout_seconds = 10
[openapi]
region = "cn-hangzhou"
ecs_endpoint = "{api.endpoint}"
''')
        env = dict(os.environ, ALIBABA_CLOUD_ACCESS_KEY_ID=KEY_ID, ALIBABA_CLOUD_ACCESS_KEY_SECRET=SECRET,
                   SHIPPER_WEBHOOK_TOKEN="run-alert-token-5a4b3c")

        def alert(repeat: int) -> tuple[int, dict]:
            body = json.dumps({"alert": "shipper-stopped-not-running", "fingerprint": "fp-run-1",
                               "alert_instance_id": f"firing-{repeat}", "status": "firing", "fired_time": 1772697600,
                               "rows": [{"instance_id": OPTED, "region": "cn-hangzhou"}]}).encode()
            request = urllib.request.Request(f"http://127.0.0.1:{port}/hooks/restart?token=run-alert-token-5a4b3c",
                                             data=body, headers={"Content-Type": "application/json"})
            with urllib.request.urlopen(request, timeout=10) as response:
                return response.status, json.loads(response.read())

        def shipper_run() -> subprocess.Popen:
            proc = subprocess.Popen([sys.executable, "-m", "shipper", "run"], cwd=tmp_path, env=env,
                                    stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
            wait_until(lambda: _answers(port), timeout=20)
            return proc

        proc = shipper_run()
        assert alert(0) == (200, {"status": "accepted", "instances": 1, "accepted": 1, "repeats": 0})
        wait_until(lambda: any(a["finished_time"] for a in actions(tmp_path)))
        proc.send_signal(signal.SIGTERM)
        output = proc.communicate(timeout=30)[0].decode()
        assert proc.returncode == 0, output
        assert (tmp_path / "data" / "alert_keys.db").exists()
        api.set_status(OPTED, "Stopped")  # the guards alone would start it again
        proc = shipper_run()
        try:
            assert alert(1) == (200, {"status": "repeat", "instances": 1, "accepted": 0, "repeats": 1})
            time.sleep(0.5)
            assert len(api.calls("StartInstance")) == 1
            assert [a["decision"] for a in actions(tmp_path)] == ["accepted", "acted", "acted"]
        finally:
            proc.send_signal(signal.SIGTERM)
            proc.communicate(timeout=30)


def _answers(port: int) -> bool:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=1):
            return True
    except OSError:
        return False
