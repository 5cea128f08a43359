"""Local MNS queue service that the unmodified aliyun-mns-sdk 1.3.0 talks to.

Wire format and semantics follow Alibaba Cloud's documented MNS API (reference/mns.md in the team's
shared notes, §2-§7, checklist §11): signed requests, exact XML documents, visibility timeouts with one
valid receipt handle per receive, long polling, and runtime fault injection (latency, error codes,
dropped connections, outage).

    with MnsEmulator(credentials={"LTAIexampleKEY01": "secret"}) as mns:
        mns.create_queue("ecs-events", visibility_timeout=30)
        Account(mns.endpoint, "LTAIexampleKEY01", "secret").get_queue("ecs-events")...

Command line: python -m tests.emulators.mns --port 9921 --queue ecs-events --access-key-id ID
(the secret comes from ALIBABA_CLOUD_ACCESS_KEY_SECRET).
"""

from __future__ import annotations

import argparse
import base64
import binascii
import hashlib
import heapq
import hmac
import itertools
import logging
import os
import re
import threading
import time
import uuid
import xml.etree.ElementTree as ElementTree
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from email.utils import parsedate_to_datetime
from functools import lru_cache
from urllib.parse import unquote
from xml.sax.saxutils import escape

from tests.emulators._common import EmulatorHandler, EmulatorServer, FaultControls, FaultKnobs, serve_until_interrupted

log = logging.getLogger(__name__)

XMLNS = "http://mns.aliyuncs.com/doc/v1/"
API_VERSION = "2015-06-06"
MAX_CLOCK_SKEW_SECONDS = 15 * 60
MAX_BATCH = 16
MAX_WAIT_SECONDS = 30
MAX_BATCH_BYTES = 65536
DEFAULT_PRIORITY = 8

# code -> (HTTP status, message text of the error-code table, mns.md §5)
ERRORS: dict[str, tuple[int, str]] = {
    "MessageNotExist": (404, "Message not exist."),
    "QueueNotExist": (404, "The queue name you provided is not exist."),
    "QueueAlreadyExist": (409, "The queue you want to create is already exist."),
    "ReceiptHandleError": (400, "The receipt handle you provide is not valid."),
    "InvalidArgument": (400, "The argument you provided is not valid."),
    "MalformedXML": (400, "The XML you provided was not well-formed."),
    "InvalidQueueName": (400, "The queue name you provided is not valid."),
    "QueueNameLengthError": (400, "The length of queue name should be between 1 and 120."),
    "MissingReceiptHandle": (400, "ReceiptHandle is required."),
    "MissingVisibilityTimeout": (400, "VisibilityTimeout is required."),
    "InvalidRequestURL": (400, "Http request URL format invalid."),
    "InvalidQueryString": (400, "Http request URL contains invalid querystring item."),
    "InvalidDegist": (400, "The Content-MD5 you specified is invalid."),
    "MissingAuthorizationHeader": (400, "Authorization header is required."),
    "InvalidAuthorizationHeader": (400, "The Authorization header format is invalid."),
    "MissingDateHeader": (400, "Date header is required."),
    "InvalidDateHeader": (400, "The Date header format is invalid."),
    "AccessDenied": (403, "The OwnerId that your Access Key Id associated to is forbidden for this operation."),
    "InvalidAccessKeyId": (403, "The AccessKey Id you provided is not exist."),
    "SignatureDoesNotMatch": (403, "The request signature we calculated does not match the signature you provided."),
    "TimeExpired": (408, "The http request you sent is expired."),
    "InternalError": (500, "Interal error."),
    # The reference leaves QpsLimitExceeded's status open (403 or 429); 429 keeps throttling
    # distinguishable from authentication failures.
    "QpsLimitExceeded": (429, "The QPS of your requests exceeds the limit."),
}

# queue attribute -> (default, lowest, highest), mns.md §6 CreateQueue
QUEUE_ATTRIBUTES: dict[str, tuple[int, int, int]] = {
    "VisibilityTimeout": (30, 1, 43200),
    "MaximumMessageSize": (65536, 1024, 65536),
    "MessageRetentionPeriod": (345600, 60, 604800),
    "DelaySeconds": (0, 0, 604800),
    "PollingWaitSeconds": (0, 0, MAX_WAIT_SECONDS),
}

_QUEUE_NAME = re.compile(r"[A-Za-z][A-Za-z0-9-]*")
_ROOT_TAG = re.compile(rb"<([A-Za-z][\w.-]*)")
_XML_HEADERS = {"Content-Type": "text/xml;charset=utf-8"}


class MnsError(Exception):
    """A service error answered as the <Error> document of mns.md §5."""

    def __init__(self, code: str, message: str | None = None):
        self.code = code
        self.status, default_message = ERRORS[code]
        self.message = message or default_message
        super().__init__(f"{code}: {self.message}")


def _out_of_range(name: str, low: int, high: int) -> MnsError:
    return MnsError("InvalidArgument", f"The value of {name} should between {low} and {high}.")


def _int_in_range(text: str | None, name: str, low: int, high: int) -> int:
    try:
        value = int(text or "")
    except ValueError:
        raise _out_of_range(name, low, high) from None
    if not low <= value <= high:
        raise _out_of_range(name, low, high)
    return value


# ---------------------------------------------------------------------------------------------
# Signature (mns.md §3)


def sdk_content_md5(body: bytes) -> str:
    """Content-MD5 as the SDK sends it: base64 of the hex digest text (not RFC 1864)."""
    return base64.b64encode(hashlib.md5(body).hexdigest().encode()).decode()


def string_to_sign(method: str, target: str, headers: Mapping[str, str]) -> str:
    """`headers` maps lower-case names to values; `target` is the raw request-target."""
    mns_headers = "".join(
        f"{name}:{value}\n" for name, value in sorted(headers.items()) if name.startswith("x-mns-")
    )
    return (
        f"{method}\n{headers.get('content-md5', '')}\n{headers.get('content-type', '')}\n"
        f"{headers.get('date', '')}\n{mns_headers}{target}"
    )


def signature(secret: str, text: str) -> str:
    return base64.b64encode(hmac.new(secret.encode(), text.encode(), hashlib.sha1).digest()).decode()


@lru_cache(maxsize=64)
def _parse_date(value: str) -> float:
    try:
        return parsedate_to_datetime(value).timestamp()
    except (TypeError, ValueError, IndexError):
        raise MnsError("InvalidDateHeader") from None


def authenticate(
    method: str,
    target: str,
    headers: Iterable[tuple[str, str]],
    body: bytes,
    credentials: Mapping[str, str],
    now: float,
) -> str:
    """Check one request as the service does; return the access key id or raise MnsError.

    The STS `security-token` header is not signed and any token is accepted for a known key.
    """
    lowered = {name.lower(): value for name, value in headers}
    authorization = lowered.get("authorization")
    if not authorization:
        raise MnsError("MissingAuthorizationHeader")
    scheme, _, credential = authorization.partition(" ")
    key_id, _, provided = credential.partition(":")
    if scheme != "MNS" or not key_id or not provided:
        raise MnsError("InvalidAuthorizationHeader")
    date = lowered.get("date")
    if not date:
        raise MnsError("MissingDateHeader")
    sent_at = _parse_date(date)
    secret = credentials.get(key_id)
    if secret is None:
        raise MnsError("InvalidAccessKeyId")
    expected = signature(secret, string_to_sign(method, target, lowered))
    if not hmac.compare_digest(expected.encode(), provided.encode()):
        raise MnsError("SignatureDoesNotMatch")
    if abs(now - sent_at) > MAX_CLOCK_SKEW_SECONDS:
        raise MnsError("TimeExpired")
    content_md5 = lowered.get("content-md5")
    if body and content_md5 and content_md5 not in (
        sdk_content_md5(body),
        base64.b64encode(hashlib.md5(body).digest()).decode(),
    ):
        raise MnsError("InvalidDegist")
    return key_id


# ---------------------------------------------------------------------------------------------
# Receipt handles: "1-" + base64 of "<message number>-<generation>". Base64 of digits and "-"
# never contains "+" or "/", so the SDK can put handles in a query string unencoded (§6).


def _make_handle(number: int, generation: int) -> str:
    return "1-" + base64.b64encode(f"{number}-{generation}".encode()).decode()


def _parse_handle(handle: str) -> tuple[int, int]:
    prefix, _, encoded = handle.partition("-")
    try:
        parts = base64.b64decode(encoded, validate=True).decode("ascii").split("-")
    except (binascii.Error, UnicodeDecodeError):
        raise MnsError("ReceiptHandleError") from None
    if prefix != "1" or len(parts) < 2 or not all(part.isdigit() for part in parts):
        raise MnsError("ReceiptHandleError")
    return int(parts[0]), int(parts[1])


# ---------------------------------------------------------------------------------------------
# Queue state


def _ms(seconds: float) -> int:
    return int(seconds * 1000)


def _md5_upper(text: str) -> str:
    return hashlib.md5(text.encode()).hexdigest().upper()


def _escape(text: str) -> str:
    # \r is kept as a character reference: an XML parser would otherwise turn it into \n.
    return escape(text, {"\r": "&#13;"})


@dataclass(eq=False, slots=True)
class _Message:
    number: int
    message_id: str
    body: str
    body_md5: str
    priority: int
    enqueue_time: float
    expires_at: float
    visible_at: float
    dequeue_count: int = 0
    first_dequeue_time: float = 0.0
    # Bumped on every receive and visibility change: names the one valid handle, and marks
    # older heap entries of this message as stale.
    generation: int = 0
    deleted: bool = False


@dataclass(frozen=True)
class MessageState:
    """A message as tests see it; times are epoch milliseconds like on the wire."""

    message_id: str
    body: str
    state: str  # "Delayed", "Active" or "Inactive" (mns.md §7)
    dequeue_count: int
    priority: int
    enqueue_time: int
    first_dequeue_time: int
    next_visible_time: int
    receipt_handle: str  # the currently valid handle, "" if none


class _Queue:
    """One queue: a heap of active messages by (priority, enqueue order) and a heap of delayed /
    inactive ones by visible time. Entries are never searched; stale ones are skipped on pop."""

    def __init__(self, attributes: dict[str, int], logging_enabled: bool, now: float):
        self.attributes = attributes
        self.logging_enabled = logging_enabled
        self.create_time = self.last_modify_time = int(now)
        self.closed = False
        self.changed = threading.Condition(threading.Lock())
        self._messages: dict[int, _Message] = {}
        self._active: list[tuple[int, int, int, _Message]] = []  # (priority, number, generation, msg)
        self._hidden: list[tuple[float, int, int, _Message]] = []  # (visible_at, number, generation, msg)
        self._numbers = itertools.count(1)
        self.deleted_ids: list[str] = []

    # -- called with self.changed held -------------------------------------------------------

    def add(self, body: str, delay_seconds: int, priority: int, now: float) -> _Message:
        message = _Message(
            number=next(self._numbers),
            message_id=uuid.uuid4().hex.upper(),
            body=body,
            body_md5=_md5_upper(body),
            priority=priority,
            enqueue_time=now,
            expires_at=now + self.attributes["MessageRetentionPeriod"],
            visible_at=now + delay_seconds,
        )
        self._messages[message.number] = message
        self._schedule(message, now)
        self.changed.notify_all()
        return message

    def take(self, count: int, now: float) -> list[_Message]:
        """Receive up to `count` active messages: each becomes inactive with a new handle."""
        self._promote(now)
        taken = []
        while self._active and len(taken) < count:
            _, _, generation, message = heapq.heappop(self._active)
            if message.deleted or message.generation != generation:
                continue
            if now >= message.expires_at:
                self._remove(message)
                continue
            message.dequeue_count += 1
            if message.dequeue_count == 1:
                message.first_dequeue_time = now
            self._hide(message, now, now + self.attributes["VisibilityTimeout"])
            taken.append(message)
        return taken

    def next_change_in(self, now: float) -> float | None:
        """Seconds until the earliest hidden message may become active, if any."""
        return max(self._hidden[0][0] - now, 0.0) if self._hidden else None

    def peek(self, count: int, now: float) -> list[_Message]:
        active = [m for m in self._messages.values() if m.visible_at <= now < m.expires_at]
        return sorted(active, key=lambda m: (m.priority, m.number))[:count]

    def holder(self, handle: str, now: float) -> _Message:
        """The message whose current handle is `handle`, or MessageNotExist."""
        number, generation = _parse_handle(handle)
        message = self._messages.get(number)
        if message is None or generation == 0 or message.generation != generation or message.visible_at <= now:
            raise MnsError("MessageNotExist")
        if now >= message.expires_at:
            self._remove(message)
            raise MnsError("MessageNotExist")
        return message

    def delete(self, message: _Message) -> None:
        self._remove(message)
        self.deleted_ids.append(message.message_id)
        if len(self._hidden) > 2 * len(self._messages) + 1024:
            self._hidden = [e for e in self._hidden if not e[3].deleted and e[3].generation == e[2]]
            heapq.heapify(self._hidden)

    def change_visibility(self, message: _Message, seconds: int, now: float) -> None:
        self._hide(message, now, now + seconds)
        self.changed.notify_all()

    def counts(self, now: float) -> Counter[str]:
        return Counter(_state(m, now) for m in self._messages.values() if now < m.expires_at)

    def snapshot(self, now: float) -> list[MessageState]:
        return [
            MessageState(
                message_id=m.message_id,
                body=m.body,
                state=_state(m, now),
                dequeue_count=m.dequeue_count,
                priority=m.priority,
                enqueue_time=_ms(m.enqueue_time),
                first_dequeue_time=_ms(m.first_dequeue_time),
                next_visible_time=_ms(m.visible_at),
                receipt_handle=_make_handle(m.number, m.generation) if m.generation and m.visible_at > now else "",
            )
            for m in self._messages.values()
            if now < m.expires_at
        ]

    def close(self) -> None:
        self.closed = True
        self.changed.notify_all()

    # -- internals ---------------------------------------------------------------------------

    def _hide(self, message: _Message, now: float, visible_at: float) -> None:
        message.generation += 1
        message.visible_at = visible_at
        self._schedule(message, now)

    def _schedule(self, message: _Message, now: float) -> None:
        entry = (message.number, message.generation, message)
        if message.visible_at > now:
            heapq.heappush(self._hidden, (message.visible_at, *entry))
        else:
            heapq.heappush(self._active, (message.priority, *entry))

    def _promote(self, now: float) -> None:
        while self._hidden and self._hidden[0][0] <= now:
            _, number, generation, message = heapq.heappop(self._hidden)
            if not message.deleted and message.generation == generation:
                heapq.heappush(self._active, (message.priority, number, generation, message))

    def _remove(self, message: _Message) -> None:
        message.deleted = True
        del self._messages[message.number]


def _state(message: _Message, now: float) -> str:
    if message.visible_at <= now:
        return "Active"
    return "Inactive" if message.dequeue_count else "Delayed"


# ---------------------------------------------------------------------------------------------
# XML


def _document(root: str, inner: str) -> bytes:
    return f'<?xml version="1.0" encoding="UTF-8"?><{root} xmlns="{XMLNS}">{inner}</{root}>'.encode()


def _elements(pairs: Iterable[tuple[str, object]]) -> str:
    return "".join(f"<{name}>{_escape(str(value))}</{name}>" for name, value in pairs)


def _message_fields(message: _Message, with_handle: bool) -> str:
    pairs: list[tuple[str, object]] = [("MessageId", message.message_id)]
    if with_handle:
        pairs.append(("ReceiptHandle", _make_handle(message.number, message.generation)))
    pairs += [("MessageBodyMD5", message.body_md5), ("MessageBody", message.body)]
    pairs.append(("EnqueueTime", _ms(message.enqueue_time)))
    if with_handle:
        pairs.append(("NextVisibleTime", _ms(message.visible_at)))
    pairs += [
        ("FirstDequeueTime", _ms(message.first_dequeue_time)),
        ("DequeueCount", message.dequeue_count),
        ("Priority", message.priority),
    ]
    return _elements(pairs)


def _messages_document(fields: list[str], batch: bool) -> bytes:
    """<Messages><Message>…</Message>…</Messages> for batch calls, a single <Message> otherwise."""
    if batch:
        return _document("Messages", "".join(f"<Message>{f}</Message>" for f in fields))
    return _document("Message", fields[0])


def _parse_xml(body: bytes) -> ElementTree.Element:
    try:
        return ElementTree.fromstring(body)
    except ElementTree.ParseError:
        raise MnsError("MalformedXML") from None


def _local(tag: str) -> str:
    return tag.rpartition("}")[2]


def _leaves(element: ElementTree.Element) -> dict[str, str]:
    return {_local(child.tag): child.text or "" for child in element}


# ---------------------------------------------------------------------------------------------
# Faults


# ---------------------------------------------------------------------------------------------
# The service


def _route(method: str, path: str, params: Mapping[str, str], body: bytes) -> tuple[str, str]:
    """(operation name, queue name) of a request; operation "Unknown" when nothing matches."""
    segments = path.split("/")
    if len(segments) < 3 or segments[1] != "queues" or not segments[2] or len(segments) > 4:
        return "Unknown", ""
    queue = segments[2]
    if len(segments) == 3:
        if method == "PUT":
            return ("SetQueueAttributes" if params.get("metaoverride") == "true" else "CreateQueue"), queue
        return {"GET": "GetQueueAttributes", "DELETE": "DeleteQueue"}.get(method, "Unknown"), queue
    if segments[3] != "messages":
        return "Unknown", ""
    if method == "POST":
        root = _ROOT_TAG.search(body)
        return ("BatchSendMessage" if root and root.group(1) == b"Messages" else "SendMessage"), queue
    if method == "GET":
        if params.get("peekonly") == "true":
            return ("BatchPeekMessage" if "numofmessages" in params else "PeekMessage"), queue
        return ("BatchReceiveMessage" if "numofmessages" in params else "ReceiveMessage"), queue
    if method == "DELETE":
        return ("DeleteMessage" if "receipthandle" in params else "BatchDeleteMessage"), queue
    if method == "PUT":
        return "ChangeMessageVisibility", queue
    return "Unknown", ""


def _parse_query(query: str) -> dict[str, str]:
    """Names lower-cased (docs and SDK differ in case); values percent-decoded but never `+`→space."""
    params = {}
    for item in query.split("&") if query else ():
        name, _, value = item.partition("=")
        params[name.lower()] = unquote(value)
    return params


Response = tuple[int, dict[str, str], bytes]


class MnsEmulator(FaultControls):
    """In-process MNS queue service. Use as a context manager, or start() / stop()."""

    known_errors = ERRORS

    def __init__(self, credentials: Mapping[str, str], host: str = "127.0.0.1", port: int = 0, seed: int = 0):
        self._credentials = dict(credentials)
        self._queues: dict[str, _Queue] = {}
        self._queues_lock = threading.Lock()
        self._faults = FaultKnobs(seed)
        self._stats_lock = threading.Lock()
        self._requests: Counter[str] = Counter()
        self._faults_seen: Counter[str] = Counter()
        self._request_ids = itertools.count(1)
        self._request_id_prefix = uuid.uuid4().hex[:12].upper()
        self._server = EmulatorServer(_MnsHandler, host, port)
        self._server.emulator = self  # type: ignore[attr-defined]
        self.endpoint = self._server.endpoint
        self._operations = {
            "CreateQueue": self._create_queue_op,
            "SetQueueAttributes": self._set_queue_attributes_op,
            "GetQueueAttributes": self._get_queue_attributes_op,
            "DeleteQueue": self._delete_queue_op,
            "SendMessage": self._send_message_op,
            "BatchSendMessage": self._batch_send_message_op,
            "ReceiveMessage": self._receive_message_op,
            "BatchReceiveMessage": self._receive_message_op,
            "PeekMessage": self._peek_message_op,
            "BatchPeekMessage": self._peek_message_op,
            "DeleteMessage": self._delete_message_op,
            "BatchDeleteMessage": self._batch_delete_message_op,
            "ChangeMessageVisibility": self._change_visibility_op,
        }

    # -- lifecycle ---------------------------------------------------------------------------

    def start(self) -> MnsEmulator:
        self._server.start()
        return self

    def stop(self) -> None:
        self._server.stop()
        with self._queues_lock:
            queues = list(self._queues.values())
        for queue in queues:
            with queue.changed:
                queue.close()

    # -- helpers for tests (no HTTP) ---------------------------------------------------------

    def create_queue(
        self,
        name: str,
        *,
        visibility_timeout: int = 30,
        maximum_message_size: int = 65536,
        message_retention_period: int = 345600,
        delay_seconds: int = 0,
        polling_wait_seconds: int = 0,
        logging_enabled: bool = False,
    ) -> None:
        """Create a queue as CreateQueue does (same validation; existing with other values → MnsError)."""
        attributes = {
            "VisibilityTimeout": visibility_timeout,
            "MaximumMessageSize": maximum_message_size,
            "MessageRetentionPeriod": message_retention_period,
            "DelaySeconds": delay_seconds,
            "PollingWaitSeconds": polling_wait_seconds,
        }
        self._create_queue(name, {k: str(v) for k, v in attributes.items()}, logging_enabled)

    def delete_queue(self, name: str) -> None:
        with self._queues_lock:
            queue = self._queues.pop(name, None)
        if queue is None:
            raise MnsError("QueueNotExist")
        with queue.changed:
            queue.close()

    def send_message(self, queue_name: str, body: str, *, delay_seconds: int | None = None,
                     priority: int = DEFAULT_PRIORITY) -> str:
        """Enqueue `body` verbatim, as another producer (e.g. CloudMonitor) would; returns the MessageId."""
        queue = self._queue(queue_name)
        with queue.changed:
            delay = queue.attributes["DelaySeconds"] if delay_seconds is None else delay_seconds
            return queue.add(body, delay, priority, time.time()).message_id

    def messages(self, queue_name: str) -> list[MessageState]:
        """Every message still in the queue, in enqueue order, with its current state."""
        queue = self._queue(queue_name)
        with queue.changed:
            return queue.snapshot(time.time())

    def deleted_message_ids(self, queue_name: str) -> list[str]:
        """MessageIds deleted through the API, in order (a message can be deleted only once)."""
        queue = self._queue(queue_name)
        with queue.changed:
            return list(queue.deleted_ids)

    def request_counts(self) -> dict[str, int]:
        """Requests received per operation name (e.g. "BatchReceiveMessage"), faulted ones included."""
        with self._stats_lock:
            return dict(self._requests)

    def fault_counts(self) -> dict[str, int]:
        """Faults injected: "dropped", "refused" (outage) and per injected error code."""
        with self._stats_lock:
            return dict(self._faults_seen)

    # -- request handling --------------------------------------------------------------------

    def handle(self, method: str, target: str, headers: Iterable[tuple[str, str]], body: bytes) -> Response | None:
        """Answer one HTTP request; None means close the connection without answering."""
        path, _, query = target.partition("?")
        params = _parse_query(query)
        operation, queue_name = _route(method, path, params, body)
        self._count(self._requests, operation)
        if self._server.refuse_connections:
            self._count(self._faults_seen, "refused")
            return None
        drop, latency, injected = self._faults.draw(operation)
        if drop:
            self._count(self._faults_seen, "dropped")
            return None
        request_id = f"{self._request_id_prefix}{next(self._request_ids):012X}"
        try:
            authenticate(method, target, headers, body, self._credentials, time.time())
            if injected:
                self._count(self._faults_seen, injected)
                raise MnsError(injected)
            handler = self._operations.get(operation)
            if handler is None:
                raise MnsError("InvalidRequestURL")
            status, response_headers, payload = handler(queue_name, params, body)
        except MnsError as error:
            status, response_headers, payload = error.status, _XML_HEADERS, self._error_document(error, request_id)
        except Exception:
            log.exception("MNS emulator failed on %s %s", method, path)
            error = MnsError("InternalError")
            status, response_headers, payload = error.status, _XML_HEADERS, self._error_document(error, request_id)
        if latency:
            time.sleep(latency)
        return status, {"x-mns-request-id": request_id, "x-mns-version": API_VERSION, **response_headers}, payload

    def _count(self, counter: Counter[str], key: str) -> None:
        with self._stats_lock:
            counter[key] += 1

    def _error_document(self, error: MnsError, request_id: str) -> bytes:
        return _document(
            "Error",
            _elements([("Code", error.code), ("Message", error.message), ("RequestId", request_id), ("HostId", self.endpoint)]),
        )

    def _queue(self, name: str) -> _Queue:
        with self._queues_lock:
            queue = self._queues.get(name)
        if queue is None:
            raise MnsError("QueueNotExist")
        return queue

    # -- queue operations --------------------------------------------------------------------

    def _create_queue(self, name: str, given: Mapping[str, str], logging_enabled: bool | None) -> bool:
        """True if created, False if it already existed with the given attributes."""
        if len(name) > 120:
            raise MnsError("QueueNameLengthError")
        if not _QUEUE_NAME.fullmatch(name):
            raise MnsError("InvalidQueueName")
        checked = _checked_attributes(given)
        with self._queues_lock:
            existing = self._queues.get(name)
            if existing is None:
                attributes = {k: default for k, (default, _, _) in QUEUE_ATTRIBUTES.items()} | checked
                self._queues[name] = _Queue(attributes, bool(logging_enabled), time.time())
                return True
        with existing.changed:
            same_logging = logging_enabled is None or logging_enabled == existing.logging_enabled
            if same_logging and all(existing.attributes[k] == v for k, v in checked.items()):
                return False
        raise MnsError("QueueAlreadyExist")

    def _queue_location(self, name: str) -> dict[str, str]:
        return {"Location": f"{self.endpoint}/queues/{name}"}

    def _create_queue_op(self, name: str, params: Mapping[str, str], body: bytes) -> Response:
        given, logging_enabled = _queue_request(body)
        created = self._create_queue(name, given, logging_enabled)
        return (201 if created else 204), self._queue_location(name), b""

    def _set_queue_attributes_op(self, name: str, params: Mapping[str, str], body: bytes) -> Response:
        given, logging_enabled = _queue_request(body)
        checked = _checked_attributes(given)
        queue = self._queue(name)
        with queue.changed:
            queue.attributes |= checked
            if logging_enabled is not None:
                queue.logging_enabled = logging_enabled
            queue.last_modify_time = int(time.time())
            queue.changed.notify_all()
        return 204, self._queue_location(name), b""

    def _get_queue_attributes_op(self, name: str, params: Mapping[str, str], body: bytes) -> Response:
        queue = self._queue(name)
        with queue.changed:
            counts = queue.counts(time.time())
            pairs = [
                ("QueueName", name),
                ("CreateTime", queue.create_time),
                ("LastModifyTime", queue.last_modify_time),
                *queue.attributes.items(),
                ("ActiveMessages", counts["Active"]),
                ("InactiveMessages", counts["Inactive"]),
                ("DelayMessages", counts["Delayed"]),
                ("LoggingEnabled", "True" if queue.logging_enabled else "False"),
            ]
        return 200, _XML_HEADERS, _document("Queue", _elements(pairs))

    def _delete_queue_op(self, name: str, params: Mapping[str, str], body: bytes) -> Response:
        self.delete_queue(name)
        return 204, {}, b""

    def _send_message_op(self, name: str, params: Mapping[str, str], body: bytes) -> Response:
        queue = self._queue(name)
        root = _parse_xml(body)
        if _local(root.tag) != "Message":
            raise MnsError("MalformedXML")
        with queue.changed:
            message = self._add(queue, _leaves(root), time.time())
            pairs = [("MessageId", message.message_id), ("MessageBodyMD5", message.body_md5)]
        return 201, _XML_HEADERS, _document("Message", _elements(pairs))

    def _batch_send_message_op(self, name: str, params: Mapping[str, str], body: bytes) -> Response:
        queue = self._queue(name)
        entries = [_leaves(e) for e in _parse_xml(body) if _local(e.tag) == "Message"]
        if not 1 <= len(entries) <= MAX_BATCH:
            raise _out_of_range("the number of messages", 1, MAX_BATCH)
        if sum(len(e.get("MessageBody", "").encode()) for e in entries) > MAX_BATCH_BYTES:
            raise _out_of_range("the total size of MessageBody", 1, MAX_BATCH_BYTES)
        results, failed = [], False
        with queue.changed:
            now = time.time()
            for entry in entries:
                try:
                    message = self._add(queue, entry, now)
                    results.append([("MessageId", message.message_id), ("MessageBodyMD5", message.body_md5)])
                except MnsError as error:
                    failed = True
                    results.append([("ErrorCode", error.code), ("ErrorMessage", error.message)])
        inner = "".join(f"<Message>{_elements(pairs)}</Message>" for pairs in results)
        # A partial failure has no documented status; the SDK accepts any 4xx/5xx (mns.md §6).
        return (500 if failed else 201), _XML_HEADERS, _document("Messages", inner)

    def _add(self, queue: _Queue, fields: Mapping[str, str], now: float) -> _Message:
        if "MessageBody" not in fields:
            raise MnsError("MalformedXML")
        body = fields["MessageBody"]
        size_limit = queue.attributes["MaximumMessageSize"]
        if len(body.encode()) > size_limit:
            raise _out_of_range("MessageBody size", 1, size_limit)
        low, high = QUEUE_ATTRIBUTES["DelaySeconds"][1:]
        delay = queue.attributes["DelaySeconds"]
        if "DelaySeconds" in fields:
            delay = _int_in_range(fields["DelaySeconds"], "DelaySeconds", low, high)
        priority = DEFAULT_PRIORITY
        if "Priority" in fields:
            priority = _int_in_range(fields["Priority"], "Priority", 1, 16)
        return queue.add(body, delay, priority, now)

    def _receive_message_op(self, name: str, params: Mapping[str, str], body: bytes) -> Response:
        batch = "numofmessages" in params
        count = _int_in_range(params["numofmessages"], "numOfMessages", 1, MAX_BATCH) if batch else 1
        queue = self._queue(name)
        with queue.changed:
            wait = queue.attributes["PollingWaitSeconds"]
        if "waitseconds" in params:
            wait = _int_in_range(params["waitseconds"], "waitseconds", 0, MAX_WAIT_SECONDS)
        deadline = time.time() + wait
        with queue.changed:
            while True:
                if queue.closed:
                    raise MnsError("QueueNotExist")
                now = time.time()
                taken = queue.take(count, now)
                if taken:
                    fields = [_message_fields(m, with_handle=True) for m in taken]
                    break
                remaining = deadline - now
                if remaining <= 0:
                    raise MnsError("MessageNotExist")
                next_change = queue.next_change_in(now)
                queue.changed.wait(remaining if next_change is None else min(remaining, next_change + 0.001))
        return 200, _XML_HEADERS, _messages_document(fields, batch)

    def _peek_message_op(self, name: str, params: Mapping[str, str], body: bytes) -> Response:
        batch = "numofmessages" in params
        count = _int_in_range(params["numofmessages"], "numOfMessages", 1, MAX_BATCH) if batch else 1
        queue = self._queue(name)
        with queue.changed:
            peeked = queue.peek(count, time.time())
            if not peeked:
                raise MnsError("MessageNotExist")
            fields = [_message_fields(m, with_handle=False) for m in peeked]
        return 200, _XML_HEADERS, _messages_document(fields, batch)

    def _delete_message_op(self, name: str, params: Mapping[str, str], body: bytes) -> Response:
        handle = params.get("receipthandle")
        if not handle:
            raise MnsError("MissingReceiptHandle")
        queue = self._queue(name)
        with queue.changed:
            queue.delete(queue.holder(handle, time.time()))
        return 204, {}, b""

    def _batch_delete_message_op(self, name: str, params: Mapping[str, str], body: bytes) -> Response:
        queue = self._queue(name)
        handles = [e.text or "" for e in _parse_xml(body) if _local(e.tag) == "ReceiptHandle"]
        if not 1 <= len(handles) <= MAX_BATCH:
            raise _out_of_range("the number of ReceiptHandle", 1, MAX_BATCH)
        errors = []
        with queue.changed:
            now = time.time()
            for handle in handles:
                try:
                    queue.delete(queue.holder(handle, now))
                except MnsError as error:
                    errors.append([("ErrorCode", error.code), ("ErrorMessage", error.message), ("ReceiptHandle", handle)])
        if not errors:
            return 204, {}, b""
        inner = "".join(f"<Error>{_elements(pairs)}</Error>" for pairs in errors)
        return 404, _XML_HEADERS, _document("Errors", inner)

    def _change_visibility_op(self, name: str, params: Mapping[str, str], body: bytes) -> Response:
        handle = params.get("receipthandle")
        if not handle:
            raise MnsError("MissingReceiptHandle")
        if "visibilitytimeout" not in params:
            raise MnsError("MissingVisibilityTimeout")
        low, high = QUEUE_ATTRIBUTES["VisibilityTimeout"][1:]
        seconds = _int_in_range(params["visibilitytimeout"], "VisibilityTimeout", low, high)
        queue = self._queue(name)
        with queue.changed:
            now = time.time()
            message = queue.holder(handle, now)
            queue.change_visibility(message, seconds, now)
            pairs = [
                ("ReceiptHandle", _make_handle(message.number, message.generation)),
                ("NextVisibleTime", _ms(message.visible_at)),
            ]
        return 200, _XML_HEADERS, _document("ChangeVisibility", _elements(pairs))


def _queue_request(body: bytes) -> tuple[dict[str, str], bool | None]:
    """Attributes given in a <Queue> request body, and LoggingEnabled if given."""
    if not body:
        return {}, None
    root = _parse_xml(body)
    if _local(root.tag) != "Queue":
        raise MnsError("MalformedXML")
    given = _leaves(root)
    logging_text = given.pop("LoggingEnabled", None)
    if logging_text is None:
        return given, None
    if logging_text.lower() not in ("true", "false"):
        raise MnsError("InvalidArgument", "The value of LoggingEnabled should be True or False.")
    return given, logging_text.lower() == "true"


def _checked_attributes(given: Mapping[str, str]) -> dict[str, int]:
    checked = {}
    for name, text in given.items():
        if name not in QUEUE_ATTRIBUTES:
            raise MnsError("InvalidArgument", f"Unknown queue attribute {name}.")
        _, low, high = QUEUE_ATTRIBUTES[name]
        checked[name] = _int_in_range(text, name, low, high)
    return checked


class _MnsHandler(EmulatorHandler):
    def _serve(self) -> None:
        body = self.read_body()
        response = self.server.emulator.handle(self.command, self.path, self.headers.items(), body)
        if response is None:
            self.drop_connection()
        else:
            self.send(*response)

    do_GET = do_PUT = do_POST = do_DELETE = _serve


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Local MNS queue emulator for aliyun-mns-sdk.")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=9921)
    parser.add_argument("--queue", action="append", default=[], help="queue to create (repeatable)")
    parser.add_argument("--visibility-timeout", type=int, default=30)
    parser.add_argument("--access-key-id", default=os.environ.get("ALIBABA_CLOUD_ACCESS_KEY_ID"))
    parser.add_argument("--latency-ms", type=float, default=0.0,
                        help="delay every response by this much, standing in for the network")
    args = parser.parse_args(argv)
    secret = os.environ.get("ALIBABA_CLOUD_ACCESS_KEY_SECRET")
    if not args.access_key_id or not secret:
        parser.error("set --access-key-id (or ALIBABA_CLOUD_ACCESS_KEY_ID) and ALIBABA_CLOUD_ACCESS_KEY_SECRET")
    emulator = MnsEmulator(credentials={args.access_key_id: secret}, host=args.host, port=args.port)
    for name in args.queue:
        emulator.create_queue(name, visibility_timeout=args.visibility_timeout)
    emulator.set_latency(args.latency_ms / 1000)
    with emulator:
        print(emulator.endpoint, flush=True)
        serve_until_interrupted()


if __name__ == "__main__":
    main()
