"""Process-wide counters, gauges and histograms, rendered in the Prometheus text format at /metrics.

Labels carry only reason codes, sink and source names: never message content or credentials.
"""
from __future__ import annotations

import bisect
import threading


class _Metric:
    kind = ""

    def __init__(self, name: str, help_text: str):
        self.name, self.help = name, help_text
        self._lock = threading.Lock()
        self._values: dict[tuple, float] = {}
        REGISTRY.append(self)

    @staticmethod
    def _key(labels: dict | None) -> tuple:
        return tuple(sorted(labels.items())) if labels else ()

    def value(self, labels: dict | None = None) -> float:
        return self._values.get(self._key(labels), 0)

    def total(self) -> float:
        return sum(self._values.values())

    def render(self) -> list[str]:
        lines = [f"# HELP {self.name} {self.help}", f"# TYPE {self.name} {self.kind}"]
        for key, value in sorted(self._values.items()):
            lines.append(f"{self.name}{_labels(key)} {value:g}")
        return lines


def _labels(key: tuple) -> str:
    if not key:
        return ""
    return "{" + ",".join(f'{k}="{v}"' for k, v in key) + "}"


class Counter(_Metric):
    kind = "counter"

    def inc(self, amount: float = 1, labels: dict | None = None) -> None:
        key = self._key(labels)
        with self._lock:
            self._values[key] = self._values.get(key, 0) + amount


class Gauge(_Metric):
    kind = "gauge"

    def set(self, value: float, labels: dict | None = None) -> None:
        with self._lock:
            self._values[self._key(labels)] = value


class Histogram(_Metric):
    kind = "histogram"
    BUCKETS = (0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1, 5, 10, 60)

    def __init__(self, name: str, help_text: str):
        super().__init__(name, help_text)
        self._counts = [0] * (len(self.BUCKETS) + 1)
        self._sum = 0.0

    def observe(self, value: float) -> None:
        with self._lock:
            self._counts[bisect.bisect_left(self.BUCKETS, value)] += 1
            self._sum += value

    def render(self) -> list[str]:
        lines = [f"# HELP {self.name} {self.help}", f"# TYPE {self.name} histogram"]
        running = 0
        for bound, count in zip(self.BUCKETS + ("+Inf",), self._counts):
            running += count
            lines.append(f'{self.name}_bucket{{le="{bound}"}} {running}')
        lines += [f"{self.name}_sum {self._sum:g}", f"{self.name}_count {running}"]
        return lines


REGISTRY: list[_Metric] = []

MESSAGES = Counter("shipper_messages_received_total", "Messages handed to the pipeline by sources.")
EVENTS_RECEIVED = Counter("shipper_events_received_total", "Events decoded from messages.")
EVENTS_COMMITTED = Counter("shipper_events_committed_total", "Events committed to every sink (messages acknowledged).")
EVENTS_STORED = Counter("shipper_events_stored_total", "Rows new to a sink (repeats of an event_uid are not counted by SQLite).")
DEAD_LETTERS = Counter("shipper_dead_letters_total", "Messages dead-lettered, by reason code.")
SINK_ERRORS = Counter("shipper_sink_errors_total", "Batch writes a sink refused.")
CACHE_SAVE_ERRORS = Counter("shipper_cache_save_errors_total",
                            "Instance cache saves that failed; the entries stay unsaved and are saved again next time.")
LEDGER_ERRORS = Counter("shipper_ledger_errors_total",
                        "Delivery ledger reads or writes that failed; the sinks wrote anyway (copies possible).")
COPIES_DROPPED = Counter("shipper_copies_dropped_total",
                         "Event copies a sink did not send: repeated in the batch, or already in the ledger.")
SLS_UNKNOWN_OUTCOMES = Counter("shipper_sls_unknown_outcomes_total",
                               "PutLogs requests with no answer (lost, or their process killed), by how they were "
                               "settled: checked (GetLogs told what landed), unchecked (GetLogs failed: sent again).")
HTTP_REQUESTS = Counter("shipper_http_requests_total", "HTTP source requests by status code.")
HTTP_TOKEN_LOCKOUTS = Counter("shipper_http_token_lockouts_total",
                              "Client addresses answered 429 for a while after too many missing or wrong tokens.")
INVENTORY_INSTANCES = Gauge("shipper_inventory_instances", "Instances the last inventory sync listed.")
INVENTORY_ERRORS = Counter("shipper_inventory_errors_total", "Inventory syncs of a region that failed, by region.")
TRAIL_CALLS = Counter("shipper_actiontrail_calls_total", "ECS calls ActionTrail reported, as api-call records committed.")
TRAIL_ERRORS = Counter("shipper_actiontrail_errors_total", "ActionTrail polls of a region that failed, by region.")
LOOKUPS = Counter("shipper_instance_lookups_total",
                  "Instances looked up by DescribeInstances before their events were written, by outcome "
                  "(found, absent: released, failed, late: not answered within lookup_wait_ms).")
INFLIGHT = Gauge("shipper_inflight_events", "Records buffered and not yet committed.")
BATCH_SECONDS = Histogram("shipper_batch_write_seconds", "Time to write one batch to every sink.")


def render() -> str:
    return "\n".join(line for metric in REGISTRY for line in metric.render()) + "\n"
