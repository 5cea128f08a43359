"""`shipper dashboards validate`: every problem of the content, offline, one `file: field: reason` each.

Pure apart from a throw-away SQLite store that every saved search, chart and alert query runs against.
"""
from __future__ import annotations

import contextlib
import json
import re
import sqlite3
import tempfile
from pathlib import Path
from typing import Iterator

from shipper import events
from shipper.dashboards import rules
from shipper.dashboards.load import (
    ACTION_POLICY, CONTENT_TEMPLATE, PLACEHOLDER, RESOURCE_ID_FIELD, RESOURCE_SHAPES, RESOURCES_DIR, TYPE_NAMES,
    WEBHOOK, Entity, Problem, load, of, shape_reasons,
)
from shipper.dashboards.template import TemplateError, expressions, render_template
from shipper.query.parser import Query, QueryError, fields_used, parse
from shipper.query.sqlite import to_sqlite
from shipper.sinks.sqlite import SqliteSink, connect
from shipper.times import format_time_ms

_KEY_TYPES = ("text", "long", "double", "json")
_SCHEDULE_TYPES = ("FixedRate", "Hourly", "Daily", "Weekly", "Cron", "DryRun", "Resident")
_SEVERITIES = (2, 4, 6, 8, 10)
_GROUP_TYPES = ("no_group", "labels_auto", "custom")
_JOIN_TYPES = ("cross_join", "inner_join", "left_join", "right_join", "full_join", "left_exclude",
               "right_exclude", "concat", "no_join")
_RESERVED_FIELDS = ("__time__", "__topic__", "__source__")
# The payload keys shipper's /hooks/<hook> endpoint reads, and the repeat key it should read
# (dashboards/README.md, "The hook payload").
HOOK_PAYLOAD_KEYS = {"alert": str, "alert_instance_id": str, "fingerprint": str, "status": str,
                     "fired_time": int, "rows": list}
# SLS's alert variables for one firing of the restart alert, with the characters a string must have escaped
# to stay JSON: a template that writes a string without `| quote` does not render to JSON with these.
SAMPLE_ALERT = {
    "aliuid": "1234567890123456", "alert_instance_id": "0123456789abcdef-5be6b81edc520-3d6f0a1",
    "alert_id": "shipper-stopped-not-running", "alert_name": 'Instance "stopped" and not running',
    "alert_type": "sls_alert", "region": "cn-hangzhou", "project": "ecs-audit", "next_eval_interval": 300,
    "alert_time": 1772698200, "fire_time": 1772697600, "resolve_time": 0, "status": "firing", "severity": 8,
    "labels": {"app": "shipper", "instance_id": "i-bp1f3kq7z2m9w4x6c8v0"},
    "annotations": {"title": "Instance stopped", "desc": 'web "1" stopped\\nat 08:00'},
    "results": [], "fire_results_count": 1, "fingerprint": "6a1c9e0f3b7d2c45",
    "fire_results": [{"instance_id": "i-bp1f3kq7z2m9w4x6c8v0", "last_state": "Stopped",
                      "stopped_time": "2026-03-05T08:00:00.000Z", "region": "cn-hangzhou",
                      "name": 'web "1" \\ C:\\temp'}],
}


def _expected_key_type(name: str) -> str:
    if name == "event_time_ms":
        return "long"
    return "double" if name in events.NUMERIC_FIELDS else "text"


def _is_token_list(value) -> bool:
    return isinstance(value, list) and all(isinstance(t, str) for t in value)


def _index_reasons(body: dict) -> list[str]:
    logstore, index = body["logstore"], body["index"]
    reasons = [f"logstore.{key} must be positive" for key in ("ttl", "shardCount") if logstore[key] <= 0]
    if "line" in index and not (isinstance(index["line"], dict) and _is_token_list(index["line"].get("token"))):
        reasons.append("index.line.token must be a list of delimiters")
    for name, config in index["keys"].items():
        where = f"index.keys.{name}"
        if not isinstance(config, dict) or config.get("type") not in _KEY_TYPES:
            reasons.append(f"{where}.type must be one of {', '.join(_KEY_TYPES)}")
            continue
        if config["type"] in ("text", "json") and not _is_token_list(config.get("token")):
            reasons.append(f"{where}.token must be a list of delimiters")
        for flag in ("doc_value", "caseSensitive", "chn"):
            if flag in config and not isinstance(config[flag], bool):
                reasons.append(f"{where}.{flag} must be true or false")
    schema = events.TABLE_FIELDS.get(logstore["logstoreName"])
    if schema is None:
        return reasons
    for name in schema:
        config = index["keys"].get(name)
        expected = _expected_key_type(name)
        if config is None:
            reasons.append(f"schema field {name!r} is not indexed (want type {expected})")
        elif isinstance(config, dict) and config.get("type") in _KEY_TYPES and config["type"] != expected:
            reasons.append(f"index.keys.{name}.type is {config['type']}, the schema needs {expected}")
    reasons += [f"index.keys.{name} is not a field of {logstore['logstoreName']}"
                for name in index["keys"] if name not in schema]
    return reasons


def _savedsearch_reasons(body: dict) -> list[str]:
    name = body["savedsearchName"]
    if rules.SAVEDSEARCH_NAME.fullmatch(name):
        return []
    return [f"savedsearchName {name!r} must match {rules.SAVEDSEARCH_NAME.pattern} (3 to 63 characters)"]


def _dashboard_reasons(body: dict) -> list[str]:
    name = body["dashboardName"]
    reasons = [] if rules.DASHBOARD_NAME.fullmatch(name) else [
        f"dashboardName {name!r} is the dashboard's id, in SLS's URL: it must match {rules.DASHBOARD_NAME.pattern}"]
    seen = set()
    for i, chart in enumerate(body["charts"]):
        title = chart["title"]
        if not rules.CHART_ID.fullmatch(title):
            reasons.append(f"charts[{i}].title {title!r} is the chart's id, in SLS's URL: it must match "
                           f"{rules.CHART_ID.pattern} (the human title goes in display.displayName)")
        elif title in seen:
            reasons.append(f"charts[{i}].title {title!r} is used by another chart of this dashboard")
        seen.add(title)
        x_axis = chart["display"].get("xAxis") or []
        reasons += [f"charts[{i}].{reason}" for reason in rules.epoch_axis_reasons(chart["search"]["query"], x_axis)]
    return reasons


def _alert_reasons(body: dict, policies: set[str] | None) -> list[str]:
    config = body["configuration"]
    checks = [
        (body["type"] == "Alert", "type must be Alert"),
        (body["state"] in ("Enabled", "Disabled"), "state must be Enabled or Disabled"),
        (body["schedule"]["type"] in _SCHEDULE_TYPES, f"schedule.type must be one of {', '.join(_SCHEDULE_TYPES)}"),
        (body["schedule"]["type"] != "FixedRate" or isinstance(body["schedule"].get("interval"), str),
         "schedule.interval is needed with FixedRate"),
        (config["version"] == "2.0", "configuration.version must be 2.0 (Alert 2.0)"),
        (config["type"] == "default", "configuration.type must be default"),
        (config["groupConfiguration"]["type"] in _GROUP_TYPES,
         f"configuration.groupConfiguration.type must be one of {', '.join(_GROUP_TYPES)}"),
        (config["groupConfiguration"]["type"] != "custom" or bool(config["groupConfiguration"]["fields"]),
         "configuration.groupConfiguration.fields must name the fields of a custom group"),
        (len(config["joinConfigurations"]) == len(config["queryList"]) - 1,
         "configuration.joinConfigurations needs one entry between each pair of queries"),
        (any(isinstance(a, dict) and a.get("key") == "title" for a in config["annotations"]),
         "configuration.annotations needs a title"),
    ]
    reasons = [reason for ok, reason in checks if not ok]
    for i, query in enumerate(config["queryList"]):
        if query["storeType"] != "log":
            reasons.append(f"configuration.queryList[{i}].storeType must be log")
    for i, severity in enumerate(config["severityConfigurations"]):
        if severity["severity"] not in _SEVERITIES:
            reasons.append(f"configuration.severityConfigurations[{i}].severity must be one of {_SEVERITIES}")
    for i, join in enumerate(config["joinConfigurations"]):
        if not (isinstance(join, dict) and join.get("type") in _JOIN_TYPES and isinstance(join.get("condition"), str)):
            reasons.append(f"configuration.joinConfigurations[{i}] needs a type ({', '.join(_JOIN_TYPES)}) "
                           "and a condition")
    policy = config["policyConfiguration"]["actionPolicyId"]
    if policies is not None and policy not in policies and not policy.startswith("sls."):
        reasons.append(f"configuration.policyConfiguration.actionPolicyId {policy!r} is not in "
                       f"{RESOURCES_DIR / ACTION_POLICY}")
    return reasons


def _template_reasons(content: str) -> list[str]:
    """A webhook body template: documented filters on each variable, and a JSON object with the hook's keys."""
    where = "value.templates.webhook.content"
    try:
        found = expressions(content)
    except TemplateError as e:
        return [f"{where}: {e}"]
    reasons = []
    for expression in found:
        path, filters = expression.path, [name for name, _ in expression.filters]
        shown = f"{where}: {{{{ {expression.text} }}}}"
        if path[0] != "alert" or len(path) < 2 or path[1] not in rules.ALERT_VARIABLES:
            reasons.append(f"{shown}: not an SLS alert variable")
            continue
        unknown = [name for name in filters if name not in rules.TEMPLATE_FILTERS]
        if unknown:
            reasons.append(f"{shown}: {', '.join(unknown)} is not an SLS template filter")
            continue
        kind = rules.ALERT_VARIABLES[path[1]] if len(path) == 2 else str  # rows and label values are strings
        if kind in (list, dict) and "to_json" not in filters:
            reasons.append(f"{shown}: alert.{path[1]} is a {'list' if kind is list else 'map'}: "
                           "render it with | to_json")
        elif kind is str and not any(name in rules.SERIALIZING_FILTERS for name in filters):
            reasons.append(f"{shown}: a string in a JSON body must be rendered with | quote (escaped and quoted)")
    if reasons:
        return reasons
    try:
        payload = json.loads(render_template(content, SAMPLE_ALERT))
    except TemplateError as e:
        return [f"{where}: {e}"]
    except ValueError as e:  # JSONDecodeError
        return [f"{where} does not render to JSON: {e}"]
    if not isinstance(payload, dict):
        return [f"{where} must render to a JSON object"]
    return [f"{where}: the rendered payload needs {key!r} ({TYPE_NAMES[kind]})"
            for key, kind in HOOK_PAYLOAD_KEYS.items() if shape_reasons(payload.get(key), kind, key)]


def _policy_reasons(value: dict, resources: dict[str, dict[str, Entity]]) -> list[str]:
    reasons = shape_reasons(value, rules.ACTION_POLICY_FIELDS, "value")
    for field in rules.POLICY_SCRIPTS:
        where = f"value.{field}"
        if not isinstance(value.get(field), str):
            continue
        if not value[field].strip():
            reasons.append(f"{where} is empty (SLS refuses it: ActionPolicyEmpty)")
            continue
        try:
            calls = rules.fire_calls(value[field])
        except rules.DslError as e:
            reasons.append(f"{where}: {e}")
            continue
        for line, call in calls:
            at = f"{where} line {line}"
            reasons += [f"{at}: {reason}" for reason in rules.fire_reasons(call)]
            for argument, kind in (("webhook_id", WEBHOOK), ("template_id", CONTENT_TEMPLATE)):
                target = call.get(argument)
                if isinstance(target, str) and target not in resources[kind] and not target.startswith("sls."):
                    reasons.append(f"{at}: {argument} {target!r} is not in {RESOURCES_DIR / kind}")
            webhook = resources[WEBHOOK].get(call.get("webhook_id"))
            integration = call.get("integration_type")
            if webhook is not None and integration in rules.INTEGRATION_TYPES \
                    and integration != webhook.body["value"]["type"]:
                reasons.append(f"{at}: integration_type {call['integration_type']!r} is not the type of webhook "
                               f"{webhook.name!r} ({webhook.body['value']['type']})")
    return reasons


def _resource_reasons(entity: Entity, resources: dict[str, dict[str, Entity]]) -> list[str]:
    value = entity.body["value"]
    id_field = RESOURCE_ID_FIELD[entity.kind]
    reasons = [] if value[id_field] == entity.name else [f"value.{id_field} must equal id {entity.name!r}"]
    if entity.kind == WEBHOOK:
        url = value["url"]
        if value["type"] not in rules.INTEGRATION_TYPES:
            reasons.append(f"value.type must be one of {', '.join(rules.INTEGRATION_TYPES)}")
        if not (url.startswith("https://") or PLACEHOLDER.fullmatch(url)):
            reasons.append("value.url must start with https:// (or be one ${PLACEHOLDER})")
        if re.search(r"token=(?!\$\{)", url):
            reasons.append("value.url carries a literal token: use token=${SHIPPER_WEBHOOK_TOKEN}")
    elif entity.kind == CONTENT_TEMPLATE:
        webhook = value["templates"].get("webhook")
        if not isinstance(webhook, dict) or not isinstance(webhook.get("content"), str):
            return reasons + ["value.templates.webhook.content is missing"]
        reasons += _template_reasons(webhook["content"])
    else:
        reasons += _policy_reasons(value, resources)
    return reasons


def content_queries(entities: list[Entity]) -> Iterator[tuple[str, str, str, str]]:
    """(file, where, logstore, query) of every saved search, chart and alert query."""
    for e in entities:
        if e.kind == "savedsearch":
            yield e.file, "searchQuery", e.body["logstore"], e.body["searchQuery"]
        elif e.kind == "dashboard":
            for i, chart in enumerate(e.body["charts"]):
                yield e.file, f"charts[{i}] ({chart['title']})", chart["search"]["logstore"], chart["search"]["query"]
        elif e.kind == "alert":
            for i, query in enumerate(e.body["configuration"]["queryList"]):
                yield e.file, f"queryList[{i}]", query["store"], query["query"]


def _is_reserved(name: str) -> bool:
    return name in _RESERVED_FIELDS or name.startswith("__tag__:")


def _query_reasons(text: str, logstore: str, indexes: dict[str, Entity], store: sqlite3.Connection) -> list[str]:
    try:
        query = parse(text)
    except QueryError as e:
        return [f"query does not parse: {e}"]
    reasons = rules.sql_reasons(query.sql) + rules.last_state_reasons(query.sql) if query.sql else []
    if logstore not in indexes:
        return reasons + [f"logstore {logstore!r} has no index file (index/{logstore}.json)"]
    keys = indexes[logstore].body["index"]["keys"]
    schema = events.TABLE_FIELDS.get(logstore)
    for name in sorted(f for f in fields_used(query) if not _is_reserved(f)):
        if schema is not None and name not in schema:
            reasons.append(f"field {name!r} is not a field of {logstore}")
        elif name not in keys:
            reasons.append(f"field {name!r} is not indexed in index/{logstore}.json")
    sql_fields = fields_used(Query(None, query.sql)) if query.sql else set()
    for name in sorted(f for f in sql_fields if f in keys and not keys[f].get("doc_value")):
        reasons.append(f"field {name!r} is used in SQL but has no doc_value in index/{logstore}.json")
    if schema is not None and not reasons:
        try:
            sql, params = to_sqlite(query, logstore)
            store.execute(sql, params).fetchall()
        except (QueryError, sqlite3.Error) as e:
            reasons.append(f"query fails on the local store: {e}")
    return reasons


def _seed_rows() -> dict[str, list[dict]]:
    """A few rows per store, so that queries run over real values (every schema field), not an empty table."""
    t0 = 1772697600000  # 2026-03-05T08:00:00Z
    web = dict(instance_id="i-bp1seed0000000000001", instance_name="web-1", instance_type="ecs.g7.large",
               zone_id="cn-hangzhou-h", charge_type="PostPaid", spot_strategy="NoSpot",
               tags='{"env":"prod","shipper:restart":"true"}')
    spot = dict(instance_id="i-bp1seed0000000000002", instance_type="ecs.c7.xlarge", zone_id="cn-hangzhou-i",
                charge_type="PostPaid", spot_strategy="SpotAsPriceGo", tags='{"env":"batch"}')
    rows = []
    lifecycle = [("Pending", 0, ""), ("Starting", 20, ""), ("Running", 40, ""), ("Stopping", 3600, ""),
                 ("Stopped", 3630, "user-or-api"), ("Deleted", 7200, "user-or-api")]
    for i, (state, seconds, cause) in enumerate(lifecycle):
        rows.append(dict(web, event_name="Instance:StateChange", category="lifecycle", state=state, state_raw=state,
                         level="INFO", stop_cause=cause, at=t0 + seconds * 1000, uid=f"seed-{i}"))
    rows.append(dict(spot, event_name="Instance:PreemptibleInstanceInterruption", category="interruption",
                     action="delete", level="WARN", at=t0 + 600_000, uid="seed-interruption",
                     not_before=format_time_ms(t0 + 900_000)))
    rows.append(dict(spot, event_name="Instance:StateChange", category="lifecycle", state="Deleted",
                     state_raw="Deleted", level="INFO", stop_cause="spot-reclaim", at=t0 + 900_000,
                     uid="seed-reclaimed"))
    rows.append(dict(event_name="Instance:SystemMaintenance.Reboot", category="maintenance", event_status="Scheduled",
                     level="WARN", instance_id="i-bp1seed0000000000003", zone_id="cn-hangzhou-h",
                     charge_type="PrePaid", spot_strategy="NoSpot", at=t0 + 1_200_000, uid="seed-maintenance",
                     not_before=format_time_ms(t0 + 86_400_000)))
    # ActionTrail calls (api-call records, shipper/trail.py): who created, stopped and released web-1, and a
    # call that failed
    calls = [("RunInstances", -5, "ram-user", "ops", "Aliyun-CLI/3.0.200", ""),
             ("StopInstance", 3598, "ram-user", "alice", "AliyunConsole", ""),
             ("StartInstance", 3700, "assumed-role", "deployer:ci", "aliyun-python-sdk-core/2.16.1",
              "IncorrectInstanceStatus"),
             ("DeleteInstance", 7190, "system", "ecs.aliyuncs.com", "ecs.aliyuncs.com", "")]
    for name, seconds, actor_type, actor_name, user_agent, error_code in calls:
        rows.append(dict(instance_id=web["instance_id"], event_name=f"ActionTrail:{name}", category="api-call",
                         envelope="actiontrail", level="WARN" if error_code else "INFO", actor_type=actor_type,
                         actor_name=actor_name, actor_principal_id="203355370000000001", source_ip="203.0.113.7",
                         actor_access_key_id="LTAI****Ab12", user_agent=user_agent, request_id=f"seed-request-{name}",
                         error_code=error_code, at=t0 + seconds * 1000,
                         uid=f"actiontrail:seed-{name.lower()}:{web['instance_id']}"))
    ecs = []
    for row in rows:
        at, uid = row.pop("at"), row.pop("uid")
        ecs.append(events.new_event(
            event_uid=uid, envelope=row.pop("envelope", "cms"), event_time=format_time_ms(at), event_time_ms=str(at),
            received_time=format_time_ms(at + 1500), account_id="1234567890123456", region_id="cn-hangzhou",
            product="ECS", resource_type="instance", resource_id=row["instance_id"], **row))
    decided, finished = format_time_ms(t0 + 3_700_000), format_time_ms(t0 + 3_760_000)
    actions = [
        dict(event_uid="seed-4", hook="restart", trigger="inline", instance_id="i-bp1seed0000000000001",
             decision="acted", reason="stopped unexpectedly", outcome="succeeded", stop_cause="user-or-api",
             decided_time=decided, finished_time=finished),
        dict(event_uid="seed-4", hook="restart", trigger="alert", instance_id="i-bp1seed0000000000001",
             decision="skipped", reason="budget exhausted", decided_time=decided),
        dict(event_uid="seed-interruption", hook="lb_drain", trigger="inline", instance_id="i-bp1seed0000000000002",
             decision="acted", outcome="failed", error_code="Throttling", decided_time=decided,
             finished_time=finished, seconds_before_reclaim="241.5"),
    ]
    deadletters = [dict(reason="not-json", source="http", message_id="seed-message", received_time=decided,
                        error="Expecting value: line 1 column 1 (char 0)", raw_base64="bm90IGpzb24=")]
    return {events.EVENTS_TABLE: ecs, events.ACTIONS_TABLE: actions, events.DEADLETTER_TABLE: deadletters}


@contextlib.contextmanager
def local_store(rows: dict[str, list[dict]]) -> Iterator[sqlite3.Connection]:
    """An embedded store holding `rows` (table -> records, written in order) in a temporary directory, opened
    read-only like `shipper search`: where validate runs the content's queries (and tests run them on rows
    of their own)."""
    with tempfile.TemporaryDirectory(prefix="shipper-dashboards-") as directory:
        path = Path(directory) / "events.db"
        sink = SqliteSink(path)
        try:
            for table, records in rows.items():
                sink.write(table, records)
        finally:
            sink.close()
        conn = connect(path, create=False)
        try:
            yield conn
        finally:
            conn.close()


def validate(root: Path) -> list[Problem]:
    """Every problem of the content under root, one line each; offline (a temporary SQLite store only)."""
    root = Path(root)
    entities, problems = load(root)
    resources = {kind: of(entities, kind) for kind in RESOURCE_SHAPES}
    policies = set(resources[ACTION_POLICY]) if (root / RESOURCES_DIR).is_dir() else None
    for e in entities:
        if e.kind == "index":
            reasons = _index_reasons(e.body)
        elif e.kind == "savedsearch":
            reasons = _savedsearch_reasons(e.body)
        elif e.kind == "dashboard":
            reasons = _dashboard_reasons(e.body)
        elif e.kind == "alert":
            reasons = _alert_reasons(e.body, policies)
        else:
            reasons = _resource_reasons(e, resources)
        problems += [Problem(e.file, reason) for reason in reasons]
    indexes = of(entities, "index")
    with local_store(_seed_rows()) as store:
        for file, where, logstore, query in content_queries(entities):
            problems += [Problem(file, f"{where}: {reason}")
                         for reason in _query_reasons(query, logstore, indexes, store)]
    return problems
