"""Import into SLS: plan_import() compares the content with what a project holds (reads SLS only), apply()
carries the plan out (writes it). Both reach SLS through shipper.cloud.sls.SlsContent."""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Mapping

from shipper.cloud.sls import SlsContent
from shipper.dashboards.load import (
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


def placeholder_names(root: Path) -> list[str]:
    """The `${NAME}`s the alert resources of `root` take from the environment, sorted: what a real import
    needs set."""
    entities, _ = load(Path(root))
    return sorted({name for kind in (WEBHOOK, CONTENT_TEMPLATE, ACTION_POLICY) for e in of(entities, kind).values()
                   for name in PLACEHOLDER.findall(json.dumps(e.body.get("value", {})))})


def _contains(current, desired) -> bool:
    """Whether current holds every key desired sets, with equal values: SLS adds keys of its own."""
    if isinstance(desired, dict):
        return isinstance(current, dict) and all(k in current and _contains(current[k], v) for k, v in desired.items())
    if isinstance(desired, list):
        return isinstance(current, list) and len(current) == len(desired) and all(map(_contains, current, desired))
    return current == desired


def _step(kind: str, name: str, body: dict, current, matches: Callable[[object, dict], bool] = _contains) -> Step:
    if current is None:
        return Step("create", kind, name, body)
    return Step("unchanged" if matches(current, body) else "update", kind, name, body)


def _index_matches(current: dict, desired: dict) -> bool:
    return _contains(current, desired) and set(current.get("keys", {})) == set(desired["keys"])


def _plan_store(sls: SlsContent, project: str, entity: Entity) -> list[Step]:
    name, logstore, index = entity.name, entity.body["logstore"], entity.body["index"]
    exists = sls.logstore(project, name) is not None
    current = sls.index(project, name) if exists else None
    # An existing logstore's settings (ttl, shards) are the operator's: the file only seeds new ones.
    return [Step("unchanged" if exists else "create", "logstore", name, logstore),
            _step("index", name, index, current, _index_matches)]


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


def plan_import(sls: SlsContent, project: str, root: Path,
                placeholders: Mapping[str, str] | None = None) -> list[Step]:
    """What import would do, in SLS's order (logstores, indexes, saved searches, dashboards, alert resources,
    alerts); reads SLS only. Refuses content that does not validate. `placeholders` fill the `${NAME}`s of
    alert resources (pass the environment); an unset one is an error naming it. `sls` may also be a client
    from make_client. A failed read raises CloudError.
    """
    sls, root = SlsContent.of(sls), Path(root)
    problems = validate(root)
    if problems:
        raise DashboardsError("the content does not validate:\n" + "\n".join(map(str, problems)))
    entities, _ = load(root)
    resources = [(e, _resolved(e, placeholders or {}))
                 for kind in (WEBHOOK, CONTENT_TEMPLATE, ACTION_POLICY) for e in of(entities, kind).values()]
    steps = []
    for entity in of(entities, "index").values():
        steps += _plan_store(sls, project, entity)
    for kind in ("savedsearch", "dashboard"):
        steps += [_step(kind, e.name, e.body, sls.entity(kind, project, e.name)) for e in of(entities, kind).values()]
    steps += [_step(e.kind, e.name, body, sls.resource_record(e.kind, e.name)) for e, body in resources]
    steps += [_step("alert", e.name, _desired(e, project), sls.entity("alert", project, e.name))
              for e in of(entities, "alert").values()]
    return steps


def _apply_step(sls: SlsContent, project: str, step: Step) -> None:
    body, create = step.body, step.action == "create"
    if step.kind == "logstore":
        sls.create_logstore(project, step.name, body)
    elif step.kind == "index":
        (sls.create_index if create else sls.update_index)(project, step.name, body)
    elif step.kind in SlsContent.ENTITY_KINDS:
        (sls.create_entity if create else sls.update_entity)(step.kind, project, body)
    else:
        record = {"id": step.name, "tag": body["tag"], "value": body["value"]}
        (sls.create_resource_record if create else sls.update_resource_record)(step.kind, record)


def apply(sls: SlsContent, project: str, steps: list[Step]) -> None:
    """Carry out a plan (steps marked unchanged cost nothing); `sls` may also be a client from make_client.
    A failure raises CloudError and stops."""
    sls = SlsContent.of(sls)
    for step in steps:
        if step.action != "unchanged":
            _apply_step(sls, project, step)
