"""Alert-driven hooks: POST /hooks/<hook> with the shipped SLS alert payload runs the same hook, token first."""
import http.client
import json
import sqlite3

import pytest

from shipper import events
from shipper.actions import ACTED, action_record
from shipper.actions.engine import HookEngine
from shipper.config import BatchSettings, HttpSource
from shipper.pipeline import Pipeline
from shipper.sinks.sqlite import SqliteSink
from shipper.sources.http import HttpServer

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
