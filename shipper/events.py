"""The normalized record (schema "1") and the other stores' records.

Field names live here only: sinks, queries and dashboards read these tuples.
"""
from __future__ import annotations

import base64
import hashlib


SCHEMA_VERSION = "1"

EVENTS_TABLE = "ecs-events"
ACTIONS_TABLE = "shipper-actions"
DEADLETTER_TABLE = "shipper-deadletter"
AUDIT_TABLE = "shipper-audit"

EVENT_FIELDS = (
    "schema",
    "event_uid",
    "envelope",
    "event_time",
    "event_time_ms",
    "received_time",
    "account_id",
    "region_id",
    "product",
    "resource_type",
    "resource_id",
    "resource_arn",
    "instance_id",
    "event_name",
    "event_status",
    "category",
    "state",
    "state_raw",
    "level",
    "action",
    "not_before",
    "instance_name",
    "instance_type",
    "private_ip",
    "public_ip",
    "detail",
    "raw",
    # additive to schema "1": what the instance registry knows (events, inventory sync, lookups)
    "zone_id",
    "charge_type",
    "spot_strategy",
    "tags",
    "stop_cause",
    # additive to schema "1": who made an API call (records of category `api-call`, envelope `actiontrail`)
    "actor_type",
    "actor_name",
    "actor_principal_id",
    "actor_access_key_id",
    "source_ip",
    "user_agent",
    "request_id",
    "error_code",
)

ACTION_FIELDS = (
    "event_uid",
    "hook",
    "trigger",
    "instance_id",
    "decision",
    "reason",
    "outcome",
    "error_code",
    "stop_cause",
    "decided_time",
    "finished_time",
    "seconds_before_reclaim",
    "detail",
)

DEADLETTER_FIELDS = (
    "deadletter_uid",       # hash of source + input: the same input dead-lettered again is stored once
    "reason",
    "source",
    "message_id",
    "received_time",
    "error",
    "raw_base64",
)

# Reconciliation findings: the trail (events, calls) against the inventory (audit/reconcile.py).
AUDIT_FIELDS = (
    "finding_uid",          # one finding: kind + instance + when it was found
    "finding",              # unrecorded-creation, unrecorded-release, state-drift, baseline
    "status",               # open, cleared (a later record of the same finding_uid), info (a baseline: not a hole)
    "instance_id",
    "region_id",
    "instance_name",
    "instance_type",
    "inventory_status",     # what DescribeInstances said (Running, Stopped, ... or absent)
    "recorded_state",       # the last state the trail records
    "found_time",
    "detail",
)

TABLE_FIELDS = {
    EVENTS_TABLE: EVENT_FIELDS,
    ACTIONS_TABLE: ACTION_FIELDS,
    DEADLETTER_TABLE: DEADLETTER_FIELDS,
    AUDIT_TABLE: AUDIT_FIELDS,
}

# Fields stored and compared as numbers (SLS index type `long`/`double`).
NUMERIC_FIELDS = frozenset({"event_time_ms", "seconds_before_reclaim"})

# The fields people search by; the SQLite store indexes them.
INDEXED_EVENT_FIELDS = ("instance_id", "state", "event_name", "category", "event_time_ms", "region_id", "zone_id")

# An instance's identity as events carry it: an event that lacks one (a Deleted event often does) takes
# it from the instance's earlier events (the lifecycle timeline, the instance registry).
IDENTITY_FIELDS = ("instance_name", "instance_type", "private_ip", "public_ip", "region_id", "zone_id",
                   "charge_type", "spot_strategy", "tags")

# Why an instance stopped (the `stop_cause` of Stopped and Deleted rows; instances/stop_cause.py decides).
STOP_CAUSES = ("spot-reclaim", "system", "billing-lock", "expired", "user", "api", "service", "user-or-api")

STATES = ("Pending", "Starting", "Running", "Stopping", "Stopped", "Deleted")
# Ties in event time are broken by where a state sits in an instance's life, then by receipt.
STATE_ORDER = {state: rank for rank, state in enumerate(STATES)}
CATEGORIES = ("lifecycle", "interruption", "maintenance", "failure", "disk", "snapshot", "network", "performance",
              "other", "api-call")
API_CALL_CATEGORY, API_CALL_ENVELOPE = "api-call", "actiontrail"

Record = dict  # one row of a store: field name -> str


def new_event(**values: str) -> Record:
    """A complete event record: every schema field present, unknown ones empty."""
    unknown = set(values) - set(EVENT_FIELDS)
    if unknown:
        raise KeyError(f"not schema fields: {sorted(unknown)}")
    record = dict.fromkeys(EVENT_FIELDS, "")
    record["schema"] = SCHEMA_VERSION
    record.update(values)
    return record


# The field that names a record once, per table that has one: a store keeps one record per value (SQLite
# ignores a repeat; the delivery ledger keeps a copy from being sent to SLS again).
UID_FIELD = {EVENTS_TABLE: "event_uid", DEADLETTER_TABLE: "deadletter_uid"}

# The field each table's records are grouped by as `__topic__` (SLS) / `topic` (SQLite).
TOPIC_FIELD = {EVENTS_TABLE: "category", ACTIONS_TABLE: "hook", DEADLETTER_TABLE: "reason", AUDIT_TABLE: "finding"}


def topic(table: str, record: dict) -> str:
    return record.get(TOPIC_FIELD[table], "")


def dead_letter(*, reason: str, source: str, message_id: str, received_time: str, error: str, raw: bytes) -> dict:
    """One `shipper-deadletter` record: the input kept whole (base64), with why it is not an event."""
    return {"deadletter_uid": deadletter_uid(source, raw), "reason": reason, "source": source,
            "message_id": message_id, "received_time": received_time, "error": error,
            "raw_base64": base64.b64encode(raw).decode("ascii")}


def deadletter_uid(source: str, raw: bytes) -> str:
    """The same input from the same source (a file replayed twice, a message redelivered) is one dead letter."""
    return hashlib.sha256(source.encode("utf-8") + b"\0" + raw).hexdigest()[:32]


def is_real_instance_id(instance_id: str) -> bool:
    """Debug templates mask ids (`i-bp1***`): a masked id names no instance, to act on or to remember."""
    return instance_id.startswith("i-") and "*" not in instance_id and len(instance_id) > 2
