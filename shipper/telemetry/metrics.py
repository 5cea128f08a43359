"""Process-wide counters, gauges and histograms on one prometheus_client registry, served at /metrics.

Call sites use one form whatever the metric: `X.inc(n, labels={...})`, `X.set(v)`, `X.observe(s)`; `value()`
and `total()` read a metric back (the progress line, tests). Labels carry only reason codes, hook, sink,
source and region names: never message content, instance ids or credentials.
"""
from __future__ import annotations

import math
import time
from typing import Callable

import prometheus_client
from prometheus_client import CollectorRegistry, PlatformCollector, ProcessCollector
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

prometheus_client.disable_created_metrics()  # a `_created` series per counter doubles /metrics for nothing
REGISTRY = CollectorRegistry()
ProcessCollector(registry=REGISTRY)   # CPU seconds, resident memory, open files, start time
PlatformCollector(registry=REGISTRY)  # the Python version
CONTENT_TYPE = prometheus_client.CONTENT_TYPE_LATEST


class _Metric:
    """A prometheus_client metric with its label names declared once, and shipper's call form."""

    def __init__(self, kind, name: str, help_text: str, labels: tuple[str, ...] = (), **options):
        self._metric = kind(name, help_text, labels, registry=REGISTRY, **options)
        self._sample = name if kind is not prometheus_client.Counter else name.removesuffix("_total") + "_total"

    def _child(self, labels: dict | None):
        return self._metric.labels(**labels) if labels else self._metric

    def value(self, labels: dict | None = None) -> float:
        wanted = labels or {}
        return sum(s.value for s in self._samples() if s.labels == wanted)

    def total(self) -> float:
        return sum(s.value for s in self._samples())

    def _samples(self):
        return [s for family in self._metric.collect() for s in family.samples if s.name == self._sample]


class Counter(_Metric):
    def __init__(self, name: str, help_text: str, labels: tuple[str, ...] = ()):
        super().__init__(prometheus_client.Counter, name, help_text, labels)

    def inc(self, amount: float = 1, labels: dict | None = None) -> None:
        self._child(labels).inc(amount)


class Gauge(_Metric):
    def __init__(self, name: str, help_text: str, labels: tuple[str, ...] = ()):
        super().__init__(prometheus_client.Gauge, name, help_text, labels)

    def set(self, value: float, labels: dict | None = None) -> None:
        self._child(labels).set(value)

    def set_function(self, function: Callable[[], float]) -> None:
        """Read at scrape time (sizes of stores); a failing read shows NaN, never fails the scrape."""
        def safe() -> float:
            try:
                return function()
            except Exception:
                return math.nan
        self._metric.set_function(safe)


class Histogram(_Metric):
    def __init__(self, name: str, help_text: str, labels: tuple[str, ...] = (), buckets: tuple = ()):
        super().__init__(prometheus_client.Histogram, name, help_text, labels, buckets=buckets)
        self._sample = name + "_count"

    def observe(self, value: float, labels: dict | None = None) -> None:
        self._child(labels).observe(value)


class SinceLast(Collector):
    """Seconds since the last `mark(label)`, per label value, computed when scraped; a label never marked
    has no sample (no commit yet is not "0 seconds ago")."""

    def __init__(self, name: str, help_text: str, label: str):
        self.name, self.help, self.label = name, help_text, label
        self._last: dict[str, float] = {}
        REGISTRY.register(self)

    def mark(self, value: str) -> None:
        self._last[value] = time.monotonic()

    def seconds(self, value: str) -> float | None:
        at = self._last.get(value)
        return None if at is None else time.monotonic() - at

    def collect(self):
        family = GaugeMetricFamily(self.name, self.help, labels=[self.label])
        for value in list(self._last):
            family.add_metric([value], self.seconds(value))
        yield family


MESSAGES = Counter("shipper_messages_received_total", "Messages handed to the pipeline by sources.")
EVENTS_RECEIVED = Counter("shipper_events_received_total", "Events decoded from messages.")
EVENTS_COMMITTED = Counter("shipper_events_committed_total", "Events committed to every sink (messages acknowledged).")
EVENTS_STORED = Counter("shipper_events_stored_total", "Rows new to a sink (repeats of an event_uid are not counted by SQLite).",
                        ("sink",))
DEAD_LETTERS = Counter("shipper_dead_letters_total", "Messages dead-lettered, by reason code.", ("reason",))
SINK_ERRORS = Counter("shipper_sink_errors_total", "Batch writes a sink refused.", ("sink",))
CACHE_SAVE_ERRORS = Counter("shipper_cache_save_errors_total",
                            "Instance cache saves that failed; the entries stay unsaved and are saved again next time.")
LEDGER_ERRORS = Counter("shipper_ledger_errors_total",
                        "Delivery ledger reads or writes that failed; the sinks wrote anyway (copies possible).")
COPIES_DROPPED = Counter("shipper_copies_dropped_total",
                         "Event copies a sink did not send: repeated in the batch, or already in the ledger.", ("sink",))
SLS_UNKNOWN_OUTCOMES = Counter("shipper_sls_unknown_outcomes_total",
                               "PutLogs requests with no answer (lost, or their process killed), by how they were "
                               "settled: checked (GetLogs told what landed), unchecked (GetLogs failed: sent again).",
                               ("settled",))
HTTP_REQUESTS = Counter("shipper_http_requests_total", "HTTP source requests by status code.", ("code",))
HTTP_TOKEN_LOCKOUTS = Counter("shipper_http_token_lockouts_total",
                              "Client addresses answered 429 for a while after too many missing or wrong tokens.")
MNS_ERRORS = Counter("shipper_mns_errors_total",
                     "MNS calls that failed, by operation (receive, delete, extend) and error code.", ("operation", "code"))
HOOK_DECISIONS = Counter("shipper_hook_decisions_total",
                         "Hook decisions (the first record of each hook run), by hook, decision and reason.",
                         ("hook", "decision", "reason"))
INVENTORY_INSTANCES = Gauge("shipper_inventory_instances", "Instances the last inventory sync listed.")
INVENTORY_ERRORS = Counter("shipper_inventory_errors_total", "Inventory syncs of a region that failed, by region.",
                           ("region",))
TRAIL_CALLS = Counter("shipper_actiontrail_calls_total", "ECS calls ActionTrail reported, as api-call records committed.")
TRAIL_ERRORS = Counter("shipper_actiontrail_errors_total", "ActionTrail polls of a region that failed, by region.",
                       ("region",))
LOOKUPS = Counter("shipper_instance_lookups_total",
                  "Instances looked up by DescribeInstances before their events were written, by outcome "
                  "(found, absent: released, failed, late: not answered within lookup_wait_ms).", ("outcome",))
INFLIGHT = Gauge("shipper_inflight_events", "Records buffered and not yet committed.")
LEDGER_ENTRIES = Gauge("shipper_ledger_entries", "event_uids the delivery ledger remembers (SLS sinks).")
REGISTRY_INSTANCES = Gauge("shipper_registry_instances", "Instances the instance registry knows.")
BATCH_SECONDS = Histogram("shipper_batch_write_seconds", "Time to write one batch to every sink.",
                          buckets=(0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1, 5, 10, 60))
COMMIT_SECONDS = Histogram("shipper_event_commit_seconds",
                           "From a message's receipt to its events committed in every sink, by source.", ("source",),
                           buckets=(0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300))
SINCE_COMMIT = SinceLast("shipper_seconds_since_last_commit",
                         "Seconds since a source's last event was committed (absent until its first).", "source")


def render() -> bytes:
    """The /metrics body, in the Prometheus text format (CONTENT_TYPE)."""
    return prometheus_client.generate_latest(REGISTRY)
