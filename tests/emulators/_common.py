"""Shared plumbing for the local cloud emulators: an in-process threaded HTTP/1.1 server."""

from __future__ import annotations

import random
import socket
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Iterable, Mapping


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


class FaultKnobs:
    """Runtime fault knobs keyed by operation (None = every operation), one seeded RNG."""

    def __init__(self, seed: int):
        self._lock = threading.Lock()
        self._rng = random.Random(seed)
        self.latency: dict[str | None, float] = {}
        self.error_rates: dict[str | None, dict[str, float]] = {}
        self.drop_rates: dict[str | None, float] = {}
        self.scheduled: dict[str | None, list[str]] = {}  # codes to answer, in order, one per request

    def set(self, knob: dict, operation: str | None, value: object) -> None:
        with self._lock:
            knob[operation] = value

    def schedule(self, operation: str | None, codes: list[str]) -> None:
        with self._lock:
            self.scheduled.setdefault(operation, []).extend(codes)

    def clear(self) -> None:
        with self._lock:
            for knob in (self.latency, self.error_rates, self.drop_rates, self.scheduled):
                knob.clear()

    def draw(self, operation: str) -> tuple[bool, float, str | None]:
        """(drop the connection?, seconds of latency, error code to answer instead)."""
        with self._lock:
            latency = self.latency.get(operation, self.latency.get(None, 0.0))
            drop_rate = self.drop_rates.get(operation, self.drop_rates.get(None, 0.0))
            if drop_rate and self._rng.random() < drop_rate:
                return True, 0.0, None
            for key in (operation, None):
                if self.scheduled.get(key):
                    return False, latency, self.scheduled[key].pop(0)
            rates = self.error_rates.get(operation, self.error_rates.get(None, {}))
            if rates:
                draw = self._rng.random()
                for code, rate in rates.items():
                    draw -= rate
                    if draw < 0:
                        return False, latency, code
            return False, latency, None


class ServiceLifecycle:
    """`with Emulator(...) as e:` for any emulator with start() (returning self) and stop()."""

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()


def serve_until_interrupted() -> None:
    """Block a command-line emulator until Ctrl-C."""
    try:
        threading.Event().wait()
    except KeyboardInterrupt:
        pass


class FaultControls(ServiceLifecycle):
    """The fault API of an emulator: needs `_faults` (FaultKnobs), `_server` (EmulatorServer) and
    `known_errors` (the codes it can answer). `operation` None means every operation."""

    _faults: FaultKnobs
    _server: "EmulatorServer"
    known_errors: Mapping[str, object]

    def _check_codes(self, codes: Iterable[str]) -> None:
        unknown = set(codes) - set(self.known_errors)
        if unknown:
            raise ValueError(f"unknown error codes: {sorted(unknown)}")

    def fail_next(self, code: str, operation: str | None = None, times: int = 1) -> None:
        """Answer the next `times` requests of `operation` with this error code."""
        self._check_codes([code])
        self._faults.schedule(operation, [code] * times)

    def set_error_rates(self, rates: Mapping[str, float], operation: str | None = None) -> None:
        """Answer a fraction of requests with these error codes, e.g. {"InternalError": 0.2} (seeded RNG)."""
        self._check_codes(rates)
        if sum(rates.values()) > 1:
            raise ValueError(f"error rates must sum to at most 1: {dict(rates)}")
        self._faults.set(self._faults.error_rates, operation, dict(rates))

    def set_latency(self, seconds: float, operation: str | None = None) -> None:
        """Delay responses of `operation` by `seconds`, after the work is done."""
        self._faults.set(self._faults.latency, operation, seconds)

    def set_drop_rate(self, fraction: float, operation: str | None = None) -> None:
        """Close the connection without answering for a fraction of requests (before any work)."""
        self._faults.set(self._faults.drop_rates, operation, fraction)

    def set_outage(self, outage: bool) -> None:
        """Close every open connection and every new one until cleared."""
        self._server.set_outage(outage)

    def clear_faults(self) -> None:
        self._faults.clear()
        self._server.set_outage(False)
