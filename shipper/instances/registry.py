"""The instance registry: what each instance was while it was alive, kept after it is released.

A Deleted event often carries no name or type, arrives before the instance's other events, and the ECS
console forgets a released instance. So every event that names an instance updates its entry (name, type,
IPs, region, last state, and the events that can explain a stop), and so does every DescribeInstances
answer (the inventory sync, the lookups of instances no event has described yet, the hooks' own re-reads),
which adds zone, tags, charge type, spot strategy, locks and expiry. Before a batch is written, each event
is filled from its instance's entry and each Stopped or Deleted event gets its stop cause
(instances/stop_cause.py), so the stored row says what the instance was and why it stopped, in whatever
order the events arrived. Entries live in memory and are saved to SQLite (`<data_dir>/instances.db`) every
few seconds and at shutdown; a lost update is rebuilt from the next event or sync.
"""
from __future__ import annotations

import logging
import sqlite3
import threading
import time
from pathlib import Path
from typing import Callable

import orjson

from shipper import events
from shipper.telemetry import metrics
from shipper.events import IDENTITY_FIELDS, STATE_ORDER
from shipper.instances import stop_cause
from shipper.instances.model import Instance
from shipper.sinks.sqlite import StoreError, move_aside, rollback
from shipper.times import format_time_ms

log = logging.getLogger("shipper.instances.registry")

COLUMNS = ("instance_id", "instance_name", "instance_type", "private_ip", "public_ip", "region_id", "zone_id",
           "tags", "charge_type", "spot_strategy", "first_seen", "last_seen", "last_state", "last_state_time",
           "status", "lock_reasons", "expired_time", "described", "evidence")
STOP_STATES = ("Stopped", "Deleted")
MAX_EVIDENCE = 20                 # events that can explain a stop, kept per instance
LOOKUP_AGAIN_SECONDS = 600.0      # an instance DescribeInstances did not find (released) is not asked again sooner

# Asks DescribeInstances about {region: [instance ids]}, within a bounded wait; answers come back through
# InstanceRegistry.remember (see instances/inventory.py).
Lookup = Callable[[dict[str, list[str]]], None]


def registry_path(data_dir: str | Path) -> Path:
    return Path(data_dir) / "instances.db"


class _CorruptCache(Exception):
    """The registry file is damaged (not a database, or a failed integrity check)."""


def _open(path: Path) -> tuple[sqlite3.Connection, dict[str, dict]]:
    """The registry's connection and its saved entries; raises _CorruptCache, sqlite3.Error or OSError."""
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
        have = {row[1] for row in conn.execute("PRAGMA table_info(instances)")}
        for name in COLUMNS[1:]:  # a file from an earlier version: add what it lacks
            if name not in have:
                conn.execute(f"ALTER TABLE instances ADD COLUMN {name} TEXT NOT NULL DEFAULT ''")
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


def _valid_text(text: str) -> str:
    """Text SQLite can store: DescribeInstances answers are read with json, which lets lone surrogates through."""
    return text.encode("utf-8", "replace").decode("utf-8")


class InstanceRegistry:
    def __init__(self, path: str | Path, lookup: Lookup | None = None, *, clock: Callable[[], float] = time.monotonic):
        """Open (or create) the registry. A damaged file is moved aside and an empty registry started: it is
        refilled by the next events and syncs, and refusing to start would stop the audit trail for the loss
        of nothing that is not also in the events. Any other failure is a StoreError naming the file."""
        self.path = Path(path)
        try:
            try:
                self._conn, self._entries = _open(self.path)
            except _CorruptCache as e:
                aside = move_aside(self.path)
                log.warning("instance registry %s is damaged (%s): moved it to %s and started an empty one, "
                            "which the next events refill", self.path, e, aside.name)
                self._conn, self._entries = _open(self.path)
        except (_CorruptCache, sqlite3.Error, OSError) as e:
            raise StoreError(f"{self.path}: cannot open the instance registry: {e}; fix or remove the file") from None
        self._lookup = lookup
        self._clock = clock
        self._looked_up: dict[str, float] = {}
        self._lock = threading.Lock()
        self._dirty: set[str] = set()
        self._save_failing = False

    def set_lookup(self, lookup: Lookup) -> None:
        """Before the first batch: ask DescribeInstances about instances no answer has described yet."""
        self._lookup = lookup

    def enrich(self, records: list[dict]) -> None:
        """A pipeline enricher: learn from a batch of event records, look up the instances still unknown,
        then fill the identity fields each record lacks and the stop cause of Stopped/Deleted records."""
        with self._lock:
            for record in records:
                self._learn(record)
            wanted = self._wanted(records) if self._lookup else {}
        if wanted:
            self._lookup(wanted)
        with self._lock:
            for record in records:
                self._fill(record)

    def _learn(self, record: dict) -> None:
        instance_id = record.get("instance_id", "")
        if not events.is_real_instance_id(instance_id):
            return
        entry = self._entries.get(instance_id)
        if entry is None:
            entry = self._entries[instance_id] = _new_entry(instance_id)
            entry["first_seen"] = record.get("event_time", "")
        for name in IDENTITY_FIELDS:
            if record.get(name):
                entry[name] = record[name]
        event_time = record.get("event_time", "")
        if event_time > entry["last_seen"]:
            entry["last_seen"] = event_time
        if event_time and (not entry["first_seen"] or event_time < entry["first_seen"]):
            entry["first_seen"] = event_time
        state = record.get("state", "")
        if state and _state_key(event_time, state) >= _state_key(entry["last_state_time"], entry["last_state"]):
            entry["last_state"], entry["last_state_time"] = state, event_time
        if stop_cause.is_evidence(record):
            entry["evidence"] = _with_evidence(entry["evidence"], record)
        self._dirty.add(instance_id)

    def _wanted(self, records: list[dict]) -> dict[str, list[str]]:
        """{region: [ids]} of the batch's instances that no DescribeInstances answer has described yet, and
        that were not asked about lately (a released instance is never found)."""
        now = self._clock()
        wanted: dict[str, list[str]] = {}
        for record in records:
            instance_id = record.get("instance_id", "")
            entry = self._entries.get(instance_id)
            if entry is None or entry["described"] or now - self._looked_up.get(instance_id, -1e18) < LOOKUP_AGAIN_SECONDS:
                continue
            self._looked_up[instance_id] = now
            wanted.setdefault(entry["region_id"], []).append(instance_id)
        return wanted

    def _fill(self, record: dict) -> None:
        entry = self._entries.get(record.get("instance_id", ""))
        if entry is None:
            return
        for name in IDENTITY_FIELDS:
            if not record.get(name) and entry[name]:
                record[name] = entry[name]
        if record.get("state") in STOP_STATES and not record.get("stop_cause"):
            history = orjson.loads(entry["evidence"]) if entry["evidence"] else []
            record["stop_cause"] = stop_cause.classify(record, _instance(entry), history,
                                                       stop_cause.event_ms(record) / 1000)

    def remember(self, instance: Instance) -> None:
        """Learn from a DescribeInstances answer (an Instance from shipper.cloud.openapi)."""
        with self._lock:
            entry = self._entries.setdefault(instance.instance_id, _new_entry(instance.instance_id))
            tags = {_valid_text(k): _valid_text(v) for k, v in instance.tags.items()}
            updates = {"instance_name": instance.instance_name, "instance_type": instance.instance_type,
                       "region_id": instance.region_id, "zone_id": instance.zone_id,
                       "charge_type": instance.charge_type, "spot_strategy": instance.spot_strategy,
                       "private_ip": instance.private_ips[0] if instance.private_ips else "",
                       "public_ip": instance.public_ips[0] if instance.public_ips else "",
                       "tags": orjson.dumps(tags, option=orjson.OPT_SORT_KEYS).decode() if tags else ""}
            entry.update({k: _valid_text(v) for k, v in updates.items() if v})
            # What the instance is now, even when it is nothing: a lock lifted, no expiry.
            entry.update(status=_valid_text(instance.status), lock_reasons=",".join(instance.lock_reasons),
                         expired_time=instance.expired_time, described=format_time_ms(int(time.time() * 1000)))
            self._dirty.add(instance.instance_id)

    def size(self) -> int:
        """Instances known (for /metrics)."""
        return len(self._entries)

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
            rollback(self._conn)
            with self._lock:
                self._dirty |= saving
            raise
        return len(rows)

    def try_save(self) -> bool:
        """save(), never raising: a failure is logged once (one line) until a save succeeds again, and
        counted; the unsaved entries are retried by the next call. True when everything is saved."""
        try:
            self.save()
        except Exception as e:
            metrics.CACHE_SAVE_ERRORS.inc()
            if not self._save_failing:
                log.error("instance registry %s: save failed (%s); the entries stay in memory and the save is "
                          "retried every few seconds", self.path, e)
            self._save_failing = True
            return False
        if self._save_failing:
            log.info("instance registry %s: saved again", self.path)
        self._save_failing = False
        return True

    def close(self) -> None:
        self.try_save()
        self._conn.close()


def _new_entry(instance_id: str) -> dict:
    entry = dict.fromkeys(COLUMNS, "")
    entry["instance_id"] = instance_id
    return entry


def _state_key(event_time: str, state: str) -> tuple[str, int]:
    """Later event time wins; at the same time, the later place in the lifecycle (events.STATE_ORDER)."""
    return event_time, STATE_ORDER.get(state, -1)


def _with_evidence(evidence: str, record: dict) -> str:
    """The entry's evidence (JSON list) with this event added: only what can explain a stop, the newest kept."""
    kept = orjson.loads(evidence) if evidence else []
    uid = record.get("event_uid", "")
    if any(e["event_uid"] == uid for e in kept):
        return evidence
    kept.append({name: record.get(name, "") for name in ("event_uid", "event_name", "category", "event_time_ms")})
    kept.sort(key=stop_cause.event_ms)
    return orjson.dumps(kept[-MAX_EVIDENCE:]).decode()


def _instance(entry: dict) -> Instance | None:
    """The entry as the classifier reads an Instance; None until a DescribeInstances answer described it."""
    if not entry["described"]:
        return None
    tags = orjson.loads(entry["tags"]) if entry["tags"] else {}
    return Instance(instance_id=entry["instance_id"], status=entry["status"], tags=tags,
                    lock_reasons=tuple(r for r in entry["lock_reasons"].split(",") if r),
                    spot_strategy=entry["spot_strategy"], charge_type=entry["charge_type"],
                    expired_time=entry["expired_time"], zone_id=entry["zone_id"], region_id=entry["region_id"],
                    instance_type=entry["instance_type"], instance_name=entry["instance_name"])


def read_entry(path: str | Path, instance_id: str) -> dict | None:
    """One saved entry, for `shipper lifecycle` (which runs beside, not inside, `shipper run`); an entry
    saved by an earlier version lacks the newer columns."""
    path = Path(path)
    if not path.exists():
        return None
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        cursor = conn.execute("SELECT * FROM instances WHERE instance_id = ?", (instance_id,))
        row = cursor.fetchone()
        names = [d[0] for d in cursor.description]
    except sqlite3.Error:
        return None
    finally:
        conn.close()
    return dict(zip(names, row)) if row else None
