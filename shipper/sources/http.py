"""HTTP source: CloudMonitor pushes (JSON or form, POST or GET) and EventBridge HTTP targets.

CloudMonitor does not sign its pushes, so every push must carry the shared token, in the
`X-Shipper-Token` header, an `Authorization: Bearer` header, or the `token` query parameter (the form
CloudMonitor's URL field allows). A push is answered only after its events are committed: 200 when
stored, 400 when it is not an event (it is dead-lettered first, with a reason), 503 when a sink refused
it (the sender retries). Request lines are never logged: the query string may hold the token.
"""
from __future__ import annotations

import hmac
import logging
import os
import threading
import time
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import orjson

from shipper import events, metrics
from shipper.actions import ALERT
from shipper.config import HttpSource, parse_listen
from shipper.decode import TOO_LARGE
from shipper.normalize import parse_time_ms
from shipper.pipeline import Message, Pipeline, Result, Status
from shipper.sources import SourceError

log = logging.getLogger("shipper.sources.http")

_STATUS = {Status.COMMITTED: 200, Status.DEAD_LETTERED: 400, Status.FAILED: 503}


class HttpSourceError(SourceError):
    """The source cannot start (port taken, bad address); the message names the address."""


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True


class HttpServer:
    def __init__(self, settings: HttpSource, pipeline: Pipeline):
        self.settings = settings
        self.pipeline = pipeline
        self.token = os.environ.get(settings.token_env, "")
        host, port = parse_listen(settings.listen)
        try:
            self._server = _Server((host, port), _handler_class(self))
        except OSError as e:
            raise HttpSourceError(f"http source: cannot listen on {settings.listen}: {e.strerror or e}") from None
        self._thread = threading.Thread(target=self._server.serve_forever, name="shipper-http", daemon=True)
        self._idle = threading.Condition()
        self._active = 0  # pushes between receipt and answer

    def track(self, delta: int) -> None:
        with self._idle:
            self._active += delta
            self._idle.notify_all()

    @property
    def address(self) -> str:
        host, port = self._server.server_address[:2]
        return f"{host}:{port}"

    def start(self) -> "HttpServer":
        if not self.token:
            log.warning("http source: environment variable %s is not set: every push is refused with 401 "
                        "until it holds the token your senders use", self.settings.token_env)
        self._thread.start()
        log.info("http source: listening on http://%s (POST or GET, token required)", self.address)
        return self

    def stop(self) -> None:
        """Stop accepting connections; pushes already received wait for the final flush."""
        self._server.shutdown()

    def close(self, timeout: float = 5.0) -> None:
        """After the pipeline's final flush: let waiting pushes send their answers, then close."""
        with self._idle:
            self._idle.wait_for(lambda: self._active == 0, timeout)
        self._server.server_close()

    def authorized(self, headers, query: dict[str, list[str]]) -> bool:
        if not self.token:
            return False
        offered = headers.get("X-Shipper-Token", "")
        auth = headers.get("Authorization", "")
        if not offered and auth.lower().startswith("bearer "):
            offered = auth[7:].strip()
        if not offered:
            offered = (query.get("token") or [""])[0]
        return hmac.compare_digest(offered.encode(), self.token.encode())


def alert_payload(body: bytes) -> dict:
    """The SLS alert webhook body; ValueError names what is wrong."""
    try:
        payload = orjson.loads(body)
    except orjson.JSONDecodeError:
        raise ValueError("the alert body is not JSON") from None
    if not isinstance(payload, dict) or not isinstance(payload.get("rows"), list):
        raise ValueError("the alert body must be an object with a `rows` list")
    if not all(isinstance(row, dict) for row in payload["rows"]):
        raise ValueError("every alert row must be an object")
    payload.setdefault("status", "firing")
    payload.setdefault("alert_instance_id", "")
    return payload


def alert_events(payload: dict, hook: str) -> list[dict]:
    """One synthetic event per distinct instance in the alert rows, shaped like the event the hook acts on."""
    now = events.format_time_ms(int(time.time() * 1000))
    firing = payload.get("alert_instance_id") or payload.get("alert") or "alert"
    made, seen = [], set()
    for row in payload["rows"]:
        instance = row.get("instance_id")
        if not isinstance(instance, str) or not instance or instance in seen:
            continue
        seen.add(instance)
        values = {"event_uid": f"alert:{firing}:{instance}", "instance_id": instance, "received_time": now,
                  "region_id": str(row.get("region", "")), "instance_name": str(row.get("name", "")),
                  "resource_type": "instance", "resource_id": instance, "product": "ECS",
                  "detail": orjson.dumps(row).decode()}
        if hook == "lb_drain":
            values.update(event_name="Instance:PreemptibleInstanceInterruption", category="interruption",
                          action="delete", not_before=str(row.get("reclaim_time", "")),
                          event_time=str(row.get("interrupted_time", "")) or now)
        else:
            values.update(event_name="Instance:StateChange", category="lifecycle", state="Stopped",
                          state_raw="Stopped", event_time=str(row.get("stopped_time", "")) or now)
        event_ms = parse_time_ms(values["event_time"]) or int(time.time() * 1000)
        values.update(event_time=events.format_time_ms(event_ms), event_time_ms=str(event_ms))
        if values.get("not_before"):
            reclaim_ms = parse_time_ms(values["not_before"])
            values["not_before"] = events.format_time_ms(reclaim_ms) if reclaim_ms else ""
        made.append(events.new_event(**values))
    return made


def _handler_class(server: HttpServer):
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        server_version = "shipper"
        sys_version = ""

        def log_message(self, format, *args):  # the default logs the request line, token included
            pass

        def _reply(self, status: int, body: dict | bytes, content_type: str = "application/json") -> None:
            payload = body if isinstance(body, bytes) else orjson.dumps(body)
            metrics.HTTP_REQUESTS.inc(labels={"code": str(status)})
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)
            log.debug("http %s %s -> %d", self.command, urllib.parse.urlsplit(self.path).path, status)

        def do_GET(self):
            url = urllib.parse.urlsplit(self.path)
            if url.path == "/healthz":
                return self._reply(200, {"status": "ok", "inflight": server.pipeline.inflight})
            if url.path == "/metrics":
                return self._reply(200, metrics.render().encode(), "text/plain; version=0.0.4")
            query = urllib.parse.parse_qs(url.query, keep_blank_values=True)
            if not server.authorized(self.headers, query):
                return self._reply(401, {"error": "missing or wrong token"})
            pairs = [(k, v) for k, v in urllib.parse.parse_qsl(url.query, keep_blank_values=True) if k != "token"]
            if not pairs:
                return self._reply(400, {"error": "a GET push carries the event in its query string (data=<json>)"})
            body = urllib.parse.urlencode(pairs).encode()
            self._ingest(body, "application/x-www-form-urlencoded")

        def do_POST(self):
            url = urllib.parse.urlsplit(self.path)
            query = urllib.parse.parse_qs(url.query, keep_blank_values=True)
            if url.path.startswith("/hooks/"):
                return self._alert_hook(url.path[len("/hooks/"):], query)
            length = self.headers.get("Content-Length")
            if length is None or not length.isdigit():
                self.close_connection = True
                return self._reply(411, {"error": "Content-Length required"})
            if not server.authorized(self.headers, query):
                self.close_connection = True  # the body is not read
                return self._reply(401, {"error": "missing or wrong token"})
            limit = server.settings.max_body_bytes
            if int(length) > limit:
                self.close_connection = True  # the body is not read: drop the connection after answering
                error = f"HTTP body of {length} bytes is over the http source's max_body_bytes ({limit}); not read"
                recorded = threading.Event()
                server.pipeline.reject(Message(body=b"", source="http", on_done=lambda _: recorded.set()), TOO_LARGE, error)
                recorded.wait(server.settings.commit_timeout_seconds)
                return self._reply(413, {"error": error})
            body = self.rfile.read(int(length))
            self._ingest(body, self.headers.get("Content-Type"))

        def _alert_hook(self, name: str, query: dict) -> None:
            """An SLS alert asks a hook to act (dashboards/README.md, "The hook payload")."""
            if not server.authorized(self.headers, query):
                self.close_connection = True
                return self._reply(401, {"error": "missing or wrong token"})
            engine = server.pipeline.hooks
            hook = next((h for h in engine.hooks if h.name == name), None) if engine else None
            if hook is None:
                self.close_connection = True
                return self._reply(404, {"error": f"hook {name!r} is not enabled in this shipper"})
            length = self.headers.get("Content-Length", "")
            if not length.isdigit() or int(length) > server.settings.max_body_bytes:
                self.close_connection = True
                return self._reply(413 if length.isdigit() else 411, {"error": "bad Content-Length"})
            try:
                payload = alert_payload(self.rfile.read(int(length)))
            except ValueError as e:
                return self._reply(400, {"error": str(e)})
            if payload["status"] != "firing":
                return self._reply(200, {"status": "ignored", "reason": f"alert status {payload['status']!r}"})
            targets = alert_events(payload, hook.name)
            pending = threading.Semaphore(0)
            for event in targets:
                engine.schedule(event, [hook], ALERT, pending.release, delay=0)
            deadline = time.monotonic() + server.settings.commit_timeout_seconds
            decided = sum(pending.acquire(timeout=max(deadline - time.monotonic(), 0)) for _ in targets)
            status = 200 if decided == len(targets) else 202
            self._reply(status, {"status": "decided" if status == 200 else "accepted", "instances": len(targets),
                                 "decided": decided})

        def _ingest(self, body: bytes, content_type: str | None) -> None:
            server.track(+1)
            try:
                self._ingest_and_answer(body, content_type)
            finally:
                server.track(-1)

        def _ingest_and_answer(self, body: bytes, content_type: str | None) -> None:
            done = threading.Event()
            outcome: list[Result] = []

            def on_done(result: Result) -> None:
                outcome.append(result)
                done.set()

            server.pipeline.submit(Message(body=body, source="http", content_type=content_type, on_done=on_done))
            if not done.wait(server.settings.commit_timeout_seconds):
                return self._reply(503, {"error": "not committed in time; retry"})
            result = outcome[0]
            reply = {"status": result.status.value, "events": result.events}
            if result.reason:
                reply["reason"] = result.reason
            if result.error:
                reply["error"] = result.error
            self._reply(_STATUS[result.status], reply)

    return Handler
