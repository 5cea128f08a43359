"""MNS source: at-least-once consumption of a CloudMonitor / EventBridge queue with aliyun-mns-sdk 1.3.0.

Several receivers long-poll batches of up to 16 messages, each on its own `Account` (the SDK keeps one
connection per Account and is not thread-safe). Bodies are received with encoding off and decoded by
shipper (raw JSON or strict base64 JSON). One housekeeper thread owns every other queue call: it deletes
a message (BatchDeleteMessage, newest receipt handle) only after the pipeline reports it committed or
dead-lettered, and extends the visibility of messages whose work outlives it. A message received more
than `max_receives` times is dead-lettered, then deleted, so a poison message never blocks the queue.
"""
from __future__ import annotations

import logging
import queue as queue_mod
import random
import socket
import threading
import time
import warnings

from shipper.config import MnsSource
from shipper.credentials import Credentials
from shipper.pipeline import Message, Pipeline, Result, Status
from shipper.sources import SourceError

log = logging.getLogger("shipper.sources.mns")

SDK_VERSION = "1.3.0"
MAX_RECEIVES = "max-receives"  # dead-letter reason for a message delivered too often
DELETE_BATCH = 16
EXTEND_CHECK_SECONDS = 0.5  # how often held messages are checked for a visibility extension

# Error codes (reference/mns.md section 5) and what the consumer does with them.
EMPTY_CODES = frozenset({"MessageNotExist"})
FATAL_QUEUE_CODES = frozenset({"QueueNotExist", "InvalidQueueName", "QueueNameLengthError"})
FATAL_AUTH_CODES = frozenset({"AccessDenied", "InvalidAccessKeyId", "SignatureDoesNotMatch",
                              "MissingAuthorizationHeader", "InvalidAuthorizationHeader", "TimeExpired"})
FATAL_CLIENT_CODES = frozenset({"InvalidHost"})


class MnsFatal(SourceError):
    """The consumer cannot go on (queue missing, credentials refused); one line naming the queue or key."""


def error_code(exc: Exception) -> str:
    return getattr(exc, "type", "") or type(exc).__name__


def classify(exc: Exception) -> str:
    """`empty`, `fatal` or `retry` for an exception raised by the SDK."""
    from mns.mns_exception import MNSClientNetworkException, MNSServerException

    code = error_code(exc)
    if isinstance(exc, MNSServerException):
        if code in EMPTY_CODES:
            return "empty"
        if code in FATAL_QUEUE_CODES or code in FATAL_AUTH_CODES:
            return "fatal"
        return "retry"  # InternalError, QpsLimitExceeded, throttling, anything new: back off and go on
    if isinstance(exc, MNSClientNetworkException):
        return "retry"
    if code in FATAL_CLIENT_CODES:
        return "fatal"
    return "retry"


def fatal_message(exc: Exception, settings: MnsSource, key_id: str) -> str:
    code = error_code(exc)
    if code in FATAL_QUEUE_CODES:
        return (f"mns source: queue {settings.queue!r} does not exist at {settings.endpoint} ({code}); "
                f"create it or fix `queue` in the config")
    if code == "TimeExpired":
        return f"mns source: {settings.endpoint} refused the request time ({code}); fix this machine's clock"
    if code in FATAL_AUTH_CODES:
        return (f"mns source: {settings.endpoint} refused access key {key_id} for queue {settings.queue!r} ({code}); "
                f"check ALIBABA_CLOUD_ACCESS_KEY_ID / ALIBABA_CLOUD_ACCESS_KEY_SECRET and the key's MNS permissions")
    return f"mns source: {settings.endpoint}: {code}: {getattr(exc, 'message', exc)}"


def backoff_seconds(attempt: int, base: float = 0.2, cap: float = 30.0) -> float:
    """Exponential backoff with full jitter: many consumers do not retry in step."""
    return random.uniform(0, min(cap, base * 2 ** min(attempt, 20)))


def open_queue(settings: MnsSource, credentials: Credentials):
    """A Queue on its own Account: the SDK keeps one connection per Account and is not thread-safe."""
    from mns.account import Account

    account = Account(settings.endpoint, credentials.access_key_id, credentials.access_key_secret,
                      credentials.security_token)
    q = account.get_queue(settings.queue)
    q.set_encoding(False)  # bodies are decoded by shipper: raw JSON or strict base64 (mns.md section 8)
    return q


def check_queue(settings: MnsSource, credentials: Credentials) -> dict:
    """Reach the queue once: its attributes, or MnsFatal naming the problem."""
    import mns.pkg_info

    if mns.pkg_info.version != SDK_VERSION:
        raise MnsFatal(f"mns source: aliyun-mns-sdk {SDK_VERSION} is required, found {mns.pkg_info.version}; "
                       f"reinstall shipper (never aliyun-mns 1.1.5, which prints the secret key)")
    try:
        with warnings.catch_warnings():  # 1.3.0 marks the message counts deprecated; still the only source
            warnings.simplefilter("ignore", DeprecationWarning)
            meta = open_queue(settings, credentials).get_attributes()
            counts = {"active_messages": meta.active_messages, "inactive_messages": meta.inactive_messages,
                      "delay_messages": meta.delay_messages}
    except Exception as e:
        if classify(e) == "fatal":
            raise MnsFatal(fatal_message(e, settings, credentials.access_key_id)) from None
        raise MnsFatal(f"mns source: cannot reach {settings.endpoint} ({error_code(e)}); "
                       f"check `endpoint` and the network") from None
    return {"visibility_timeout": meta.visibility_timeout, "maximum_message_size": meta.maximum_message_size,
            **counts}


class _Held:
    """A received message not yet deleted: its newest receipt handle and when it becomes visible again."""

    __slots__ = ("handle", "visible_at", "done")

    def __init__(self, handle: str, visible_at: float):
        self.handle, self.visible_at, self.done = handle, visible_at, False


class MnsConsumer:
    def __init__(self, settings: MnsSource, pipeline: Pipeline, credentials: Credentials,
                 on_fatal=lambda message: None, clock=time.monotonic):
        self.settings = settings
        self.pipeline = pipeline
        self.credentials = credentials
        self.on_fatal = on_fatal
        self.source_name = f"mns:{settings.queue}"
        self._clock = clock
        self._stop = threading.Event()
        self._closing = threading.Event()
        self._held: dict[str, _Held] = {}
        self._lock = threading.Lock()
        self._finished: queue_mod.Queue[str] = queue_mod.Queue()
        self.visibility_timeout = 30
        self._threads: list[threading.Thread] = []
        self._housekeeper: threading.Thread | None = None

    def _queue(self):
        return open_queue(self.settings, self.credentials)

    # -- lifecycle ------------------------------------------------------------------------------------

    def start(self) -> "MnsConsumer":
        if self.settings.endpoint.startswith("https://"):
            # The SDK opens HTTPS connections without a timeout (mns.md section 1); bound every socket.
            socket.setdefaulttimeout(self.settings.wait_seconds + 30)
        self.visibility_timeout = max(int(check_queue(self.settings, self.credentials)["visibility_timeout"]), 1)
        for n in range(self.settings.receivers):
            self._threads.append(threading.Thread(target=self._receive_loop, name=f"shipper-mns-recv-{n}", daemon=True))
        self._housekeeper = threading.Thread(target=self._housekeep_loop, name="shipper-mns-housekeeper", daemon=True)
        for thread in self._threads + [self._housekeeper]:
            thread.start()
        log.info("mns source: %d receivers on queue %s at %s (visibility %d s, max_receives %d)",
                 self.settings.receivers, self.settings.queue, self.settings.endpoint, self.visibility_timeout,
                 self.settings.max_receives)
        return self

    def stop(self) -> None:
        """Stop receiving; messages already received still get deleted once committed."""
        self._stop.set()

    def close(self, timeout: float = 10.0) -> None:
        """After the pipeline's final flush: delete what committed, then stop the housekeeper."""
        self._stop.set()
        self._closing.set()
        if self._housekeeper is not None:
            self._housekeeper.join(timeout)

    def _fatal(self, exc: Exception) -> None:
        message = fatal_message(exc, self.settings, self.credentials.access_key_id)
        if not self._stop.is_set():
            self._stop.set()
            log.error("%s", message)
            self.on_fatal(message)

    # -- receiving ------------------------------------------------------------------------------------

    def _receive_loop(self) -> None:
        q = self._queue()
        failures = 0
        while not self._stop.is_set():
            try:
                messages = q.batch_receive_message(self.settings.batch_size, self.settings.wait_seconds)
            except Exception as e:
                kind = classify(e)
                if kind == "empty":
                    failures = 0
                    continue
                if kind == "fatal":
                    self._fatal(e)
                    return
                failures += 1
                delay = backoff_seconds(failures)
                log.warning("mns source: receive failed (%s); retrying in %.1f s", error_code(e), delay)
                self._stop.wait(delay)
                q = self._queue()  # a fresh connection after a network failure
                continue
            failures = 0
            log.debug("mns source: received %d messages from %s", len(messages), self.settings.queue)
            for m in messages:
                self._hand_over(m)

    def _hand_over(self, m) -> None:
        visible_at = self._clock() + max(m.next_visible_time / 1000 - time.time(), 0)
        with self._lock:
            self._held[m.message_id] = _Held(m.receipt_handle, visible_at)
        body = m.message_body.encode("utf-8") if isinstance(m.message_body, str) else m.message_body
        message = Message(body=body, source=self.source_name, message_id=m.message_id, ack_after_hooks=True,
                          on_done=lambda result, mid=m.message_id: self._on_done(mid, result))
        if m.dequeue_count > self.settings.max_receives:
            self.pipeline.reject(message, MAX_RECEIVES,
                                 f"received {m.dequeue_count} times (max_receives {self.settings.max_receives})")
        else:
            self.pipeline.submit(message)

    def _on_done(self, message_id: str, result: Result) -> None:
        if result.status is Status.FAILED:
            with self._lock:  # not committed: let it become visible again and be redelivered
                self._held.pop(message_id, None)
            return
        self._finished.put(message_id)

    # -- deleting and extending -----------------------------------------------------------------------

    def _housekeep_loop(self) -> None:
        q = self._queue()
        failures = 0
        extended_at = 0.0
        while True:
            closing = self._closing.is_set()
            ids = self._take_finished(wait=0.05)
            try:
                if ids:
                    self._delete(q, ids)
                if self._clock() - extended_at >= EXTEND_CHECK_SECONDS:  # a scan of every held message
                    self._extend_visibility(q)
                    extended_at = self._clock()
                failures = 0
            except Exception as e:
                if classify(e) == "fatal":
                    self._fatal(e)
                failures += 1
                delay = backoff_seconds(failures, cap=5.0)
                log.warning("mns source: delete/extend failed (%s); retrying in %.1f s", error_code(e), delay)
                time.sleep(delay)
                q = self._queue()
            if closing and self._finished.empty():
                return

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
        from mns.mns_exception import MNSServerException

        with self._lock:
            held = {mid: self._held[mid] for mid in ids if mid in self._held}
            for h in held.values():
                h.done = True
        if not held:
            return
        try:
            q.batch_delete_message([h.handle for h in held.values()])
        except MNSServerException as e:
            if not e.sub_errors:  # the whole call failed: try these again
                for mid in held:
                    self._finished.put(mid)
                raise
            for sub in e.sub_errors:  # MessageNotExist: redelivered to someone else already; it will be
                log.debug("mns source: delete of one message refused: %s", sub.get("ErrorCode", ""))  # committed again
        with self._lock:
            for mid in held:
                self._held.pop(mid, None)
        log.debug("mns source: deleted %d committed messages", len(held))

    def _extend_visibility(self, q) -> None:
        margin = max(self.visibility_timeout / 3, 2.0)
        now = self._clock()
        with self._lock:
            due = [(mid, h.handle) for mid, h in self._held.items() if not h.done and h.visible_at - now < margin]
        for mid, handle in due:
            extension = max(self.visibility_timeout, 30)
            try:
                result = q.change_message_visibility(handle, extension)
            except Exception as e:
                if error_code(e) == "MessageNotExist":  # it became visible already: someone else may have it
                    continue
                raise
            log.debug("mns source: extended visibility of %s by %d s", mid, extension)
            with self._lock:
                held = self._held.get(mid)
                if held is not None and held.handle == handle:
                    held.handle = result.receipt_handle
                    held.visible_at = self._clock() + extension
