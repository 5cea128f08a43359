"""The normalized record (schema "1") and the other stores' records.

Field names live here only: sinks, queries and dashboards read these tuples.
"""
from __future__ import annotations

import datetime as _dt
import functools

SCHEMA_VERSION = "1"

EVENTS_TABLE = "ecs-events"
ACTIONS_TABLE = "shipper-actions"
DEADLETTER_TABLE = "shipper-deadletter"

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
    "reason",
    "source",
    "message_id",
    "received_time",
    "error",
    "raw_base64",
)

TABLE_FIELDS = {
    EVENTS_TABLE: EVENT_FIELDS,
    ACTIONS_TABLE: ACTION_FIELDS,
    DEADLETTER_TABLE: DEADLETTER_FIELDS,
}

# Fields stored and compared as numbers (SLS index type `long`/`double`).
NUMERIC_FIELDS = frozenset({"event_time_ms", "seconds_before_reclaim"})

# The fields people search by; the SQLite store indexes them.
INDEXED_EVENT_FIELDS = ("instance_id", "state", "event_name", "category", "event_time_ms", "region_id")

STATES = ("Pending", "Starting", "Running", "Stopping", "Stopped", "Deleted")
CATEGORIES = ("lifecycle", "interruption", "maintenance", "failure", "disk", "snapshot", "network", "performance", "other")

Record = dict  # one row of a store: field name -> str


def format_time_ms(ms: int) -> str:
    """Epoch milliseconds -> the schema's UTC text `YYYY-MM-DDTHH:MM:SS.mmmZ`."""
    return _second_text(ms // 1000) + f"{ms % 1000:03d}Z"


@functools.lru_cache(maxsize=4096)
def _second_text(seconds: int) -> str:
    """Cached: every event formats two times, and they cluster (strftime was 8% of the MNS path's CPU)."""
    return _dt.datetime.fromtimestamp(seconds, tz=_dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.")


def new_event(**values: str) -> Record:
    """A complete event record: every schema field present, unknown ones empty."""
    unknown = set(values) - set(EVENT_FIELDS)
    if unknown:
        raise KeyError(f"not schema fields: {sorted(unknown)}")
    record = dict.fromkeys(EVENT_FIELDS, "")
    record["schema"] = SCHEMA_VERSION
    record.update(values)
    return record
