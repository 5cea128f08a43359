"""The files under dashboards/: their SLS shapes, and loading them into entities (one per file)."""
from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path


class DashboardsError(Exception):
    """The content cannot be imported as it is; the message says which file and why (never a secret)."""


@dataclass(frozen=True)
class Problem:
    file: str
    reason: str

    def __str__(self) -> str:
        return f"{self.file}: {self.reason}"


# ---------------------------------------------------------------------------------------------------
# Shapes: a spec is a type, {key: spec} (keys required, others allowed) or [spec] (a non-empty list of spec)

_CHART = {"title": str, "type": str, "display": {"displayName": str},
          "search": {"logstore": str, "query": str, "start": str, "end": str}}
_ALERT_QUERY = {"storeType": str, "store": str, "query": str, "timeSpanType": str, "start": str, "end": str}
SHAPES = {
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
# What a record value needs to be read at all; validate checks the rest (rules.ACTION_POLICY_FIELDS).
RESOURCE_SHAPES = {
    WEBHOOK: {"id": str, "name": str, "type": str, "url": str, "method": str, "headers": list},
    CONTENT_TEMPLATE: {"template_id": str, "template_name": str, "is_default": bool, "templates": dict},
    ACTION_POLICY: {"action_policy_id": str, "action_policy_name": str, "is_default": bool,
                    "primary_policy_script": str},
}
RESOURCE_ID_FIELD = {WEBHOOK: "id", CONTENT_TEMPLATE: "template_id", ACTION_POLICY: "action_policy_id"}
TYPE_NAMES = {str: "a string", int: "an integer", bool: "true or false", dict: "an object", list: "a list"}
PLACEHOLDER = re.compile(r"\$\{([A-Z][A-Z0-9_]*)\}")


def shape_reasons(value, spec, where: str) -> list[str]:
    if isinstance(spec, dict):
        if not isinstance(value, dict):
            return [f"{where or 'the file'} must be an object"]
        reasons = []
        for key, sub in spec.items():
            path = f"{where}.{key}" if where else key
            reasons += [f"{path} is missing"] if key not in value else shape_reasons(value[key], sub, path)
        return reasons
    if isinstance(spec, list):
        if not isinstance(value, list) or not value:
            return [f"{where} must be a non-empty list"]
        return [r for i, item in enumerate(value) for r in shape_reasons(item, spec[0], f"{where}[{i}]")]
    ok = isinstance(value, spec) and (spec is bool or not isinstance(value, bool))
    return [] if ok else [f"{where} must be {TYPE_NAMES[spec]}"]


# ---------------------------------------------------------------------------------------------------
# Loading

@dataclass(frozen=True)
class Entity:
    kind: str  # as Step.kind, without 'logstore'
    name: str
    file: str
    body: dict


_DIRS = {"index": "index", "dashboards": "dashboard", "savedsearches": "savedsearch", "alerts": "alert"}
RESOURCES_DIR = Path("alerts") / "resources"
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
    reasons = shape_reasons(body, shape, "")
    problems += [Problem(str(path), reason) for reason in reasons]
    return None if reasons else body


def load(root: Path) -> tuple[list[Entity], list[Problem]]:
    entities, problems = [], []
    for directory, kind in _DIRS.items():
        for path in sorted((root / directory).glob("*.json")):
            body = _read(path, SHAPES[kind], problems)
            if body is not None:
                entities.append(Entity(kind, _NAME[kind](body), str(path), body))
    resources = root / RESOURCES_DIR
    for directory in sorted(p for p in resources.glob("*") if p.is_dir()):
        kind = directory.name
        if kind not in RESOURCE_SHAPES:
            problems.append(Problem(str(directory), f"unknown alert resource; known: {', '.join(RESOURCE_SHAPES)}"))
            continue
        for path in sorted(directory.glob("*.json")):
            body = _read(path, {"id": str, "tag": str, "value": RESOURCE_SHAPES[kind]}, problems)
            if body is not None:
                entities.append(Entity(kind, body["id"], str(path), body))
    if not entities and not problems:
        problems.append(Problem(str(root), "no SLS content: expected index/, dashboards/, savedsearches/, alerts/"))
    for entity in entities:
        if Path(entity.file).stem != entity.name:
            problems.append(Problem(entity.file, f"holds {entity.name!r}: name the file {entity.name}.json"))
    return entities, problems


def of(entities: list[Entity], kind: str) -> dict[str, Entity]:
    return {e.name: e for e in entities if e.kind == kind}
