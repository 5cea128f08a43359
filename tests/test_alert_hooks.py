"""Alert-driven hooks: POST /hooks/<hook> with the shipped SLS alert payload runs the same hook, token first."""
import http.client
import json
import sqlite3
import time

import pytest

from shipper import events
from shipper.actions import ACTED, SKIPPED, SUCCEEDED, action_record
from shipper.actions.engine import HookEngine
from shipper.actions.lb_drain import LbDrainHook
from shipper.config import BatchSettings, HttpSource, LbDrainHook as DrainSettings
from shipper.pipeline import Pipeline
from shipper.sinks.sqlite import SqliteSink
from shipper.sources.http import HttpServer
from tests.test_restart_hook import emulator, openapi  # noqa: F401 (emulator is a fixture)
from tests.waiting import wait_until

TOKEN = "alert-token-1f2e3d4c5b6a"


class ProbeRestart:
    name = "restart"

    def __init__(self):
        self.runs = []

    def wants(self, event):
        return False  # inline events never reach it here: only alerts

    def delay_seconds(self, event):
        return 60.0

    def run(self, event, trigger, emit):
        self.runs.append((event["instance_id"], trigger, event["state"], event["event_time"]))
        emit(action_record(hook=self.name, trigger=trigger, event=event, decision=ACTED, reason="probe"))


@pytest.fixture
def server(tmp_path, monkeypatch):
    monkeypatch.setenv("SHIPPER_WEBHOOK_TOKEN", TOKEN)
    pipeline = Pipeline([SqliteSink(tmp_path / "e.db")], BatchSettings(linger_ms=10)).start()
    hook = ProbeRestart()
    pipeline.hooks = HookEngine([hook], lambda records, done: pipeline.record(events.ACTIONS_TABLE, records, done))
    srv = HttpServer(HttpSource(listen="127.0.0.1:0"), pipeline).start()
    srv.hook, srv.db = hook, tmp_path / "e.db"
    yield srv
    srv.stop()
    pipeline.hooks.close(1)
    pipeline.close(5)
    srv.close()


def post(srv, path, payload, token=TOKEN):
    host, port = srv.address.split(":")
    conn = http.client.HTTPConnection(host, int(port), timeout=30)
    body = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
    headers = {"Content-Type": "application/json"}
    if token:
        path += f"?token={token}"
    conn.request("POST", path, body=body, headers=headers)
    response = conn.getresponse()
    data = response.read()
    conn.close()
    return response.status, json.loads(data or b"{}")


PAYLOAD = {
    "alert": "shipper-stopped-not-running", "alert_instance_id": "firing-1", "status": "firing", "severity": 8,
    "fired_time": 1772697600, "project": "ecs-audit",
    "rows": [{"instance_id": "i-bp1f3kq7z2m9w4x6c8v0", "last_state": "Stopped",
              "stopped_time": "2026-03-05T08:00:00.000Z", "region": "cn-hangzhou", "name": "web-1"},
             {"instance_id": "i-bp1second00000000000", "last_state": "Stopped",
              "stopped_time": "2026-03-05T08:01:00.000Z", "region": "cn-hangzhou", "name": "web-2"}],
}


def actions(srv):
    conn = sqlite3.connect(srv.db)
    conn.row_factory = sqlite3.Row
    return [dict(r) for r in conn.execute('SELECT * FROM "shipper-actions"')]


def test_alert_runs_the_hook_at_once_for_each_instance_and_records_trigger_alert(server):
    status, reply = post(server, "/hooks/restart", PAYLOAD)
    assert status == 200 and reply == {"status": "decided", "instances": 2, "decided": 2}
    assert sorted(server.hook.runs) == [
        ("i-bp1f3kq7z2m9w4x6c8v0", "alert", "Stopped", "2026-03-05T08:00:00.000Z"),
        ("i-bp1second00000000000", "alert", "Stopped", "2026-03-05T08:01:00.000Z")]
    rows = actions(server)
    assert {r["trigger"] for r in rows} == {"alert"} and len(rows) == 2
    assert {r["event_uid"] for r in rows} == {"alert:firing-1:i-bp1f3kq7z2m9w4x6c8v0", "alert:firing-1:i-bp1second00000000000"}


def test_a_repeated_notification_of_one_firing_does_not_act_twice(server):
    post(server, "/hooks/restart", PAYLOAD)
    status, _ = post(server, "/hooks/restart", PAYLOAD)
    assert status == 200 and len(server.hook.runs) == 2


@pytest.mark.parametrize("token", [None, "forged"])
def test_a_forged_alert_without_the_token_does_nothing(server, token):
    status, _ = post(server, "/hooks/restart", PAYLOAD, token=token)
    assert status == 401
    assert server.hook.runs == [] and actions(server) == []


def test_unknown_or_disabled_hook_is_404(server):
    assert post(server, "/hooks/lb_drain", PAYLOAD)[0] == 404
    assert server.hook.runs == []


@pytest.mark.parametrize("body", [b"not json", b"[1]", b'{"rows": "x"}', b'{"rows": [1]}'])
def test_malformed_alert_bodies_are_400(server, body):
    assert post(server, "/hooks/restart", body)[0] == 400
    assert server.hook.runs == []


def test_resolved_alerts_are_ignored(server):
    status, reply = post(server, "/hooks/restart", dict(PAYLOAD, status="resolved"))
    assert status == 200 and reply["status"] == "ignored" and server.hook.runs == []


# ---- lb_drain by alert: the shipped defaults (no opt-in tag) with dry_run off ----------------------------

SPOT, ON_DEMAND = "i-bp1alertspot000001", "i-bp1ondemand0000001"


@pytest.fixture
def drain_server(tmp_path, monkeypatch, emulator):
    monkeypatch.setenv("SHIPPER_WEBHOOK_TOKEN", TOKEN)
    emulator.add_instance(SPOT, spot_strategy="SpotAsPriceGo")
    emulator.add_instance(ON_DEMAND, spot_strategy="NoSpot")
    emulator.add_load_balancer("lb-web")
    emulator.add_vserver_group("lb-web", "rsp-80", backends=[{"ServerId": SPOT, "Port": 80},
                                                             {"ServerId": ON_DEMAND, "Port": 80}])
    pipeline = Pipeline([SqliteSink(tmp_path / "e.db")], BatchSettings(linger_ms=10)).start()
    engine = HookEngine([], lambda records, done: pipeline.record(events.ACTIONS_TABLE, records, done))
    settings = DrainSettings(enabled=True, dry_run=False, drain_seconds=0.0)
    engine.hooks.append(LbDrainHook(settings, openapi(emulator), recent_events=engine.recent_events))
    pipeline.hooks = engine
    srv = HttpServer(HttpSource(listen="127.0.0.1:0"), pipeline).start()
    srv.db, srv.api, srv.engine = tmp_path / "e.db", emulator, engine
    yield srv
    srv.stop()
    engine.close(1)
    pipeline.close(5)
    srv.close()


def drain_alert(instance_id: str) -> dict:
    return {"alert": "shipper-spot-interrupted", "alert_instance_id": f"firing-{instance_id}", "status": "firing",
            "rows": [{"instance_id": instance_id, "region": "cn-hangzhou"}]}


def test_an_alert_naming_an_on_demand_instance_drains_nothing(drain_server):
    status, reply = post(drain_server, "/hooks/lb_drain", drain_alert(ON_DEMAND))
    assert status == 200 and reply["decided"] == 1
    [row] = actions(drain_server)
    assert (row["decision"], row["reason"], row["trigger"]) == (SKIPPED, "not-spot", "alert")
    assert drain_server.api.calls() == []          # no mutating call reached the cloud
    assert len(drain_server.api.vserver_group_backends("rsp-80")) == 2


def test_an_alert_naming_a_spot_instance_without_an_interruption_on_record_drains_nothing(drain_server):
    status, _ = post(drain_server, "/hooks/lb_drain", drain_alert(SPOT))
    assert status == 200
    [row] = actions(drain_server)
    assert (row["decision"], row["reason"]) == (SKIPPED, "not-interrupted")
    assert drain_server.api.calls() == []


def test_an_alert_drains_a_spot_instance_whose_interruption_was_committed(drain_server):
    now_ms = int(time.time() * 1000)
    drain_server.engine.observe(events.new_event(   # what the pipeline does with a committed notice
        event_uid="cms-notice-1", event_name="Instance:PreemptibleInstanceInterruption", category="interruption",
        instance_id=SPOT, event_time_ms=str(now_ms), not_before=events.format_time_ms(now_ms + 300_000)))
    status, _ = post(drain_server, "/hooks/lb_drain", drain_alert(SPOT))
    assert status == 200
    wait_until(lambda: any(r["finished_time"] for r in actions(drain_server)))
    assert [(r["decision"], r["outcome"]) for r in actions(drain_server)] == [(ACTED, "pending"), (ACTED, SUCCEEDED)]
    assert [b["ServerId"] for b in drain_server.api.vserver_group_backends("rsp-80")] == [ON_DEMAND]
