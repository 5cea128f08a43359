"""`shipper backfill`: a new installation filled from ActionTrail's history (up to 90 days) and the inventory,
so its first day already answers which instances existed and who created and released them.

- The history is asked region by region, oldest first (LookupEvents through shipper/cloud/actiontrail.py,
  30-day windows, paged), and its calls become api-call records (shipper/trail.py: `"source": "backfill"` in
  their detail, the poller's event_uid) committed through the normal pipeline and sinks. Running it
  twice adds nothing: the stores keep one record per event_uid.
- After every BATCH_EVENTS events are committed, the checkpoint (<data_dir>/backfill.json) says how far each
  region got: an interrupted backfill, run again, resumes its own window there. A finished one is forgotten:
  the next run is a new one.
- The inventory (every instance of every region, DescribeInstances) fills the instance registry first, so
  the records carry names, types and zones, and `shipper audit` can tell the instances older than the trail.
"""
from __future__ import annotations

import os
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import orjson

from shipper import events, trail
from shipper.times import format_time_ms

BATCH_EVENTS = 500   # api-call records per commit (and checkpoint)


def checkpoint_path(data_dir: str | Path) -> Path:
    return Path(data_dir) / "backfill.json"


@dataclass(frozen=True)
class Plan:
    """One backfill's window, and per region the event time up to which its history is committed."""
    start_ms: int
    end_ms: int
    done: dict

    def resume_at(self, region: str) -> int:
        return self.done.get(region, self.start_ms)


def plan(path: Path, start_ms: int, end_ms: int) -> tuple[Plan, bool]:
    """The unfinished backfill of the checkpoint if there is one (resumed: True), else a new one."""
    try:
        saved = orjson.loads(path.read_bytes())
        return Plan(int(saved["start_ms"]), int(saved["end_ms"]), dict(saved["done"])), True
    except FileNotFoundError:
        return Plan(start_ms, end_ms, {}), False
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise BackfillError(f"{path}: unreadable backfill checkpoint ({e}); remove it to start over") from None


def save(path: Path, current: Plan) -> None:
    """Write the checkpoint atomically: a crash leaves the old one or the new one."""
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_bytes(orjson.dumps({"start_ms": current.start_ms, "end_ms": current.end_ms, "done": current.done}))
    os.replace(tmp, path)


class BackfillError(Exception):
    """The backfill cannot go on; the message names what and how to fix it."""


@dataclass
class Summary:
    regions: int = 0
    calls: int = 0          # ActionTrail events read
    records: int = 0        # api-call records handed to the sinks (those already stored are kept once)
    instances: int = 0      # instances the inventory listed
    resumed: bool = False
    window: str = ""


def run(pipeline, openapi, actiontrail, path: Path, start_ms: int, end_ms: int,
        on_progress: Callable[[int], None] = lambda ms: None, set_total: Callable[[int], None] = lambda ms: None,
        received_ms: Callable[[], int] = lambda: int(time.time() * 1000)) -> Summary:
    """Backfill every region of `openapi` into the started `pipeline`. Events come oldest first; after each
    BATCH_EVENTS are committed the checkpoint at `path` moves to the last one's time (a resumed run asks
    again from that second: what it finds twice is stored once). Progress is in ms of history covered.
    The checkpoint is removed at the end. Raises CloudError (a call failed after its retries: what was
    committed stays, run again to resume) or BackfillError."""
    current, resumed = plan(path, start_ms, end_ms)
    regions = openapi.regions()
    summary = Summary(regions=len(regions), resumed=resumed,
                      window=f"{format_time_ms(current.start_ms)} .. {format_time_ms(current.end_ms)}")
    summary.instances = sum(1 for region in regions for _ in openapi.list_instances(region))
    set_total(sum(current.end_ms - current.resume_at(region) for region in regions))
    for region in (r for r in regions if current.resume_at(r) < current.end_ms):
        mark, batch = current.resume_at(region), []
        for event in actiontrail.lookup_events(region, mark, current.end_ms):
            summary.calls += 1
            batch += trail.records(event, received_ms(), source="backfill")
            if len(batch) >= BATCH_EVENTS:
                mark = _checkpoint(pipeline, path, current, region, batch, int(batch[-1]["event_time_ms"]),
                                   mark, on_progress, summary)
                batch = []
        _checkpoint(pipeline, path, current, region, batch, current.end_ms, mark, on_progress, summary)
    path.unlink()
    return summary


def _checkpoint(pipeline, path: Path, current: Plan, region: str, records: list[dict], upto_ms: int, mark: int,
                on_progress: Callable[[int], None], summary: Summary) -> int:
    """Commit records, then record the region done up to `upto_ms`; returns the new mark."""
    _commit(pipeline, records)
    summary.records += len(records)
    current.done[region] = max(mark, upto_ms)
    save(path, current)
    on_progress(current.done[region] - mark)
    return current.done[region]


def _commit(pipeline, records: list[dict]) -> None:
    """Hand records to the pipeline and wait until every sink has them."""
    if not records:
        return
    outcome, settled = [], threading.Event()

    def done(committed: bool) -> None:
        outcome.append(committed)
        settled.set()

    pipeline.record(events.EVENTS_TABLE, records, done)
    settled.wait()
    if not outcome[0]:
        raise BackfillError("a day of history could not be written to the stores (see the errors above); "
                            "run `shipper backfill` again to resume")
