"""The monitoring port (`[api] listen`): /metrics, /healthz, /readyz, in every `shipper run`, whatever the
sources (an MNS-only run has it too).

/healthz is 200 while the process answers at all; /readyz is 200 when the run is started and every sink
and source works (see telemetry/health.py), else 503 with a JSON body naming what is not ready. A small
stdlib server on its own threads: scrapes are rare, and it must answer even when the pipeline is stuck.
"""
from __future__ import annotations

import json
import logging
import socket
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Callable

from shipper.config import parse_listen
from shipper.telemetry import metrics

log = logging.getLogger("shipper.api")

NotReady = Callable[[], dict]  # what is not ready, by name -> why; {} when ready


class _Handler(BaseHTTPRequestHandler):
    server: "_Server"

    def do_GET(self) -> None:
        path = self.path.split("?", 1)[0]
        if path == "/metrics":
            self._answer(200, metrics.render(), metrics.CONTENT_TYPE)
        elif path == "/healthz":
            self._json(200, {"status": "ok"})
        elif path == "/readyz":
            problems = self.server.not_ready()
            self._json(503 if problems else 200,
                       {"status": "not ready", "not_ready": problems} if problems else {"status": "ready"})
        else:
            self._json(404, {"error": "the monitoring port serves /metrics, /healthz and /readyz"})

    def _json(self, status: int, body: dict) -> None:
        self._answer(status, json.dumps(body).encode(), "application/json")

    def _answer(self, status: int, body: bytes, content_type: str) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args) -> None:  # scrapes every few seconds are not news
        log.debug("monitoring port: " + format, *args)


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, address: tuple[str, int], not_ready: NotReady):
        self.not_ready = not_ready
        super().__init__(address, _Handler)


class _Server6(_Server):
    address_family = socket.AF_INET6


class MonitoringServer:
    def __init__(self, listen: str, not_ready: NotReady):
        self.listen = listen
        self._not_ready = not_ready
        self._server: _Server | None = None
        self.port: int | None = None  # the bound port (listen may say 0), once started

    def start(self) -> "MonitoringServer":
        """Bind and serve; a port that cannot be bound is logged and the run goes on without it (shipping
        events matters more than being watched; /healthz then fails, which is what a watcher notices)."""
        host, port = parse_listen(self.listen)
        try:
            self._server = (_Server6 if ":" in host else _Server)((host, port), self._not_ready)
        except OSError as e:
            log.error("monitoring port: cannot listen on %s (%s); running without /metrics, /healthz and /readyz: "
                      "set [api] listen to a free host:port, or \"off\"", self.listen, e.strerror or e)
            return self
        threading.Thread(target=self._server.serve_forever, name="shipper-api", daemon=True).start()
        self.port = self._server.server_address[1]
        log.info("monitoring port: /metrics /healthz /readyz on http://%s:%d",
                 f"[{host}]" if ":" in host else host, self.port)
        return self

    def close(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
