"""The embedded store: SQLite in WAL mode, one table per store, named like the SLS logstores.

Each table holds the record fields plus `time_ms` (SLS `__time__` in ms), `topic` (`__topic__`) and
`source_host` (`__source__`), so one query language serves both stores. A repeated `event_uid` in
`ecs-events`, or `deadletter_uid` in `shipper-deadletter`, is ignored: at-least-once delivery and a replay
never show duplicates here. Readers (`shipper search`)
work while `shipper run` writes.
"""
from __future__ import annotations

import dataclasses
import socket
import sqlite3
import stat
import threading
import time
from pathlib import Path

from shipper import events, registry
from shipper.registry import Finding
from shipper.query.sqlite import register_functions
from shipper.times import parse_iso_ms

META_COLUMNS = ("time_ms", "topic", "source_host")
_TIME_FIELD = {
    events.EVENTS_TABLE: "event_time_ms",
    events.ACTIONS_TABLE: "decided_time",
    events.DEADLETTER_TABLE: "received_time",
    events.AUDIT_TABLE: "found_time",
}
_HOST = socket.gethostname()
_UNIQUE_TABLES = (events.EVENTS_TABLE, events.DEADLETTER_TABLE)  # a repeat of event_uid / deadletter_uid is ignored


@dataclasses.dataclass(frozen=True)
class SqliteSinkSettings:
    type: str = "sqlite"
    path: str = ""                          # default: <data_dir>/events.db

    def resolve(self, shipper) -> "SqliteSinkSettings":
        return self if self.path else dataclasses.replace(self, path=str(Path(shipper.data_dir) / "events.db"))


class StoreError(Exception):
    """The local store cannot be opened or written; the message names the file."""


def rollback(conn: sqlite3.Connection) -> None:
    """End a failed write's transaction, so the next write (and other writers) are not blocked by it."""
    if conn.in_transaction:
        try:
            conn.execute("ROLLBACK")
        except sqlite3.Error:
            pass  # the write's own error is the one reported; the next write's failure rolls back again


def move_aside(path: Path) -> Path:
    """Rename a damaged local SQLite file (instance registry, ledger) and its WAL files out of the way, kept for
    a look; the file's new name."""
    aside = path.with_name(f"{path.name}.corrupt-{time.strftime('%Y%m%dT%H%M%S')}")
    for suffix in ("", "-wal", "-shm", "-journal"):
        if Path(f"{path}{suffix}").exists():
            Path(f"{path}{suffix}").rename(f"{aside}{suffix}")
    return aside


def _column_type(name: str) -> str:
    if name == "event_time_ms" or name == "time_ms":
        return "INTEGER"
    if name in events.NUMERIC_FIELDS:
        return "REAL"
    return "TEXT NOT NULL DEFAULT ''"


def _tables() -> list[str]:
    statements = []
    for table, fields in events.TABLE_FIELDS.items():
        columns = [f'"{f}" {_column_type(f)}' for f in fields + META_COLUMNS]
        if table == events.EVENTS_TABLE:
            columns[fields.index("event_uid")] = '"event_uid" TEXT NOT NULL UNIQUE'
        statements.append(f'CREATE TABLE IF NOT EXISTS "{table}" ({", ".join(columns)})')
    return statements


def _indexes() -> list[str]:
    statements = [f'CREATE INDEX IF NOT EXISTS "{table}:time_ms" ON "{table}" (time_ms)' for table in events.TABLE_FIELDS]
    for name in events.INDEXED_EVENT_FIELDS:
        statements.append(f'CREATE INDEX IF NOT EXISTS "ecs-events:{name}" ON "ecs-events" ("{name}")')
    statements.append('CREATE INDEX IF NOT EXISTS "shipper-actions:instance_id" ON "shipper-actions" (instance_id)')
    # Partial: rows stored before deadletter_uid existed have none, and stay as they are.
    statements.append('CREATE UNIQUE INDEX IF NOT EXISTS "shipper-deadletter:deadletter_uid" ON "shipper-deadletter" '
                      "(deadletter_uid) WHERE deadletter_uid != ''")
    return statements


def _time_ms(table: str, record: dict) -> int:
    value = record.get(_TIME_FIELD[table], "")
    if table == events.EVENTS_TABLE:
        return int(value or 0)
    try:
        return parse_iso_ms(value)
    except ValueError:
        return 0


# Positions of the numeric columns, worked out once: _row runs for every record written.
_NUMERIC_AT = {table: tuple(i for i, f in enumerate(fields) if f in events.NUMERIC_FIELDS)
               for table, fields in events.TABLE_FIELDS.items()}
_EVENT_TIME_AT = events.TABLE_FIELDS[events.EVENTS_TABLE].index("event_time_ms")


def _row(table: str, fields: tuple, record: dict) -> tuple:
    values = [record.get(f, "") for f in fields]
    for i in _NUMERIC_AT[table]:
        values[i] = float(values[i]) if values[i] not in ("", None) else None
    if table == events.EVENTS_TABLE and values[_EVENT_TIME_AT] is not None:
        values[_EVENT_TIME_AT] = int(values[_EVENT_TIME_AT])
    return (*values, _time_ms(table, record), events.topic(table, record), _HOST)


def connect(path: str | Path, *, create: bool = True) -> sqlite3.Connection:
    """Open the store: to write (WAL, schema ensured), or with create=False to read (must exist).

    A reader opens the file read-only and runs no pragma that writes: searching never converts a store's
    journal mode, and works on a store the searcher may not write.
    """
    path = Path(path)
    if not create and not path.exists():
        raise StoreError(f"{path}: no local store yet; run `shipper run` or `shipper replay` first")
    try:
        if create:
            conn = _open_writer(path)
        else:
            conn = sqlite3.connect(path.resolve().as_uri() + "?mode=ro", uri=True, timeout=30,
                                   check_same_thread=False, isolation_level=None)
            conn.execute("PRAGMA query_only=ON")  # belt and braces: a reader's SQL can never change the store
    except (sqlite3.Error, OSError) as e:
        raise StoreError(f"{path}: cannot open the local store: {e}") from None
    register_functions(conn)
    return conn


def _open_writer(path: Path) -> sqlite3.Connection:
    path.parent.mkdir(parents=True, exist_ok=True)
    conn = sqlite3.connect(path, timeout=30, check_same_thread=False, isolation_level=None)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=FULL")  # a commit acknowledges messages: it must survive a crash
    conn.execute("PRAGMA busy_timeout=30000")
    for statement in _tables():
        conn.execute(statement)
    _add_new_columns(conn)
    for statement in _indexes():
        conn.execute(statement)
    return conn


def _add_new_columns(conn: sqlite3.Connection) -> None:
    """A store made by an earlier version lacks the fields added to the schema since: add them (empty)."""
    for table, fields in events.TABLE_FIELDS.items():
        have = {row[1] for row in conn.execute(f'PRAGMA table_info("{table}")')}
        for name in fields + META_COLUMNS:
            if name not in have:
                conn.execute(f'ALTER TABLE "{table}" ADD COLUMN "{name}" {_column_type(name)}')


class SqliteSink:
    """Commits batches in one transaction each; reports how many rows were new."""

    name = "sqlite"

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self._conn = connect(self.path)
        self._lock = threading.Lock()
        self._insert = {}
        for table, fields in events.TABLE_FIELDS.items():
            columns = ", ".join(f'"{f}"' for f in fields + META_COLUMNS)
            marks = ", ".join("?" for _ in fields + META_COLUMNS)
            verb = "INSERT OR IGNORE" if table in _UNIQUE_TABLES else "INSERT"
            self._insert[table] = f'{verb} INTO "{table}" ({columns}) VALUES ({marks})'

    def write(self, table: str, records: list[dict]) -> int:
        fields = events.TABLE_FIELDS[table]
        with self._lock:
            try:
                rows = [_row(table, fields, r) for r in records]
                before = self._conn.total_changes
                self._conn.execute("BEGIN IMMEDIATE")
                self._conn.executemany(self._insert[table], rows)
                self._conn.execute("COMMIT")
                return self._conn.total_changes - before
            except Exception as e:  # any failure, sqlite's or a value's (e.g. text it cannot encode)
                rollback(self._conn)
                raise StoreError(f"{self.path}: write to {table} failed: {e}") from None

    def close(self) -> None:
        with self._lock:
            self._conn.close()


def check(sink: SqliteSinkSettings, config=None) -> list[Finding]:
    path = Path(sink.path)
    # No write bit at all means read-only by intent. Root writes it anyway (so os.access and even a real
    # write say yes when `check` runs as root), but `shipper run` as a service user would 503 every push.
    mode = stat.S_IMODE(path.stat().st_mode) if path.exists() else None
    if mode is not None and not mode & 0o222:
        return [Finding("FAIL", f"sqlite sink: {path} is read-only (mode {mode:04o}): every push would get 503; "
                                f"chmod u+w {path}")]
    try:
        conn = connect(path)
        try:
            count = conn.execute('SELECT count(*) FROM "ecs-events"').fetchone()[0]
            _probe_write(conn)
        finally:
            conn.close()
    except StoreError as e:
        return [Finding("FAIL", f"sqlite sink: {e}")]
    except sqlite3.Error as e:
        return [Finding("FAIL", f"sqlite sink: {path} cannot be written ({e}); every push would get 503: "
                                f"check the owner and mode of the file and its folder")]
    return [Finding("ok", f"sqlite sink: {path} writable ({count} events stored)")]


def _probe_write(conn) -> None:
    """Insert a row and roll it back: SQLite opens a file it may only read without a word (read-only), and
    only a real write finds out."""
    conn.execute("BEGIN IMMEDIATE")
    try:
        conn.execute('INSERT INTO "shipper-deadletter" DEFAULT VALUES')
    finally:
        conn.execute("ROLLBACK")


registry.register(registry.Component(registry.SINK, "sqlite", SqliteSinkSettings,
                                     build=lambda settings, runtime: SqliteSink(settings.path), check=check))
