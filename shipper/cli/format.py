"""How the CLI shows rows: a plain aligned table for a person, NDJSON or CSV for a program."""
from __future__ import annotations

import csv
import io

import orjson

from shipper import events

# `shipper search`'s table columns for each store when the query has no SQL part and no --columns: what tells
# one row from another in a terminal (the actions table in full is ~250 characters wide).
DEFAULT_COLUMNS = {
    events.EVENTS_TABLE: ("event_time", "instance_id", "event_name", "state", "event_status", "instance_type",
                          "instance_name", "region_id"),
    events.ACTIONS_TABLE: ("decided_time", "hook", "instance_id", "decision", "reason", "outcome", "error_code"),
    events.DEADLETTER_TABLE: ("received_time", "reason", "source", "message_id", "error"),
    events.AUDIT_TABLE: ("found_time", "finding", "status", "instance_id", "region_id", "inventory_status",
                         "recorded_state"),
}
# Added to the defaults when any row shown has a value: an interruption's action and reclaim time, a stop's cause.
COLUMNS_WHEN_SET = {events.EVENTS_TABLE: ("action", "not_before", "stop_cause")}
FORMATS = ("table", "json", "csv")


def default_columns(table: str, rows: list[dict]) -> list[str]:
    """The table columns for rows of `table` (schema dicts) when none are asked for."""
    extra = [c for c in COLUMNS_WHEN_SET.get(table, ()) if any(row.get(c) for row in rows)]
    return list(DEFAULT_COLUMNS[table]) + extra


def format_rows(fmt: str, columns: list[str], rows: list[dict]) -> str:
    """`rows` (dicts) as `fmt`, one of FORMATS, showing `columns` in that order."""
    if fmt == "json":
        return "\n".join(orjson.dumps({c: row[c] for c in columns}).decode() for row in rows)
    if fmt == "csv":
        out = io.StringIO()
        writer = csv.writer(out, lineterminator="\n")
        writer.writerow(columns)
        writer.writerows([["" if row[c] is None else row[c] for c in columns] for row in rows])
        return out.getvalue().rstrip("\n")
    return format_table(columns, [[row[c] for c in columns] for row in rows])


def format_table(columns: list[str], rows: list, max_width: int = 48) -> str:
    """A plain aligned table; long cells are cut with an ellipsis."""
    def cell(value) -> str:
        text = "" if value is None else str(value)
        return text if len(text) <= max_width else text[: max_width - 1] + "…"

    cells = [[cell(v) for v in row] for row in rows]
    widths = [max([len(c)] + [len(r[i]) for r in cells]) for i, c in enumerate(columns)]
    lines = ["  ".join(c.ljust(w) for c, w in zip(columns, widths)).rstrip(),
             "  ".join("-" * w for w in widths)]
    lines += ["  ".join(v.ljust(w) for v, w in zip(r, widths)).rstrip() for r in cells]
    return "\n".join(lines)
