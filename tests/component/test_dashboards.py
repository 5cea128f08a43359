"""dashboards/ as code: offline validation, idempotent import into the SLS emulator, export back.

Expected values come from reference/sls.md §7–§9, DESIGN.md (schema, record fields, hooks) and
dashboards/README.md (the hook payload contract).
"""
from __future__ import annotations

import json
import logging
import re
import shutil
from pathlib import Path

import pytest
from aliyun.log import LogClient, LogException
from aliyun.log.resource_params import ResourceRecord

from shipper import events
from shipper.cloud.credentials import Credentials
from shipper.cloud.sls import make_client
from shipper.dashboards import (
    ACTION_POLICY, CONTENT_TEMPLATE, HOOK_PAYLOAD_KEYS, WEBHOOK, DashboardsError, Step, TemplateError, apply, export,
    plan_import, render_template, substitute_placeholders, validate,
)
from shipper.dashboards.load import load
from shipper.dashboards.rules import LAST_STATE_KEY
from shipper.dashboards.validate import content_queries, local_store
from shipper.hooks.alerts import alert_events, alert_payload
from shipper.query.parser import fields_used, parse
from shipper.query.sqlite import to_sqlite
from shipper.times import format_time_ms
from shipper.trail import via
from tests.conftest import REPO
from tests.emulators.sls import SlsEmulator

CONTENT = REPO / "dashboards"
AK, SK = "LTAIexampleKEY01", "exampleSecret0123456789"
PROJECT = "ecs-audit-test"  # not the files' "ecs-audit": import must point alert queries at its own project
WRITES = ("CreateLogStore", "CreateIndex", "UpdateIndex", "CreateSavedSearch", "UpdateSavedSearch",
          "CreateDashboard", "UpdateDashboard", "CreateAlert", "UpdateAlert")


def names(directory: str) -> set[str]:
    return {p.stem for p in (CONTENT / directory).glob("*.json")}


@pytest.fixture
def content(tmp_path) -> Path:
    """A copy of the shipped content to break or import."""
    root = tmp_path / "dashboards"
    shutil.copytree(CONTENT, root)
    return root


@pytest.fixture
def project_content(content) -> Path:
    """The shipped content without alerts/resources (account-level records shared by every project), so
    these import tests see only the project's own entities; the full folder is imported further down."""
    shutil.rmtree(content / "alerts" / "resources")
    return content


@pytest.fixture
def sls():
    with SlsEmulator(credentials={AK: SK}) as emulator:
        emulator.create_project(PROJECT)
        yield emulator


@pytest.fixture
def client(sls) -> LogClient:
    return make_client(sls.endpoint, Credentials(AK, SK), timeout=10)


def edit(path: Path, change) -> None:
    body = json.loads(path.read_text())
    change(body)
    path.write_text(json.dumps(body))


def reasons_for(problems, file_name: str) -> list[str]:
    return [p.reason for p in problems if Path(p.file).name == file_name]


# ---------------------------------------------------------------------------------------------------
# The shipped content

def test_shipped_content_validates():
    assert validate(CONTENT) == []


def test_shipped_content_covers_the_brief():
    assert names("index") == set(events.TABLE_FIELDS)
    assert len(names("savedsearches")) >= 8 and len(names("alerts")) >= 4
    assert {"released-by-whom", "failed-calls"} <= names("savedsearches")
    index = json.loads((CONTENT / "index" / "ecs-events.json").read_text())["index"]["keys"]
    assert index["event_time_ms"]["type"] == "long"
    assert json.loads((CONTENT / "index" / "shipper-actions.json").read_text()
                      )["index"]["keys"]["seconds_before_reclaim"]["type"] == "double"
    for path in (CONTENT / "alerts").glob("*.json"):
        assert json.loads(path.read_text())["configuration"]["version"] == "2.0", path.name


def test_the_restart_alert_calls_the_restart_hook_with_a_token_placeholder():
    alert = json.loads((CONTENT / "alerts" / "shipper-stopped-not-running.json").read_text())
    policy_id = alert["configuration"]["policyConfiguration"]["actionPolicyId"]
    policy = json.loads((CONTENT / "alerts" / "resources" / ACTION_POLICY / f"{policy_id}.json").read_text())
    webhook = json.loads((CONTENT / "alerts" / "resources" / WEBHOOK / "shipper-hook-restart.json").read_text())
    assert 'webhook_id="shipper-hook-restart"' in policy["value"]["primary_policy_script"]
    assert webhook["value"]["url"] == "https://${SHIPPER_HOST}/hooks/restart?token=${SHIPPER_WEBHOOK_TOKEN}"


# ---------------------------------------------------------------------------------------------------
# Issue 12: the registry's fields (zone, charge type, spot strategy, tags, stop cause) and one last state

NEW_FIELDS = ("zone_id", "charge_type", "spot_strategy", "tags", "stop_cause")
T0 = 1772697600000  # 2026-03-05T08:00:00Z


def event(uid: str, instance_id: str, at_ms: int, **values) -> dict:
    return events.new_event(event_uid=uid, instance_id=instance_id, event_time=format_time_ms(at_ms),
                            event_time_ms=str(at_ms), received_time=format_time_ms(at_ms + 1000), **values)


def state_change(uid: str, instance_id: str, state: str, at_ms: int, **values) -> dict:
    return event(uid, instance_id, at_ms, event_name="Instance:StateChange", category="lifecycle", state=state,
                 state_raw=state, **values)


def run(conn, logstore: str, query: str) -> list[dict]:
    """A shipped query on the local store, as `shipper search` runs it: rows as column -> value."""
    sql, params = to_sqlite(parse(query), logstore)
    cursor = conn.execute(sql, params)
    columns = [d[0] for d in cursor.description]
    return [dict(zip(columns, row)) for row in cursor.fetchall()]


def shipped_queries() -> list[tuple[str, str, str]]:
    """(file: where, logstore, query) of every saved search, chart and alert query."""
    return [(f"{Path(file).name}: {where}", logstore, query)
            for file, where, logstore, query in content_queries(load(CONTENT)[0])]


def test_the_new_fields_are_indexed_for_sql_and_used_by_the_content():
    keys = json.loads((CONTENT / "index" / "ecs-events.json").read_text())["index"]["keys"]
    used = set().union(*(fields_used(parse(query)) for _, logstore, query in shipped_queries()
                         if logstore == events.EVENTS_TABLE))
    assert set(NEW_FIELDS) <= used
    assert all(keys[name]["type"] == "text" and keys[name]["doc_value"] is True for name in NEW_FIELDS)
    assert "-" not in keys["stop_cause"]["token"]  # `stop_cause: spot-reclaim` is one token
    # tags is a JSON object string: its delimiters leave each tag key and value a token of its own, so
    # `tags: env` and `tags: "env:prod"` find the instances tagged env=prod
    split = re.split("|".join(map(re.escape, keys["tags"]["token"])), '{"env":"prod","app":"web-1.a/b"}')
    assert [token for token in split if token] == ["env", "prod", "app", "web-1.a/b"]


def test_the_dashboard_charts_interruptions_by_zone_and_stops_by_cause():
    charts = {c["title"]: c for c in json.loads((CONTENT / "dashboards" / "lifecycle.json").read_text())["charts"]}
    by_zone, by_cause = charts["spot-interruptions-by-zone-type"], charts["stops-by-cause-per-day"]
    assert by_cause["display"]["yAxis"] == [cause.replace("-", "_") for cause in events.STOP_CAUSES] + ["other"]

    def interruption(uid, instance_id, zone_id):
        return event(uid, instance_id, T0, event_name="Instance:PreemptibleInstanceInterruption",
                     category="interruption", instance_type="ecs.c7.xlarge", zone_id=zone_id)
    rows = [interruption("i1", "i-1", "cn-hangzhou-h"), interruption("i2", "i-2", "cn-hangzhou-h"),
            interruption("i2-again", "i-2", "cn-hangzhou-h"), interruption("i3", "i-3", "cn-hangzhou-i"),
            interruption("i4", "i-4", ""),
            state_change("s1", "i-1", "Deleted", T0 + 300_000, stop_cause="spot-reclaim"),
            state_change("s2", "i-5", "Stopped", T0, stop_cause="user-or-api"),
            state_change("s3", "i-5", "Deleted", T0 + 60_000, stop_cause="user-or-api"),
            state_change("s4", "i-6", "Stopped", T0, stop_cause="")]
    with local_store({events.EVENTS_TABLE: rows}) as conn:
        assert {r["zone_type"]: r["interrupted"] for r in run(conn, "ecs-events", by_zone["search"]["query"])} == {
            "cn-hangzhou-h ecs.c7.xlarge": 2, "cn-hangzhou-i ecs.c7.xlarge": 1, "zone-unknown ecs.c7.xlarge": 1}
        assert run(conn, "ecs-events", by_cause["search"]["query"]) == [
            {"day_start": "2026-03-05", "spot_reclaim": 1, "system": 0, "billing_lock": 0, "expired": 0,
             "user": 0, "api": 0, "service": 0, "user_or_api": 1, "other": 1}]


def test_a_tie_in_event_time_is_broken_by_the_lifecycle_rank_in_every_last_state_query():
    """Rows are received (stored) in the order listed; the rank, not the receipt, decides a tie."""
    stopped, reversed_stop, released = "i-bp1tie0000000000001", "i-bp1tie0000000000002", "i-bp1tie0000000000003"
    stop_at = T0 + 60_000
    rows = [state_change("a1", stopped, "Running", T0),
            state_change("a2", stopped, "Stopping", stop_at),
            state_change("a3", stopped, "Stopped", stop_at, stop_cause="system"),
            state_change("b1", reversed_stop, "Running", T0),
            state_change("b2", reversed_stop, "Stopped", stop_at, stop_cause="user-or-api"),
            state_change("b3", reversed_stop, "Stopping", stop_at),
            state_change("c1", released, "Running", T0),
            state_change("c2", released, "Stopped", stop_at, stop_cause="user-or-api"),
            state_change("c3", released, "Deleted", stop_at, stop_cause="user-or-api")]
    last_state_queries = [q for q in shipped_queries() if "max_by(state," in q[2]]
    assert {where.split(":")[0] for where, _, _ in last_state_queries} == {
        "stopped-not-restarted.json", "shipper-stopped-not-running.json"}
    timeline = json.loads((CONTENT / "savedsearches" / "instance-lifecycle.json").read_text())["searchQuery"]
    with local_store({events.EVENTS_TABLE: rows}) as conn:
        for where, logstore, query in last_state_queries:
            found = run(conn, logstore, query)
            assert sorted(row["instance_id"] for row in found) == [stopped, reversed_stop], where
            if "cause" in found[0]:  # the stop cause follows the same row as the state
                assert {row["instance_id"]: row["cause"] for row in found} == {
                    stopped: "system", reversed_stop: "user-or-api"}, where
        for instance_id in (stopped, reversed_stop):
            query = timeline.replace("i-bp1f3kq7z2m9w4x6c8v0", instance_id)
            assert [row["state"] for row in run(conn, "ecs-events", query)] == ["Running", "Stopping", "Stopped"]


def test_a_last_state_without_the_lifecycle_tie_break_is_refused(content):
    path = content / "alerts" / "shipper-stopped-not-running.json"
    edit(path, lambda b: b["configuration"]["queryList"][0].update(
        query=b["configuration"]["queryList"][0]["query"].replace(LAST_STATE_KEY, "__time__")))
    assert reasons_for(validate(content), path.name) == [
        f"queryList[0]: max_by(state, …) must break ties in event time by the lifecycle rank: "
        f"use max_by(state, {LAST_STATE_KEY})"] * 2


# One firing of shipper-stopped-not-running as SLS hands it to the template ("Variables in new alert templates"):
# fire_results are the query rows with every value a string; names and annotations may hold quotes.
SLS_ALERT = {
    "aliuid": "1234567890123456", "alert_instance_id": "ee16a8f435485f3f-5be6b81edc520-3d6f0a1",
    "alert_id": "shipper-stopped-not-running", "alert_name": "Instance stopped and not running again within 10 minutes",
    "alert_type": "sls_alert", "region": "cn-hangzhou", "project": "ecs-audit", "next_eval_interval": 300,
    "alert_time": 1772698500, "fire_time": 1772697900, "resolve_time": 0, "status": "firing", "severity": 8,
    "labels": {"app": "shipper", "hook": "restart", "instance_id": "i-bp1f3kq7z2m9w4x6c8v0"},
    "annotations": {"title": "Instance stopped and not running again",
                    "desc": 'i-bp1f3kq7z2m9w4x6c8v0 (web "blue" \\ 1) stopped at 2026-03-05T08:00:00.000Z'},
    "results": [{"store": "ecs-events", "query": "event_name: ...", "fire_result": None}],
    "fire_results": [{"instance_id": "i-bp1f3kq7z2m9w4x6c8v0", "last_state": "Stopped",
                      "stopped_time": "2026-03-05T08:00:00.000Z", "region": "cn-hangzhou",
                      "name": 'web "blue" \\ 1'},
                     {"instance_id": "i-bp1aaaaaaaaaaaaaaaa1", "last_state": "Stopped",
                      "stopped_time": "2026-03-05T08:01:30.000Z", "region": "cn-hangzhou", "name": "web-2"}],
    "fire_results_count": 2, "fingerprint": "1b0f3c5e9a7d2468",
}


def shipped_template() -> str:
    template = json.loads((CONTENT / "alerts" / "resources" / CONTENT_TEMPLATE / "shipper-hook-json.json").read_text())
    return template["value"]["templates"]["webhook"]["content"]


def test_the_webhook_template_renders_the_documented_hook_payload():
    body = render_template(shipped_template(), SLS_ALERT)
    payload = json.loads(body)
    assert payload == {
        "alert": "shipper-stopped-not-running", "alert_name": SLS_ALERT["alert_name"],
        "fingerprint": "1b0f3c5e9a7d2468", "alert_instance_id": "ee16a8f435485f3f-5be6b81edc520-3d6f0a1",
        "status": "firing", "severity": 8, "fired_time": 1772697900, "alert_time": 1772698500,
        "project": "ecs-audit", "rows": SLS_ALERT["fire_results"],
    }
    assert {key: type(payload[key]) for key in HOOK_PAYLOAD_KEYS} == HOOK_PAYLOAD_KEYS
    # what shipper's hook endpoint (shipper/sources/http.py) makes of it today: one event per instance
    made = alert_events(alert_payload(body.encode()), "restart")
    assert [(e["instance_id"], e["instance_name"]) for e in made] == [
        ("i-bp1f3kq7z2m9w4x6c8v0", 'web "blue" \\ 1'), ("i-bp1aaaaaaaaaaaaaaaa1", "web-2")]


def test_the_renderer_follows_sls_for_missing_variables_and_filters():
    alert = {"status": 'say "hi"\n', "rows": [{"a": "1"}], "labels": {"k": "v"}, "severity": 8}
    assert render_template("{{ alert.status | quote }}", alert) == '"say \\"hi\\"\\n"'
    assert render_template("{{alert.rows|to_json}} {{ alert.labels['k'] | quote }}", alert) == '[{"a": "1"}] "v"'
    assert render_template("{{ alert.severity }} {{ alert.status }}", alert) == '8 say "hi"\n'
    # a missing variable is an empty string (SLS), unless default replaces it
    assert render_template("[{{ alert.nope }}] {{ alert.nope | quote }} {{ alert.nope | default(0) }}", alert) == \
        '[] "" 0'
    assert render_template("{{ alert.rows[0].a | quote }} {{ alert.severity | default(0) }}", alert) == '"1" 8'


@pytest.mark.parametrize("content, message", [
    ("{% if alert.status %}x{% endif %}", "not supported by shipper's renderer"),
    ("{{ alert.status | format_status }}", "does not implement"),
    ("{{ alert.status | shout }}", "not an SLS template filter"),
    ("{{ alert.status | default }}", "default takes one value"),
])
def test_the_renderer_refuses_what_it_does_not_cover(content, message):
    with pytest.raises(TemplateError, match=message):
        render_template(content, {"status": "firing"})


# ---------------------------------------------------------------------------------------------------
# Issue 13: who changed the fleet (api-call records from ActionTrail)

CONSOLE = dict(actor_type="ram-user", actor_name="alice", user_agent="AliyunConsole", source_ip="203.0.113.7")


def api_call(uid: str, instance_id: str, name: str, at_ms: int, who: dict, **values) -> dict:
    return event(f"actiontrail:{uid}:{instance_id}", instance_id, at_ms, event_name=f"ActionTrail:{name}",
                 category="api-call", envelope="actiontrail", **who, **values)


def shipped(kind: str, name: str) -> str:
    if kind == "savedsearches":
        return json.loads((CONTENT / kind / f"{name}.json").read_text())["searchQuery"]
    charts = json.loads((CONTENT / "dashboards" / "lifecycle.json").read_text())["charts"]
    return next(c["search"]["query"] for c in charts if c["title"] == name)


def test_released_by_whom_names_the_call_that_released_each_instance_and_failed_calls_list_the_failures():
    sdk = dict(actor_type="assumed-role", actor_name="deployer:ci", user_agent="aliyun-sdk-java/1.0",
               source_ip="198.51.100.9")
    system = dict(actor_type="system", actor_name="ecs.aliyuncs.com", user_agent="ecs.aliyuncs.com",
                  source_ip="ecs.aliyuncs.com")
    rows = [api_call("e1", "i-a", "DeleteInstance", T0 - 60_000, sdk, error_code="IncorrectInstanceStatus"),
            api_call("e2", "i-a", "DeleteInstance", T0, CONSOLE),
            state_change("a", "i-a", "Deleted", T0 + 5_000, stop_cause="user-or-api"),
            state_change("b", "i-b", "Deleted", T0 + 60_000, stop_cause="spot-reclaim"),
            api_call("e3", "i-c", "Release", T0 + 120_000, system),
            state_change("c", "i-c", "Deleted", T0 + 121_000, stop_cause="user-or-api"),
            api_call("e4", "i-d", "StopInstance", T0, CONSOLE),  # stopped, not released: not listed
            state_change("d", "i-d", "Stopped", T0 + 9_000, stop_cause="user-or-api")]
    with local_store({events.EVENTS_TABLE: rows}) as conn:
        released = run(conn, "ecs-events", shipped("savedsearches", "released-by-whom"))
        failed = run(conn, "ecs-events", shipped("savedsearches", "failed-calls"))
    assert [(r["instance_id"], r["released_by"], r["caller"], r["via"], r["source_ip"]) for r in released] == [
        ("i-c", "Release", "system ecs.aliyuncs.com", "service", "ecs.aliyuncs.com"),
        ("i-b", "no call on record", None, None, None),
        ("i-a", "DeleteInstance", "ram-user alice", "console", "203.0.113.7")]
    assert [(r["instance_id"], r["call_name"], r["error_code"], r["caller"]) for r in failed] == [
        ("i-a", "DeleteInstance", "IncorrectInstanceStatus", "assumed-role deployer:ci")]


@pytest.mark.parametrize("user_agent, actor_type, actor_name", [
    ("AliyunConsole", "ram-user", "alice"), ("ecs.console.aliyun.com", "root-account", "root"),
    ("Mozilla/5.0 (X11; Linux x86_64)", "ram-user", "alice"), ("AliyunConsole/2", "ram-user", "alice"),
    ("Aliyun-CLI/3.0.200", "ram-user", "ops"), ("aliyun-cli/3.0.1", "assumed-role", "ops:cli"),
    ("Apache-HttpClient/4.5.7 (Java/1.8.0_275)", "root-account", "root"), ("", "ram-user", "ops"),
    ("ess.aliyuncs.com", "assumed-role", "AliyunServiceRoleForAutoScaling:ess"), ("ecs.aliyuncs.com", "system", ""),
    ("aliyun-sdk-go", "assumed-role", "AliyunServiceRoleForAutoScaling:ess"),
    ("aliyun-sdk-go", "ram-user", "AliyunServiceRoleForAutoScaling"),
    (" AliyunConsole ", "system", ""), ("my_console.aliyun.com.example", "ram-user", "alice"),
])
def test_the_charts_say_how_a_call_was_made_as_trail_via_does(user_agent, actor_type, actor_name):
    who = dict(actor_type=actor_type, actor_name=actor_name, user_agent=user_agent)
    with local_store({events.EVENTS_TABLE: [api_call("v", "i-v", "StopInstance", T0, who)]}) as conn:
        by_caller = run(conn, "ecs-events", shipped("dashboards", "who-changed-my-fleet-by-caller"))
    assert [row["via"] for row in by_caller] == [via(user_agent, actor_type, actor_name)]


def test_who_changed_my_fleet_counts_changed_instances_per_hour_and_caller():
    cli = dict(actor_type="ram-user", actor_name="ops", user_agent="Aliyun-CLI/3.0.200")
    rows = [api_call("s1", "i-1", "StopInstances", T0, cli), api_call("s1", "i-2", "StopInstances", T0, cli),
            api_call("s2", "i-1", "StartInstance", T0 + 60_000, CONSOLE),
            api_call("s3", "i-3", "StartInstance", T0 + 3_600_000, CONSOLE),
            api_call("s4", "i-3", "StopInstance", T0 + 3_700_000, CONSOLE, error_code="IncorrectInstanceStatus"),
            state_change("x", "i-1", "Stopped", T0 + 10_000)]
    with local_store({events.EVENTS_TABLE: rows}) as conn:
        per_hour = run(conn, "ecs-events", shipped("dashboards", "who-changed-my-fleet"))
        by_caller = run(conn, "ecs-events", shipped("dashboards", "who-changed-my-fleet-by-caller"))
    assert per_hour == [{"hour_start": "2026-03-05 08:00", "console": 1, "cli": 2, "sdk": 0, "service": 0},
                        {"hour_start": "2026-03-05 09:00", "console": 1, "cli": 0, "sdk": 0, "service": 0}]
    assert by_caller == [
        {"caller": "ram-user alice", "via": "console", "changes": 2, "instances": 2, "failed": 1,
         "last_call": format_time_ms(T0 + 3_700_000)},
        {"caller": "ram-user ops", "via": "cli", "changes": 2, "instances": 2, "failed": 0,
         "last_call": format_time_ms(T0)}]


# ---------------------------------------------------------------------------------------------------
# Broken copies: each problem names the file and says why

def test_a_broken_query_is_reported_with_its_file(content):
    edit(content / "savedsearches" / "interruptions.json", lambda b: b.update(searchQuery="(__topic__: interruption"))
    reasons = reasons_for(validate(content), "interruptions.json")
    assert len(reasons) == 1 and "does not parse" in reasons[0] and "missing ')'" in reasons[0]


def test_an_unknown_field_is_reported(content):
    def use_zone(body):
        body["charts"][2]["search"]["query"] = \
            "__topic__: interruption | select availability_zone, count(*) as n group by 1"
    edit(content / "dashboards" / "lifecycle.json", use_zone)
    assert reasons_for(validate(content), "lifecycle.json") == [
        "charts[2] (spot-interruptions-by-zone-type): field 'availability_zone' is not a field of ecs-events"]


def test_a_field_used_in_sql_without_doc_value_is_reported_where_used(content):
    edit(content / "index" / "ecs-events.json", lambda b: b["index"]["keys"]["not_before"].update(doc_value=False))
    problems = validate(content)
    expected = "field 'not_before' is used in SQL but has no doc_value in index/ecs-events.json"
    assert {Path(p.file).name for p in problems} == {"interruptions.json", "scheduled-maintenance.json",
                                                     "shipper-interruption-not-drained.json"}
    assert all(p.reason.endswith(expected) for p in problems)


def test_malformed_json_is_reported_with_its_position(content):
    path = content / "savedsearches" / "dead-letters.json"
    path.write_text('{"savedsearchName": "dead-letters",}')
    assert reasons_for(validate(content), "dead-letters.json") == [
        "not valid JSON: Expecting property name enclosed in double quotes at line 1 column 36"]


def test_an_index_that_misses_or_mistypes_schema_fields_is_reported(content):
    def break_index(body):
        del body["index"]["keys"]["hook"]
        body["index"]["keys"]["seconds_before_reclaim"] = {"type": "text", "token": [" "], "doc_value": True}
    edit(content / "index" / "shipper-actions.json", break_index)
    reasons = reasons_for(validate(content), "shipper-actions.json")
    assert "schema field 'hook' is not indexed (want type text)" in reasons
    assert "index.keys.seconds_before_reclaim.type is text, the schema needs double" in reasons
    # saved searches and alerts on shipper-actions that filter on hook now fail too
    assert "searchQuery: field 'hook' is not indexed in index/shipper-actions.json" in reasons_for(
        validate(content), "restart-outcomes.json")


def test_an_incomplete_alert_is_reported(content):
    def break_alert(body):
        del body["configuration"]["policyConfiguration"]
        body["configuration"]["severityConfigurations"][0]["severity"] = 7
        body["configuration"]["joinConfigurations"] = []
    edit(content / "alerts" / "shipper-stopped-not-running.json", break_alert)
    assert reasons_for(validate(content), "shipper-stopped-not-running.json") == [
        "configuration.policyConfiguration is missing"]
    edit(content / "alerts" / "shipper-stopped-not-running.json",
         lambda b: b["configuration"].update(policyConfiguration={"alertPolicyId": "sls.builtin.dynamic",
                                                                  "actionPolicyId": "nowhere",
                                                                  "repeatInterval": "1h"}))
    assert set(reasons_for(validate(content), "shipper-stopped-not-running.json")) == {
        "configuration.severityConfigurations[0].severity must be one of (2, 4, 6, 8, 10)",
        "configuration.joinConfigurations needs one entry between each pair of queries",
        "configuration.policyConfiguration.actionPolicyId 'nowhere' is not in alerts/resources/sls.alert.action_policy"}


def test_a_literal_webhook_token_is_refused(content):
    edit(content / "alerts" / "resources" / WEBHOOK / "shipper-hook-restart.json",
         lambda b: b["value"].update(url="https://shipper.example.com/hooks/restart?token=abc123"))
    assert reasons_for(validate(content), "shipper-hook-restart.json") == [
        "value.url carries a literal token: use token=${SHIPPER_WEBHOOK_TOKEN}"]


def test_a_file_must_be_named_after_its_entity(content):
    (content / "savedsearches" / "duplicates.json").rename(content / "savedsearches" / "dupes.json")
    assert reasons_for(validate(content), "dupes.json") == ["holds 'duplicates': name the file duplicates.json"]


# ---------------------------------------------------------------------------------------------------
# The content as it was before issue 11: what real SLS refuses, refused by validate and by the emulator

LEGACY_TEMPLATE = ('{"alert": "{{ alert.alert_id }}", "alert_instance_id": "{{ alert.alert_instance_id }}", '
                   '"status": "{{ alert.status }}", "severity": {{ alert.severity }}, '
                   '"fired_time": {{ alert.fire_time }}, '
                   '"project": "{{ alert.project }}", "rows": {{ alert.fire_results }}}')


def make_legacy(root: Path) -> None:
    """Put the pre-fix forms back: free-text chart titles, `||`, epoch x axes, legacy fire(), partial action
    policies, an unescaped template."""
    def dashboard(body):
        for chart in body["charts"]:
            chart["title"] = chart["display"]["displayName"]
        chart = body["charts"][0]
        chart["search"]["query"] = chart["search"]["query"].replace(
            "date_format(date_trunc('hour', from_unixtime(__time__)), '%Y-%m-%d %H:%i')",
            "date_trunc('hour', __time__)")
        spot = body["charts"][2]["search"]
        zone_type = "concat(coalesce(nullif(zone_id, ''), 'zone-unknown'), ' ', instance_type)"
        spot["query"] = spot["query"].replace(zone_type, "zone_id || ' ' || instance_type")
    edit(root / "dashboards" / "lifecycle.json", dashboard)
    for path in (root / "alerts" / "resources" / ACTION_POLICY).glob("*.json"):
        def policy(body):
            value = body["value"]
            body["value"] = {key: value[key]
                             for key in ("action_policy_id", "action_policy_name", "labels", "is_default")}
            body["value"]["primary_policy_script"] = value["primary_policy_script"].replace(
                'type="webhook_integration", integration_type="custom", ', 'type="webhook", ')
        edit(path, policy)
    edit(root / "alerts" / "resources" / CONTENT_TEMPLATE / "shipper-hook-json.json",
         lambda b: b["value"]["templates"]["webhook"].update(content=LEGACY_TEMPLATE))


@pytest.fixture
def legacy(content) -> Path:
    make_legacy(content)
    return content


def test_validate_refuses_the_legacy_content_one_line_per_problem(legacy):
    problems = validate(legacy)
    by_file = {}
    for p in problems:
        by_file.setdefault(Path(p.file).name, []).append(p.reason)
    assert set(by_file) == {"lifecycle.json", "shipper-notify.json", "shipper-restart.json", "shipper-hook-json.json"}
    dashboard = by_file["lifecycle.json"]
    charts = len(json.loads((CONTENT / "dashboards" / "lifecycle.json").read_text())["charts"])
    assert sum(r.startswith("charts[") and ".title " in r and "is the chart's id" in r for r in dashboard) == charts
    assert "charts[0].display.xAxis 'hour_start' is date_trunc(unit, __time__), which SLS gives as unix seconds: " \
           "use date_format(date_trunc(unit, from_unixtime(__time__)), '%Y-%m-%d %H:%i')" in dashboard
    assert "charts[2] (Spot interruptions by zone and instance type): " \
           "`||` is not an SLS SQL operator: use concat(a, b)" in dashboard
    restart = by_file["shipper-restart.json"]
    assert [r for r in restart if "missing" in r] == [
        f"value.{name} is missing" for name in ("secondary_policy_script", "escalation_start_enabled",
                                                "escalation_start_timeout", "escalation_inprogress_enabled",
                                                "escalation_inprogress_timeout", "escalation_enabled",
                                                "escalation_timeout")]
    assert [r.split(":")[0] for r in restart if "legacy inline-URL form" in r] == [
        "value.primary_policy_script line 1", "value.primary_policy_script line 2"]
    assert by_file["shipper-hook-json.json"] == [
        f"value.templates.webhook.content: {{{{ alert.{name} }}}}: a string in a JSON body must be rendered with "
        "| quote (escaped and quoted)" for name in ("alert_id", "alert_instance_id", "status", "project")] + [
        "value.templates.webhook.content: {{ alert.fire_results }}: alert.fire_results is a list: "
        "render it with | to_json"]


def test_the_emulator_refuses_the_legacy_content(sls, client, legacy):
    """Sent straight through the SDK, past validate: the emulator alone stands for what SLS refuses."""
    dashboard = json.loads((legacy / "dashboards" / "lifecycle.json").read_text())
    with pytest.raises(LogException) as refused:
        client.create_dashboard(PROJECT, dashboard)
    assert refused.value.get_error_code() == "ParameterInvalid"
    assert sls.entities(PROJECT, "dashboards") == {}
    for kind in (ACTION_POLICY, CONTENT_TEMPLATE):
        for path in (legacy / "alerts" / "resources" / kind).glob("*.json"):
            record = json.loads(path.read_text())
            with pytest.raises(LogException) as refused:
                client.create_resource_record(kind, ResourceRecord(record["id"], record["tag"], record["value"]))
            assert refused.value.get_error_code() == "ParameterInvalid", path.name
        assert sls.resource_records(kind) == {}


@pytest.mark.parametrize("file, change, reason", [
    ("dashboards/lifecycle.json", lambda b: b["charts"][1].update(title=b["charts"][0]["title"]),
     "charts[1].title 'lifecycle-events-per-hour' is used by another chart of this dashboard"),
    ("dashboards/lifecycle.json", lambda b: b.update(dashboardName="Lifecycle"),
     "dashboardName 'Lifecycle' is the dashboard's id, in SLS's URL: it must match [0-9a-z][0-9a-z_-]{0,98}[0-9a-z]"),
    ("savedsearches/dead-letters.json",
     lambda b: b.update(searchQuery="* | select strftime('%H', received_time) as h, count(*) as n group by h"),
     "searchQuery: strftime() is not a documented SLS SQL function"),
    ("alerts/shipper-deadletters.json",
     lambda b: b["configuration"]["queryList"][0].update(
         query="* | select reason || '!' as r, count(*) as n group by r"),
     "queryList[0]: `||` is not an SLS SQL operator: use concat(a, b)"),
])
def test_sls_naming_and_sql_rules(content, file, change, reason):
    edit(content / file, change)
    assert reason in reasons_for(validate(content), Path(file).name)


def test_a_saved_search_name_must_be_an_sls_name(content):
    path = content / "savedsearches" / "duplicates.json"
    edit(path, lambda b: b.update(savedsearchName="Duplicates"))
    path.rename(content / "savedsearches" / "Duplicates.json")
    assert reasons_for(validate(content), "Duplicates.json") == [
        "savedsearchName 'Duplicates' must match [0-9a-z][0-9a-z_-]{1,61}[0-9a-z] (3 to 63 characters)"]


POLICY_FILE = Path("alerts") / "resources" / ACTION_POLICY / "shipper-notify.json"


@pytest.mark.parametrize("script, reason", [
    ("", "value.primary_policy_script is empty (SLS refuses it: ActionPolicyEmpty)"),
    ('fire(type="webhook_integration", integration_type="custom", webhook_id="shipper-operator", period="any")',
     'value.primary_policy_script line 1: fire(type="webhook_integration") needs template_id='),
    ('fire(type="webhook_integration", integration_type="pager", webhook_id="shipper-operator", '
     'template_id="shipper-hook-json", period="any")',
     "value.primary_policy_script line 1: integration_type must be one of custom, dingtalk, wechat, lark, slack"),
    ('fire(type="webhook_integration", integration_type="custom", webhook_id="nowhere", '
     'template_id="shipper-hook-json", period="any")',
     "value.primary_policy_script line 1: webhook_id 'nowhere' is not in alerts/resources/sls.alert.action_webhook"),
    ('fire(type="email", users=["ops"], template_id="shipper-hook-json", period="any")',
     'value.primary_policy_script line 1: fire(type="email") is not a form shipper checks; '
     'known: type="webhook_integration"'),
    ("notify(everyone)", "value.primary_policy_script: line 1 is not a fire(...) statement"),
])
def test_action_policy_dsl_rules(content, script, reason):
    edit(content / POLICY_FILE, lambda b: b["value"].update(primary_policy_script=script))
    assert reasons_for(validate(content), "shipper-notify.json") == [reason]


@pytest.mark.parametrize("template, reason", [
    ('{"rows": {{ alert.fire_results | quote }}}', "alert.fire_results is a list: render it with | to_json"),
    ('{"labels": {{ alert.labels }}}', "alert.labels is a map: render it with | to_json"),
    ('{"x": {{ alert.zone | quote }}}', "not an SLS alert variable"),
    ('{"x": {{ alert.status | shout }}}', "shout is not an SLS template filter"),
    ('{"x": "{{ alert.status | quote }}"}', "does not render to JSON"),
])
def test_content_template_rules(content, template, reason):
    edit(content / "alerts" / "resources" / CONTENT_TEMPLATE / "shipper-hook-json.json",
         lambda b: b["value"]["templates"]["webhook"].update(content=template))
    reasons = reasons_for(validate(content), "shipper-hook-json.json")
    assert len(reasons) == 1 and reason in reasons[0], reasons


# ---------------------------------------------------------------------------------------------------
# Import and export against the SLS emulator

def test_import_creates_everything(sls, client, project_content):
    steps = plan_import(client, PROJECT, project_content)
    assert {s.action for s in steps} == {"create"}
    apply(client, PROJECT, steps)

    assert set(sls.entities(PROJECT, "logstores")) == set(events.TABLE_FIELDS)
    assert sls.entities(PROJECT, "logstores")["ecs-events"]["ttl"] == 365
    indexes = sls.entities(PROJECT, "indexes")
    assert indexes["ecs-events"]["keys"]["event_time_ms"]["type"] == "long"
    assert indexes["shipper-actions"]["keys"]["seconds_before_reclaim"] == {"type": "double", "doc_value": True}
    assert set(indexes["shipper-deadletter"]["keys"]) == set(events.DEADLETTER_FIELDS)
    assert set(sls.entities(PROJECT, "savedsearches")) == names("savedsearches")
    assert set(sls.entities(PROJECT, "dashboards")) == {"lifecycle"}
    jobs = sls.entities(PROJECT, "jobs")
    assert set(jobs) == names("alerts")
    assert {q["project"] for job in jobs.values() for q in job["configuration"]["queryList"]} == {PROJECT}


def test_import_twice_keeps_one_copy_and_plans_nothing(sls, client, project_content):
    apply(client, PROJECT, plan_import(client, PROJECT, project_content))
    writes = {op: sls.request_count(op) for op in WRITES}
    second = plan_import(client, PROJECT, project_content)
    assert [s.action for s in second] == ["unchanged"] * len(second)
    apply(client, PROJECT, second)
    assert {op: sls.request_count(op) for op in WRITES} == writes
    assert len(sls.entities(PROJECT, "savedsearches")) == len(names("savedsearches"))
    assert len(sls.entities(PROJECT, "jobs")) == len(names("alerts"))


def test_import_updates_what_differs(sls, client, project_content):
    apply(client, PROJECT, plan_import(client, PROJECT, project_content))
    edit(project_content / "savedsearches" / "dead-letters.json", lambda b: b.update(displayName="Dead letters!"))
    edit(project_content / "index" / "shipper-actions.json",
         lambda b: b["index"]["keys"]["detail"].update(doc_value=True))
    changed = [(s.action, s.kind, s.name) for s in plan_import(client, PROJECT, project_content)
               if s.action != "unchanged"]
    assert changed == [("update", "index", "shipper-actions"), ("update", "savedsearch", "dead-letters")]
    apply(client, PROJECT, plan_import(client, PROJECT, project_content))
    assert sls.entities(PROJECT, "savedsearches")["dead-letters"]["displayName"] == "Dead letters!"
    assert sls.entities(PROJECT, "indexes")["shipper-actions"]["keys"]["detail"]["doc_value"] is True


def test_dry_run_changes_nothing(sls, client, project_content):
    steps = plan_import(client, PROJECT, project_content)
    assert steps and all(s.action == "create" for s in steps)
    assert sum(sls.request_count(op) for op in WRITES) == 0
    assert sls.entities(PROJECT, "logstores") == {} and sls.entities(PROJECT, "jobs") == {}


def test_import_refuses_content_that_does_not_validate(sls, client, project_content):
    edit(project_content / "savedsearches" / "interruptions.json", lambda b: b.update(searchQuery="zone: a"))
    with pytest.raises(DashboardsError,
                       match="interruptions.json: searchQuery: field 'zone' is not a field of ecs-events"):
        plan_import(client, PROJECT, project_content)
    assert sum(sls.request_count(op) for op in WRITES) == 0


def test_export_then_validate_round_trip(client, project_content, tmp_path):
    apply(client, PROJECT, plan_import(client, PROJECT, project_content))
    out = tmp_path / "exported"
    written = export(client, PROJECT, out)
    assert {p.relative_to(out).as_posix() for p in written} == {
        p.relative_to(project_content).as_posix() for p in project_content.rglob("*.json")}
    assert validate(out) == []
    exported = json.loads((out / "savedsearches" / "duplicates.json").read_text())
    assert exported == json.loads((project_content / "savedsearches" / "duplicates.json").read_text())
    # and the exported tree imports as unchanged
    assert {s.action for s in plan_import(client, PROJECT, out)} == {"unchanged"}


# ---------------------------------------------------------------------------------------------------
# Alert resources: placeholders, and the token never shown

def test_placeholders_are_filled_and_a_missing_one_is_named():
    url = "https://${SHIPPER_HOST}/hooks/restart?token=${SHIPPER_WEBHOOK_TOKEN}"
    filled = substitute_placeholders({"url": url, "headers": [{"key": "x", "value": "${SHIPPER_HOST}"}]},
                                     {"SHIPPER_HOST": "shipper.example.com", "SHIPPER_WEBHOOK_TOKEN": "t0ken"})
    assert filled == {"url": "https://shipper.example.com/hooks/restart?token=t0ken",
                      "headers": [{"key": "x", "value": "shipper.example.com"}]}
    with pytest.raises(KeyError, match="SHIPPER_WEBHOOK_TOKEN"):
        substitute_placeholders(url, {"SHIPPER_HOST": "shipper.example.com"})


def test_an_unset_placeholder_stops_the_import_before_any_request(sls, client):
    placeholders = {"SHIPPER_HOST": "shipper.example.com", "SHIPPER_WEBHOOK_TOKEN": "t0ken"}
    with pytest.raises(DashboardsError,
                       match=r"shipper-operator.json: placeholder \$\{OPERATOR_WEBHOOK_URL\}") as error:
        plan_import(client, PROJECT, CONTENT, placeholders)
    assert "t0ken" not in str(error.value)
    assert sls.request_count() == 0


def test_a_token_is_never_sent_over_plain_http(sls, client):
    placeholders = {"SHIPPER_HOST": "shipper.example.com", "SHIPPER_WEBHOOK_TOKEN": "t0ken",
                    "OPERATOR_WEBHOOK_URL": "http://ops.example.com/alerts?token=0ps"}
    with pytest.raises(DashboardsError, match="shipper-operator.json: the webhook URL carries a token"):
        plan_import(client, PROJECT, CONTENT, placeholders)
    assert sls.request_count() == 0


def test_a_step_never_shows_its_body():
    step = Step("update", WEBHOOK, "shipper-hook-restart", {"value": {"url": "https://h/hooks/restart?token=t0ken"}})
    assert "t0ken" not in repr(step) and "t0ken" not in str(step)
    assert str(step) == "update    sls.alert.action_webhook shipper-hook-restart"


# ---------------------------------------------------------------------------------------------------
# The full shipped content, alert resources included

PLACEHOLDERS = {"SHIPPER_HOST": "shipper.example.com", "SHIPPER_WEBHOOK_TOKEN": "t0ken-value",
                "OPERATOR_WEBHOOK_URL": "https://ops.example.com/hook"}


def resource_files(kind: str) -> dict[str, dict]:
    return {p.stem: json.loads(p.read_text()) for p in (CONTENT / "alerts" / "resources" / kind).glob("*.json")}


def test_import_of_everything_fills_the_resources_and_never_shows_the_token(sls, client, caplog):
    caplog.set_level(logging.DEBUG)
    steps = plan_import(client, PROJECT, CONTENT, PLACEHOLDERS)
    assert {s.action for s in steps} == {"create"}
    assert {(s.kind, s.name) for s in steps if s.kind.startswith("sls.")} == {
        (kind, name) for kind in (WEBHOOK, CONTENT_TEMPLATE, ACTION_POLICY) for name in resource_files(kind)}
    apply(client, PROJECT, steps)

    webhooks = sls.resource_records(WEBHOOK)
    assert {name: json.loads(record["value"])["url"] for name, record in webhooks.items()} == {
        "shipper-hook-restart": "https://shipper.example.com/hooks/restart?token=t0ken-value",
        "shipper-operator": "https://ops.example.com/hook"}
    for kind in (CONTENT_TEMPLATE, ACTION_POLICY):  # no placeholders: stored as the files hold them
        stored = sls.resource_records(kind)
        assert {name: (record["tag"], json.loads(record["value"])) for name, record in stored.items()} == {
            name: (body["tag"], body["value"]) for name, body in resource_files(kind).items()}
    assert set(sls.entities(PROJECT, "jobs")) == names("alerts")
    assert set(sls.entities(PROJECT, "savedsearches")) == names("savedsearches")

    second = plan_import(client, PROJECT, CONTENT, PLACEHOLDERS)
    assert [s.action for s in second] == ["unchanged"] * len(second)
    assert len(second) == len(steps)
    assert caplog.records, "DEBUG logging captured nothing: the check below would prove nothing"
    assert not [r for r in caplog.records if "t0ken-value" in r.getMessage()]
    assert "t0ken-value" not in "\n".join(map(str, steps + second))


def test_a_rotated_token_updates_only_the_restart_webhook(sls, client):
    apply(client, PROJECT, plan_import(client, PROJECT, CONTENT, PLACEHOLDERS))
    rotated = {**PLACEHOLDERS, "SHIPPER_WEBHOOK_TOKEN": "n3w-token"}
    steps = plan_import(client, PROJECT, CONTENT, rotated)
    assert [(s.action, s.kind, s.name) for s in steps if s.action != "unchanged"] == [
        ("update", WEBHOOK, "shipper-hook-restart")]
    assert "n3w-token" not in "\n".join(map(str, steps))
    apply(client, PROJECT, steps)
    record = sls.resource_records(WEBHOOK)["shipper-hook-restart"]
    assert record["tag"] == "shipper restart hook"
    assert json.loads(record["value"])["url"] == "https://shipper.example.com/hooks/restart?token=n3w-token"
    assert sls.request_count("UpdateResourceRecord") == 1
