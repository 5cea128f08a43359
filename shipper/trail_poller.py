"""The ActionTrail poller: every interval, each region's ECS write calls into `ecs-events` as api-call records.

- A cursor per region in <data_dir>/actiontrail.json: the end of the last window whose records committed.
  A restart goes on from there; without one, the first window starts `start_days` back.
- Each window starts `overlap_seconds` before the cursor: ActionTrail delivers an event about 10 minutes
  after the call (reference/actiontrail.md §1.11), so a call not yet visible at one poll is asked for again
  at the next ones. A call seen again keeps its event_uid: the poller skips those it committed within the
  overlap, and after a restart the ledger (SLS) and the store's unique uid (SQLite) drop the copies.
- The cursor moves only after done(True): records that did not commit are asked for again.
- A failure (LookupEvents in a region, a store) costs one line in the log and a count, and the region is
  asked again at the next interval; nothing raises out of the thread.
"""
from __future__ import annotations

import json
import logging
import os
import threading
import time
from pathlib import Path
from typing import Callable

from shipper import events, trail
from shipper.cloud import CloudError
from shipper.config import TRAIL_RETENTION_DAYS, ActionTrailSettings
from shipper.pipeline import INTERNAL_ERROR
from shipper.telemetry import metrics
from shipper.times import format_time_ms

log = logging.getLogger("shipper.actiontrail")

STATE_FILE = "actiontrail.json"
COMMIT_WAIT_SECONDS = 120.0     # a window whose records are not committed by then is asked for again

Record = Callable[[str, list, Callable[[bool], None]], None]  # Pipeline.record


def state_path(data_dir: str) -> Path:
    return Path(data_dir) / STATE_FILE


class TrailPoller:
    def __init__(self, actiontrail, regions: Callable[[], list[str]], record: Record, settings: ActionTrailSettings,
                 path: Path, *, clock: Callable[[], float] = time.time):
        """`actiontrail`: a cloud.actiontrail.ActionTrail; `regions`: OpenApi.regions."""
        self._actiontrail = actiontrail
        self._regions = regions
        self._record = record
        self._settings = settings
        self._path = path
        self._clock = clock
        self._cursors: dict[str, int] = _load(path)
        self._committed: dict[str, dict[str, int]] = {}   # region -> uid -> event_time_ms, within the overlap
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="shipper-actiontrail", daemon=True)

    def start(self) -> "TrailPoller":
        self._thread.start()
        return self

    def close(self) -> None:
        self._stop.set()

    def poll(self) -> int:
        """Ask every region once; returns the api-call records committed. A region that fails is logged and
        counted, and the others are still asked."""
        try:
            regions = self._regions()
        except CloudError as e:
            metrics.TRAIL_ERRORS.inc(labels={"region": "all"})
            log.error("actiontrail: DescribeRegions failed (%s); next try in %.0f s", e.code, self._settings.interval_seconds)
            return 0
        return sum(self._poll_region(region) for region in regions)

    def _poll_region(self, region: str) -> int:
        now_ms = int(self._clock() * 1000)
        cursor = self._cursors.get(region)
        if cursor is None:
            start_ms = now_ms - int(self._settings.start_days * 86_400_000)
        else:
            start_ms = min(cursor, now_ms) - int(self._settings.overlap_seconds * 1000)
        start_ms = max(start_ms, now_ms - TRAIL_RETENTION_DAYS * 86_400_000)  # nothing older is kept
        committed = self._committed.setdefault(region, {})
        try:
            found = [record for event in self._actiontrail.lookup_events(region, start_ms, now_ms)
                     for record in self._records(region, event, now_ms)]
        except CloudError as e:
            metrics.TRAIL_ERRORS.inc(labels={"region": region})
            log.error("actiontrail: LookupEvents in %s failed (%s); next try in %.0f s", region, e,
                      self._settings.interval_seconds)
            return 0
        new = [r for r in found if r["event_uid"] not in committed]
        if new and not self._commit(new):
            metrics.TRAIL_ERRORS.inc(labels={"region": region})
            log.error("actiontrail: %d call record(s) of %s were not committed; asking again in %.0f s",
                      len(new), region, self._settings.interval_seconds)
            return 0
        metrics.TRAIL_CALLS.inc(len(new))
        committed.update((r["event_uid"], int(r["event_time_ms"])) for r in new)
        oldest_asked_next = now_ms - int(self._settings.overlap_seconds * 1000)
        self._committed[region] = {uid: ms for uid, ms in committed.items() if ms >= oldest_asked_next}
        self._cursors[region] = now_ms
        self._save()
        return len(new)

    def _records(self, region: str, event: dict, now_ms: int) -> list[dict]:
        """The event's api-call records. An event the mapper fails on (a bug) is dead-lettered with the reason, so
        it can neither stop the region's cursor for ever nor be lost."""
        try:
            return trail.records(event, now_ms)
        except Exception as e:
            log.exception("actiontrail: cannot map an event of %s; dead-lettering it", region)
            raw = json.dumps(event, default=str, ensure_ascii=False).encode("utf-8")
            letter = events.dead_letter(reason=INTERNAL_ERROR, source=f"actiontrail:{region}",
                                        message_id=str(event.get("eventId", "")),
                                        received_time=format_time_ms(now_ms),
                                        error=f"{type(e).__name__} while mapping", raw=raw)
            self._record(events.DEADLETTER_TABLE, [letter], lambda ok: None)  # if lost, the next poll asks again
            return []

    def _commit(self, records: list[dict]) -> bool:
        """Through the pipeline into every sink; True once done(True)."""
        finished = threading.Event()
        outcome: list[bool] = []

        def done(ok: bool) -> None:
            outcome.append(ok)
            finished.set()

        self._record(events.EVENTS_TABLE, records, done)
        return finished.wait(COMMIT_WAIT_SECONDS) and outcome == [True]

    def _save(self) -> None:
        """The cursors, replaced whole (a crash leaves the old file or the new one, never half of one)."""
        temporary = self._path.with_name(self._path.name + ".tmp")
        try:
            self._path.parent.mkdir(parents=True, exist_ok=True)
            temporary.write_text(json.dumps({"regions": self._cursors}, sort_keys=True))
            os.replace(temporary, self._path)
        except OSError as e:
            metrics.TRAIL_ERRORS.inc(labels={"region": "all"})
            log.error("actiontrail: cannot save the cursor to %s (%s); a restart asks again from the last saved one",
                      self._path, e.strerror or e)

    def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                self.poll()
            except Exception:  # a bug here must cost one poll, never the process
                log.exception("actiontrail poll failed")
            self._stop.wait(self._settings.interval_seconds)


def _load(path: Path) -> dict[str, int]:
    """The saved cursors; none (a first poll) when the file is missing or unreadable, said once in the log."""
    try:
        regions = json.loads(path.read_text())["regions"]
        return {str(region): int(ms) for region, ms in regions.items()}
    except FileNotFoundError:
        return {}
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as e:
        log.warning("actiontrail: cannot read the cursor in %s (%s); starting as a first poll", path, e)
        return {}
