"""The client side of shipper's sources, for `shipper simulate --to`: POST to a running shipper's http
source, or publish to an MNS queue (the production path) that `shipper run` consumes.

A push is answered only after its events are committed, so the messages go out over POST_CONNECTIONS
keep-alive connections at once; each answer's HTTP status is reported in the order the messages were given. The server refuses some pushes before reading their body
(401, 429, 413) and closes: the send then fails, but the answer is there to read, and it is the one reported.

An MNS target is `mns://HOST[:PORT]/QUEUE` (over https, e.g. `mns://<account-id>.mns.cn-hangzhou.aliyuncs.com/
ecs-cms-event`) or `mns+http://HOST:PORT/QUEUE` (plain http: the local emulator); batches of 16 messages.
"""
from __future__ import annotations

import http.client
import threading
import urllib.parse
from concurrent.futures import ThreadPoolExecutor
from typing import Iterable, Iterator

from shipper.cloud.credentials import Credentials

POST_CONNECTIONS = 16  # a push is answered only after its commit: keep many in flight
TOKEN_HEADER = "X-Shipper-Token"

# What each refusal of the http source means for the sender (README "Pushed over HTTP").
_REFUSALS = {
    400: "the server dead-lettered a body it could not read as an event",
    401: "the token was refused; set {token_env} to the server's token",
    408: "the body did not reach the server in time",
    413: "a body is over the server's max_body_bytes",
    429: "too many wrong tokens from this address: the server refuses it for token_lockout_seconds; "
         "set {token_env} to the server's token, then wait",
    503: "the server's store did not commit in time, or max_connections are open; send again later",
}
STOP_STATUSES = frozenset({401, 429})  # every further push would be refused the same way


def explain(status: int, token_env: str) -> str:
    """One line for an answer that is not 2xx: the status, what it means and what to do."""
    meaning = _REFUSALS.get(status, "an answer shipper's http source does not give; is this a shipper?")
    return f"{status}: {meaning.format(token_env=token_env)}"


MNS_SCHEMES = {"mns": "https", "mns+http": "http"}


def is_mns_target(url: str) -> bool:
    return urllib.parse.urlsplit(url).scheme in MNS_SCHEMES


def mns_target(url: str) -> tuple[str, str]:
    """`mns://HOST[:PORT]/QUEUE` or `mns+http://HOST:PORT/QUEUE` -> (endpoint URL, queue name); ValueError
    naming the form otherwise."""
    parts = urllib.parse.urlsplit(url)
    queue = parts.path.strip("/")
    if parts.scheme not in MNS_SCHEMES or not parts.hostname or not queue or "/" in queue or parts.query:
        raise ValueError(f"{url!r} is not an MNS queue URL; use mns://HOST/QUEUE (https) or "
                         "mns+http://HOST:PORT/QUEUE (the local emulator)")
    return f"{MNS_SCHEMES[parts.scheme]}://{parts.netloc}", queue


def publish_all(bodies: Iterable[bytes], url: str, credentials: Credentials) -> Iterator[int]:
    """Publish each body to the queue `url` names (mns_target), in BatchSendMessage batches; yields how many
    each batch sent. Every failure raises CloudError."""
    from shipper.cloud.mns import open_queue, send_batches

    endpoint, name = mns_target(url)
    queue = open_queue(endpoint, name, credentials)
    for batch in send_batches(body.decode("utf-8") for body in bodies):
        queue.send(batch)
        yield len(batch)


class Pusher:
    """POSTs to one http(s) URL; ValueError when `url` is not one."""

    def __init__(self, url: str):
        parts = urllib.parse.urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"{url!r} is not an http(s) URL")
        self._parts = parts
        self.origin = f"{parts.scheme}://{parts.netloc}"
        self.token_in_url = "token=" in parts.query  # then the X-Shipper-Token header is not needed
        self._conn_class = http.client.HTTPSConnection if parts.scheme == "https" else http.client.HTTPConnection
        self._target = urllib.parse.urlunsplit(("", "", parts.path or "/", parts.query, ""))

    def post_all(self, bodies: Iterable[bytes], token: str) -> Iterator[int]:
        """POST each body (JSON) with the push token; yields each answer's HTTP status, in order. A connection
        that cannot be made or breaks raises OSError."""
        parts = self._parts
        headers = {"Content-Type": "application/json", TOKEN_HEADER: token}
        local = threading.local()

        def post(body: bytes) -> int:
            if not hasattr(local, "conn"):
                local.conn = self._conn_class(parts.hostname, parts.port, timeout=60)
            try:
                local.conn.request("POST", self._target, body=body, headers=headers)
            except OSError:
                if local.conn.sock is None:  # no connection: no answer to read
                    raise
                # refused before the whole body was read (401, 413, 429): its answer may be there
            response = local.conn.getresponse()
            response.read()
            return response.status

        with ThreadPoolExecutor(POST_CONNECTIONS) as pool:
            yield from pool.map(post, bodies)
