"""SLS sink: each batch goes out as few PutLogs requests as the limits allow, retried with backoff.

Records go to their logstore with a topic (`ecs-events`: category, `shipper-actions`: hook,
`shipper-deadletter`: reason), the source and tags `shipper_host` / `shipper_version` (queried as
`__tag__:…`), and every schema field as a content key, empty ones included: SLS stores strings, and
`key: ""` then finds the records where a field is empty (a missing key would only match `not key: *`).
`__time__` is the event time for events (`Time_ns` keeps the milliseconds) unless SLS would refuse it as
too old or too far ahead (a replay): then, as for the other tables, the write time.

A request carries one topic, at most 4096 logs and 3,000,000 raw bytes (reference/sls.md §4.3).
Throttling, 5xx and network errors are retried with exponential backoff and full jitter for at most
`retry_seconds` per batch, then the batch fails (the source redelivers it; nothing is lost). A request the
service refuses for its data is split in halves until the offending logs are alone; those, or all logs
of a request refused for any other lasting reason (missing logstore, credentials), are written to the
dead-letter logstore (reason `sls-rejected`) and the batch succeeds. If that write fails, the batch fails.

Events are written once (shipper/ledger.py): copies inside a batch collapse (the first wins), those the
ledger says the events logstore already has are dropped, and each accepted PutLogs request's uids are
committed to the ledger at once, so a batch that failed on its third request is completed on redelivery
by sending only what did not land. Actions and dead letters carry no uid of their own and are not deduped.

A request whose outcome is unknown is settled by asking SLS (GetLogs on `event_uid`) which of its logs
landed: those are committed and not sent again, the others are. That is a request the ledger holds as
pending from a process that was killed (asked on this sink's first write), and a retry after a network
error or timeout (before re-sending). If GetLogs fails, the logs are sent anyway: a copy, never a loss.
"""
from __future__ import annotations

import logging
import socket
import struct
import time
from dataclasses import dataclass
from typing import Callable, NamedTuple

import orjson

from shipper import __version__, events, registry
from shipper.telemetry import metrics
from shipper.cloud import Backoff, CloudError, Credentials, MissingCredentials, credentials_for
from shipper.cloud.sls import close_client, endpoint_host, error_code, get_logs, make_client, put_log_group
from shipper.ledger import Ledger, Pending
from shipper.registry import Finding
from shipper.times import format_time_ms
from shipper.sinks.sqlite import StoreError

log = logging.getLogger("shipper.sinks.sls")

MAX_LOGS_PER_PUT = 4096
MAX_BYTES_PER_PUT = 3_000_000  # raw (uncompressed) LogGroup bytes
REJECTED = "sls-rejected"  # dead-letter reason
DEADLETTER_SOURCE = "sink:sls"
# Codes that blame some log in the request (sls.md §5): split the request to find it.
DATA_ERROR_CODES = frozenset({"PostBodyInvalid", "PostBodyTooLarge", "InvalidTimestamp", "InvalidEncoding",
                              "InvalidKey"})
BACKOFF_BASE_SECONDS = 0.1
BACKOFF_CAP_SECONDS = 10.0
BACKOFF = Backoff(BACKOFF_BASE_SECONDS, BACKOFF_CAP_SECONDS)  # full jitter; attempt 0 is the first retry
# No answer at all, or the service's own timeout (sls.md §5): the request may have been stored.
UNKNOWN_OUTCOME_CODES = frozenset({"LogRequestError", "RequestTimeout"})
# A log SLS stored is searchable after a short delay: GetLogs' usage notes give at most 3 s (99.9% within 1 s)
# for a log whose time is within 180 s of its arrival, longer for older times (sls.md names no figure; it says
# only, §8, that logs written before the index existed are never searchable). Asked sooner, SLS may not find
# a log that landed: it is sent again, a copy, never a loss.
SEARCHABLE_AFTER_SECONDS = 3.0
# A search statement may hold at most 30 keywords (SLS query limits, help doc-detail/92572), and a page at
# most 100 logs (sls.md §6.1): 30 uids a question leaves room for copies already there.
UIDS_PER_QUERY = 30
QUERY_MARGIN_SECONDS = 60  # around a request's __time__ range: cheap, the uids do the selecting


@dataclass(frozen=True)
class SlsSinkSettings:
    """SLS logstores; credentials come from the ALIBABA_CLOUD_* variables."""
    type: str = "sls"
    endpoint: str = ""                      # cn-hangzhou.log.aliyuncs.com, https://..., or 127.0.0.1:<port>
    project: str = ""
    events_logstore: str = "ecs-events"
    actions_logstore: str = "shipper-actions"
    deadletter_logstore: str = "shipper-deadletter"
    audit_logstore: str = "shipper-audit"
    compress: str = "lz4"                   # lz4 or deflate
    timeout_seconds: float = 30.0           # per request
    retry_seconds: float = 60.0             # retry a batch this long, then report it failed (redelivered)

    def validate(self) -> None:
        if not self.endpoint or not self.project:
            raise registry.Invalid("`endpoint` and `project` are required, e.g. "
                                   "endpoint = \"cn-hangzhou.log.aliyuncs.com\", project = \"ecs-audit\"")
        if self.compress not in ("lz4", "deflate"):
            raise registry.Invalid(f"`compress` must be lz4 or deflate, got {self.compress!r}")
        registry.positive(self, "timeout_seconds", "retry_seconds")



class SlsSinkError(Exception):
    """A batch could not be written within its retry budget; the message names logstore and code."""


# -- protobuf LogGroup (sls.md §4.1), serialized directly -----------------------------------------------
# The SDK path (LogItem, deep-copied contents, then protobuf objects) costs several times more per event
# than joining the wire bytes here; bench/sls_sink.py measures both.

def _varint(n: int) -> bytes:
    out = bytearray()
    while n > 0x7F:
        out.append((n & 0x7F) | 0x80)
        n >>= 7
    out.append(n)
    return bytes(out)


_SHORT_VARINTS = [_varint(n) for n in range(1 << 14)]


def _length(n: int) -> bytes:
    return _SHORT_VARINTS[n] if n < 16384 else _varint(n)


def _string_field(tag: int, text: str) -> bytes:
    data = text.encode("utf-8")
    return bytes((tag,)) + _length(len(data)) + data


def _pair(tag: int, key: str, value: str) -> bytes:
    """A Content or LogTag message (Key = 1, Value = 2) as field `tag` of its parent."""
    body = _string_field(0x0A, key) + _string_field(0x12, value)
    return bytes((tag,)) + _length(len(body)) + body


class LogEncoder:
    """Serializes records with fixed fields as LogGroup `Logs` entries (field 1: tag, length, Log)."""

    def __init__(self, fields: tuple[str, ...]):
        # Content: 0x0a <len> key, then the Value tag 0x12 (its length and bytes follow per record).
        self._keys = [(name, _string_field(0x0A, name) + b"\x12") for name in fields]

    def encode(self, record: dict, time_s: int, time_ns: int) -> bytes:
        parts = [b"\x08", _varint(time_s)]
        append = parts.append
        for name, key in self._keys:
            try:
                data = record[name].encode("utf-8")
            except (KeyError, AttributeError):  # a missing field, or a value some producer left unconverted
                value = record.get(name)
                data = ("" if value is None else str(value)).encode("utf-8")
            size = _length(len(data))
            append(b"\x12")  # Log.Contents
            append(_length(len(key) + len(size) + len(data)))
            append(key)
            append(size)
            append(data)
        append(b"\x25")  # Log.Time_ns, fixed32
        append(struct.pack("<I", time_ns))
        body = b"".join(parts)
        return b"\x0a" + _length(len(body)) + body


def group_tail(topic: str, source: str, tags: list[tuple[str, str]]) -> bytes:
    """The LogGroup fields after the logs: Topic (3), Source (4), LogTags (6)."""
    return (_string_field(0x1A, topic) + _string_field(0x22, source)
            + b"".join(_pair(0x32, key, value) for key, value in tags))


# -- routing ----------------------------------------------------------------------------------------------



# A dead letter's base64 raw must stay under SLS's 1 MB value limit.
MAX_DEAD_LETTER_RAW_BYTES = 700_000

# SLS refuses a log whose time is more than about 7 days old or 15 minutes ahead (sls.md section 4.3).
OLDEST_LOG_SECONDS = 6 * 86400
NEWEST_LOG_SECONDS = 10 * 60


def _event_time(record: dict, now_s: int, now_ns: int) -> tuple[int, int]:
    """`__time__` for an event: its event time, or the write time when SLS would refuse that (a replay of
    old events); `event_time` / `event_time_ms` always keep the real one."""
    try:
        ms = int(record["event_time_ms"])
    except (KeyError, TypeError, ValueError):
        return now_s, now_ns
    if not now_s - OLDEST_LOG_SECONDS <= ms // 1000 <= now_s + NEWEST_LOG_SECONDS:
        return now_s, now_ns
    return ms // 1000, ms % 1000 * 1_000_000


class _Log(NamedTuple):
    record: dict
    data: bytes  # the encoded LogGroup entry
    time_s: int  # its __time__


def _chunks(logs: list[_Log], tail_size: int) -> list[list[_Log]]:
    """Consecutive runs of encoded logs, each within the per-request count and raw-size limits."""
    chunks, chunk, size = [], [], tail_size
    for item in logs:
        if chunk and (len(chunk) == MAX_LOGS_PER_PUT or size + len(item.data) > MAX_BYTES_PER_PUT):
            chunks.append(chunk)
            chunk, size = [], tail_size
        chunk.append(item)
        size += len(item.data)
    if chunk:
        chunks.append(chunk)
    return chunks


def uid_queries(uids: list[str], field: str = "event_uid") -> list[str]:
    """GetLogs search statements that together find every log with one of these uids in `field`."""
    return [" or ".join(f'{field}: "{uid}"' for uid in uids[start:start + UIDS_PER_QUERY])
            for start in range(0, len(uids), UIDS_PER_QUERY)]


def _raw_text(table: str, record: dict) -> str:
    if table == events.EVENTS_TABLE:
        return record.get("raw", "")
    return orjson.dumps(record).decode("utf-8")  # an action record has no input of its own: keep the record


def _describe(error: CloudError) -> str:
    return f"{error.code}: {error.message}"


class SlsSink:
    name = "sls"

    def __init__(self, settings: SlsSinkSettings, credentials: Credentials, *, ledger: Ledger | None = None,
                 sleep: Callable[[float], None] = time.sleep, clock: Callable[[], float] = time.monotonic):
        """Without a ledger (benchmarks), only copies inside one batch are dropped."""
        self.settings = settings
        self._ledger = ledger
        self._client = make_client(settings.endpoint, credentials, timeout=settings.timeout_seconds)
        self._sleep = sleep
        self._clock = clock
        self._host = socket.gethostname()
        self._tags = [("shipper_host", self._host), ("shipper_version", __version__)]
        self._logstores = {
            events.EVENTS_TABLE: settings.events_logstore,
            events.ACTIONS_TABLE: settings.actions_logstore,
            events.DEADLETTER_TABLE: settings.deadletter_logstore,
            events.AUDIT_TABLE: settings.audit_logstore,
        }
        self._encoders = {table: LogEncoder(fields) for table, fields in events.TABLE_FIELDS.items()}
        # The ledger's name for each logstore whose records have a uid. The endpoint's host is part of it: a
        # project name is unique only within its region.
        self._ledger_stores = {table: f"sls:{endpoint_host(settings.endpoint)}/{settings.project}/{self._logstores[table]}"
                               for table in events.UID_FIELD}
        # Requests whose outcome is unknown (table, pending), settled before the next records with a uid are
        # written; None until the first such write, which starts with those of processes killed in flight.
        self._unsettled: list[tuple[str, Pending]] | None = None

    def write(self, table: str, records: list[dict]) -> int:
        """Logs newly written to the table's logstore; records SLS refused are dead-lettered, not counted."""
        deadline = self._clock() + self.settings.retry_seconds
        if table in events.UID_FIELD:
            if self._ledger is not None:
                self._settle_unknown()
            records = self._new_records(table, records)
        written, rejected = self._write(table, records, deadline)
        if rejected:
            if table == events.DEADLETTER_TABLE:
                raise SlsSinkError(f"sls: {self.settings.deadletter_logstore}: {len(rejected)} dead-letter records "
                                   f"refused: {rejected[0][1]}")
            self._dead_letter(table, rejected, deadline)
        return written

    def close(self) -> None:
        close_client(self._client)

    # -- internals ---------------------------------------------------------------------------------------

    def _new_records(self, table: str, records: list[dict]) -> list[dict]:
        """The first record of each uid, less those the ledger says the logstore has (a record without a uid,
        e.g. a dead letter from an older version, is always kept)."""
        field = events.UID_FIELD[table]
        first: dict[str, dict] = {}
        nameless = [record for record in records if not record.get(field)]
        for record in records:
            if record.get(field):
                first.setdefault(record[field], record)
        fresh = self._ledger.fresh(self._ledger_stores[table], list(first)) if self._ledger else first.keys()
        kept = [record for uid, record in first.items() if uid in fresh] + nameless
        if len(kept) < len(records):
            metrics.COPIES_DROPPED.inc(len(records) - len(kept), labels={"sink": self.name})
        return kept

    def _settle_unknown(self) -> None:
        """Commit what SLS has of each request whose outcome is unknown, and forget the rest: their events are
        sent again when their messages come back."""
        if self._unsettled is None:
            self._unsettled = [(table, pending) for table, store in self._ledger_stores.items()
                               for pending in self._ledger.orphans(store)]
        while self._unsettled:
            table, pending = self._unsettled.pop()
            self._sleep(max(0.0, pending.sent + SEARCHABLE_AFTER_SECONDS - time.time()))
            landed = self._landed(table, list(pending.uids), pending)
            self._ledger.commit(self._ledger_stores[table], landed, settles=pending)

    def _landed(self, table: str, uids: list[str], pending: Pending) -> set[str]:
        """Those of the uids SLS has (within the request's time range); those found before a GetLogs failure."""
        logstore, field = self._logstores[table], events.UID_FIELD[table]
        found: set[str] = set()
        for query in uid_queries(uids, field):
            try:  # `to` is exclusive (sls.md §6.1)
                rows = get_logs(self._client, self.settings.project, logstore,
                                pending.from_s - QUERY_MARGIN_SECONDS, pending.to_s + 1 + QUERY_MARGIN_SECONDS,
                                query=query, reverse=False, offset=0, size=100)
            except CloudError as error:
                metrics.SLS_UNKNOWN_OUTCOMES.inc(labels={"settled": "unchecked"})
                log.warning("sls: %s: cannot ask SLS which logs of a request with no answer landed (GetLogs "
                            "%s); sending them again (copies possible)", logstore, _describe(error))
                break
            found.update(row.get(field, "") for row in rows)
        else:
            metrics.SLS_UNKNOWN_OUTCOMES.inc(labels={"settled": "checked"})
        return found & set(uids)

    def _write(self, table: str, records: list[dict], deadline: float) -> tuple[int, list[tuple[dict, str]]]:
        encoder = self._encoders[table]
        topic_field = events.TOPIC_FIELD[table]
        now_ns = time.time_ns()
        now_s, now_part = divmod(now_ns, 1_000_000_000)
        by_topic: dict[str, list[_Log]] = {}
        for record in records:
            if table == events.EVENTS_TABLE:
                time_s, time_ns = _event_time(record, now_s, now_part)
            else:
                time_s, time_ns = now_s, now_part
            by_topic.setdefault(record.get(topic_field, ""), []).append(
                _Log(record, encoder.encode(record, time_s, time_ns), time_s))
        written, rejected = 0, []
        remember = table in events.UID_FIELD and self._ledger is not None
        if remember and self._unsettled is None:  # e.g. the dead letters of refused actions: load orphans first
            self._settle_unknown()
        for topic, logs in by_topic.items():
            tail = group_tail(topic, self._host, self._tags)
            for chunk in _chunks(logs, len(tail)):
                ok, refused = self._put_or_split(table, chunk, tail, deadline, remember)
                written += ok
                rejected += refused
        return written, rejected

    def _put_or_split(self, table: str, chunk: list[_Log], tail: bytes, deadline: float,
                      remember: bool) -> tuple[int, list[tuple[dict, str]]]:
        """(logs written, [(record, error)] refused); bisects requests refused for their data. With
        `remember`, each request's uids are pending in the ledger while it is sent, and committed once SLS
        accepted it, before the next is sent."""
        logstore = self._logstores[table]
        uids = [uid for item in chunk if (uid := item.record.get(events.UID_FIELD[table]))] if remember else []
        pending = self._ledger.begin(self._ledger_stores[table], uids, min(item.time_s for item in chunk),
                                     max(item.time_s for item in chunk)) if remember else None
        try:
            self._put(table, chunk, tail, deadline, pending)
        except CloudError as error:  # refused: nothing of it landed
            if pending is not None:
                self._ledger.forget(pending)
            if error.code in DATA_ERROR_CODES and len(chunk) > 1:
                half = len(chunk) // 2
                first = self._put_or_split(table, chunk[:half], tail, deadline, remember)
                second = self._put_or_split(table, chunk[half:], tail, deadline, remember)
                return first[0] + second[0], first[1] + second[1]
            log.warning("sls: %s refused %d logs: %s", logstore, len(chunk), _describe(error))
            return 0, [(item.record, _describe(error)) for item in chunk]
        if remember:
            self._ledger.commit(self._ledger_stores[table], uids, settles=pending)
        return len(chunk), []

    def _put(self, table: str, chunk: list[_Log], tail: bytes, deadline: float, pending: Pending | None) -> None:
        """One PutLogs, retried while retryable and within the deadline; raises CloudError otherwise. With
        `pending` (its uids in the ledger), a retry after no answer first asks SLS which logs landed, and sends
        only the others; giving up after no answer leaves the request to be settled at the next write."""
        logstore, field = self._logstores[table], events.UID_FIELD.get(table, "")
        attempt, unknown = 0, False
        while True:
            if unknown:
                landed = self._landed(table, [item.record.get(field, "") for item in chunk], pending)
                self._ledger.commit(self._ledger_stores[table], landed)
                metrics.COPIES_DROPPED.inc(len(landed), labels={"sink": self.name})
                chunk = [item for item in chunk if item.record.get(field, "") not in landed]
                if not chunk:
                    return
            try:
                put_log_group(self._client, self.settings.project, logstore,
                              b"".join(item.data for item in chunk) + tail, self.settings.compress)
                return
            except CloudError as error:
                if not error.retryable:
                    raise
                unknown = error.code in UNKNOWN_OUTCOME_CODES and pending is not None
                delay = max(BACKOFF.seconds(attempt), SEARCHABLE_AFTER_SECONDS if unknown else 0.0)
                attempt += 1
                if self._clock() + delay > deadline:
                    if unknown:
                        self._unsettled.append((table, pending))  # it may have landed: asked about at the next write
                    elif pending is not None:
                        self._ledger.forget(pending)
                    raise SlsSinkError(
                        f"sls: {self.settings.project}/{logstore}: PutLogs of {len(chunk)} logs still failing after "
                        f"{attempt} attempts in {self.settings.retry_seconds:g} s: {_describe(error)}") from None
                log.info("sls: %s: %s; retry %d in %.2f s", logstore, error.code, attempt, delay)
                self._sleep(delay)

    def _dead_letter(self, table: str, rejected: list[tuple[dict, str]], deadline: float) -> None:
        received = format_time_ms(int(time.time() * 1000))
        letters = []
        for record, error in rejected:
            raw = _raw_text(table, record).encode("utf-8")
            if len(raw) > MAX_DEAD_LETTER_RAW_BYTES:  # else the dead letter is refused too, forever
                error += f"; raw cut to {MAX_DEAD_LETTER_RAW_BYTES} of {len(raw)} bytes (SLS value limit)"
                raw = raw[:MAX_DEAD_LETTER_RAW_BYTES]
            letters.append(events.dead_letter(reason=REJECTED, source=DEADLETTER_SOURCE,
                                              message_id=record.get("event_uid", ""),
                                              received_time=record.get("received_time") or received,
                                              error=error, raw=raw))
        _, refused = self._write(events.DEADLETTER_TABLE, letters, deadline)
        if refused:
            raise SlsSinkError(f"sls: {len(rejected)} records refused by {self._logstores[table]} "
                               f"({rejected[0][1]}), and the dead-letter logstore "
                               f"{self.settings.deadletter_logstore} refused them too: {refused[0][1]}")
        metrics.DEAD_LETTERS.inc(len(letters), labels={"reason": REJECTED})



def check(sink: SlsSinkSettings, config=None) -> list[Finding]:
    try:
        client = make_client(sink.endpoint, credentials_for("sls sink"), timeout=sink.timeout_seconds)
    except MissingCredentials as e:
        return [Finding("FAIL", str(e))]
    findings = []
    for logstore in (sink.events_logstore, sink.actions_logstore, sink.deadletter_logstore, sink.audit_logstore):
        try:
            client.get_logstore(sink.project, logstore)
            findings.append(Finding("ok", f"sls sink: {sink.project}/{logstore} at {sink.endpoint} reachable"))
        except Exception as e:
            code = error_code(e)
            hint = {"ProjectNotExist": "create the project or fix `project`",
                    "LogStoreNotExist": "run `shipper dashboards import --project " + sink.project + "`"}.get(
                code, "check `endpoint` and the ALIBABA_CLOUD_* credentials")
            findings.append(Finding("FAIL", f"sls sink: {sink.project}/{logstore} at {sink.endpoint}: {code}; {hint}"))
    return findings

registry.register(registry.Component(
    registry.SINK, "sls", SlsSinkSettings,
    build=lambda settings, runtime: SlsSink(settings, runtime.credentials("sls sink", StoreError),
                                            ledger=runtime.ledger),
    check=check,
    permissions=("log:PostLogStoreLogs", "log:GetLogStoreLogs", "log:GetLogStore"),
))
