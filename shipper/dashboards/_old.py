"""SLS content as code: `dashboards/` checked offline, imported idempotently, exported back.

Layout (dashboards/README.md), every file named after the entity it holds:

    index/<logstore>.json            {"logstore": CreateLogStore body, "index": CreateIndex body}
    dashboards/<dashboardName>.json  savedsearches/<savedsearchName>.json  alerts/<name>.json (Alert 2.0)
    alerts/resources/<resource name>/<record id>.json   {"id", "tag", "value"}: account-level alert
                                     resources (webhooks, content templates, action policies)

validate() is pure apart from a throw-away SQLite store; plan_import() only reads SLS, apply() writes it;
export() writes what a project holds in the same layout (resource records excepted: they are account-level
and a webhook URL carries the hook token).
"""
from __future__ import annotations

import contextlib
import json
import re
import sqlite3
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterator, Mapping

from aliyun.log import LogClient, LogException
from aliyun.log.index_config import IndexConfig
from aliyun.log.resource_params import ResourceRecord

from shipper import events
from shipper.query.parser import Query, QueryError, fields_used, parse
from shipper.query.sqlite import to_sqlite
from shipper.sinks.sqlite import SqliteSink, connect


class DashboardsError(Exception):
    """The content cannot be imported as it is; the message says which file and why (never a secret)."""


@dataclass(frozen=True)
class Problem:
    file: str
    reason: str

    def __str__(self) -> str:
        return f"{self.file}: {self.reason}"


@dataclass(frozen=True)
class Step:
    """One import action. `body` is what apply() sends: it may carry the webhook token, so it is never shown."""
    action: str  # 'create' | 'update' | 'unchanged'
    kind: str    # 'logstore' | 'index' | 'savedsearch' | 'dashboard' | 'alert' | an alert resource name
    name: str
    body: dict = field(repr=False, compare=False)

    def __str__(self) -> str:
        return f"{self.action:<9} {self.kind} {self.name}"


# ---------------------------------------------------------------------------------------------------
# Shapes: a spec is a type, {key: spec} (keys required, others allowed) or [spec] (a non-empty list of spec)

_CHART = {"title": str, "type": str, "display": dict,
          "search": {"logstore": str, "query": str, "start": str, "end": str}}
_ALERT_QUERY = {"storeType": str, "store": str, "query": str, "timeSpanType": str, "start": str, "end": str}
_SHAPES = {
    "index": {"logstore": {"logstoreName": str, "ttl": int, "shardCount": int},
              "index": {"keys": dict}},
    "savedsearch": {"savedsearchName": str, "displayName": str, "logstore": str, "searchQuery": str},
    "dashboard": {"dashboardName": str, "displayName": str, "charts": [_CHART]},
    "alert": {"name": str, "displayName": str, "type": str, "state": str, "schedule": {"type": str},
              "configuration": {
                  "version": str, "type": str, "queryList": [_ALERT_QUERY],
                  "groupConfiguration": {"type": str, "fields": list}, "joinConfigurations": list,
                  "severityConfigurations": [{"severity": int, "evalCondition": {"condition": str,
                                                                                 "countCondition": str}}],
                  "annotations": list,
                  "policyConfiguration": {"alertPolicyId": str, "actionPolicyId": str, "repeatInterval": str}}},
}
WEBHOOK, CONTENT_TEMPLATE, ACTION_POLICY = ("sls.alert.action_webhook", "sls.alert.content_template",
                                            "sls.alert.action_policy")
_RESOURCE_SHAPES = {
    WEBHOOK: {"id": str, "name": str, "type": str, "url": str, "method": str, "headers": list},
    CONTENT_TEMPLATE: {"template_id": str, "template_name": str, "is_default": bool, "templates": dict},
    ACTION_POLICY: {"action_policy_id": str, "action_policy_name": str, "is_default": bool,
                    "primary_policy_script": str},
}
_RESOURCE_ID_FIELD = {WEBHOOK: "id", CONTENT_TEMPLATE: "template_id", ACTION_POLICY: "action_policy_id"}
_TYPE_NAMES = {str: "a string", int: "an integer", bool: "true or false", dict: "an object", list: "a list"}


def _shape(value, spec, where: str) -> list[str]:
    if isinstance(spec, dict):
        if not isinstance(value, dict):
            return [f"{where or 'the file'} must be an object"]
        reasons = []
        for key, sub in spec.items():
            path = f"{where}.{key}" if where else key
            reasons += [f"{path} is missing"] if key not in value else _shape(value[key], sub, path)
        return reasons
    if isinstance(spec, list):
        if not isinstance(value, list) or not value:
            return [f"{where} must be a non-empty list"]
        return [r for i, item in enumerate(value) for r in _shape(item, spec[0], f"{where}[{i}]")]
    ok = isinstance(value, spec) and (spec is bool or not isinstance(value, bool))
    return [] if ok else [f"{where} must be {_TYPE_NAMES[spec]}"]


# ---------------------------------------------------------------------------------------------------
# Loading

@dataclass(frozen=True)
class _Entity:
    kind: str  # as Step.kind, without 'logstore'
    name: str
    file: str
    body: dict


_DIRS = {"index": "index", "dashboards": "dashboard", "savedsearches": "savedsearch", "alerts": "alert"}
_RESOURCES_DIR = Path("alerts") / "resources"
_NAME = {
    "index": lambda body: body["logstore"]["logstoreName"],
    "savedsearch": lambda body: body["savedsearchName"],
    "dashboard": lambda body: body["dashboardName"],
    "alert": lambda body: body["name"],
}


def _read(path: Path, shape: dict, problems: list[Problem]) -> dict | None:
    try:
        body = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as e:
        problems.append(Problem(str(path), f"not valid JSON: {e.msg} at line {e.lineno} column {e.colno}"))
        return None
    except (OSError, UnicodeDecodeError) as e:
        problems.append(Problem(str(path), f"cannot be read: {e}"))
        return None
    reasons = _shape(body, shape, "")
    problems += [Problem(str(path), reason) for reason in reasons]
    return None if reasons else body


def _load(root: Path) -> tuple[list[_Entity], list[Problem]]:
    entities, problems = [], []
    for directory, kind in _DIRS.items():
        for path in sorted((root / directory).glob("*.json")):
            body = _read(path, _SHAPES[kind], problems)
            if body is not None:
                entities.append(_Entity(kind, _NAME[kind](body), str(path), body))
    resources = root / _RESOURCES_DIR
    for directory in sorted(p for p in resources.glob("*") if p.is_dir()):
        kind = directory.name
        if kind not in _RESOURCE_SHAPES:
            problems.append(Problem(str(directory), f"unknown alert resource; known: {', '.join(_RESOURCE_SHAPES)}"))
            continue
        for path in sorted(directory.glob("*.json")):
            body = _read(path, {"id": str, "tag": str, "value": _RESOURCE_SHAPES[kind]}, problems)
            if body is not None:
                entities.append(_Entity(kind, body["id"], str(path), body))
    if not entities and not problems:
        problems.append(Problem(str(root), "no SLS content: expected index/, dashboards/, savedsearches/, alerts/"))
    for entity in entities:
        if Path(entity.file).stem != entity.name:
            problems.append(Problem(entity.file, f"holds {entity.name!r}: name the file {entity.name}.json"))
    return entities, problems


def _of(entities: list[_Entity], kind: str) -> dict[str, _Entity]:
    return {e.name: e for e in entities if e.kind == kind}


# ---------------------------------------------------------------------------------------------------
# Validation

_KEY_TYPES = ("text", "long", "double", "json")
_SCHEDULE_TYPES = ("FixedRate", "Hourly", "Daily", "Weekly", "Cron", "DryRun", "Resident")
_SEVERITIES = (2, 4, 6, 8, 10)
_GROUP_TYPES = ("no_group", "labels_auto", "custom")
_JOIN_TYPES = ("cross_join", "inner_join", "left_join", "right_join", "full_join", "left_exclude",
               "right_exclude", "concat", "no_join")
_RESERVED_FIELDS = ("__time__", "__topic__", "__source__")
_PLACEHOLDER = re.compile(r"\$\{([A-Z][A-Z0-9_]*)\}")
_TEMPLATE_VARIABLE = re.compile(r"\{\{\s*alert\.(\w+)\s*\}\}")
_POLICY_REFERENCE = re.compile(r'\b(webhook_id|template_id)\s*=\s*"([^"]*)"')
# The payload keys shipper's /hooks/<hook> endpoint reads (dashboards/README.md).
_HOOK_PAYLOAD_KEYS = {"alert": str, "fired_time": int, "rows": list}
_SAMPLE_ALERT = {
    "alert_id": "shipper-stopped-not-running", "alert_instance_id": "0123456789abcdef-5be6b81edc520-3d6f0a1",
    "alert_name": "Instance stopped", "project": "ecs-audit", "region": "cn-hangzhou", "status": "firing",
    "severity": 8, "fire_time": 1772697600, "fire_results": [{"instance_id": "i-bp1f3kq7z2m9w4x6c8v0"}],
    "labels": {"app": "shipper"}, "annotations": {"title": "Instance stopped"},
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
    return [] if 3 <= len(body["savedsearchName"]) <= 63 else ["savedsearchName must be 3 to 63 characters"]


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
                       f"{_RESOURCES_DIR / ACTION_POLICY}")
    return reasons


def render_template(content: str, alert: Mapping) -> str:
    """A content template's text with each `{{ alert.<name> }}` replaced as SLS does.

    Strings go in as they are, other values as JSON (SLS renders objects as JSON strings). Only this form
    of the template syntax is understood: anything else raises ValueError.
    """
    def value(match: re.Match) -> str:
        found = alert.get(match.group(1), "")
        return found if isinstance(found, str) else json.dumps(found, ensure_ascii=False)

    rendered = _TEMPLATE_VARIABLE.sub(value, content)
    if "{{" in rendered or "{%" in rendered:
        raise ValueError("only {{ alert.<name> }} substitutions are supported in shipper's templates")
    return rendered


def _resource_reasons(entity: _Entity, resources: dict[str, dict[str, _Entity]]) -> list[str]:
    value = entity.body["value"]
    id_field = _RESOURCE_ID_FIELD[entity.kind]
    reasons = [] if value[id_field] == entity.name else [f"value.{id_field} must equal id {entity.name!r}"]
    if entity.kind == WEBHOOK:
        url = value["url"]
        if not (url.startswith("https://") or _PLACEHOLDER.fullmatch(url)):
            reasons.append("value.url must start with https:// (or be one ${PLACEHOLDER})")
        if re.search(r"token=(?!\$\{)", url):
            reasons.append("value.url carries a literal token: use token=${SHIPPER_WEBHOOK_TOKEN}")
    elif entity.kind == CONTENT_TEMPLATE:
        webhook = value["templates"].get("webhook")
        if not isinstance(webhook, dict) or not isinstance(webhook.get("content"), str):
            return reasons + ["value.templates.webhook.content is missing"]
        try:
            payload = json.loads(render_template(webhook["content"], _SAMPLE_ALERT))
        except ValueError as e:  # JSONDecodeError is a ValueError
            return reasons + [f"value.templates.webhook.content does not render to JSON: {e}"]
        if not isinstance(payload, dict):
            return reasons + ["value.templates.webhook.content must render to a JSON object"]
        reasons += [f"the rendered payload needs {key!r} ({_TYPE_NAMES[kind]})"
                    for key, kind in _HOOK_PAYLOAD_KEYS.items() if _shape(payload.get(key), kind, key)]
    else:
        references = _POLICY_REFERENCE.findall(value["primary_policy_script"])
        if not references:
            reasons.append("value.primary_policy_script fires nothing (no webhook_id/template_id)")
        for argument, target in references:
            kind = WEBHOOK if argument == "webhook_id" else CONTENT_TEMPLATE
            if target not in resources[kind] and not target.startswith("sls."):
                reasons.append(f"{argument} {target!r} is not in {_RESOURCES_DIR / kind}")
    return reasons


def _queries(entities: list[_Entity]) -> Iterator[tuple[str, str, str, str]]:
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


def _query_reasons(text: str, logstore: str, indexes: dict[str, _Entity], store: sqlite3.Connection) -> list[str]:
    try:
        query = parse(text)
    except QueryError as e:
        return [f"query does not parse: {e}"]
    if logstore not in indexes:
        return [f"logstore {logstore!r} has no index file (index/{logstore}.json)"]
    keys = indexes[logstore].body["index"]["keys"]
    schema = events.TABLE_FIELDS.get(logstore)
    reasons = []
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
    """A few rows per store, so that queries run over real values, not just an empty table."""
    t0 = 1772697600000  # 2026-03-05T08:00:00Z
    rows = []
    lifecycle = [("Pending", 0), ("Starting", 20), ("Running", 40), ("Stopping", 3600), ("Stopped", 3630),
                 ("Deleted", 7200)]
    for i, (state, seconds) in enumerate(lifecycle):
        rows.append(dict(event_name="Instance:StateChange", category="lifecycle", state=state, state_raw=state,
                         level="INFO", instance_id="i-bp1seed0000000000001", instance_name="web-1",
                         instance_type="ecs.g7.large", at=t0 + seconds * 1000, uid=f"seed-{i}"))
    rows.append(dict(event_name="Instance:PreemptibleInstanceInterruption", category="interruption", action="delete",
                     level="WARN", instance_id="i-bp1seed0000000000002", instance_type="ecs.c7.xlarge",
                     at=t0 + 600_000, uid="seed-interruption", not_before=events.format_time_ms(t0 + 900_000)))
    rows.append(dict(event_name="Instance:SystemMaintenance.Reboot", category="maintenance", event_status="Scheduled",
                     level="WARN", instance_id="i-bp1seed0000000000003", at=t0 + 1_200_000, uid="seed-maintenance",
                     not_before=events.format_time_ms(t0 + 86_400_000)))
    ecs = []
    for row in rows:
        at, uid = row.pop("at"), row.pop("uid")
        ecs.append(events.new_event(
            event_uid=uid, envelope="cms", event_time=events.format_time_ms(at), event_time_ms=str(at),
            received_time=events.format_time_ms(at + 1500), account_id="1234567890123456", region_id="cn-hangzhou",
            product="ECS", resource_type="instance", resource_id=row["instance_id"], **row))
    decided, finished = events.format_time_ms(t0 + 3_700_000), events.format_time_ms(t0 + 3_760_000)
    actions = [
        dict(event_uid="seed-4", hook="restart", trigger="inline", instance_id="i-bp1seed0000000000001",
             decision="acted", reason="stopped unexpectedly", outcome="succeeded", decided_time=decided,
             finished_time=finished),
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
def _local_store() -> Iterator[sqlite3.Connection]:
    """A seeded embedded store in a temporary directory, opened read-only like `shipper search`."""
    with tempfile.TemporaryDirectory(prefix="shipper-dashboards-") as directory:
        path = Path(directory) / "events.db"
        sink = SqliteSink(path)
        try:
            for table, rows in _seed_rows().items():
                sink.write(table, rows)
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
    entities, problems = _load(root)
    resources = {kind: _of(entities, kind) for kind in _RESOURCE_SHAPES}
    has_resources = (root / _RESOURCES_DIR).is_dir()
    policies = set(resources[ACTION_POLICY]) if has_resources else None
    for e in entities:
        if e.kind == "index":
            reasons = _index_reasons(e.body)
        elif e.kind == "savedsearch":
            reasons = _savedsearch_reasons(e.body)
        elif e.kind == "alert":
            reasons = _alert_reasons(e.body, policies)
        elif e.kind in _RESOURCE_SHAPES:
            reasons = _resource_reasons(e, resources)
        else:
            reasons = []
        problems += [Problem(e.file, reason) for reason in reasons]
    indexes = _of(entities, "index")
    with _local_store() as store:
        for file, where, logstore, query in _queries(entities):
            problems += [Problem(file, f"{where}: {reason}")
                         for reason in _query_reasons(query, logstore, indexes, store)]
    return problems


# ---------------------------------------------------------------------------------------------------
# Import

def substitute_placeholders(value, placeholders: Mapping[str, str]):
    """value with every `${NAME}` in its strings replaced; KeyError names the first one not given."""
    if isinstance(value, dict):
        return {k: substitute_placeholders(v, placeholders) for k, v in value.items()}
    if isinstance(value, list):
        return [substitute_placeholders(v, placeholders) for v in value]
    if isinstance(value, str):
        return _PLACEHOLDER.sub(lambda m: placeholders[m.group(1)], value)
    return value


def _contains(current, desired) -> bool:
    """Whether current holds every key desired sets, with equal values: SLS adds keys of its own."""
    if isinstance(desired, dict):
        return isinstance(current, dict) and all(k in current and _contains(current[k], v) for k, v in desired.items())
    if isinstance(desired, list):
        return isinstance(current, list) and len(current) == len(desired) and all(map(_contains, current, desired))
    return current == desired


def _missing(call: Callable[[], object], code: str):
    """call()'s result, or None when SLS answers `code` (the thing does not exist)."""
    try:
        return call()
    except LogException as e:
        if e.get_error_code() == code:
            return None
        raise


def _step(kind: str, name: str, body: dict, current, matches: Callable[[object, dict], bool] = _contains) -> Step:
    if current is None:
        return Step("create", kind, name, body)
    return Step("unchanged" if matches(current, body) else "update", kind, name, body)


def _index_matches(current: dict, desired: dict) -> bool:
    return _contains(current, desired) and set(current.get("keys", {})) == set(desired["keys"])


def _plan_store(client: LogClient, project: str, entity: _Entity) -> list[Step]:
    name, logstore, index = entity.name, entity.body["logstore"], entity.body["index"]
    exists = _missing(lambda: client.get_logstore(project, name), "LogStoreNotExist") is not None
    current = None
    if exists:
        current = _missing(lambda: client.get_index_config(project, name).get_body(), "IndexConfigNotExist")
    # An existing logstore's settings (ttl, shards) are the operator's: the file only seeds new ones.
    return [Step("unchanged" if exists else "create", "logstore", name, logstore),
            _step("index", name, index, current, _index_matches)]


# kind -> (get, create, update, the error code of a missing one)
_PROJECT_ENTITIES = {
    "savedsearch": (LogClient.get_savedsearch, LogClient.create_savedsearch, LogClient.update_savedsearch,
                    "SavedSearchNotExist"),
    "dashboard": (LogClient.get_dashboard, LogClient.create_dashboard, LogClient.update_dashboard,
                  "DashboardNotExist"),
    "alert": (LogClient.get_alert, LogClient.create_alert, LogClient.update_alert, "JobNotExist"),
}


def _current(client: LogClient, project: str, kind: str, name: str) -> dict | None:
    get, _, _, missing = _PROJECT_ENTITIES[kind]
    return _missing(lambda: get(client, project, name).get_entity(), missing)


def _desired(entity: _Entity, project: str) -> dict:
    if entity.kind != "alert":
        return entity.body
    body = json.loads(json.dumps(entity.body))
    for query in body["configuration"]["queryList"]:
        query["project"] = project  # the alert reads the logstores of the project it is imported into
    return body


def _resolved(entity: _Entity, placeholders: Mapping[str, str]) -> dict:
    """The resource record to send: placeholders filled, a token only ever over https."""
    try:
        value = substitute_placeholders(entity.body["value"], placeholders)
    except KeyError as e:
        raise DashboardsError(f"{entity.file}: placeholder ${{{e.args[0]}}} is not set "
                              "(dashboards/README.md)") from None
    if entity.kind == WEBHOOK and "token=" in value["url"] and not value["url"].startswith("https://"):
        raise DashboardsError(f"{entity.file}: the webhook URL carries a token, so it must be https://")
    return {**entity.body, "value": value}


def _plan_resource(client: LogClient, entity: _Entity, body: dict) -> Step:
    found = client.list_resource_records(entity.kind, record_ids=[entity.name]).get_records()
    current = next(({"id": r.get_record_id(), "tag": r.get_tag(), "value": r.get_value()}
                    for r in found if r.get_record_id() == entity.name), None)
    return _step(entity.kind, entity.name, body, current)


def plan_import(client: LogClient, project: str, root: Path,
                placeholders: Mapping[str, str] | None = None) -> list[Step]:
    """What import would do, in SLS's order (logstores, indexes, saved searches, dashboards, alert resources,
    alerts); reads SLS only. Refuses content that does not validate. `placeholders` fill the `${NAME}`s of
    alert resources (pass the environment); an unset one is an error naming it.
    """
    root = Path(root)
    problems = validate(root)
    if problems:
        raise DashboardsError("the content does not validate:\n" + "\n".join(map(str, problems)))
    entities, _ = _load(root)
    resources = [(e, _resolved(e, placeholders or {}))
                 for kind in (WEBHOOK, CONTENT_TEMPLATE, ACTION_POLICY) for e in _of(entities, kind).values()]
    steps = []
    for entity in _of(entities, "index").values():
        steps += _plan_store(client, project, entity)
    for kind in ("savedsearch", "dashboard"):
        steps += [_step(kind, e.name, e.body, _current(client, project, kind, e.name))
                  for e in _of(entities, kind).values()]
    steps += [_plan_resource(client, e, body) for e, body in resources]
    steps += [_step("alert", e.name, _desired(e, project), _current(client, project, "alert", e.name))
              for e in _of(entities, "alert").values()]
    return steps


def _apply_step(client: LogClient, project: str, step: Step) -> None:
    body, create = step.body, step.action == "create"
    if step.kind == "logstore":
        client.create_logstore(project, step.name, ttl=body["ttl"], shard_count=body["shardCount"],
                               enable_tracking=body.get("enable_tracking", False),
                               append_meta=body.get("appendMeta", False), auto_split=body.get("autoSplit", True),
                               max_split_shard=body.get("maxSplitShard", 64))
    elif step.kind == "index":
        config = IndexConfig()
        config.from_json(body)
        (client.create_index if create else client.update_index)(project, step.name, config)
    elif step.kind in _PROJECT_ENTITIES:
        _, create_entity, update_entity, _ = _PROJECT_ENTITIES[step.kind]
        (create_entity if create else update_entity)(client, project, body)
    else:
        record = ResourceRecord(record_id=step.name, tag=body["tag"], value=body["value"])
        (client.create_resource_record if create else client.update_resource_record)(step.kind, record)


def apply(client: LogClient, project: str, steps: list[Step]) -> None:
    """Carry out a plan (steps marked unchanged cost nothing). A failure raises LogException and stops."""
    for step in steps:
        if step.action != "unchanged":
            _apply_step(client, project, step)


# ---------------------------------------------------------------------------------------------------
# Export

_VOLATILE = ("createTime", "lastModifyTime", "lastModifiedTime")
_SAFE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*")


def _clean(body: dict, *drop: str) -> dict:
    return {k: v for k, v in body.items() if k not in _VOLATILE + drop}


def _write(out: Path, directory: str, name: str, body: dict) -> Path:
    if not _SAFE_NAME.fullmatch(name):
        raise DashboardsError(f"cannot export {name!r} as a file name")
    path = out / directory / f"{name}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(body, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    return path


def export(client: LogClient, project: str, out: Path) -> list[Path]:
    """Write the project's indexed logstores, dashboards, saved searches and alerts under out, in the layout
    validate() and plan_import() read; returns the files written (existing files of other names are left).
    Logstores without an index are skipped; alert resources are account-level and never exported.
    """
    out = Path(out)
    written = []
    for name in client.list_logstore(project, size=-1).get_logstores():
        index = _missing(lambda: client.get_index_config(project, name).get_body(), "IndexConfigNotExist")
        if index is not None:
            logstore = _clean(client.get_logstore(project, name).get_body())
            written.append(_write(out, "index", name, {"logstore": logstore, "index": _clean(index, "ttl")}))
    for name in client.list_savedsearch(project, size=-1).get_entities():
        written.append(_write(out, "savedsearches", name, _clean(client.get_savedsearch(project, name).get_entity())))
    for name in client.list_dashboard(project, size=-1).get_entities():
        written.append(_write(out, "dashboards", name, _clean(client.get_dashboard(project, name).get_entity())))
    for listed in client.list_alert(project, size=-1).get_entities():
        name = listed["name"]
        written.append(_write(out, "alerts", name, _clean(client.get_alert(project, name).get_entity())))
    return written
