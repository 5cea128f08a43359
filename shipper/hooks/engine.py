"""Drives hooks: delays, worker threads, one task at a time per instance, records committed, callers told.

The pipeline tells `on_commit` of each committed event; every hook that wants it gets a task due after the
hook's delay, and a hold on the event's message.
Tasks for one instance run in arrival order, never two at once, so a late Stopped is judged after the
Running that preceded it. A hook's first emitted record is its decision: once that record is committed,
`on_decided` is called (the MNS source then deletes the message). A repeated event (same event_uid,
same hook) is not acted on twice in one process.
"""
from __future__ import annotations

import collections
import heapq
import itertools
import logging
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Callable

from shipper import events
from shipper.hooks import INLINE, SKIPPED, Hook, action_record, execute
from shipper.telemetry import metrics

log = logging.getLogger("shipper.hooks")

RECENT_UIDS = 100_000  # (hook, event_uid) pairs remembered to ignore redeliveries
HISTORY_PER_INSTANCE = 16  # recent events kept per instance for the guards (superseded, stop cause)
HISTORY_INSTANCES = 50_000
HISTORY_FIELDS = ("event_uid", "event_name", "state", "category", "event_status", "event_time_ms", "not_before")


class HookEngine:
    def __init__(self, hooks: list[Hook], commit: Callable[[list[dict], Callable[[bool], None]], None], *,
                 workers: int = 32, clock: Callable[[], float] = time.monotonic):
        """`commit(records, done)` writes `shipper-actions` records and calls done(committed: bool)."""
        self.hooks = list(hooks)
        self._commit = commit
        self._clock = clock
        self._pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="shipper-hook")
        self._cond = threading.Condition()
        self._due: list = []  # heap of (due, seq, task)
        self._seq = itertools.count()
        self._queues: dict[str, collections.deque] = {}
        self._running: set[str] = set()
        self._seen: collections.OrderedDict = collections.OrderedDict()
        self._history: collections.OrderedDict[str, collections.deque] = collections.OrderedDict()
        self._closing = False
        self._timer = threading.Thread(target=self._timer_loop, name="shipper-hook-timer", daemon=True)
        self._timer.start()

    def wanted(self, event: dict) -> list[Hook]:
        return [h for h in self.hooks if h.wants(event)]

    def on_commit(self, table: str, record: dict, hold) -> None:
        """The pipeline's commit listener: remember each committed event, and schedule the hooks that want
        it, each holding the event's message until its decision is recorded (an MNS message is deleted
        only then, so a crash before the decision brings the event back)."""
        if table != events.EVENTS_TABLE:
            return
        self.observe(record)
        for hook in self.wanted(record):
            self.schedule(record, [hook], INLINE, hold())

    def observe(self, event: dict) -> None:
        """Remember a committed event (a few fields) so hooks can see what else happened to its instance."""
        instance = event.get("instance_id", "")
        if not instance:
            return
        with self._cond:
            history = self._history.pop(instance, None) or collections.deque(maxlen=HISTORY_PER_INSTANCE)
            history.append({f: event.get(f, "") for f in HISTORY_FIELDS})
            self._history[instance] = history
            if len(self._history) > HISTORY_INSTANCES:
                self._history.popitem(last=False)

    def recent_events(self, instance_id: str) -> list[dict]:
        with self._cond:
            return list(self._history.get(instance_id, ()))

    def schedule(self, event: dict, hooks: list[Hook], trigger: str, on_decided: Callable[[], None],
                 delay: float | None = None) -> None:
        """Run each hook on `event` after its delay (or `delay`); on_decided() once per hook."""
        for hook in hooks:
            key = (hook.name, event.get("event_uid", ""))
            with self._cond:
                repeat = key in self._seen
                if not repeat:
                    self._seen[key] = True
                    if len(self._seen) > RECENT_UIDS:
                        self._seen.popitem(last=False)
            if repeat:
                log.info("hook %s: event %s already handled in this process; not acting twice", hook.name, key[1])
                on_decided()
                continue
            wait = hook.delay_seconds(event) if delay is None else delay
            task = (hook, event, trigger, on_decided)
            with self._cond:
                if self._closing:
                    continue  # not decided: the message is not acknowledged and comes back
                heapq.heappush(self._due, (self._clock() + wait, next(self._seq), task))
                self._cond.notify_all()

    def _timer_loop(self) -> None:
        while True:
            with self._cond:
                while not self._closing and (not self._due or self._due[0][0] > self._clock()):
                    self._cond.wait(None if not self._due else self._due[0][0] - self._clock())
                if self._closing:
                    return
                _, _, task = heapq.heappop(self._due)
                instance = task[1].get("instance_id", "")
                self._queues.setdefault(instance, collections.deque()).append(task)
                if instance not in self._running:
                    self._running.add(instance)
                    self._pool.submit(self._drain, instance)

    def _drain(self, instance: str) -> None:
        """Run the instance's tasks one after another, in arrival order."""
        while True:
            with self._cond:
                queue = self._queues.get(instance)
                if not queue:
                    self._queues.pop(instance, None)
                    self._running.discard(instance)
                    return
                task = queue.popleft()
            self._run(*task)

    def _run(self, hook: Hook, event: dict, trigger: str, on_decided: Callable[[], None]) -> None:
        decided = threading.Event()
        key = (hook.name, event.get("event_uid", ""))

        def decision_committed(ok: bool) -> None:
            if ok:
                on_decided()
            else:  # not recorded: forget it, so the redelivered message is decided again
                with self._cond:
                    self._seen.pop(key, None)

        def emit(record: dict) -> None:
            first = not decided.is_set()
            decided.set()
            if first:
                metrics.HOOK_DECISIONS.inc(labels={"hook": hook.name, "decision": record.get("decision", ""),
                                                   "reason": record.get("reason", "")})
            self._commit([record], decision_committed if first else (lambda ok: None))

        try:
            execute(hook, event, trigger, emit)
        except Exception as e:  # a hook bug is recorded as a skip, never lost, never fatal
            log.exception("hook %s failed on %s", hook.name, event.get("instance_id", ""))
            if not decided.is_set():
                emit(action_record(hook=hook.name, trigger=trigger, event=event, decision=SKIPPED,
                                   reason="hook-error", error_code=type(e).__name__, finished=True))
        if not decided.is_set():
            log.error("hook %s made no decision on %s; recording a skip", hook.name, event.get("event_uid", ""))
            emit(action_record(hook=hook.name, trigger=trigger, event=event, decision=SKIPPED,
                               reason="no-decision", finished=True))

    def close(self, timeout: float) -> None:
        """Stop: tasks not yet due are dropped (their messages come back); running ones finish or time out."""
        with self._cond:
            self._closing = True
            self._due.clear()
            self._cond.notify_all()
        self._timer.join(timeout)
        self._pool.shutdown(wait=False, cancel_futures=True)

