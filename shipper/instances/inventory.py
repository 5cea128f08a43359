"""What the cloud says exists: the inventory sync and the lookups that feed the instance registry.

Both only read (ecs:DescribeInstances, and ecs:DescribeRegions for `regions = ["all"]`). Every answer reaches
the registry through the OpenAPI client's `on_instance`, so nothing here writes the registry itself.
- The sync lists every instance of every configured region (paged), at start and every `interval_seconds`:
  an instance released while shipper was down, or whose events arrive out of order, is still known by name,
  type and zone when its Deleted event comes.
- The lookups ask about the instances of a batch that no answer has described yet: up to 100 ids per call,
  one call per region, within `lookup_wait_ms`; what is not answered in time is written as it is (the late
  answer still fills the registry for the next events), and a failed lookup is counted, never raised.
"""
from __future__ import annotations

import concurrent.futures
import logging
import threading
import time
from typing import Callable

from shipper.audit.reconcile import Snapshot
from shipper.cloud import CloudError
from shipper.telemetry import metrics

log = logging.getLogger("shipper.instances.inventory")

IDS_PER_CALL = 100  # DescribeInstances InstanceIds (reference/openapi.md, DescribeInstances)


class InventorySync:
    """A thread that lists the fleet into the registry at start and every `interval_seconds`."""

    def __init__(self, openapi, interval_seconds: float, on_synced: Callable[[Snapshot], None] | None = None):
        """`on_synced` hears of each sync's Snapshot (the audit's reconciliation), on the sync's thread."""
        self._openapi = openapi
        self._interval = interval_seconds
        self._on_synced = on_synced
        self._stop = threading.Event()
        self.first_done = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="shipper-inventory", daemon=True)

    def start(self) -> "InventorySync":
        self._thread.start()
        return self

    def sync(self) -> int:
        """List every configured region once; returns the instances seen. A region that fails is logged
        and counted and the others still listed: the next sync tries it again, and this sync's Snapshot is
        incomplete (its absences prove nothing)."""
        taken_ms = int(time.time() * 1000)
        try:
            regions = self._openapi.regions()
        except CloudError as e:
            metrics.INVENTORY_ERRORS.inc(labels={"region": "all"})
            log.error("inventory: DescribeRegions failed (%s: %s); next try in %.0f s", e.code, e.message, self._interval)
            self._synced(Snapshot(taken_ms, {}, frozenset(), complete=False))
            return 0
        started, seen, listed = time.monotonic(), {}, set()
        for region in regions:
            try:
                seen.update((i.instance_id, i) for i in self._openapi.list_instances(region))
                listed.add(region)
            except CloudError as e:
                metrics.INVENTORY_ERRORS.inc(labels={"region": region})
                log.error("inventory: DescribeInstances in %s failed (%s: %s); next try in %.0f s",
                          region, e.code, e.message, self._interval)
        metrics.INVENTORY_INSTANCES.set(len(seen))
        log.info("inventory: %d instances in %d region(s) in %.1f s", len(seen), len(regions), time.monotonic() - started)
        self._synced(Snapshot(taken_ms, seen, frozenset(listed), complete=len(listed) == len(regions)))
        return len(seen)

    def _synced(self, snapshot: Snapshot) -> None:
        if self._on_synced:
            self._on_synced(snapshot)

    def _loop(self) -> None:
        while True:
            try:
                self.sync()
            except Exception:  # a bug here must cost one sync, never the process
                log.exception("inventory sync failed")
            self.first_done.set()
            if self._stop.wait(self._interval):
                return

    def close(self) -> None:
        self._stop.set()


class Lookups:
    """The registry's Lookup: DescribeInstances of unknown instances, batched per region, bounded in time."""

    def __init__(self, openapi, wait_seconds: float, default_region: str):
        self._openapi = openapi
        self._wait = wait_seconds
        self._default_region = default_region
        self._pool = concurrent.futures.ThreadPoolExecutor(max_workers=2, thread_name_prefix="shipper-lookup")

    def __call__(self, wanted: dict[str, list[str]]) -> None:
        calls = [(region or self._default_region, ids[i:i + IDS_PER_CALL])
                 for region, ids in wanted.items() for i in range(0, len(ids), IDS_PER_CALL)]
        futures = {self._pool.submit(self._describe, region, ids): len(ids) for region, ids in calls}
        _, late = concurrent.futures.wait(futures, timeout=self._wait)
        if late:
            metrics.LOOKUPS.inc(sum(futures[f] for f in late), labels={"outcome": "late"})

    def _describe(self, region: str, ids: list[str]) -> None:
        try:
            found = self._openapi.describe_instances(ids, region)
        except Exception as e:  # CloudError, or a bug: the rows are written as they are either way
            metrics.LOOKUPS.inc(len(ids), labels={"outcome": "failed"})
            log.warning("inventory: lookup of %d instance(s) in %s failed (%s); their rows are written as they are",
                        len(ids), region, getattr(e, "code", type(e).__name__))
            return
        metrics.LOOKUPS.inc(len(found), labels={"outcome": "found"})
        metrics.LOOKUPS.inc(len(ids) - len(found), labels={"outcome": "absent"})

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)
