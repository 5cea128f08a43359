"""MNS source: at-least-once consumption of a CloudMonitor / EventBridge queue with aliyun-mns-sdk 1.3.0.

Several receivers long-poll batches of up to 16 messages, each on its own `Account` (the SDK keeps one
connection per Account and is not thread-safe). Bodies are received with encoding off and decoded by
shipper (raw JSON or strict base64 JSON). A message is deleted (BatchDeleteMessage, newest receipt
handle) as soon as the pipeline reports it committed or dead-lettered, by a pool of delete workers, so
deletes keep pace with commits whatever the network latency.

The consumer never holds more messages than it can keep invisible: at most `HELD_LIMIT` messages are
between receipt and delete, and receiving stops while the sinks are failing. A message the sinks refused
is kept and retried (at most `RETRY_HOLD` of them); the others go back to the queue untouched, so a sink
outage leaves the backlog on the queue, not in memory, and no valid message runs up its receive count.
Visibility is extended only for a message whose work outlives its visibility timeout. A message received
again (its visibility lapsed) is recognised by its id: it is never committed twice, and a committed one
is deleted with its newest handle. A message received more than `max_receives` times is dead-lettered,
then deleted, so a poison message never blocks the queue.
"""
from __future__ import annotations

import collections
import dataclasses
import logging
import queue as queue_mod
import socket
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Callable

from shipper import registry
from shipper.cloud import Backoff, CloudError, Credentials, MissingCredentials, NotFound, credentials_for
from shipper.config import endpoint_url
from shipper.registry import Finding
from shipper.pipeline import Message, Pipeline, Result, Status
from shipper.sources import SourceError
from shipper.telemetry import metrics
from shipper.telemetry.health import Health

log = logging.getLogger("shipper.sources.mns")

MAX_RECEIVES = "max-receives"  # dead-letter reason for a message delivered too often
DELETE_BATCH = 16              # BatchDeleteMessage takes at most 16 handles (mns.md section 4)
DELETE_WORKERS = 8             # concurrent deletes: at 10 ms a round trip one worker deletes ~1,600 messages/s
EXTEND_WORKERS = 4             # concurrent ChangeMessageVisibility calls (MNS has no batch form)
HELD_LIMIT = 2048              # messages received and not yet deleted, per consumer
RETRY_HOLD = 64                # messages the sinks refused that are kept and retried; the rest go back
RETRY_SECONDS = 1.0            # between retries of a refused message (the pipeline backs off too)
EXTEND_CHECK_SECONDS = 0.25    # how often held messages are checked for a visibility extension
MIN_EXTENSION_SECONDS = 30     # an extension buys at least this long (VisibilityTimeout 1-43200 s)
LAPSED_MEMORY = 100_000        # ids of committed messages whose delete came too late, kept to delete them
# Exponential backoff with full jitter after failed calls: many consumers do not retry in step.
RECEIVE_BACKOFF = Backoff(base=0.2, cap=30.0)
STARTUP_RETRY_SECONDS = 60.0  # `shipper run` asks a queue that answers 5xx (or cannot be reached) at start this long
DELETE_BACKOFF = Backoff(base=0.2, cap=5.0)

# shipper.cloud.mns (and with it the MNS SDK) is imported where a queue is first used, not with this module:
# every shipper command loads this module, few of them talk to MNS.


@dataclasses.dataclass(frozen=True)
class MnsSourceSettings:
    """A CloudMonitor / EventBridge queue; credentials come from the ALIBABA_CLOUD_* variables."""
    type: str = "mns"
    endpoint: str = ""                      # http(s)://<uid>.mns.<region>.aliyuncs.com
    queue: str = ""
    receivers: int = 4                      # concurrent long polls
    wait_seconds: int = 10                  # long-poll wait (<= 30)
    batch_size: int = 16                    # messages per receive (<= 16)
    max_receives: int = 10                  # dead-letter a message received more often than this

    def resolve(self, shipper) -> "MnsSourceSettings":
        return dataclasses.replace(self, endpoint=endpoint_url(self.endpoint)) if self.endpoint else self

    def validate(self) -> None:
        if not self.endpoint:
            raise registry.Invalid("`endpoint` is required, e.g. https://<uid>.mns.cn-hangzhou.aliyuncs.com "
                                   "or 127.0.0.1:9921")
        if not self.queue:
            raise registry.Invalid("`queue` must name the MNS queue, e.g. \"ecs-cms-event\"")
        registry.positive(self, "receivers", "max_receives")
        if not 0 <= self.wait_seconds <= 30:
            raise registry.Invalid(f"`wait_seconds` must be 0 to 30 (the MNS long-poll limit), got {self.wait_seconds}")
        if not 1 <= self.batch_size <= 16:
            raise registry.Invalid(f"`batch_size` must be 1 to 16 (the MNS batch limit), got {self.batch_size}")



class MnsFatal(SourceError):
    """The consumer cannot go on (queue missing, credentials refused); one line naming the queue or key."""


def _code(exc: Exception) -> str:
    """For a log line: the service's code of a CloudError, else the exception's type (a bug, not MNS)."""
    return exc.code if isinstance(exc, CloudError) else type(exc).__name__


def fatal_message(error: CloudError, settings: MnsSourceSettings, key_id: str) -> str:
    from shipper.cloud.mns import FATAL_AUTH_CODES, FATAL_QUEUE_CODES, SDK_MISMATCH

    code = error.code
    if code == SDK_MISMATCH:
        return f"mns source: {error.message}"
    if code in FATAL_QUEUE_CODES:
        return (f"mns source: queue {settings.queue!r} does not exist at {settings.endpoint} ({code}); "
                f"create it or fix `queue` in the config")
    if code == "TimeExpired":
        return f"mns source: {settings.endpoint} refused the request time ({code}); fix this machine's clock"
    if code in FATAL_AUTH_CODES:
        return (f"mns source: {settings.endpoint} refused access key {key_id} for queue {settings.queue!r} ({code}); "
                f"check ALIBABA_CLOUD_ACCESS_KEY_ID / ALIBABA_CLOUD_ACCESS_KEY_SECRET and the key's MNS permissions")
    return f"mns source: {settings.endpoint}: {code}: {error.message}"


def check_queue(settings: MnsSourceSettings, credentials: Credentials, retry_seconds: float = 0.0,
                sleep: Callable[[float], None] = time.sleep) -> dict:
    """Reach the queue: its attributes (shipper.cloud.mns.Queue.attributes), or MnsFatal naming the problem.
    A passing fault (5xx, throttling, network) is asked again for `retry_seconds` (`shipper run` at start:
    one 5xx must not stop it); a lasting one (queue missing, key refused) ends it at once."""
    from shipper.cloud import mns as cloud_mns

    deadline = time.monotonic() + retry_seconds
    attempt = 0
    while True:
        try:
            return cloud_mns.check_queue(settings.endpoint, settings.queue, credentials)
        except CloudError as e:
            if e.fatal:
                raise MnsFatal(fatal_message(e, settings, credentials.access_key_id)) from None
            delay = RECEIVE_BACKOFF.seconds(attempt)
            if not e.retryable or time.monotonic() + delay > deadline:
                raise MnsFatal(f"mns source: cannot reach {settings.endpoint} ({e.code}); "
                               f"check `endpoint` and the network") from None
            log.warning("mns source: queue %s: %s at start; asking again in %.1f s", settings.queue, e.code, delay)
            attempt += 1
            sleep(delay)


class _Held:
    """A received message not yet deleted: its newest receipt handle, when it becomes visible again, how
    to hand it to the pipeline again, and where its delivery stands."""

    __slots__ = ("handle", "visible_at", "deliver", "committed", "retry_at")

    def __init__(self, handle: str, visible_at: float, deliver: Callable[[], None] | None, committed: bool = False):
        self.handle, self.visible_at, self.deliver = handle, visible_at, deliver
        self.committed = committed
        self.retry_at: float | None = None  # set while the sinks refuse it and it waits to be retried


class MnsConsumer:
    def __init__(self, settings: MnsSourceSettings, pipeline: Pipeline, credentials: Credentials,
                 on_fatal=lambda message: None, clock=time.monotonic):
        self.settings = settings
        self.pipeline = pipeline
        self.credentials = credentials
        self.on_fatal = on_fatal
        self.source_name = f"mns:{settings.queue}"
        self.health = Health(f"source {self.source_name}")  # receiving works (idle while the sinks fail)
        self._clock = clock
        self._stop = threading.Event()
        self._closing = threading.Event()
        self._lock = threading.Condition()
        self._held: dict[str, _Held] = {}
        self._retrying = 0           # held messages the sinks refused, waiting to be retried
        self._sinks_failing = False  # the last result was FAILED: receive nothing new until a retry commits
        self._lapsed: collections.OrderedDict[str, None] = collections.OrderedDict()
        self._finished: queue_mod.Queue[str] = queue_mod.Queue()
        self.visibility_timeout = 30
        self._threads: list[threading.Thread] = []
        self._workers: list[threading.Thread] = []
        self._extend_pool: ThreadPoolExecutor | None = None
        self._extend_queues = threading.local()

    def _queue(self):
        from shipper.cloud.mns import open_queue

        return open_queue(self.settings.endpoint, self.settings.queue, self.credentials)

    # -- lifecycle ------------------------------------------------------------------------------------

    def start(self) -> "MnsConsumer":
        if self.settings.endpoint.startswith("https://"):
            # The SDK opens HTTPS connections without a timeout (mns.md section 1); bound every socket.
            socket.setdefaulttimeout(self.settings.wait_seconds + 30)
        attributes = check_queue(self.settings, self.credentials, retry_seconds=STARTUP_RETRY_SECONDS)
        self.visibility_timeout = max(int(attributes["visibility_timeout"]), 1)
        self._extend_pool = ThreadPoolExecutor(EXTEND_WORKERS, thread_name_prefix="shipper-mns-extend")
        for n in range(self.settings.receivers):
            self._threads.append(threading.Thread(target=self._receive_loop, name=f"shipper-mns-recv-{n}", daemon=True))
        for n in range(DELETE_WORKERS):
            self._workers.append(threading.Thread(target=self._delete_loop, name=f"shipper-mns-delete-{n}", daemon=True))
        self._workers.append(threading.Thread(target=self._keeper_loop, name="shipper-mns-keeper", daemon=True))
        for thread in self._threads + self._workers:
            thread.start()
        log.info("mns source: %d receivers on queue %s at %s (visibility %d s, max_receives %d)",
                 self.settings.receivers, self.settings.queue, self.settings.endpoint, self.visibility_timeout,
                 self.settings.max_receives)
        return self

    def stop(self) -> None:
        """Stop receiving; messages already received still get deleted once committed."""
        self._stop.set()
        with self._lock:
            self._lock.notify_all()

    def close(self, timeout: float = 10.0) -> None:
        """After the pipeline's final flush: delete what committed, then stop the workers."""
        self.stop()
        self._closing.set()
        deadline = time.monotonic() + timeout
        for thread in self._workers:
            thread.join(max(deadline - time.monotonic(), 0))
        if self._extend_pool is not None:
            self._extend_pool.shutdown(wait=False, cancel_futures=True)

    def _fatal(self, error: CloudError) -> None:
        message = fatal_message(error, self.settings, self.credentials.access_key_id)
        if not self._stop.is_set():
            self.stop()
            log.error("%s", message)
            self.on_fatal(message)

    # -- receiving ------------------------------------------------------------------------------------

    def _receive_loop(self) -> None:
        q = self._queue()
        failures = 0
        while not self._stop.is_set():
            self._retry_due()
            if not self._room_to_receive():
                continue
            try:
                messages = q.receive(self.settings.batch_size, self.settings.wait_seconds)
            except NotFound:  # MessageNotExist: nothing came within the wait
                failures = 0
                self.health.ok()
                continue
            except CloudError as e:
                metrics.MNS_ERRORS.inc(labels={"operation": "receive", "code": e.code})
                self.health.failed(f"receive: {e.code}")
                if e.fatal:
                    self._fatal(e)
                    return
                failures += 1
                delay = RECEIVE_BACKOFF.seconds(failures)
                log.warning("mns source: receive failed (%s); retrying in %.1f s", e.code, delay)
                self._stop.wait(delay)
                q = self._queue()  # a fresh connection after a network failure
                continue
            failures = 0
            self.health.ok()
            log.debug("mns source: received %d messages from %s", len(messages), self.settings.queue)
            for m in messages:
                self._hand_over(m)

    def _room_to_receive(self) -> bool:
        """Wait (briefly) until a full batch fits under HELD_LIMIT and the sinks are not failing."""
        with self._lock:
            if self._sinks_failing or len(self._held) + self.settings.batch_size > HELD_LIMIT:
                self._lock.wait(EXTEND_CHECK_SECONDS)
                return False
        return True

    def _hand_over(self, m) -> None:
        visible_at = self._clock() + max(m.next_visible_time / 1000 - time.time(), 0)
        mid = m.message_id
        with self._lock:
            held = self._held.get(mid)
            if held is not None:  # its visibility lapsed while we held it: keep one copy, the newest handle
                held.handle, held.visible_at = m.receipt_handle, visible_at
                if held.committed:
                    self._finished.put(mid)
                return
            if mid in self._lapsed:  # committed already; its delete came too late: delete it now
                del self._lapsed[mid]
                self._held[mid] = _Held(m.receipt_handle, visible_at, None, committed=True)
                self._finished.put(mid)
                return
            held = self._held[mid] = _Held(m.receipt_handle, visible_at, None)
        body = m.message_body.encode("utf-8") if isinstance(m.message_body, str) else m.message_body
        message = Message(body=body, source=self.source_name, message_id=mid,
                          on_done=lambda result: self._on_done(mid, result))
        if m.dequeue_count > self.settings.max_receives:
            error = f"received {m.dequeue_count} times (max_receives {self.settings.max_receives})"
            held.deliver = lambda: self.pipeline.reject(message, MAX_RECEIVES, error)
        else:
            held.deliver = lambda: self.pipeline.submit(message)
        held.deliver()

    def _on_done(self, message_id: str, result: Result) -> None:
        with self._lock:
            held = self._held.get(message_id)
            if held is None:
                return
            if result.status is not Status.FAILED:
                held.committed = True
                self._sinks_failing = False
                if held.retry_at is not None:
                    held.retry_at = None
                    self._retrying -= 1
                self._finished.put(message_id)
            elif held.retry_at is not None:  # a retry failed again
                held.retry_at = self._clock() + RETRY_SECONDS
            elif self._retrying < RETRY_HOLD and not self._stop.is_set():
                self._sinks_failing = True
                held.retry_at = self._clock() + RETRY_SECONDS
                self._retrying += 1
            else:  # not committed: back to the queue, visible again when its visibility timeout ends
                self._sinks_failing = True
                del self._held[message_id]
            self._lock.notify_all()

    def _retry_due(self) -> None:
        """Hand the refused messages whose wait is over to the pipeline again."""
        now = self._clock()
        with self._lock:
            if not self._retrying:
                return
            due = [h for h in self._held.values() if h.retry_at is not None and h.retry_at <= now]
            for held in due:
                held.retry_at = now + 3600  # in the pipeline again; its result sets the next step
        for held in due:
            held.deliver()

    # -- deleting -------------------------------------------------------------------------------------

    def _delete_loop(self) -> None:
        q = self._queue()
        failures = 0
        while True:
            ids = self._take_finished(wait=0.1)
            if not ids:
                if self._closing.is_set():
                    return
                continue
            try:
                self._delete(q, ids)
                failures = 0
            except Exception as e:
                metrics.MNS_ERRORS.inc(labels={"operation": "delete", "code": _code(e)})
                if isinstance(e, CloudError) and e.fatal:
                    self._fatal(e)
                failures += 1
                delay = DELETE_BACKOFF.seconds(failures)
                log.warning("mns source: delete failed (%s); retrying in %.1f s", _code(e), delay)
                time.sleep(delay)
                q = self._queue()

    def _take_finished(self, wait: float) -> list[str]:
        ids = []
        try:
            ids.append(self._finished.get(timeout=wait))
            while len(ids) < DELETE_BATCH:
                ids.append(self._finished.get_nowait())
        except queue_mod.Empty:
            pass
        return ids

    def _delete(self, q, ids: list[str]) -> None:
        """BatchDeleteMessage with each message's newest handle; a failed call puts them back."""
        with self._lock:
            handles = {self._held[mid].handle: mid for mid in set(ids) if mid in self._held}
        if not handles:
            return
        try:
            refused = q.delete(list(handles))
        except CloudError as e:
            if e.http_status is not None:  # the service refused the whole call: try these again
                for mid in handles.values():
                    self._finished.put(mid)
            raise
        with self._lock:
            for handle, mid in handles.items():
                held = self._held.get(mid)
                if held is None:
                    continue
                if handle not in refused:
                    del self._held[mid]
                elif held.handle != handle:  # received again meanwhile: delete with the newer handle
                    self._finished.put(mid)
                elif isinstance(refused[handle], NotFound):  # stale, visible again: delete it when it comes back
                    del self._held[mid]
                    self._remember_lapsed(mid)
                else:
                    self._finished.put(mid)
            self._lock.notify_all()
        log.debug("mns source: deleted %d committed messages (%d refused)", len(handles) - len(refused), len(refused))

    def _remember_lapsed(self, mid: str) -> None:
        self._lapsed[mid] = None
        while len(self._lapsed) > LAPSED_MEMORY:
            self._lapsed.popitem(last=False)

    # -- visibility -----------------------------------------------------------------------------------

    def _keeper_loop(self) -> None:
        while not self._closing.is_set():
            try:
                self._extend_due()
            except Exception as e:  # one failed round must not end extensions for good
                metrics.MNS_ERRORS.inc(labels={"operation": "extend", "code": _code(e)})
                log.warning("mns source: visibility extension failed (%s)", _code(e))
            self._closing.wait(EXTEND_CHECK_SECONDS)

    def _extend_due(self) -> None:
        """Extend, in parallel, every uncommitted message whose visibility ends within the margin."""
        margin = max(self.visibility_timeout / 3, 1.0)
        now = self._clock()
        with self._lock:
            due = sorted(((h.visible_at, mid, h.handle) for mid, h in self._held.items()
                          if not h.committed and h.visible_at - now < margin))
        if due:
            list(self._extend_pool.map(lambda item: self._extend(item[1], item[2]), due))

    def _extend(self, mid: str, handle: str) -> None:
        q = getattr(self._extend_queues, "queue", None)
        if q is None:
            q = self._extend_queues.queue = self._queue()
        extension = max(self.visibility_timeout, MIN_EXTENSION_SECONDS)
        try:
            new_handle = q.change_visibility(handle, extension)
        except NotFound:  # a stale handle: visible again already; a re-receipt is recognised
            return
        except CloudError:
            self._extend_queues.queue = None  # a fresh connection next time
            raise
        log.debug("mns source: extended visibility of %s by %d s", mid, extension)
        with self._lock:
            held = self._held.get(mid)
            if held is not None and held.handle == handle:
                held.handle = new_handle
                held.visible_at = self._clock() + extension



def check(source: MnsSourceSettings, config=None) -> list[Finding]:
    try:
        credentials = credentials_for("mns source")
        info = check_queue(source, credentials)
    except MissingCredentials as e:
        return [Finding("FAIL", str(e))]
    except MnsFatal as e:
        return [Finding("FAIL", str(e))]
    return [Finding("ok", f"mns source: queue {source.queue!r} at {source.endpoint} reachable as "
                          f"{credentials.access_key_id} (visibility {info['visibility_timeout']} s, "
                          f"{info['active_messages']} waiting, {info['inactive_messages']} in flight)")]

registry.register(registry.Component(
    registry.SOURCE, "mns", MnsSourceSettings,
    build=lambda settings, runtime: MnsConsumer(settings, runtime.pipeline, runtime.credentials("mns source", MnsFatal),
                                                on_fatal=runtime.on_fatal),
    check=check,
    permissions=("mns:GetQueueAttributes", "mns:ReceiveMessage", "mns:DeleteMessage", "mns:ChangeMessageVisibility"),
))
