"""sources -> normalize -> batch -> enrich -> sinks -> commit listeners -> acknowledge.

The delivery core: it knows sources, sinks, enrichers and listeners only by these small interfaces, never
hooks or registries. A source hands over a Message and acts on its Result: an MNS message is deleted once
`on_done` reports it, an HTTP push answered as soon as `on_committed` does. Enrichers (callables) fill
a batch of event records just before it is written: they see the whole batch at once, so what they must
ask the cloud about (instances not yet known) is asked once per batch, not once per message. After a batch
is in every sink, each commit listener is told of each record and may take a hold on its message (`hold()` returns the release): as Vector's finalizers
travel with an event, `on_done` then waits until every hold is released, so a hook that must decide
before an MNS message is deleted keeps the acknowledgement until it has.
Input that cannot be decoded becomes a dead-letter record, committed the same way, so it is never lost.
Records are batched per table by count and bytes, with group commit: a batch is written as soon as the
sinks are free, and what arrives during a write forms the next one, so low load gets low latency and high
load gets big batches. At most `max_inflight_events` records are
buffered, and `submit` blocks (the receiver waits) while the buffer is full, so a sink outage leaves the
backlog at the source, not in memory.
"""
from __future__ import annotations

import collections
import enum
import logging
import threading
import time
from dataclasses import dataclass, field
from typing import Callable, Protocol

from shipper import events
from shipper.telemetry import metrics
from shipper.telemetry.health import Health
from shipper.config import BatchSettings
from shipper.decode import DEFAULT_MAX_BYTES, Rejected
from shipper.normalize import events_from_bytes
from shipper.times import format_time_ms

log = logging.getLogger("shipper.pipeline")

INTERNAL_ERROR = "internal-error"  # dead-letter reason for a decoder bug: the input is kept, the process lives


class Status(enum.Enum):
    COMMITTED = "committed"          # every event is in every sink
    DEAD_LETTERED = "dead-lettered"  # not an event; its dead-letter record is in every sink
    FAILED = "failed"                # a sink refused it: the source must deliver it again


@dataclass(frozen=True)
class Result:
    status: Status
    events: int = 0
    reason: str = ""
    error: str = ""


def _ignore(result: Result) -> None:
    pass


@dataclass
class Message:
    body: bytes
    source: str
    message_id: str = ""
    content_type: str | None = None
    on_done: Callable[[Result], None] = _ignore           # once: committed and every hold released, or not
    on_committed: Callable[[Result], None] | None = None  # also, as soon as its records are in every sink


class Sink(Protocol):
    name: str

    def write(self, table: str, records: list[dict]) -> int: ...

    def close(self) -> None: ...


# (table, record, hold) after the record is in every sink; hold() -> release(), to be called exactly once.
CommitListener = Callable[[str, dict, Callable[[], Callable[[], None]]], None]
Enricher = Callable[[list[dict]], None]  # fills event records in place, in arrival order


class _Tracker:
    """Counts a message's records still to commit and its holds; reports its Result exactly once."""

    __slots__ = ("message", "pending", "holds", "result", "done", "committed", "received_ms")

    def __init__(self, message: Message, pending: int, result: Result, received_ms: int = 0):
        self.message, self.pending, self.result = message, pending, result  # pending: records + holds
        self.holds, self.done, self.committed = 0, False, False
        self.received_ms = received_ms  # for the receipt-to-commit latency of events


@dataclass
class _Buffer:
    items: collections.deque = field(default_factory=collections.deque)  # (record, size, tracker)
    size: int = 0
    oldest: float = 0.0


def _record_size(record: dict) -> int:
    """An estimate for batching by bytes: the large fields plus a fixed allowance for the small ones
    (the SLS sink measures exactly what it sends)."""
    return len(record.get("raw", "")) + len(record.get("detail", "")) + len(record.get("raw_base64", "")) + 600


def _committed_events(tracker: _Tracker) -> None:
    """A message's events are in every sink: its receipt-to-commit latency, and its source's last commit."""
    if tracker.result.events:
        source = tracker.message.source
        metrics.COMMIT_SECONDS.observe(max(time.time() - tracker.received_ms / 1000, 0), labels={"source": source})
        metrics.SINCE_COMMIT.mark(source)


def dead_letter_record(message: Message, reason: str, error: str, received_ms: int) -> dict:
    return events.dead_letter(reason=reason, source=message.source, message_id=message.message_id,
                              received_time=format_time_ms(received_ms), error=error, raw=message.body)


class Pipeline:
    def __init__(self, sinks: list[Sink], batch: BatchSettings, *, max_inflight_events: int = 20000,
                 max_message_bytes: int = DEFAULT_MAX_BYTES, enrichers: tuple[Enricher, ...] = (),
                 clock: Callable[[], float] = time.monotonic):
        if not sinks:
            raise ValueError("a pipeline needs at least one sink")
        self.sinks = list(sinks)
        self.sink_health = [Health(f"sink {sink.name}") for sink in self.sinks]  # for /readyz
        self._enrichers = tuple(enrichers)
        self._listeners: list[CommitListener] = []
        self.batch = batch
        self.max_inflight = max_inflight_events
        self.max_message_bytes = max_message_bytes
        self._clock = clock
        self._cond = threading.Condition()
        self._buffers = {table: _Buffer() for table in events.TABLE_FIELDS}
        self._inflight = 0
        self._closing = False
        self._failures = 0
        self._paused = threading.Event()  # set by close(): ends a pause after a sink failure early
        self._flusher = threading.Thread(target=self._flush_loop, name="shipper-flusher", daemon=True)

    def add_listener(self, listener: CommitListener) -> None:
        """Before start(): `listener(table, record, hold)` is called for every committed record."""
        self._listeners.append(listener)

    def start(self) -> "Pipeline":
        self._flusher.start()
        return self

    @property
    def inflight(self) -> int:
        return self._inflight

    # -- intake -------------------------------------------------------------------------------------

    def submit(self, message: Message) -> None:
        """Decode and buffer one message; blocks while the in-flight buffer is full."""
        received_ms = int(time.time() * 1000)
        metrics.MESSAGES.inc()
        try:
            records = events_from_bytes(message.body, received_ms=received_ms, content_type=message.content_type,
                                        max_bytes=self.max_message_bytes)
            table, result = events.EVENTS_TABLE, Result(Status.COMMITTED, events=len(records))
            metrics.EVENTS_RECEIVED.inc(len(records))
        except Rejected as e:
            records = [dead_letter_record(message, e.reason, e.error, received_ms)]
            table, result = events.DEADLETTER_TABLE, Result(Status.DEAD_LETTERED, reason=e.reason, error=e.error)
            metrics.DEAD_LETTERS.inc(labels={"reason": e.reason})
        except Exception as e:  # a decoder bug must cost one dead letter, never the process
            log.exception("normalize failed on a message from %s; dead-lettering it", message.source)
            error = f"{type(e).__name__} while normalizing"
            records = [dead_letter_record(message, INTERNAL_ERROR, error, received_ms)]
            table, result = events.DEADLETTER_TABLE, Result(Status.DEAD_LETTERED, reason=INTERNAL_ERROR, error=error)
            metrics.DEAD_LETTERS.inc(labels={"reason": INTERNAL_ERROR})
        if not records:  # an empty JSON array: nothing to store, nothing to lose
            message.on_done(result)
            return
        self._enqueue(table, records, _Tracker(message, len(records), result, received_ms))

    def record(self, table: str, records: list[dict], done: Callable[[bool], None]) -> None:
        """Commit records made inside shipper (hook decisions); done(True) once they are in every sink."""
        message = Message(body=b"", source="shipper", on_done=lambda result: done(result.status is Status.COMMITTED))
        self._enqueue(table, records, _Tracker(message, len(records), Result(Status.COMMITTED)))

    def reject(self, message: Message, reason: str, error: str) -> None:
        """Dead-letter a message a source refused before reading it all (e.g. an HTTP body over the limit)."""
        metrics.MESSAGES.inc()
        metrics.DEAD_LETTERS.inc(labels={"reason": reason})
        record = dead_letter_record(message, reason, error, int(time.time() * 1000))
        self._enqueue(events.DEADLETTER_TABLE, [record],
                      _Tracker(message, 1, Result(Status.DEAD_LETTERED, reason=reason, error=error)))

    def _enqueue(self, table: str, records: list[dict], tracker: _Tracker) -> None:
        n = len(records)
        with self._cond:
            while not self._closing and self._inflight and self._inflight + n > self.max_inflight:
                self._cond.wait()
            if self._closing:
                closed = True
            else:
                closed = False
                buf = self._buffers[table]
                if not buf.items:
                    buf.oldest = self._clock()
                for record in records:
                    size = _record_size(record)
                    buf.items.append((record, size, tracker))
                    buf.size += size
                self._inflight += n
                metrics.INFLIGHT.set(self._inflight)
                self._cond.notify_all()
        if closed:
            tracker.message.on_done(Result(Status.FAILED, error="shipper is shutting down"))

    # -- flushing -----------------------------------------------------------------------------------

    def _ready_table(self) -> str | None:
        """The table whose oldest record has waited longest: the flusher is free, so it is written now
        (group commit: what arrives during a write forms the next batch, nothing waits for company)."""
        ready = [(buf.oldest, table) for table, buf in self._buffers.items() if buf.items]
        return min(ready)[1] if ready else None

    def _take(self, table: str) -> list[tuple]:
        buf = self._buffers[table]
        taken, size = [], 0
        while buf.items and len(taken) < self.batch.max_events:
            item = buf.items[0]
            if taken and size + item[1] > self.batch.max_bytes:
                break
            buf.items.popleft()
            taken.append(item)
            size += item[1]
        buf.size -= size
        buf.oldest = self._clock()
        return taken

    def _flush_loop(self) -> None:
        while True:
            with self._cond:
                while True:
                    table = self._ready_table()
                    if table or (self._closing and not self._inflight):
                        break
                    self._cond.wait()
                if table is None:
                    return
                batch = self._take(table)
            self._write(table, batch)

    def _write(self, table: str, batch: list[tuple]) -> None:
        records = [item[0] for item in batch]
        if table == events.EVENTS_TABLE:
            self._enrich(records)
        error = self._write_sinks(table, records)
        if not error:
            self._tell_listeners(table, batch)
        finished = []
        with self._cond:
            for _, _, tracker in batch:
                if tracker.done:
                    continue
                if error:
                    tracker.done = True
                    finished.append((tracker, Result(Status.FAILED, error=error)))
                    continue
                tracker.pending -= 1
                if tracker.pending == 0:
                    tracker.done = True
                    finished.append((tracker, tracker.result))
                elif tracker.pending == tracker.holds and not tracker.committed:
                    tracker.committed = True  # its records are all written; holds remain
                    finished.append((tracker, None))
            self._inflight -= len(batch)
            metrics.INFLIGHT.set(self._inflight)
            self._cond.notify_all()
        self._report(finished)
        self._failures = self._failures + 1 if error else 0
        if error:  # do not hammer a sink that is down; close() ends the pause
            self._paused.wait(min(0.1 * 2 ** min(self._failures, 6), 5.0))

    def _enrich(self, records: list[dict]) -> None:
        for enrich in self._enrichers:
            try:
                enrich(records)
            except Exception:  # an enricher bug costs the fields it would have filled, never the events
                log.exception("an enricher failed on a batch of %d events; they are written as they are", len(records))

    def _write_sinks(self, table: str, records: list[dict]) -> str:
        """Write the batch to every sink; the last error, "" when all took it."""
        started = time.perf_counter()
        error = ""
        for sink, health in zip(self.sinks, self.sink_health):
            health.trying()
            try:
                new = sink.write(table, records)
                health.ok()
                if table == events.EVENTS_TABLE:
                    metrics.EVENTS_STORED.inc(new, labels={"sink": sink.name})
            except Exception as e:  # any sink failure means: not committed, deliver again
                error = str(e) or type(e).__name__
                health.failed(error)
                metrics.SINK_ERRORS.inc(labels={"sink": sink.name})
                log.error("sink %s: %s", sink.name, error)
        metrics.BATCH_SECONDS.observe(time.perf_counter() - started)
        return error

    def _tell_listeners(self, table: str, batch: list[tuple]) -> None:
        """No lock is held: a listener may take its time (and holds) without stopping intake or flushing."""
        for listener in self._listeners:
            for record, _, tracker in batch:
                try:
                    listener(table, record, lambda t=tracker: self._hold(t))
                except Exception:  # a listener bug must not cost the commit or the process
                    log.exception("a commit listener failed on a %s record", table)

    def _hold(self, tracker: _Tracker) -> Callable[[], None]:
        with self._cond:
            tracker.pending += 1
            tracker.holds += 1
        released = threading.Event()

        def release() -> None:
            if released.is_set():
                return
            released.set()
            with self._cond:
                tracker.pending -= 1
                tracker.holds -= 1
                if tracker.done or tracker.pending:
                    return
                tracker.done = True
            self._report([(tracker, tracker.result)])

        return release

    def _report(self, finished: list) -> None:
        """Tell sources outside the lock; a None result is the early `on_committed` notice."""
        for tracker, result in finished:
            message = tracker.message
            try:
                if result is None:
                    _committed_events(tracker)
                    if message.on_committed:
                        message.on_committed(tracker.result)
                    continue
                if result.status is Status.COMMITTED:
                    metrics.EVENTS_COMMITTED.inc(result.events)
                    if not tracker.committed:
                        _committed_events(tracker)
                    if message.on_committed and not tracker.committed:
                        message.on_committed(result)
                message.on_done(result)
            except Exception:
                log.exception("acknowledging a message from %s failed", message.source)

    # -- shutdown -----------------------------------------------------------------------------------

    def close(self, timeout: float) -> bool:
        """Flush what is buffered, then stop; True when everything was written within `timeout`."""
        with self._cond:
            self._closing = True
            self._cond.notify_all()
        self._paused.set()
        if self._flusher.is_alive():
            self._flusher.join(timeout)
        drained = not self._flusher.is_alive()
        if drained:
            for sink in self.sinks:
                sink.close()
        return drained
