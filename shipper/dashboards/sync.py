"""Import (plan_import reads SLS only, apply writes it) and export, in the layout validate() reads."""
from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Mapping

from aliyun.log import LogClient, LogException
from aliyun.log.index_config import IndexConfig
from aliyun.log.resource_params import ResourceRecord

from shipper.dashboards.content import (
    ACTION_POLICY, CONTENT_TEMPLATE, PLACEHOLDER, WEBHOOK, DashboardsError, Entity, load, of,
)
from shipper.dashboards.validate import validate


@dataclass(frozen=True)
class Step:
    """One import action. `body` is what apply() sends: it may carry the webhook token, so it is never shown."""
    action: str  # 'create' | 'update' | 'unchanged'
    kind: str    # 'logstore' | 'index' | 'savedsearch' | 'dashboard' | 'alert' | an alert resource name
    name: str
    body: dict = field(repr=False, compare=False)

    def __str__(self) -> str:
        return f"{self.action:<9} {self.kind} {self.name}"


def substitute_placeholders(value, placeholders: Mapping[str, str]):
    """value with every `${NAME}` in its strings replaced; KeyError names the first one not given."""
    if isinstance(value, dict):
        return {k: substitute_placeholders(v, placeholders) for k, v in value.items()}
    if isinstance(value, list):
        return [substitute_placeholders(v, placeholders) for v in value]
    if isinstance(value, str):
        return PLACEHOLDER.sub(lambda m: placeholders[m.group(1)], value)
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


def _plan_store(client: LogClient, project: str, entity: Entity) -> list[Step]:
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


def _desired(entity: Entity, project: str) -> dict:
    if entity.kind != "alert":
        return entity.body
    body = json.loads(json.dumps(entity.body))
    for query in body["configuration"]["queryList"]:
        query["project"] = project  # the alert reads the logstores of the project it is imported into
    return body


def _resolved(entity: Entity, placeholders: Mapping[str, str]) -> dict:
    """The resource record to send: placeholders filled, a token only ever over https."""
    try:
        value = substitute_placeholders(entity.body["value"], placeholders)
    except KeyError as e:
        raise DashboardsError(f"{entity.file}: placeholder ${{{e.args[0]}}} is not set "
                              "(dashboards/README.md)") from None
    if entity.kind == WEBHOOK and "token=" in value["url"] and not value["url"].startswith("https://"):
        raise DashboardsError(f"{entity.file}: the webhook URL carries a token, so it must be https://")
    return {**entity.body, "value": value}


def _plan_resource(client: LogClient, entity: Entity, body: dict) -> Step:
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
    entities, _ = load(root)
    resources = [(e, _resolved(e, placeholders or {}))
                 for kind in (WEBHOOK, CONTENT_TEMPLATE, ACTION_POLICY) for e in of(entities, kind).values()]
    steps = []
    for entity in of(entities, "index").values():
        steps += _plan_store(client, project, entity)
    for kind in ("savedsearch", "dashboard"):
        steps += [_step(kind, e.name, e.body, _current(client, project, kind, e.name))
                  for e in of(entities, kind).values()]
    steps += [_plan_resource(client, e, body) for e, body in resources]
    steps += [_step("alert", e.name, _desired(e, project), _current(client, project, "alert", e.name))
              for e in of(entities, "alert").values()]
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
