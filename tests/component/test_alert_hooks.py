"""Alert-driven hooks: POST /hooks/<hook> with the shipped SLS alert payload runs the same hook, token first.

The endpoint answers 200 once the notification is durably accepted (an `accepted` record committed, its
repeat key stored), then the hook decides on a worker, as for inline events."""
import concurrent.futures
import http.client
import json
import sqlite3
import time
from pathlib import Path

import pytest

from shipper import events
from shipper.times import format_time_ms
from shipper.hooks import ACTED, INLINE, PENDING, SKIPPED, SUCCEEDED, action_record
from shipper.hooks.engine import HookEngine
from shipper.hooks.lb_drain import LbDrainHook
from shipper.hooks.restart import RestartHook
from shipper.hooks.alert_keys import AlertKeys, alert_keys_path
from shipper.config import BatchSettings
from shipper.sources.http import HttpSourceSettings
from shipper.hooks.lb_drain import LbDrainHookSettings
from shipper.hooks.restart import RestartHookSettings
from shipper.dashboards.template import render_template
from shipper.pipeline import Pipeline
from shipper.sinks.sqlite import SqliteSink
from shipper.hooks.alerts import ACCEPTED, AlertIntake
from shipper.sources.http import HttpServer
from tests.component.test_dashboards import SLS_ALERT, shipped_template
from tests.component.test_restart_hook import TAG, emulator, openapi  # noqa: F401 (emulator is a fixture)
from tests.waiting import wait_until

TOKEN = "alert-token-1f2e3d4c5b6a"


class ProbeRestart:
    name = "restart"
    dry_run = False

    def __init__(self):
        self.runs = []

    def wants(self, event):
        return False  # inline events never reach it here: only alerts

    def delay_seconds(self, event):
        return 60.0

    def decide(self, event, trigger):
        self.runs.append((event["instance_id"], trigger, event["state"], event["event_time"]))
        return action_record(hook=self.name, trigger=trigger, event=event, decision=ACTED, reason="probe")


@pytest.fixture
def server(tmp_path, monkeypatch):
    monkeypatch.setenv("SHIPPER_WEBHOOK_TOKEN", TOKEN)
    pipeline = Pipeline([SqliteSink(tmp_path / "e.db")], BatchSettings(linger_ms=10)).start()
    hook = ProbeRestart()
    engine = HookEngine([hook], lambda records, done: pipeline.record(events.ACTIONS_TABLE, records, done))
    pipeline.add_listener(engine.on_commit)
    srv = HttpServer(HttpSourceSettings(listen="127.0.0.1:0"), pipeline,
                     alerts=AlertIntake(engine, AlertKeys(":memory:"))).start()
    srv.hook, srv.db = hook, tmp_path / "e.db"
    yield srv
    srv.stop()
    engine.close(1)
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
    "alert": "shipper-stopped-not-running", "fingerprint": "1b0f3c5e9a7d2468", "alert_instance_id": "firing-1",
    "status": "firing", "severity": 8,
    "fired_time": 1772697600, "project": "ecs-audit",
    "rows": [{"instance_id": "i-bp1f3kq7z2m9w4x6c8v0", "last_state": "Stopped",
              "stopped_time": "2026-03-05T08:00:00.000Z", "region": "cn-hangzhou", "name": "web-1"},
             {"instance_id": "i-bp1second00000000000", "last_state": "Stopped",
              "stopped_time": "2026-03-05T08:01:00.000Z", "region": "cn-hangzhou", "name": "web-2"}],
}


def actions(srv):
    conn = sqlite3.connect(srv.db)
    conn.row_factory = sqlite3.Row
    try:
        return [dict(r) for r in conn.execute('SELECT * FROM "shipper-actions"')]
    except sqlite3.OperationalError:  # no record committed yet: the table does not exist
        return []
    finally:
        conn.close()


def decisions(srv):
    """The hooks' records, without the endpoint's `accepted` ones."""
    return [r for r in actions(srv) if r["decision"] != ACCEPTED]


def test_alert_is_accepted_then_runs_the_hook_for_each_instance_with_trigger_alert(server):
    status, reply = post(server, "/hooks/restart", PAYLOAD)
    assert status == 200 and reply == {"status": "accepted", "instances": 2, "accepted": 2, "repeats": 0}
    wait_until(lambda: len(decisions(server)) == 2)
    assert sorted(server.hook.runs) == [
        ("i-bp1f3kq7z2m9w4x6c8v0", "alert", "Stopped", "2026-03-05T08:00:00.000Z"),
        ("i-bp1second00000000000", "alert", "Stopped", "2026-03-05T08:01:00.000Z")]
    rows = actions(server)
    assert {r["trigger"] for r in rows} == {"alert"}
    assert sorted(r["decision"] for r in rows) == [ACCEPTED, ACCEPTED, ACTED, ACTED]
    # the repeat key (fingerprint:fired_time), not alert_instance_id, which changes on every repeat
    assert {r["event_uid"] for r in rows} == {"alert:1b0f3c5e9a7d2468:1772697600:i-bp1f3kq7z2m9w4x6c8v0",
                                              "alert:1b0f3c5e9a7d2468:1772697600:i-bp1second00000000000"}


def test_a_repeated_notification_of_one_firing_does_not_act_twice(server):
    post(server, "/hooks/restart", PAYLOAD)
    status, reply = post(server, "/hooks/restart", dict(PAYLOAD, alert_instance_id="firing-1-repeat"))
    assert status == 200 and reply == {"status": "repeat", "instances": 2, "accepted": 0, "repeats": 2}
    wait_until(lambda: len(decisions(server)) == 2)
    time.sleep(0.2)
    assert len(server.hook.runs) == 2 and len(actions(server)) == 4  # the repeat recorded nothing


def test_without_a_fingerprint_the_alert_name_and_fire_time_are_the_repeat_key(server):
    payload = {k: v for k, v in PAYLOAD.items() if k != "fingerprint"}
    assert post(server, "/hooks/restart", payload)[1]["accepted"] == 2
    assert post(server, "/hooks/restart", dict(payload, alert_instance_id="again"))[1]["repeats"] == 2
    assert post(server, "/hooks/restart", dict(payload, fired_time=1772701200))[1]["accepted"] == 2  # a new firing
    wait_until(lambda: len(decisions(server)) == 4)
    assert {r["event_uid"].rsplit(":", 1)[0] for r in decisions(server)} == {
        "alert:shipper-stopped-not-running:1772697600", "alert:shipper-stopped-not-running:1772701200"}


@pytest.mark.parametrize("token", [None, "forged"])
def test_a_forged_alert_without_the_token_does_nothing(server, token):
    status, _ = post(server, "/hooks/restart", PAYLOAD, token=token)
    assert status == 401
    assert server.hook.runs == [] and actions(server) == []


def test_unknown_or_disabled_hook_is_404(server):
    assert post(server, "/hooks/lb_drain", PAYLOAD)[0] == 404
    assert post(server, "/hooks/nope", PAYLOAD)[0] == 404
    assert server.hook.runs == []


@pytest.mark.parametrize("body, reason", [
    (b"not json", "not JSON"), (b"[1]", "`rows` list"), (b'{"rows": "x"}', "`rows` list"),
    (b'{"rows": [1]}', "every alert row"),
    # no repeat key: without one, every repeat would act again
    (json.dumps({k: v for k, v in PAYLOAD.items() if k not in ("fingerprint", "fired_time")}).encode(), "repeats"),
    (json.dumps(dict(PAYLOAD, fingerprint=7)).encode(), "`fingerprint`"),
    (json.dumps(dict(PAYLOAD, rows=[{"last_state": "Stopped"}])).encode(), "`instance_id`"),
])
def test_malformed_alert_bodies_are_400_with_a_reason(server, body, reason):
    status, reply = post(server, "/hooks/restart", body)
    assert status == 400 and reason in reply["error"]
    assert server.hook.runs == [] and actions(server) == []


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
    settings = LbDrainHookSettings(enabled=True, dry_run=False, drain_seconds=0.0)
    engine.hooks.append(LbDrainHook(settings, openapi(emulator), recent_events=engine.recent_events))
    pipeline.add_listener(engine.on_commit)
    srv = HttpServer(HttpSourceSettings(listen="127.0.0.1:0"), pipeline,
                     alerts=AlertIntake(engine, AlertKeys(":memory:"))).start()
    srv.db, srv.api, srv.engine = tmp_path / "e.db", emulator, engine
    yield srv
    srv.stop()
    engine.close(1)
    pipeline.close(5)
    srv.close()


def drain_alert(instance_id: str) -> dict:
    return {"alert": "shipper-spot-interrupted", "fingerprint": f"fp-{instance_id}", "fired_time": 1772697600,
            "alert_instance_id": f"firing-{instance_id}", "status": "firing",
            "rows": [{"instance_id": instance_id, "region": "cn-hangzhou"}]}


def test_an_alert_naming_an_on_demand_instance_drains_nothing(drain_server):
    status, reply = post(drain_server, "/hooks/lb_drain", drain_alert(ON_DEMAND))
    assert status == 200 and reply["accepted"] == 1
    wait_until(lambda: decisions(drain_server))
    [row] = decisions(drain_server)
    assert (row["decision"], row["reason"], row["trigger"]) == (SKIPPED, "not-spot", "alert")
    assert drain_server.api.calls() == []          # no mutating call reached the cloud
    assert len(drain_server.api.vserver_group_backends("rsp-80")) == 2


def test_an_alert_naming_a_spot_instance_without_an_interruption_on_record_drains_nothing(drain_server):
    status, _ = post(drain_server, "/hooks/lb_drain", drain_alert(SPOT))
    assert status == 200
    wait_until(lambda: decisions(drain_server))
    [row] = decisions(drain_server)
    assert (row["decision"], row["reason"]) == (SKIPPED, "not-interrupted")
    assert drain_server.api.calls() == []


def test_an_alert_drains_a_spot_instance_whose_interruption_was_committed(drain_server):
    now_ms = int(time.time() * 1000)
    drain_server.engine.observe(events.new_event(   # what the pipeline does with a committed notice
        event_uid="cms-notice-1", event_name="Instance:PreemptibleInstanceInterruption", category="interruption",
        instance_id=SPOT, event_time_ms=str(now_ms), not_before=format_time_ms(now_ms + 300_000)))
    status, _ = post(drain_server, "/hooks/lb_drain", drain_alert(SPOT))
    assert status == 200
    wait_until(lambda: any(r["finished_time"] for r in actions(drain_server)))
    assert [(r["decision"], r["outcome"]) for r in actions(drain_server)] == [
        (ACCEPTED, ""), (ACTED, "pending"), (ACTED, SUCCEEDED)]
    assert [b["ServerId"] for b in drain_server.api.vserver_group_backends("rsp-80")] == [ON_DEMAND]


# ---- the restart hook by alert, against the OpenAPI emulator: answered on acceptance, once per firing ----

STOPPED = "i-bp1f3kq7z2m9w4x6c8v0"


def start_restart_server(data_dir: Path, emulator, grace: float) -> HttpServer:
    """`shipper run`'s wiring: the real restart hook, the store and the accepted alert keys in data_dir."""
    pipeline = Pipeline([SqliteSink(data_dir / "e.db")], BatchSettings(linger_ms=10)).start()
    engine = HookEngine([], lambda records, done: pipeline.record(events.ACTIONS_TABLE, records, done))
    settings = RestartHookSettings(enabled=True, dry_run=False, grace_seconds=grace, confirm_timeout_seconds=5.0)
    engine.hooks.append(RestartHook(settings, openapi(emulator), recent_events=engine.recent_events))
    pipeline.add_listener(engine.on_commit)
    srv = HttpServer(HttpSourceSettings(listen="127.0.0.1:0"), pipeline,
                     alerts=AlertIntake(engine, AlertKeys(alert_keys_path(data_dir)))).start()
    srv.db, srv.engine, srv.pipeline = data_dir / "e.db", engine, pipeline
    return srv


def stop_restart_server(srv: HttpServer) -> None:
    srv.stop()
    srv.engine.close(1)
    srv.pipeline.close(5)
    srv.close()
    srv.alerts.close()


@pytest.fixture
def restart_server(tmp_path, monkeypatch, emulator):
    monkeypatch.setenv("SHIPPER_WEBHOOK_TOKEN", TOKEN)
    emulator.add_instance(STOPPED, status="Stopped", tags=TAG)
    servers = []

    def start(grace: float) -> HttpServer:
        servers.append(start_restart_server(tmp_path / "data", emulator, grace))
        return servers[-1]

    start.api = emulator
    yield start
    for srv in servers:
        if srv.engine.hooks:  # not stopped by the test
            stop_restart_server(srv)


def one_instance_alert(repeat: int = 0) -> dict:
    # SLS's repeat: same fingerprint and fired_time, a new alert_instance_id and alert_time
    return dict(PAYLOAD, alert_instance_id=f"firing-1-{repeat}", alert_time=1772697600 + 300 * repeat,
                rows=PAYLOAD["rows"][:1])


def test_the_alert_is_answered_200_within_a_second_and_accepted_durably_while_the_hook_is_slow(restart_server):
    srv = restart_server(grace=60.0)
    # an inline Stopped of the same instance waits out its 60 s grace, and the cloud answers slowly
    srv.engine.schedule(events.new_event(event_uid="cms-stopped-1", event_name="Instance:StateChange",
                                         category="lifecycle", state="Stopped", instance_id=STOPPED,
                                         event_time_ms=str(int(time.time() * 1000))),
                        srv.engine.hooks, INLINE, lambda: None)
    restart_server.api.set_latency(3.0, "DescribeInstances")
    started = time.monotonic()
    status, reply = post(srv, "/hooks/restart", one_instance_alert())
    elapsed = time.monotonic() - started
    rows = actions(srv)
    assert status == 200 and elapsed < 1.0
    assert [(r["decision"], r["trigger"], r["instance_id"]) for r in rows] == [(ACCEPTED, "alert", STOPPED)]
    assert reply["status"] == ACCEPTED
    assert json.loads(rows[0]["detail"])["fingerprint"] == PAYLOAD["fingerprint"]
    wait_until(lambda: any(r["finished_time"] for r in decisions(srv)), timeout=20)  # then the hook decides
    assert [(r["decision"], r["outcome"]) for r in decisions(srv)] == [(ACTED, PENDING), (ACTED, SUCCEEDED)]


def test_a_hundred_repeats_of_one_firing_start_the_instance_once(restart_server):
    srv = restart_server(grace=0.0)
    with concurrent.futures.ThreadPoolExecutor(10) as pool:
        answers = list(pool.map(lambda n: post(srv, "/hooks/restart", one_instance_alert(n)), range(100)))
    assert [status for status, _ in answers] == [200] * 100
    wait_until(lambda: any(r["finished_time"] for r in decisions(srv)), timeout=15)
    time.sleep(0.3)
    assert len(restart_server.api.calls("StartInstance")) == 1
    # one decision: the repeats recorded nothing (not even 99 guard skips)
    assert [(r["decision"], r["outcome"]) for r in actions(srv)] == [(ACCEPTED, ""), (ACTED, PENDING), (ACTED, SUCCEEDED)]
    assert sorted(reply["status"] for _, reply in answers) == [ACCEPTED] + ["repeat"] * 99


def test_a_repeat_after_a_restart_on_the_same_data_dir_is_not_acted_on(restart_server):
    srv = restart_server(grace=0.0)
    assert post(srv, "/hooks/restart", one_instance_alert(0))[0] == 200
    wait_until(lambda: any(r["finished_time"] for r in decisions(srv)), timeout=15)
    stop_restart_server(srv)
    srv.engine.hooks.clear()
    # stopped again: the guards alone would start it again, only the stored repeat key tells it is a repeat
    restart_server.api.set_status(STOPPED, "Stopped")
    again = restart_server(grace=0.0)
    status, reply = post(again, "/hooks/restart", one_instance_alert(1))
    time.sleep(0.5)
    assert status == 200 and len(restart_server.api.calls("StartInstance")) == 1
    assert len(actions(again)) == 3  # accepted, acted pending, acted succeeded: all from the first run
    assert reply == {"status": "repeat", "instances": 1, "accepted": 0, "repeats": 1}
    # a new firing of the same group (new fired_time) is acted on
    assert post(again, "/hooks/restart", dict(one_instance_alert(2), fired_time=1772701200))[1]["accepted"] == 1
    wait_until(lambda: len(restart_server.api.calls("StartInstance")) == 2, timeout=15)


def test_the_rendered_shipped_template_restarts_the_instance_end_to_end(restart_server):
    restart_server.api.add_instance("i-bp1aaaaaaaaaaaaaaaa1", status="Stopped")  # not opted in
    srv = restart_server(grace=0.0)
    body = render_template(shipped_template(), SLS_ALERT)
    status, reply = post(srv, "/hooks/restart", body.encode())
    assert status == 200 and reply == {"status": ACCEPTED, "instances": 2, "accepted": 2, "repeats": 0}
    wait_until(lambda: len(decisions(srv)) == 3, timeout=15)  # a skip, and acted: pending then succeeded
    by_instance = {r["instance_id"]: r for r in decisions(srv) if not r["finished_time"]}
    assert (by_instance[STOPPED]["decision"], by_instance[STOPPED]["outcome"]) == (ACTED, PENDING)
    assert (by_instance["i-bp1aaaaaaaaaaaaaaaa1"]["decision"],
            by_instance["i-bp1aaaaaaaaaaaaaaaa1"]["reason"]) == (SKIPPED, "not-opted-in")
    assert {r["event_uid"] for r in decisions(srv)} == {
        f"alert:1b0f3c5e9a7d2468:1772697900:{STOPPED}", "alert:1b0f3c5e9a7d2468:1772697900:i-bp1aaaaaaaaaaaaaaaa1"}
    assert [c.params["InstanceId"] for c in restart_server.api.calls("StartInstance")] == [STOPPED]
