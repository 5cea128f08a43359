"""aliyun-log-python-sdk clients for every part of shipper that talks to SLS (sink, search, dashboards).

Pinned to SDK 0.9.52 because two private details are relied on (reference/sls.md §1 and §5):
`LogClient._isRowIp`, and the `_send` / `_sendRequest` split that SingleAttemptLogClient uses.
"""
from __future__ import annotations

import ipaddress
import socket
import zlib

import lz4.block
from aliyun.log import LogClient, LogException

from shipper.credentials import Credentials

SDK_VERSION = "0.9.52"

# reference/sls.md §5: throttling, server-side failures and network errors pass; anything else is about
# the request, the data or the configuration and fails the same way again.
RETRYABLE_CODES = frozenset({
    "WriteQuotaExceed", "ShardWriteQuotaExceed", "ExceedQuota",
    "ServerBusy", "InternalServerError", "RequestTimeout",
    "LogRequestError",  # no answer at all (connection refused or reset, timeout) or one that is not SLS JSON
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
    return client


def error_code(exc: BaseException) -> str:
    """The SLS error code of an SDK exception; the exception type name for anything else."""
    if isinstance(exc, LogException):
        return exc.get_error_code()
    return type(exc).__name__


def is_retryable(code: str, status: int = 0) -> bool:
    """Whether the same request may succeed later; `status` is the HTTP status when known (any 5xx is)."""
    return code in RETRYABLE_CODES or status >= 500


def compress_body(raw: bytes, compress: str) -> bytes:
    """A PutLogs body in `x-log-compresstype` `lz4` (block, no size prefix) or `deflate` (zlib), sls.md §4.2."""
    if compress == "lz4":
        return lz4.block.compress(raw, store_size=False)
    if compress == "deflate":
        return zlib.compress(raw)
    raise ValueError(f"compress must be lz4 or deflate, got {compress!r}")


def put_log_group(client: LogClient, project: str, logstore: str, log_group: bytes, compress: str = "lz4") -> None:
    """PutLogs of one serialized LogGroup (load-balanced shard); raises LogException.

    The SDK's own put paths build the LogGroup from LogItems and only compress with lz4/zstd; this sends
    bytes the caller serialized, through the SDK's signed request path.
    """
    headers = {
        "x-log-bodyrawsize": str(len(log_group)),
        "Content-Type": "application/x-protobuf",
        "x-log-compresstype": compress,
    }
    client._send("POST", project, compress_body(log_group, compress), f"/logstores/{logstore}/shards/lb", {}, headers)
