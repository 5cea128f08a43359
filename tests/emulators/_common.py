"""Shared plumbing for the local cloud emulators: an in-process threaded HTTP/1.1 server."""

from __future__ import annotations

import socket
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class EmulatorHandler(BaseHTTPRequestHandler):
    """HTTP/1.1 keep-alive handler that writes each response in one segment and logs nothing."""

    protocol_version = "HTTP/1.1"
    # Buffered writes: headers and body leave in one send when handle_one_request flushes,
    # so Nagle never holds a body back behind the client's delayed ACK.
    wbufsize = 1 << 16

    def setup(self) -> None:
        super().setup()
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def read_body(self) -> bytes:
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length else b""

    def send(self, status: int, headers: dict[str, str], body: bytes = b"") -> None:
        """Send a complete response; header names are sent exactly as given."""
        self.send_response(status)
        for name, value in headers.items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if body:
            self.wfile.write(body)

    def drop_connection(self) -> None:
        """Close the socket without answering the request just read."""
        self.close_connection = True

    def log_message(self, format: str, *args: object) -> None:
        pass


class EmulatorServer(ThreadingHTTPServer):
    """Threaded server on 127.0.0.1 (port 0 = ephemeral) that tracks its connections.

    `refuse_connections` (set it with `set_outage`) closes every new connection as soon as it is
    accepted; handlers should also check it per request to end established keep-alive connections.
    """

    daemon_threads = True
    request_queue_size = 128

    def __init__(self, handler_class: type[EmulatorHandler], host: str = "127.0.0.1", port: int = 0):
        super().__init__((host, port), handler_class)
        self.refuse_connections = False
        self._connections: set[socket.socket] = set()
        self._connections_lock = threading.Lock()
        self._thread: threading.Thread | None = None

    @property
    def endpoint(self) -> str:
        host, port = self.server_address[:2]
        return f"http://{host}:{port}"

    def start(self) -> None:
        self._thread = threading.Thread(target=self.serve_forever, args=(0.05,), name="emulator", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        if self._thread is not None:
            self.shutdown()
            self._thread = None
        self.server_close()
        self.close_all_connections()

    def set_outage(self, outage: bool) -> None:
        self.refuse_connections = outage
        if outage:
            self.close_all_connections()

    def close_all_connections(self) -> None:
        with self._connections_lock:
            connections = list(self._connections)
        for connection in connections:
            try:
                connection.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def verify_request(self, request, client_address) -> bool:
        return not self.refuse_connections

    def process_request(self, request, client_address) -> None:
        with self._connections_lock:
            self._connections.add(request)
        super().process_request(request, client_address)

    def shutdown_request(self, request) -> None:
        with self._connections_lock:
            self._connections.discard(request)
        super().shutdown_request(request)

    def handle_error(self, request, client_address) -> None:
        """A client that went away is normal here; anything else is an emulator bug worth a traceback."""
        if not isinstance(sys.exc_info()[1], OSError):
            super().handle_error(request, client_address)
