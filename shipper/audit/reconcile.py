"""The inventory against the trail: which holes the trail has, as `shipper-audit` records. Pure.

After each inventory sync, `reconcile` takes what the sync listed (a Snapshot), what the trail holds per
instance (Facts: a creation recorded, a release recorded, the last recorded state) and the findings still
open, and returns the records to write:
- `unrecorded-creation`: listed, created after the trail began, and no creation in the trail (no Pending
  state change, no successful RunInstances / CreateInstance / Create call);
- `baseline` (status `info`, once per instance): listed and created before the trail began, its creation
  not in the trail: what the trail cannot know, not a hole;
- `unrecorded-release`: the trail says it is alive (a state or a creation, no Deleted state and no successful
  DeleteInstance(s) / Release call), yet it is absent from RELEASE_AFTER_SYNCS consecutive complete syncs of
  its region. A sync where any region failed is incomplete: absence in it proves nothing;
- `state-drift`: DescribeInstances' status differs from the last recorded state, unchanged for at least the
  drift window (a state change still on its way is not drift).
A finding is written once (`finding_uid` is derived from what it is about, so a repeat is the same finding).
When the missing record arrives late (or the instance is listed again), one `cleared` record with the same
finding_uid follows; a finding's status is that of its latest record.

CreationTime has minute precision: an instance counts as older than the trail only when its whole creation
minute is before the trail's first record, so a creation the trail could hold is never excused.
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass, field

import orjson

from shipper.events import AUDIT_FIELDS
from shipper.instances.model import Instance
from shipper.times import format_time_ms, parse_minute_seconds

UNRECORDED_CREATION, UNRECORDED_RELEASE = "unrecorded-creation", "unrecorded-release"
STATE_DRIFT, BASELINE = "state-drift", "baseline"
KINDS = (UNRECORDED_CREATION, UNRECORDED_RELEASE, STATE_DRIFT, BASELINE)
OPEN, CLEARED, INFO = "open", "cleared", "info"   # a baseline is `info`: not a hole, nothing to alert on
ABSENT = "absent"                                  # inventory_status of an instance no sync lists
RELEASE_AFTER_SYNCS = 2
CREATION_MINUTE_MS = 60_000


@dataclass(frozen=True)
class Snapshot:
    """One inventory sync: every instance listed, the regions listed in full, and whether every region was."""
    taken_ms: int
    instances: dict[str, Instance]
    regions: frozenset = frozenset()
    complete: bool = True


@dataclass(frozen=True)
class Facts:
    """What the trail holds about one instance."""
    instance_id: str
    region_id: str = ""
    created: bool = False           # a Pending state change or a successful creation call
    released: bool = False          # a Deleted state change or a successful delete / release call
    last_state: str = ""            # the latest state change (ties: lifecycle order)
    last_state_ms: int = 0
    instance_name: str = ""
    instance_type: str = ""

    @property
    def alive(self) -> bool:
        """Whether the trail says the instance exists."""
        return (self.created or bool(self.last_state)) and not self.released


@dataclass(frozen=True)
class Trail:
    start_ms: int | None            # the first record's event time; None while the trail is empty
    instances: dict[str, Facts]


@dataclass(frozen=True)
class Memory:
    """What one reconciliation passes to the next (kept in memory: a restart only delays findings).
    `absent`: complete syncs in a row an instance the trail says is alive was not listed;
    `drift_since`: instance -> (what differs, when a sync first saw it differ)."""
    absent: dict = field(default_factory=dict)
    drift_since: dict = field(default_factory=dict)


def reconcile(snapshot: Snapshot, trail: Trail, open_findings: list[dict], memory: Memory,
              drift_window_ms: int) -> tuple[list[dict], Memory]:
    """The records to write after this sync (new findings and clearings), and the memory for the next one.
    `open_findings`: the latest record of each finding whose status is open or info."""
    memory = _remember(snapshot, trail, memory)
    records, standing = [], set()
    for finding in open_findings:
        why = _resolution(finding, snapshot, trail)
        if why:
            records.append(_cleared(finding, why, snapshot.taken_ms))
        else:
            standing.add((finding["finding"], finding["instance_id"]))
    for record in _found(snapshot, trail, memory, drift_window_ms):
        if (record["finding"], record["instance_id"]) not in standing:
            records.append(record)
    return records, memory


def creation_verdict(instance: Instance, facts: Facts | None, trail_start_ms: int | None) -> str:
    """For a listed instance with no creation in the trail: baseline when it predates the trail (or the trail
    is empty, or its creation time is unknown), else unrecorded-creation; "" when its creation is recorded."""
    if facts is not None and facts.created:
        return ""
    created = parse_minute_seconds(instance.creation_time)
    if trail_start_ms is None or created is None or created * 1000 + CREATION_MINUTE_MS <= trail_start_ms:
        return BASELINE
    return UNRECORDED_CREATION


def finding_uid(kind: str, instance_id: str, basis: str = "") -> str:
    """The same finding always gets the same uid; `basis` tells apart drifts from different recorded states."""
    return hashlib.sha256(f"{kind}\n{instance_id}\n{basis}".encode()).hexdigest()[:32]


def _remember(snapshot: Snapshot, trail: Trail, memory: Memory) -> Memory:
    absent = {}
    for instance_id, facts in trail.instances.items():
        if not facts.alive or instance_id in snapshot.instances:
            continue
        count = memory.absent.get(instance_id, 0)
        if snapshot.complete and facts.region_id in snapshot.regions:
            count += 1
        if count:
            absent[instance_id] = count
    drift_since = {} if snapshot.complete else {
        i: seen for i, seen in memory.drift_since.items() if i not in snapshot.instances}
    for instance_id, instance in snapshot.instances.items():
        basis = _drift_basis(instance, trail.instances.get(instance_id))
        if basis:
            before = memory.drift_since.get(instance_id)
            drift_since[instance_id] = before if before and before[0] == basis else (basis, snapshot.taken_ms)
    return Memory(absent=absent, drift_since=drift_since)


def _drift_basis(instance: Instance, facts: Facts | None) -> str:
    """What differs ("" when nothing does): the recorded state, its time and the listed status."""
    if facts is None or not facts.last_state or not instance.status or instance.status == facts.last_state:
        return ""
    return f"{facts.last_state}@{facts.last_state_ms}>{instance.status}"


def _found(snapshot: Snapshot, trail: Trail, memory: Memory, drift_window_ms: int) -> list[dict]:
    found = []
    start = format_time_ms(trail.start_ms) if trail.start_ms is not None else "(empty)"
    for instance_id, instance in snapshot.instances.items():
        facts = trail.instances.get(instance_id)
        verdict = creation_verdict(instance, facts, trail.start_ms)
        if verdict:
            when = instance.creation_time or "at an unknown time"
            why = (f"created {when}, before the trail begins ({start}): its earlier life is not in the trail"
                   if verdict == BASELINE else
                   f"listed, created {when} after the trail began ({start}), and no creation is recorded")
            found.append(_new(verdict, instance_id, instance, facts, snapshot.taken_ms, why))
        since = memory.drift_since.get(instance_id)
        if since and snapshot.taken_ms - since[1] >= drift_window_ms:
            why = (f"DescribeInstances says {instance.status} since {format_time_ms(since[1])} or earlier; "
                   f"the last recorded state is {facts.last_state} at {format_time_ms(facts.last_state_ms)}")
            found.append(_new(STATE_DRIFT, instance_id, instance, facts, snapshot.taken_ms, why,
                              basis=f"{facts.last_state}@{facts.last_state_ms}"))
    for instance_id, count in memory.absent.items():
        if count >= RELEASE_AFTER_SYNCS:
            facts = trail.instances[instance_id]
            why = (f"the trail says it is alive ({facts.last_state or 'created'}), yet {count} complete inventory "
                   "syncs in a row did not list it, and no Deleted event or release call is recorded")
            found.append(_new(UNRECORDED_RELEASE, instance_id, None, facts, snapshot.taken_ms, why))
    return found


def _resolution(finding: dict, snapshot: Snapshot, trail: Trail) -> str:
    """Why an open finding no longer holds ("" while it does)."""
    instance_id, kind = finding["instance_id"], finding["finding"]
    facts = trail.instances.get(instance_id) or Facts(instance_id)
    instance = snapshot.instances.get(instance_id)
    if kind in (UNRECORDED_CREATION, BASELINE):
        if facts.created:
            return "its creation is now recorded"
        if instance is not None and creation_verdict(instance, facts, trail.start_ms) != kind:
            return ("the trail now begins before its creation" if kind == BASELINE
                    else "it was created before the trail begins")
        return ""
    if kind == UNRECORDED_RELEASE:
        if facts.released:
            return "its release is now recorded"
        return "the inventory lists it again" if instance is not None else ""
    if kind == STATE_DRIFT:
        recorded_ms = int(orjson.loads(finding.get("detail") or "{}").get("recorded_state_ms", 0))
        if facts.released or facts.last_state_ms > recorded_ms:
            return "a later state change is now recorded"
        if instance is not None and instance.status == facts.last_state:
            return f"DescribeInstances says {instance.status} again, as recorded"
    return ""


def _new(kind: str, instance_id: str, instance: Instance | None, facts: Facts | None, found_ms: int, why: str,
         basis: str = "") -> dict:
    facts = facts or Facts(instance_id)
    detail = {"why": why}
    if facts.last_state:
        detail |= {"recorded_state_time": format_time_ms(facts.last_state_ms), "recorded_state_ms": facts.last_state_ms}
    if instance is not None and instance.creation_time:
        detail["creation_time"] = instance.creation_time
    return {
        "finding_uid": finding_uid(kind, instance_id, basis),
        "finding": kind,
        "status": INFO if kind == BASELINE else OPEN,
        "instance_id": instance_id,
        "region_id": (instance.region_id if instance else "") or facts.region_id,
        "instance_name": (instance.instance_name if instance else "") or facts.instance_name,
        "instance_type": (instance.instance_type if instance else "") or facts.instance_type,
        "inventory_status": instance.status if instance else ABSENT,
        "recorded_state": facts.last_state,
        "found_time": format_time_ms(found_ms),
        "detail": orjson.dumps(detail).decode(),
    }


def _cleared(finding: dict, why: str, found_ms: int) -> dict:
    record = {name: finding.get(name, "") for name in AUDIT_FIELDS}
    detail = orjson.loads(finding.get("detail") or "{}")
    record.update(status=CLEARED, found_time=format_time_ms(found_ms),
                  detail=orjson.dumps(detail | {"cleared": why}).decode())
    return record
