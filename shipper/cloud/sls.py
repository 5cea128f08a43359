"""aliyun-log-python-sdk clients for every part of shipper that talks to SLS (sink, search, dashboards).

Pinned to SDK 0.9.52 because two private details are relied on (reference/sls.md §1 and §5):
`LogClient._isRowIp`, and the `_send` / `_sendRequest` split that SingleAttemptLogClient uses.

Callers never call the client's own methods: `put_log_group` (the sink's one call), `get_logs` (search) and
`SlsContent` (dashboards import / export) do, with plain dicts and strings in and out, and raise CloudError,
never LogException: `retryable` per sls.md §5, `fatal` for a refused key, a wrong clock or a missing
project / logstore. `error_code` reads a CloudError's code (or an SDK exception's).
"""
from __future__ import annotations

import ipaddress
import socket
import zlib
from typing import Callable

import lz4.block
from aliyun.log import LogClient, LogException
from aliyun.log.index_config import IndexConfig
from aliyun.log.resource_params import ResourceRecord

from shipper.cloud.credentials import Credentials
from shipper.cloud.errors import CloudError, redact

__all__ = ["SDK_VERSION", "RETRYABLE_CODES", "FATAL_CODES", "SingleAttemptLogClient", "SlsContent", "close_client",
           "cloud_error", "compress_body", "endpoint_host", "error_code", "get_logs", "is_retryable", "make_client",
           "put_log_group"]

SDK_VERSION = "0.9.52"

# reference/sls.md §5: throttling, server-side failures and network errors pass; anything else is about
# the request, the data or the configuration and fails the same way again.
RETRYABLE_CODES = frozenset({
    "WriteQuotaExceed", "ShardWriteQuotaExceed", "ExceedQuota",
    "ServerBusy", "InternalServerError", "RequestTimeout",
    "LogRequestError",  # no answer at all (connection refused or reset, timeout) or one that is not SLS JSON
})
# sls.md §5 again: a refused key or token, a clock off by more than 15 min, a project or logstore that does
# not exist. Nothing written with this configuration will ever succeed.
FATAL_CODES = frozenset({
    "SignatureNotMatch", "InvalidAccessKeyId", "Unauthorized", "SecurityTokenExpired", "RequestTimeTooSkewed",
    "ProjectNotExist", "LogStoreNotExist",
})


class _Attempt(Exception):
    """Carries a LogException past LogClient._send's retry loop, which catches only LogException."""

    def __init__(self, error: LogException):
        super().__init__(str(error))
        self.error = error


class SingleAttemptLogClient(LogClient):
    """A LogClient that sends each request once: shipper retries with its own backoff.

    LogClient._send retries 5xx, InternalServerError, RequestTimeout and connection errors up to 10 times
    with a fixed 1 s sleep, and no setting turns that off. Under shipper's backoff that would hide up to
    10 attempts (and ~10 s of blocking on a 503) inside each of ours, while throttling (403) is not
    retried at all. Here the one HTTP exchange (`_sendRequest`) raises its LogException wrapped in
    `_Attempt`, which the loop does not catch, and `_send` unwraps it: every public method still raises
    the SDK's own LogException, after exactly one request. Signing, URL, Host and headers stay the SDK's.
    """

    secrets: tuple[str, ...] = ()  # what cloud_error removes from messages; make_client sets it

    def _sendRequest(self, *args, **kwargs):
        try:
            return super()._sendRequest(*args, **kwargs)
        except LogException as error:
            raise _Attempt(error) from None

    def _send(self, *args, **kwargs):
        try:
            return super()._send(*args, **kwargs)
        except _Attempt as attempt:
            raise attempt.error from None


def endpoint_host(endpoint: str) -> str:
    """The host of `host`, `host:port` or a URL."""
    rest = endpoint.strip().split("://", 1)[-1]
    return rest.split("/", 1)[0].rsplit(":", 1)[0].strip("[]")


def _is_ip_or_localhost(host: str) -> bool:
    if host.lower() == "localhost":
        return True
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


def make_client(endpoint: str, credentials: Credentials, *, timeout: float = 30) -> LogClient:
    """A client for `host`, `host:port` or a URL; each request is sent once (see SingleAttemptLogClient)."""
    client = SingleAttemptLogClient(
        endpoint, credentials.access_key_id, credentials.access_key_secret,
        securityToken=credentials.security_token or None,
        source=socket.gethostname(),  # without it the SDK opens a UDP socket to learn its own address
    )
    if _is_ip_or_localhost(endpoint_host(endpoint)):
        # The SDK would connect to http://<project>.127.0.0.1:port/ (sls.md §1): keep the address in
        # the URL; the project still goes in the Host header.
        client._isRowIp = True
    client.timeout = timeout
    client.secrets = tuple(s for s in (credentials.access_key_secret, credentials.security_token) if s)
    return client


def close_client(client: LogClient) -> None:
    """Close the client's pooled connections."""
    client._session.close()


def error_code(exc: BaseException) -> str:
    """The SLS error code of an SDK exception or a CloudError; the exception type name for anything else."""
    if isinstance(exc, LogException):
        return exc.get_error_code()
    if isinstance(exc, CloudError):
        return exc.code
    return type(exc).__name__


def is_retryable(code: str, status: int = 0) -> bool:
    """Whether the same request may succeed later; `status` is the HTTP status when known (any 5xx is)."""
    return code in RETRYABLE_CODES or status >= 500


def cloud_error(error: LogException, secrets: tuple[str, ...] = ()) -> CloudError:
    """The CloudError for an SDK LogException (its message without `secrets`)."""
    code = error.get_error_code()
    status = error.resp_status  # the SDK leaves 200 on errors raised without an answer (LogRequestError)
    return CloudError("sls", code, redact(str(error.get_error_message()), secrets),
                      retryable=is_retryable(code, status), fatal=code in FATAL_CODES,
                      request_id=error.get_request_id() or "", http_status=status if status != 200 else None)


def compress_body(raw: bytes, compress: str) -> bytes:
    """A PutLogs body in `x-log-compresstype` `lz4` (block, no size prefix) or `deflate` (zlib), sls.md §4.2."""
    if compress == "lz4":
        return lz4.block.compress(raw, store_size=False)
    if compress == "deflate":
        return zlib.compress(raw)
    raise ValueError(f"compress must be lz4 or deflate, got {compress!r}")


def put_log_group(client: LogClient, project: str, logstore: str, log_group: bytes, compress: str = "lz4") -> None:
    """PutLogs of one serialized LogGroup (load-balanced shard); raises CloudError.

    The SDK's own put paths build the LogGroup from LogItems and only compress with lz4/zstd; this sends
    bytes the caller serialized, through the SDK's signed request path.
    """
    headers = {
        "x-log-bodyrawsize": str(len(log_group)),
        "Content-Type": "application/x-protobuf",
        "x-log-compresstype": compress,
    }
    body = compress_body(log_group, compress)
    try:
        client._send("POST", project, body, f"/logstores/{logstore}/shards/lb", {}, headers)
        return
    except LogException as e:
        error = cloud_error(e, getattr(client, "secrets", ()))
    raise error  # outside the except clause: not chained to the SDK's exception (which may quote a secret)


def _sls_call(client: LogClient, call: Callable[[], object], missing: str = ""):
    """call()'s result; None when SLS answers `missing` (what was asked for does not exist); any other
    LogException as a CloudError."""
    try:
        return call()
    except LogException as e:
        if missing and e.get_error_code() == missing:
            return None
        error = cloud_error(e, getattr(client, "secrets", ()))
    raise error  # outside the except clause: not chained to the SDK's exception (which may quote a secret)


def get_logs(client: LogClient, project: str, logstore: str, from_time: int, to_time: int, *, query: str,
             reverse: bool, offset: int, size: int) -> list[dict]:
    """GetLogs: one page of logs (times in seconds), each its contents plus `__time__` (a string, as in SLS's
    own JSON answer); raises CloudError."""
    response = _sls_call(client, lambda: client.get_log(project, logstore, from_time, to_time, query=query,
                                                        reverse=reverse, offset=offset, size=size))
    return [dict(log.get_contents(), __time__=str(log.get_time())) for log in response.get_logs()]


class SlsContent:
    """What `shipper dashboards` import and export read and write in SLS, on a client from make_client.

    Bodies are the SLS API's JSON bodies as plain dicts. A read returns None when the thing does not exist;
    every other failure raises CloudError. `kind` is one of ENTITY_KINDS for the project's saved searches,
    dashboards and alerts, an alert resource name (sls.alert.action_webhook…) for resource records.
    """

    # kind -> (the LogClient methods' suffix: get_/create_/update_/list_<suffix>, the code of a missing one)
    _ENTITIES = {
        "savedsearch": ("savedsearch", "SavedSearchNotExist"),
        "dashboard": ("dashboard", "DashboardNotExist"),
        "alert": ("alert", "JobNotExist"),  # an alert is a job in SLS's API
    }
    ENTITY_KINDS = tuple(_ENTITIES)

    def __init__(self, client: LogClient):
        self.client = client

    @classmethod
    def of(cls, sls: SlsContent | LogClient) -> SlsContent:
        """`sls` itself, or a client from make_client wrapped."""
        return sls if isinstance(sls, cls) else cls(sls)

    def _call(self, call: Callable[[], object], missing: str = ""):
        return _sls_call(self.client, call, missing)

    def logstore(self, project: str, name: str) -> dict | None:
        return self._call(lambda: self.client.get_logstore(project, name).get_body(), "LogStoreNotExist")

    def create_logstore(self, project: str, name: str, body: dict) -> None:
        """CreateLogStore from its API body (ttl, shardCount…); the SDK takes them as keyword arguments."""
        self._call(lambda: self.client.create_logstore(
            project, name, ttl=body["ttl"], shard_count=body["shardCount"],
            enable_tracking=body.get("enable_tracking", False), append_meta=body.get("appendMeta", False),
            auto_split=body.get("autoSplit", True), max_split_shard=body.get("maxSplitShard", 64)))

    def index(self, project: str, logstore: str) -> dict | None:
        return self._call(lambda: self.client.get_index_config(project, logstore).get_body(), "IndexConfigNotExist")

    def create_index(self, project: str, logstore: str, body: dict) -> None:
        self._call(lambda: self.client.create_index(project, logstore, _index_config(body)))

    def update_index(self, project: str, logstore: str, body: dict) -> None:
        self._call(lambda: self.client.update_index(project, logstore, _index_config(body)))

    def entity(self, kind: str, project: str, name: str) -> dict | None:
        """The saved search, dashboard or alert `name`."""
        suffix, missing = self._ENTITIES[kind]
        return self._call(lambda: getattr(self.client, f"get_{suffix}")(project, name).get_entity(), missing)

    def create_entity(self, kind: str, project: str, body: dict) -> None:
        suffix, _ = self._ENTITIES[kind]
        self._call(lambda: getattr(self.client, f"create_{suffix}")(project, body))

    def update_entity(self, kind: str, project: str, body: dict) -> None:
        suffix, _ = self._ENTITIES[kind]
        self._call(lambda: getattr(self.client, f"update_{suffix}")(project, body))

    def names(self, kind: str, project: str) -> list[str]:
        """Every logstore (kind "logstore"), saved search, dashboard or alert of the project, by name."""
        if kind == "logstore":
            return self._call(lambda: self.client.list_logstore(project, size=-1).get_logstores())
        suffix, _ = self._ENTITIES[kind]
        listed = self._call(lambda: getattr(self.client, f"list_{suffix}")(project, size=-1).get_entities())
        return [entry["name"] for entry in listed] if kind == "alert" else listed  # alerts are listed whole

    def resource_record(self, kind: str, record_id: str) -> dict | None:
        """The account-level record {"id", "tag", "value"}. Listed by id: a missing one is then an empty list,
        so no error code has to be relied on (ResourceRecordNotExist is only what the SDKs' tests expect)."""
        found = self._call(lambda: self.client.list_resource_records(kind, record_ids=[record_id]).get_records())
        return next(({"id": r.get_record_id(), "tag": r.get_tag(), "value": r.get_value()}
                     for r in found if r.get_record_id() == record_id), None)

    def create_resource_record(self, kind: str, record: dict) -> None:
        self._call(lambda: self.client.create_resource_record(kind, _resource_record(record)))

    def update_resource_record(self, kind: str, record: dict) -> None:
        self._call(lambda: self.client.update_resource_record(kind, _resource_record(record)))


def _index_config(body: dict) -> IndexConfig:
    config = IndexConfig()
    config.from_json(body)
    return config


def _resource_record(record: dict) -> ResourceRecord:
    return ResourceRecord(record_id=record["id"], tag=record["tag"], value=record["value"])
