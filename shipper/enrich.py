"""The instance cache: what each instance was while it was alive, kept after it is released.

A Deleted event often carries no name or type, and the ECS console forgets a released instance. Every
event that names an instance updates its entry (name, type, IPs, region, last state); every
DescribeInstances answer the hooks get adds zone, tags, charge type and spot strategy. Events that lack
identity fields are filled from the entry before they are stored, so a released instance's records and
`shipper lifecycle` still say what it was. Entries live in memory and are saved to SQLite
(`<data_dir>/instances.db`) every few seconds and at shutdown; a lost update is rebuilt from the next event.
"""
from __future__ import annotations

import sqlite3
import threading
from pathlib import Path

import orjson

# Record fields an event may lack and the cache can supply.
FILLED_FIELDS = ("instance_name", "instance_type", "private_ip", "public_ip", "region_id")
COLUMNS = ("instance_id", "instance_name", "instance_type", "private_ip", "public_ip", "region_id", "zone_id",
           "tags", "charge_type", "spot_strategy", "first_seen", "last_seen", "last_state")


def cache_path(data_dir: str | Path) -> Path:
    return Path(data_dir) / "instances.db"


class InstanceCache:
    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._conn = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None, timeout=30)
        self._conn.execute("PRAGMA journal_mode=WAL")
        columns = ", ".join(f"{c} TEXT NOT NULL DEFAULT ''" for c in COLUMNS[1:])
        self._conn.execute(f"CREATE TABLE IF NOT EXISTS instances (instance_id TEXT PRIMARY KEY, {columns})")
        self._lock = threading.Lock()
        self._entries: dict[str, dict] = {}
        self._dirty: set[str] = set()
        for row in self._conn.execute(f"SELECT {', '.join(COLUMNS)} FROM instances"):
            self._entries[row[0]] = dict(zip(COLUMNS, row))

    def enrich(self, record: dict) -> None:
        """Learn from one event record, then fill the identity fields it lacks (in place)."""
        instance = record.get("instance_id", "")
        if not instance or "*" in instance:  # masked ids (console debug events) name no instance
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
        """Learn from a DescribeInstances answer (an actions.openapi.Instance)."""
        with self._lock:
            entry = self._entries.setdefault(instance.instance_id, dict.fromkeys(COLUMNS, ""))
            entry["instance_id"] = instance.instance_id
            updates = {"instance_name": instance.instance_name, "instance_type": instance.instance_type,
                       "zone_id": instance.zone_id, "charge_type": instance.charge_type,
                       "spot_strategy": instance.spot_strategy,
                       "private_ip": instance.private_ips[0] if instance.private_ips else "",
                       "public_ip": instance.public_ips[0] if instance.public_ips else "",
                       "tags": orjson.dumps(instance.tags, option=orjson.OPT_SORT_KEYS).decode() if instance.tags else ""}
            entry.update({k: v for k, v in updates.items() if v})
            self._dirty.add(instance.instance_id)

    def get(self, instance_id: str) -> dict | None:
        with self._lock:
            entry = self._entries.get(instance_id)
            return dict(entry) if entry else None

    def save(self) -> int:
        """Write the entries changed since the last save; returns how many."""
        with self._lock:
            rows = [tuple(self._entries[i][c] for c in COLUMNS) for i in self._dirty]
            self._dirty.clear()
        if rows:
            marks = ", ".join("?" for _ in COLUMNS)
            self._conn.execute("BEGIN")
            self._conn.executemany(f"INSERT OR REPLACE INTO instances ({', '.join(COLUMNS)}) VALUES ({marks})", rows)
            self._conn.execute("COMMIT")
        return len(rows)

    def close(self) -> None:
        self.save()
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
