"""The client side of the http source: POST messages to a running shipper, many in flight.

`shipper simulate --to URL` uses it. A push is answered only after its events are committed, so the
messages go out over POST_CONNECTIONS keep-alive connections at once; each answer's HTTP status is
reported in the order the messages were given.
"""
from __future__ import annotations

import http.client
import threading
import urllib.parse
from concurrent.futures import ThreadPoolExecutor
from typing import Iterable, Iterator

POST_CONNECTIONS = 16  # a push is answered only after its commit: keep many in flight
TOKEN_HEADER = "X-Shipper-Token"


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
            local.conn.request("POST", self._target, body=body, headers=headers)
            response = local.conn.getresponse()
            response.read()
            return response.status

        with ThreadPoolExecutor(POST_CONNECTIONS) as pool:
            yield from pool.map(post, bodies)
