"""uvicorn's httptools connection, with the limits it lacks for a server exposed to the internet.

uvicorn arms no timer until a first answer and cancels its keep-alive timer on every byte, so a client
that connects and sends nothing, or dribbles a head byte by byte, would hold its connection forever; and
httptools (llhttp) puts no bound on the size of a head. Here every connection must deliver a complete head
within `head_timeout` of connecting or of its previous answer, in at most MAX_HEAD_BYTES, and no more than
`max_connections` are open at once.
"""
from __future__ import annotations

import asyncio
import logging

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from shipper.telemetry import metrics

log = logging.getLogger("shipper.sources.http")

# Generous for any push (CloudMonitor heads are under 2 KB), small enough that 4096 slow heads stay in
# the tens of megabytes.
MAX_HEAD_BYTES = 64 * 1024

_BUSY_BODY = b'{"error": "too many connections; retry soon"}'
_BUSY = (b"HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/json\r\nContent-Length: %d\r\n"
         b"Connection: close\r\n\r\n%s" % (len(_BUSY_BODY), _BUSY_BODY))
_HEAD_TOO_LARGE = (b"HTTP/1.1 431 Request Header Fields Too Large\r\nContent-Length: 0\r\n"
                   b"Connection: close\r\n\r\n")


def protocol_class(head_timeout: float, max_connections: int) -> type:
    """An HttpToolsProtocol subclass bound to these limits (uvicorn builds one per connection)."""

    class BoundedProtocol(HttpToolsProtocol):
        _head_timer: asyncio.TimerHandle | None = None
        _head_bytes: int | None = 0  # bytes of the head being read; None once its end was parsed

        def connection_made(self, transport) -> None:
            super().connection_made(transport)
            if len(self.connections) > max_connections:
                metrics.HTTP_REQUESTS.inc(labels={"code": "503"})
                transport.write(_BUSY)
                transport.close()
                return
            self._await_head()

        def connection_lost(self, exc) -> None:
            self._cancel_head_timer()
            super().connection_lost(exc)

        def data_received(self, data: bytes) -> None:
            if self._head_bytes is not None:  # checked before parsing: the parser would buffer it all
                room = MAX_HEAD_BYTES - self._head_bytes
                if len(data) > room and data.find(b"\r\n\r\n", 0, room + 4) == -1:
                    metrics.HTTP_REQUESTS.inc(labels={"code": "431"})
                    self.transport.write(_HEAD_TOO_LARGE)
                    self.transport.close()
                    return
                self._head_bytes += len(data)
            super().data_received(data)

        def on_headers_complete(self) -> None:
            self._head_bytes = None
            self._cancel_head_timer()
            super().on_headers_complete()

        def on_response_complete(self) -> None:
            pipelined = bool(self.pipeline)  # its head is already read: no head to wait for
            super().on_response_complete()
            if not pipelined and not self.transport.is_closing():
                self._await_head()

        def _await_head(self) -> None:
            self._head_bytes = 0
            self._cancel_head_timer()
            self._head_timer = self.loop.call_later(head_timeout, self._head_timed_out)

        def _cancel_head_timer(self) -> None:
            if self._head_timer is not None:
                self._head_timer.cancel()
                self._head_timer = None

        def _head_timed_out(self) -> None:
            self._head_timer = None
            answering = self.cycle is not None and not self.cycle.response_complete
            if self._head_bytes is not None and not answering and not self.transport.is_closing():
                self.transport.close()

    return BoundedProtocol
