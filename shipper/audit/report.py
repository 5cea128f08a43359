"""The trail's facts and the audit findings, read from a store; the completeness report; the runner's step
after each inventory sync.

Each read is one SLS query text run by the store (shipper.read.stores): the SQLite store translates it, SLS
runs it as written, so both answer alike. Only aggregates that copies cannot change (min, max, max_by,
count_if > 0) are used: SLS may hold a redelivered event twice.
"""
from __future__ import annotations

import logging
from collections import Counter
from dataclasses import dataclass
from typing import Callable

from shipper import events
from shipper.audit.reconcile import (BASELINE, INFO, KINDS, OPEN, Facts, Memory, Snapshot, Trail, reconcile)
from shipper.dashboards.rules import LAST_STATE_KEY
from shipper.times import format_time_ms

log = logging.getLogger("shipper.audit")

MAX_ROWS = 1_000_000  # the largest LIMIT SLS takes in a SQL part (reference/sls.md §7)
# The calls that create or release an instance (api-call records, shipper/trail.py); only successful ones count.
CREATION_CALLS = ("RunInstances", "CreateInstance", "Create")
RELEASE_CALLS = ("DeleteInstance", "DeleteInstances", "Release")


def _succeeded(calls: tuple[str, ...]) -> str:
    names = ", ".join(f"'ActionTrail:{name}'" for name in calls)
    return f"(category = 'api-call' and error_code = '' and event_name in ({names}))"


FACTS_QUERY = (
    "* | select instance_id, min(event_time_ms) as first_ms, max(region_id) as region_id, "
    "max(instance_name) as instance_name, max(instance_type) as instance_type, "
    f"count_if(state = 'Pending' or {_succeeded(CREATION_CALLS)}) as creations, "
    f"count_if(state = 'Deleted' or {_succeeded(RELEASE_CALLS)}) as releases "
    f"group by instance_id limit {MAX_ROWS}")
STATES_QUERY = (
    'event_name: "Instance:StateChange" | select instance_id, '
    f"max_by(state, {LAST_STATE_KEY}) as last_state, max(event_time_ms) as last_state_ms "
    f"group by instance_id limit {MAX_ROWS}")
# The latest record of each finding (its status is that record's).
FINDINGS_QUERY = (
    "* | select finding_uid, "
    + ", ".join(f"max_by({name}, found_time) as {name}" for name in events.AUDIT_FIELDS if name != "finding_uid")
    + f" group by finding_uid limit {MAX_ROWS}")


def _number(value) -> int:
    """A SQL result cell as an int: SQLite gives numbers, SLS gives text."""
    return int(float(value)) if value not in ("", None) else 0


def read_trail(store) -> Trail:
    """Every instance the trail names, with what it holds about each, and when the trail begins."""
    facts = store.search(FACTS_QUERY, table=events.EVENTS_TABLE, limit=MAX_ROWS).as_dicts()
    states = {row["instance_id"]: row for row in
              store.search(STATES_QUERY, table=events.EVENTS_TABLE, limit=MAX_ROWS).as_dicts()}
    start = min((_number(row["first_ms"]) for row in facts), default=None)
    instances = {}
    for row in facts:
        instance_id = row["instance_id"] or ""
        if not events.is_real_instance_id(instance_id):
            continue
        state = states.get(instance_id, {})
        instances[instance_id] = Facts(
            instance_id=instance_id, region_id=row["region_id"] or "", created=_number(row["creations"]) > 0,
            released=_number(row["releases"]) > 0, last_state=state.get("last_state") or "",
            last_state_ms=_number(state.get("last_state_ms")), instance_name=row["instance_name"] or "",
            instance_type=row["instance_type"] or "")
    return Trail(start_ms=start, instances=instances)


def read_findings(store) -> list[dict]:
    """The latest record of every finding ever made."""
    rows = store.search(FINDINGS_QUERY, table=events.AUDIT_TABLE, limit=MAX_ROWS).as_dicts()
    return [{name: "" if row.get(name) is None else str(row[name]) for name in events.AUDIT_FIELDS} for row in rows]


def standing(findings: list[dict]) -> list[dict]:
    """The findings that still hold: open ones and baselines."""
    return [f for f in findings if f["status"] in (OPEN, INFO)]


@dataclass(frozen=True)
class Report:
    """`shipper audit`: how far the trail reaches and which holes it has."""
    trail_start: str            # "" while the trail is empty
    instances: int              # instances the trail names
    created_in_trail: int       # ... whose creation it holds
    baseline: int               # listed instances older than the trail
    open: dict                  # kind -> open findings
    findings: list              # the open findings, oldest first

    @property
    def open_total(self) -> int:
        return sum(self.open.values())

    def as_dict(self) -> dict:
        return {"trail_start": self.trail_start, "instances": self.instances,
                "created_in_trail": self.created_in_trail, "baseline": self.baseline, "open": self.open,
                "open_total": self.open_total, "findings": self.findings}


def completeness(store) -> Report:
    trail = read_trail(store)
    findings = read_findings(store)
    open_findings = sorted((f for f in findings if f["status"] == OPEN), key=lambda f: (f["found_time"], f["instance_id"]))
    return Report(
        trail_start=format_time_ms(trail.start_ms) if trail.start_ms is not None else "",
        instances=len(trail.instances),
        created_in_trail=sum(1 for f in trail.instances.values() if f.created),
        baseline=sum(1 for f in findings if f["finding"] == BASELINE and f["status"] == INFO),
        open={kind: sum(1 for f in open_findings if f["finding"] == kind) for kind in KINDS if kind != BASELINE},
        findings=open_findings)


class Auditor:
    """After each inventory sync (InventorySync's on_synced): read the trail and the findings that still hold,
    reconcile, and hand the new records to `record`. Never raises: a failure costs one reconciliation."""

    def __init__(self, open_store: Callable[[], object], record: Callable[[list[dict]], None],
                 drift_window_seconds: float):
        self._open_store = open_store
        self._store = None
        self._record = record
        self._drift_window_ms = int(drift_window_seconds * 1000)
        self._memory = Memory()

    def on_synced(self, snapshot: Snapshot) -> None:
        try:
            if self._store is None:
                self._store = self._open_store()
            records, self._memory = reconcile(snapshot, read_trail(self._store), standing(read_findings(self._store)),
                                              self._memory, self._drift_window_ms)
        except Exception as e:  # the store unreadable, a query refused, or a bug: the next sync tries again
            log.error("audit: reconciliation after the inventory sync failed (%s: %s); the next sync tries again",
                      type(e).__name__, e)
            return
        if records:
            counts = Counter((r["finding"], r["status"]) for r in records)
            log.info("audit: %s", ", ".join(f"{n} {kind} {status}" for (kind, status), n in sorted(counts.items())))
            self._record(records)

