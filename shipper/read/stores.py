"""The stores a search reads: the embedded SQLite store and SLS, behind one interface, and which to open.

Both answer `search(text, table=, since_ms=, until_ms=, limit=, all_copies=) -> Rows` and
`instance_events(instance_id)` (the instance's events as schema dicts, in time order). open_store() picks
the configured one. Values have the same types from either store: events.NUMERIC_FIELDS are numbers (None
when empty), every other schema field is text (SLS answers text only, so SlsStore converts).

SLS keeps every copy of a redelivered event (DESIGN: a copy can land between a store's commit and the
ledger's, or from two hosts); the SQLite store keeps the first. So that both give the same rows, SlsStore
shows each event_uid of ecs-events once, its first copy (earliest received_time), unless `all_copies`.
"""
from __future__ import annotations

import sqlite3
import time
from dataclasses import dataclass

from shipper import config as config_mod, events
from shipper.query.parser import QueryError, parse
from shipper.query.sqlite import authorizer, to_sqlite


class StoreUnavailable(Exception):
    """The configured store cannot be opened for reading; the message says which and why."""


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
               until_ms: int | None = None, limit: int = 100, all_copies: bool = False) -> Rows:
        """`all_copies` changes nothing here: the store keeps one copy of each event."""
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
        return [{f: (v if f in events.NUMERIC_FIELDS else "" if v is None else str(v)) for f, v in zip(fields, row)}
                for row in cursor]


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
        from shipper.cloud.sls import error_code, get_logs

        start = (since_ms or 0) // 1000
        end = (until_ms // 1000) if until_ms else int(time.time()) + 60
        try:
            return get_logs(self.client, self.project, self.logstores[table], start, end, query=query_text,
                            reverse=True, offset=offset, size=size)
        except Exception as e:
            raise QueryError(f"SLS refused the query on {self.project}/{self.logstores[table]}: "
                             f"{error_code(e)}") from None

    def search(self, text: str, *, table: str = events.EVENTS_TABLE, since_ms: int | None = None,
               until_ms: int | None = None, limit: int = 100, all_copies: bool = False) -> Rows:
        """Newest first. A SQL part is passed through: its rows are SLS's (count events with
        count(DISTINCT event_uid)). Without one, events are collapsed to one copy each unless `all_copies`."""
        if parse(text).sql:
            rows = self._get(text, table, since_ms, until_ms, 0, limit)
            columns = list(rows[0]) if rows else list(events.TABLE_FIELDS[table])
        else:
            if all_copies or table != events.EVENTS_TABLE:
                rows = self._get(text, table, since_ms, until_ms, 0, limit)
            else:
                rows = self._first_copies(text, since_ms, until_ms, limit)
            columns = list(events.TABLE_FIELDS[table])
        return Rows(columns, [tuple(_typed(c, r.get(c, "")) for c in columns) for r in rows])

    def _first_copies(self, text: str, since_ms: int | None, until_ms: int | None, limit: int) -> list[dict]:
        """Up to `limit` events, newest first, each event_uid once. Pages on past the limit-th event while
        the rows keep its __time__, where its other copies sort (they share the event's time)."""
        found: dict[str, dict] = {}
        for page in self._pages(text, since_ms, until_ms):
            _keep_first_copies(found, page)
            if len(found) >= limit and page and page[-1]["__time__"] != list(found.values())[limit - 1]["__time__"]:
                break
        return list(found.values())[:limit]

    def _pages(self, text: str, since_ms: int | None, until_ms: int | None):
        """Every page of ecs-events rows the search finds, newest first."""
        offset = 0
        while True:
            page = self._get(text, events.EVENTS_TABLE, since_ms, until_ms, offset, self.PAGE)
            yield page
            if len(page) < self.PAGE:
                return
            offset += self.PAGE

    def instance_events(self, instance_id: str) -> list[dict]:
        found: dict[str, dict] = {}
        for page in self._pages(f'instance_id: "{instance_id}"', None, None):
            _keep_first_copies(found, page)
        timeline = [{f: _typed(f, e.get(f, "")) for f in events.EVENT_FIELDS} for e in found.values()]
        return sorted(timeline, key=lambda e: e["event_time_ms"] or 0)


def _typed(column: str, text: str):
    """An SLS value as the SQLite store gives it: a number for a numeric schema field (None when empty or not
    a number), else the text. A SQL part's computed columns (count(*) ...) stay text: SLS says nothing of types."""
    if column not in events.NUMERIC_FIELDS:
        return text
    for number in (int, float):
        try:
            return number(text)
        except (TypeError, ValueError):
            continue
    return None


def _keep_first_copies(found: dict[str, dict], rows: list[dict]) -> None:
    """Adds rows to `found` (event_uid -> row, in first-seen order), keeping each uid's earliest received copy:
    the one the SQLite store kept (received_time is ISO 8601 UTC, so it sorts as text)."""
    for row in rows:
        uid = row.get("event_uid", "")
        kept = found.get(uid)
        if kept is None or row.get("received_time", "") < kept.get("received_time", ""):
            found[uid] = row


def open_store(config: config_mod.Config, store: str | None = None) -> SqliteStore | SlsStore:
    """The store to read: the sqlite sink's, else SLS's; `store` ("sqlite" or "sls") picks when both are
    configured. Raises StoreUnavailable (no such sink, no credentials, no local store yet)."""
    sqlite = config.sink("sqlite")
    sls = config.sink("sls")
    if store == "sls" or (store is None and sqlite is None and sls is not None):
        if sls is None:
            raise StoreUnavailable(f"{config.path}: no [[sinks]] of type \"sls\" to search")
        return _sls_store(sls)
    if sqlite is None:
        raise StoreUnavailable(f"{config.path}: no [[sinks]] of type \"sqlite\" or \"sls\" to search")
    from shipper.sinks.sqlite import StoreError, connect

    try:
        return SqliteStore(connect(sqlite.path, create=False))
    except StoreError as e:
        raise StoreUnavailable(str(e)) from None


def _sls_store(sls) -> SlsStore:
    """An SlsStore over the sink's project and logstores, with the ALIBABA_CLOUD_* credentials."""
    from shipper.cloud.credentials import credentials_for
    from shipper.cloud.sls import make_client

    credentials = credentials_for("sls", StoreUnavailable)
    logstores = {events.EVENTS_TABLE: sls.events_logstore, events.ACTIONS_TABLE: sls.actions_logstore,
                 events.DEADLETTER_TABLE: sls.deadletter_logstore, events.AUDIT_TABLE: sls.audit_logstore}
    return SlsStore(make_client(sls.endpoint, credentials, timeout=sls.timeout_seconds), sls.project, logstores)
