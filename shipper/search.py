"""`shipper search` and `shipper lifecycle` over the local store: run a query, shape the rows.

Time windows, the lifecycle summary (name/type carried from earlier events when the Deleted event lacks
them) and the plain-text table live here; the query language itself lives in shipper.query.
"""
from __future__ import annotations

import re
import sqlite3
import time
from dataclasses import dataclass

from shipper import events
from shipper.normalize import parse_time_ms
from shipper.query.parser import QueryError, parse
from shipper.query.sqlite import authorizer, to_sqlite

DEFAULT_COLUMNS = ("event_time", "instance_id", "event_name", "state", "event_status", "instance_name", "region_id")
_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(s|m|h|d|w)\s*$")
_UNIT_MS = {"s": 1000, "m": 60_000, "h": 3_600_000, "d": 86_400_000, "w": 604_800_000}
CARRIED_FIELDS = ("instance_name", "instance_type", "private_ip", "public_ip", "region_id")


def parse_duration_ms(text: str) -> int:
    """`90s`, `30m`, `24h`, `7d`, `2w` -> milliseconds; ValueError names the accepted forms."""
    match = _DURATION.match(text)
    if not match:
        raise ValueError(f"{text!r} is not a duration; use a number and a unit: 90s, 30m, 24h, 7d, 2w")
    return int(float(match.group(1)) * _UNIT_MS[match.group(2)])


def parse_instant_ms(text: str) -> int:
    """An ISO 8601 / RFC 3339 time or epoch seconds/ms -> epoch ms; ValueError names the forms."""
    ms = parse_time_ms(text)
    if ms is None:
        raise ValueError(f"{text!r} is not a time; use 2025-06-14T01:15:02Z, 2025-06-14 or epoch seconds")
    return ms


def window(since: str | None, start: str | None, end: str | None, now_ms: int | None = None) -> tuple[int | None, int | None]:
    """(from_ms, to_ms) for --since or --from/--to; None means unbounded."""
    now_ms = int(time.time() * 1000) if now_ms is None else now_ms
    if since and (start or end):
        raise ValueError("use --since, or --from/--to, not both")
    if since:
        return now_ms - parse_duration_ms(since), None
    from_ms = parse_instant_ms(start) if start else None
    to_ms = parse_instant_ms(end) if end else None
    if from_ms is not None and to_ms is not None and from_ms > to_ms:
        raise ValueError("--from is later than --to")
    return from_ms, to_ms


@dataclass
class Rows:
    columns: list[str]
    rows: list[tuple]

    def as_dicts(self) -> list[dict]:
        return [dict(zip(self.columns, row)) for row in self.rows]


class SqliteStore:
    """Searches the embedded store (a read-only connection), each query bounded in what it may read,
    in time (`time_limit_seconds`) and in the size of any one value (MAX_VALUE_BYTES)."""

    # 50x the largest value a default config stores (raw_base64 of a 1 MiB message); stops one SQL
    # expression from building a value that exhausts memory.
    MAX_VALUE_BYTES = 64 << 20

    def __init__(self, conn: sqlite3.Connection, time_limit_seconds: float = 60.0):
        self.conn = conn
        self.time_limit_seconds = time_limit_seconds
        conn.setlimit(sqlite3.SQLITE_LIMIT_LENGTH, self.MAX_VALUE_BYTES)

    def search(self, text: str, *, table: str = events.EVENTS_TABLE, since_ms: int | None = None,
               until_ms: int | None = None, limit: int = 100) -> Rows:
        query = parse(text)
        sql, params = to_sqlite(query, table, since_ms=since_ms, until_ms=until_ms, limit=limit)
        refused: list[str] = []
        deadline = time.monotonic() + self.time_limit_seconds
        self.conn.set_authorizer(authorizer(table, sql_part=query.sql is not None, refused=refused))
        self.conn.set_progress_handler(lambda: time.monotonic() > deadline, 10_000)
        try:
            cursor = self.conn.execute(sql, params)
            return Rows([d[0] for d in cursor.description], [tuple(map(_cell, row)) for row in cursor])
        except OverflowError:
            raise QueryError("a number in the query, --since, --from or --to is out of range") from None
        except sqlite3.Error as e:
            raise QueryError(_store_refusal(e, refused, self.time_limit_seconds)) from None
        finally:
            self.conn.set_authorizer(None)
            self.conn.set_progress_handler(None, 0)

    def instance_events(self, instance_id: str) -> list[dict]:
        fields = events.EVENT_FIELDS
        cursor = self.conn.execute(
            f'SELECT {", ".join(chr(34) + f + chr(34) for f in fields)} FROM "{events.EVENTS_TABLE}" '
            "WHERE instance_id = ? ORDER BY event_time_ms, rowid", (instance_id,))
        return [{f: ("" if v is None else str(v)) for f, v in zip(fields, row)} for row in cursor]


def _cell(value):
    """A value as a search shows it: blobs (only a SQL part can make one) as their SQL literal, X'0aff'."""
    return f"X'{value.hex().upper()}'" if isinstance(value, bytes) else value


def _store_refusal(error: sqlite3.Error, refused: list[str], time_limit: float) -> str:
    if refused:
        return f"not allowed in a search of the local store: {refused[0]}"
    if str(error) == "interrupted":
        return f"the query ran over {time_limit:g} s and was stopped; narrow it with a search part or --since"
    return f"the local store cannot run this query: {error}"


class SlsStore:
    """Searches SLS logstores with GetLogs; the query text is passed through unchanged."""

    PAGE = 100

    def __init__(self, client, project: str, logstores: dict[str, str]):
        self.client, self.project, self.logstores = client, project, logstores

    def _get(self, query_text: str, table: str, since_ms: int | None, until_ms: int | None,
             offset: int, size: int) -> list[dict]:
        from shipper.slsclient import error_code

        start = (since_ms or 0) // 1000
        end = (until_ms // 1000) if until_ms else int(time.time()) + 60
        try:
            response = self.client.get_log(self.project, self.logstores[table], start, end, query=query_text,
                                           reverse=True, offset=offset, size=size)
        except Exception as e:
            raise QueryError(f"SLS refused the query on {self.project}/{self.logstores[table]}: "
                             f"{error_code(e)}") from None
        return [dict(log.get_contents(), __time__=str(log.get_time())) for log in response.get_logs()]

    def search(self, text: str, *, table: str = events.EVENTS_TABLE, since_ms: int | None = None,
               until_ms: int | None = None, limit: int = 100) -> Rows:
        rows = self._get(text, table, since_ms, until_ms, 0, limit)
        columns = list(rows[0]) if rows and parse(text).sql else list(events.TABLE_FIELDS[table])
        return Rows(columns, [tuple(r.get(c, "") for c in columns) for r in rows])

    def instance_events(self, instance_id: str) -> list[dict]:
        text = f'instance_id: "{instance_id}"'
        found, offset = [], 0
        while True:
            page = self._get(text, events.EVENTS_TABLE, None, None, offset, self.PAGE)
            found += page
            if len(page) < self.PAGE:
                break
            offset += self.PAGE
        unique = {e.get("event_uid", ""): e for e in found}  # SLS keeps redelivered duplicates
        timeline = [{f: e.get(f, "") for f in events.EVENT_FIELDS} for e in unique.values()]
        return sorted(timeline, key=lambda e: int(e["event_time_ms"] or 0))


def lifecycle(store, instance_id: str) -> list[dict]:
    """Every event of one instance in time order, identity fields carried forward."""
    timeline, known = [], {}
    for event in store.instance_events(instance_id):
        for name in CARRIED_FIELDS:
            if event[name]:
                known[name] = event[name]
            elif name in known:
                event[name] = known[name]
        timeline.append(event)
    return timeline


def summarize(timeline: list[dict], cached: dict | None = None) -> dict:
    """What an operator asks first: what it was, when it was created and released, how long it lived.

    `cached` is the instance cache's entry (instances/cache.py): zone, tags and charge type the events do not carry."""
    if not timeline:
        return {}
    last = timeline[-1]
    created = next((e for e in timeline if e["state"] == "Pending"), None)
    released = next((e for e in reversed(timeline) if e["state"] == "Deleted"), None)
    states = [e for e in timeline if e["state"]]
    summary = {
        "instance_id": last["instance_id"],
        "instance_name": last["instance_name"],
        "instance_type": last["instance_type"],
        "region_id": last["region_id"],
        "private_ip": last["private_ip"],
        "created": created["event_time"] if created else "",
        "released": released["event_time"] if released else "",
        "last_state": states[-1]["state"] if states else "",
        "events": len(timeline),
        "interruptions": sum(1 for e in timeline if e["category"] == "interruption"),
    }
    if created and released:
        summary["lifetime"] = format_duration(int(released["event_time_ms"]) - int(created["event_time_ms"]))
    for key in ("instance_name", "instance_type", "private_ip"):
        summary[key] = summary[key] or (cached or {}).get(key, "")
    for key in ("zone_id", "charge_type", "spot_strategy", "tags"):
        if cached and cached.get(key):
            summary[key] = cached[key]
    return summary


def format_duration(ms: int) -> str:
    seconds = max(ms, 0) // 1000
    days, rest = divmod(seconds, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, seconds = divmod(rest, 60)
    parts = [f"{days}d"] if days else []
    parts.append(f"{hours:02d}:{minutes:02d}:{seconds:02d}")
    return " ".join(parts)


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
