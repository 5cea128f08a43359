"""The instance cache: what each instance was while it was alive, kept after it is released.

A Deleted event often carries no name or type, and the ECS console forgets a released instance. Every
event that names an instance updates its entry (name, type, IPs, region, last state); every
DescribeInstances answer the hooks get adds zone, tags, charge type and spot strategy. Events that lack
identity fields are filled from the entry before they are stored, so a released instance's records and
`shipper lifecycle` still say what it was. Entries live in memory and are saved to SQLite
(`<data_dir>/instances.db`) every few seconds and at shutdown; a lost update is rebuilt from the next event.
"""
from __future__ import annotations

import logging
import sqlite3
import threading
import time
from pathlib import Path

import orjson

from shipper import events
from shipper.telemetry import metrics
from shipper.events import IDENTITY_FIELDS
from shipper.sinks.sqlite import StoreError

log = logging.getLogger("shipper.instances.cache")

# Record fields an event may lack and the cache can supply (defined once, in shipper.events).
FILLED_FIELDS = IDENTITY_FIELDS
COLUMNS = ("instance_id", "instance_name", "instance_type", "private_ip", "public_ip", "region_id", "zone_id",
           "tags", "charge_type", "spot_strategy", "first_seen", "last_seen", "last_state")


def cache_path(data_dir: str | Path) -> Path:
    return Path(data_dir) / "instances.db"


class _CorruptCache(Exception):
    """The cache file is damaged (not a database, or a failed integrity check)."""


def _open(path: Path) -> tuple[sqlite3.Connection, dict[str, dict]]:
    """The cache's connection and its saved entries; raises _CorruptCache, sqlite3.Error or OSError."""
    path.parent.mkdir(parents=True, exist_ok=True)
    conn = sqlite3.connect(path, check_same_thread=False, isolation_level=None, timeout=30)
    try:
        conn.execute("PRAGMA journal_mode=WAL")
        # A damaged page found only at a later save would make every save fail for as long as shipper runs.
        verdict = conn.execute("PRAGMA quick_check").fetchone()[0]
        if verdict != "ok":
            raise _CorruptCache(verdict)
        columns = ", ".join(f"{c} TEXT NOT NULL DEFAULT ''" for c in COLUMNS[1:])
        conn.execute(f"CREATE TABLE IF NOT EXISTS instances (instance_id TEXT PRIMARY KEY, {columns})")
        entries = {row[0]: dict(zip(COLUMNS, row)) for row in conn.execute(f"SELECT {', '.join(COLUMNS)} FROM instances")}
    except sqlite3.DatabaseError as e:
        conn.close()
        if e.sqlite_errorname.startswith("SQLITE_CORRUPT") or e.sqlite_errorname == "SQLITE_NOTADB":
            raise _CorruptCache(str(e)) from None
        raise
    except BaseException:
        conn.close()
        raise
    return conn, entries


def _move_aside(path: Path) -> Path:
    """Rename the cache file and its WAL files out of the way (kept for a look); the new name of the file."""
    aside = path.with_name(f"{path.name}.corrupt-{time.strftime('%Y%m%dT%H%M%S')}")
    for suffix in ("", "-wal", "-shm", "-journal"):
        if Path(f"{path}{suffix}").exists():
            Path(f"{path}{suffix}").rename(f"{aside}{suffix}")
    return aside


def _valid_text(text: str) -> str:
    """Text SQLite can store: DescribeInstances answers are read with json, which lets lone surrogates through."""
    return text.encode("utf-8", "replace").decode("utf-8")


class InstanceCache:
    def __init__(self, path: str | Path):
        """Open (or create) the cache. A damaged file is moved aside and an empty cache started: it is a cache,
        refilled by the next events, and refusing to start would stop the audit trail for the loss of
        nothing that is not also in the events. Any other failure is a StoreError naming the file."""
        self.path = Path(path)
        try:
            try:
                self._conn, self._entries = _open(self.path)
            except _CorruptCache as e:
                aside = _move_aside(self.path)
                log.warning("instance cache %s is damaged (%s): moved it to %s and started an empty one, "
                            "which the next events refill", self.path, e, aside.name)
                self._conn, self._entries = _open(self.path)
        except (_CorruptCache, sqlite3.Error, OSError) as e:
            raise StoreError(f"{self.path}: cannot open the instance cache: {e}; fix or remove the file") from None
        self._lock = threading.Lock()
        self._dirty: set[str] = set()
        self._save_failing = False

    def enrich(self, record: dict) -> None:
        """Learn from one event record, then fill the identity fields it lacks (in place)."""
        instance = record.get("instance_id", "")
        if not events.is_real_instance_id(instance):
            return
        with self._lock:
            entry = self._entries.get(instance)
            if entry is None:
                entry = self._entries[instance] = dict.fromkeys(COLUMNS, "")
                entry["instance_id"] = instance
                entry["first_seen"] = record.get("event_time", "")
            for name in FILLED_FIELDS:
                if record.get(name):
                    entry[name] = record[name]
                elif entry[name]:
                    record[name] = entry[name]
            if record.get("event_time", "") >= entry["last_seen"]:
                entry["last_seen"] = record.get("event_time", "")
                if record.get("state"):
                    entry["last_state"] = record["state"]
            self._dirty.add(instance)

    def remember(self, instance) -> None:
        """Learn from a DescribeInstances answer (a shipper.instances.model.Instance, from shipper.cloud.openapi)."""
        with self._lock:
            entry = self._entries.setdefault(instance.instance_id, dict.fromkeys(COLUMNS, ""))
            entry["instance_id"] = instance.instance_id
            tags = {_valid_text(k): _valid_text(v) for k, v in instance.tags.items()}
            updates = {"instance_name": instance.instance_name, "instance_type": instance.instance_type,
                       "zone_id": instance.zone_id, "charge_type": instance.charge_type,
                       "spot_strategy": instance.spot_strategy,
                       "private_ip": instance.private_ips[0] if instance.private_ips else "",
                       "public_ip": instance.public_ips[0] if instance.public_ips else "",
                       "tags": orjson.dumps(tags, option=orjson.OPT_SORT_KEYS).decode() if tags else ""}
            entry.update({k: _valid_text(v) for k, v in updates.items() if v})
            self._dirty.add(instance.instance_id)

    def get(self, instance_id: str) -> dict | None:
        with self._lock:
            entry = self._entries.get(instance_id)
            return dict(entry) if entry else None

    def save(self) -> int:
        """Write the entries changed since the last save; returns how many. When the write fails (disk full,
        I/O error) it is rolled back, the entries stay to be saved next time, and the error is raised."""
        with self._lock:
            saving = set(self._dirty)
            rows = [tuple(self._entries[i][c] for c in COLUMNS) for i in saving]
            self._dirty.clear()
        if not rows:
            return 0
        marks = ", ".join("?" for _ in COLUMNS)
        try:
            self._conn.execute("BEGIN")
            self._conn.executemany(f"INSERT OR REPLACE INTO instances ({', '.join(COLUMNS)}) VALUES ({marks})", rows)
            self._conn.execute("COMMIT")
        except Exception:
            self._rollback()
            with self._lock:
                self._dirty |= saving
            raise
        return len(rows)

    def _rollback(self) -> None:
        if self._conn.in_transaction:
            try:
                self._conn.execute("ROLLBACK")
            except sqlite3.Error:
                pass  # the save's own error is the one reported; the next save's failure rolls back again

    def try_save(self) -> bool:
        """save(), never raising: a failure is logged once (one line) until a save succeeds again, and
        counted; the unsaved entries are retried by the next call. True when everything is saved."""
        try:
            self.save()
        except Exception as e:
            metrics.CACHE_SAVE_ERRORS.inc()
            if not self._save_failing:
                log.error("instance cache %s: save failed (%s); the entries stay in memory and the save is "
                          "retried every few seconds", self.path, e)
            self._save_failing = True
            return False
        if self._save_failing:
            log.info("instance cache %s: saved again", self.path)
        self._save_failing = False
        return True

    def close(self) -> None:
        self.try_save()
        self._conn.close()


def read_entry(path: str | Path, instance_id: str) -> dict | None:
    """One saved entry, for `shipper lifecycle` (which runs beside, not inside, `shipper run`)."""
    path = Path(path)
    if not path.exists():
        return None
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        row = conn.execute(f"SELECT {', '.join(COLUMNS)} FROM instances WHERE instance_id = ?", (instance_id,)).fetchone()
    except sqlite3.Error:
        return None
    finally:
        conn.close()
    return dict(zip(COLUMNS, row)) if row else None
