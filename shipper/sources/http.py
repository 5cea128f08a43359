"""HTTP source: CloudMonitor pushes (JSON or form, POST or GET) and EventBridge HTTP targets.

CloudMonitor does not sign its pushes, so every push must carry the shared token, in the
`X-Shipper-Token` header, an `Authorization: Bearer` header, or the `token` query parameter (the form
CloudMonitor's URL field allows). A push is answered only after its events are committed: 200 when
stored, 400 when it is not an event (it is dead-lettered first, with a reason), 503 when a sink refused
it (the sender retries). Request lines are never logged: the query string may hold the token.

The server is uvicorn (httptools parser) on an event loop of its own thread, with the limits of
http_protocol.py: a push waiting for its commit holds a future, not a thread, so thousands of pushes
and idle connections cost memory in kilobytes each and never starve the next push.
"""
from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import hmac
import logging
import os
import resource
import socket
import ssl
import threading
import time
import urllib.parse
from dataclasses import dataclass
from typing import Awaitable, Callable

import orjson
import uvicorn

from shipper import events, registry
from shipper.config import parse_listen
from shipper.telemetry import metrics
from shipper.registry import Finding
from shipper.decode import TOO_LARGE
from shipper.hooks.alerts import (
    ACCEPTED, AlertIntake, accepted_records, alert_events, alert_payload, repeat_key,
)
from shipper.pipeline import Message, Pipeline, Result, Status
from shipper.sources import SourceError
from shipper.sources.http_protocol import protocol_class

log = logging.getLogger("shipper.sources.http")

_STATUS = {Status.COMMITTED: 200, Status.DEAD_LETTERED: 400, Status.FAILED: 503}
# Connections the kernel queues before the loop accepts them: a burst of CloudMonitor pushes (hundreds
# at once after an incident) must wait in line, not be reset. The kernel caps it at net.core.somaxconn.
BACKLOG = 4096
# Threads that decode and buffer pushes (Pipeline.submit blocks while the in-flight buffer is full): the
# only threads the server uses besides its loop, however many connections are open.
SUBMIT_THREADS = 4


@dataclass(frozen=True)
class HttpSourceSettings:
    """CloudMonitor pushes, EventBridge HTTP targets (and, later, SLS alert hooks)."""
    type: str = "http"
    listen: str = "127.0.0.1:8787"
    token_env: str = "SHIPPER_WEBHOOK_TOKEN"
    max_body_bytes: int = 4 << 20           # 413 above this; bodies over [shipper] max_message_bytes are dead-lettered
    commit_timeout_seconds: float = 30.0    # answer 503 (sender retries) when a commit takes longer
    tls_cert: str = ""                      # PEM certificate chain; with tls_key, serve HTTPS
    tls_key: str = ""                       # PEM private key of tls_cert
    max_connections: int = 4096             # more open connections are answered 503 and closed at once
    header_timeout_seconds: float = 10.0    # a request head must arrive this soon after connect / the last answer
    body_timeout_seconds: float = 30.0      # the whole body must arrive within this
    max_token_failures: int = 10            # this many token failures from one address within token_lockout_seconds...
    token_lockout_seconds: float = 60.0     # ...get that address 429 for this long
    trusted_proxies: tuple = ()             # proxy addresses whose X-Forwarded-For names the client (rate limiting)

    def validate(self) -> None:
        try:
            parse_listen(self.listen)
        except ValueError as e:
            raise registry.Invalid(f"`listen` {e}") from None
        registry.positive(self, "max_body_bytes", "commit_timeout_seconds")
        if not self.token_env:
            raise registry.Invalid("`token_env` must name the environment variable holding the push token")
        registry.positive(self, "max_connections", "header_timeout_seconds", "body_timeout_seconds",
                          "max_token_failures", "token_lockout_seconds")
        if bool(self.tls_cert) != bool(self.tls_key):
            raise registry.Invalid("`tls_cert` and `tls_key` go together: set both (HTTPS) or neither")


class HttpSourceError(SourceError):
    """The source cannot start (port taken, bad address, unreadable TLS files); the message says which."""


class TokenThrottle:
    """Token failures per client address: `max_failures` within `window` seconds lock it out that long.

    Only the event loop thread calls it. At most MAX_ADDRESSES are remembered, so an attacker with many
    addresses costs bounded memory (the oldest entries are forgotten first).
    """
    MAX_ADDRESSES = 10_000

    def __init__(self, max_failures: int, window: float, clock: Callable[[], float] = time.monotonic):
        self.max_failures, self.window, self.clock = max_failures, window, clock
        self._failures: dict[str, tuple[float, int]] = {}  # address -> (first failure in window, count)
        self._locked: dict[str, float] = {}                 # address -> locked until

    def locked(self, address: str) -> bool:
        until = self._locked.get(address)
        if until is not None and self.clock() >= until:
            del self._locked[address]
            until = None
        return until is not None

    def failed(self, address: str) -> bool:
        """Count one failure; True when it is the one that locks the address out."""
        now = self.clock()
        first, count = self._failures.pop(address, (now, 0))
        if now - first > self.window:
            first, count = now, 0
        if count + 1 >= self.max_failures:
            self._locked[address] = now + self.window
            self._forget_oldest(self._locked)
            return True
        self._failures[address] = (first, count + 1)
        self._forget_oldest(self._failures)
        return False

    def _forget_oldest(self, table: dict) -> None:
        while len(table) > self.MAX_ADDRESSES:
            del table[next(iter(table))]


def _raise_file_limit(connections: int) -> None:
    """Let the process hold `connections` sockets besides its stores: the soft limit is often 1024."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    wanted = connections + 256
    if soft == resource.RLIM_INFINITY or soft >= wanted:
        return
    target = wanted if hard == resource.RLIM_INFINITY else min(wanted, hard)
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
    except (ValueError, OSError) as e:
        log.warning("http source: cannot raise the open-file limit to %d (%s); max_connections may not be reached",
                    target, e)


def _listen(settings: HttpSourceSettings) -> socket.socket:
    host, port = parse_listen(settings.listen)
    try:
        family = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0][0]
        # proto IPPROTO_TCP, not 0: asyncio turns Nagle off (TCP_NODELAY) only on sockets that say they are
        # TCP; with Nagle on, every keep-alive answer after the first waits ~40 ms for the client's ACK.
        sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    except OSError as e:
        raise HttpSourceError(f"http source: cannot listen on {settings.listen}: {e.strerror or e}") from None
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
        sock.listen(BACKLOG)
    except OSError as e:
        sock.close()
        raise HttpSourceError(f"http source: cannot listen on {settings.listen}: {e.strerror or e}") from None
    sock.setblocking(False)
    return sock


def _loop_error(loop: asyncio.AbstractEventLoop, context: dict) -> None:
    """One line for what asyncio reports (a failed accept, a broken TLS handshake): no traceback, no data."""
    error = context.get("exception")
    detail = f"{type(error).__name__}: {error}" if error else ""
    log.warning("http source: %s %s", context.get("message", "connection error"), detail)


class HttpServer:
    def __init__(self, settings: HttpSourceSettings, pipeline: Pipeline, alerts: AlertIntake | None = None):
        """`alerts`: what `/hooks/<name>` hands an SLS alert to; without it (hooks off) that path is 404."""
        self.settings = settings
        self.pipeline = pipeline
        self.alerts = alerts
        self.token = os.environ.get(settings.token_env, "")
        self.throttle = TokenThrottle(settings.max_token_failures, settings.token_lockout_seconds)
        _raise_file_limit(settings.max_connections)
        self._socket = _listen(settings)
        self._submitter = concurrent.futures.ThreadPoolExecutor(SUBMIT_THREADS, thread_name_prefix="shipper-http-submit")
        self._server = uvicorn.Server(self._uvicorn_config())
        self._thread = threading.Thread(target=self._serve, name="shipper-http", daemon=True)

    def _uvicorn_config(self) -> uvicorn.Config:
        s = self.settings
        config = uvicorn.Config(
            _App(self), interface="asgi3", lifespan="off", backlog=BACKLOG,
            http=protocol_class(s.header_timeout_seconds, s.max_connections),
            timeout_keep_alive=s.header_timeout_seconds, timeout_graceful_shutdown=None,
            ssl_certfile=s.tls_cert or None, ssl_keyfile=s.tls_key or None,
            proxy_headers=bool(s.trusted_proxies), forwarded_allow_ips=list(s.trusted_proxies),
            server_header=False, date_header=False,
            # uvicorn's own access log would write request lines (the token may be in the query string);
            # its start/stop chatter stays below warning, its "Invalid HTTP request" warnings stay.
            access_log=False, log_config=None, log_level="warning")
        try:
            config.load()  # reads the TLS files now, so a bad path fails `shipper run` with one line
        except OSError as e:  # ssl.SSLError is an OSError
            self._socket.close()
            raise HttpSourceError(f"http source: cannot use tls_cert {s.tls_cert!r} / tls_key {s.tls_key!r}: "
                                  f"{e.strerror or e}") from None
        return config

    @property
    def scheme(self) -> str:
        return "https" if self.settings.tls_cert else "http"

    @property
    def address(self) -> str:
        host, port = self._socket.getsockname()[:2]
        return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"

    def start(self) -> "HttpServer":
        if not self.token:
            log.warning("http source: environment variable %s is not set: every push is refused with 401 "
                        "until it holds the token your senders use", self.settings.token_env)
        address = self.address  # the socket is closed by uvicorn at shutdown
        self._thread.start()
        deadline = time.monotonic() + 10
        while not self._server.started and self._thread.is_alive() and time.monotonic() < deadline:
            time.sleep(0.005)
        if not self._server.started:
            raise HttpSourceError(f"http source: cannot serve on {self.settings.listen}")
        log.info("http source: listening on %s://%s (POST or GET, token required)", self.scheme, address)
        return self

    def _serve(self) -> None:
        loop = asyncio.new_event_loop()
        loop.set_exception_handler(_loop_error)
        try:
            loop.run_until_complete(self._server.serve(sockets=[self._socket]))
        except Exception as e:  # the process must outlive its http source; say why it ended
            log.error("http source: server stopped: %s: %s", type(e).__name__, e)
        finally:
            loop.close()

    def stop(self) -> None:
        """Stop accepting connections; pushes already received wait for the final flush."""
        self._server.should_exit = True

    def close(self, timeout: float = 5.0) -> None:
        """After the pipeline's final flush: let waiting pushes send their answers, then close."""
        self._server.should_exit = True
        if self._thread.is_alive():
            self._thread.join(timeout)
        if self._thread.is_alive():
            self._server.force_exit = True  # answers still owed go unanswered: their senders retry
            self._thread.join(2.0)
        if not self._thread.ident:
            self._socket.close()
        self._submitter.shutdown(wait=False)

    def authorized(self, headers: dict[str, str], query: dict[str, list[str]]) -> bool:
        if not self.token:
            return False
        offered = headers.get("x-shipper-token", "")
        auth = headers.get("authorization", "")
        if not offered and auth.lower().startswith("bearer "):
            offered = auth[7:].strip()
        if not offered:
            offered = (query.get("token") or [""])[0]
        return hmac.compare_digest(offered.encode(), self.token.encode())

    def submit(self, message: Message) -> Awaitable:
        """Hand a message to the pipeline off the loop (submit may block on backpressure)."""
        return asyncio.get_running_loop().run_in_executor(self._submitter, self.pipeline.submit, message)

    def reject(self, message: Message, reason: str, error: str) -> Awaitable:
        return asyncio.get_running_loop().run_in_executor(self._submitter, self.pipeline.reject, message, reason, error)

    def off_loop(self, call: Callable, *args) -> Awaitable:
        """Run a blocking call (a SQLite write, a pipeline hand-off that may wait) on a submit thread."""
        return asyncio.get_running_loop().run_in_executor(self._submitter, call, *args)


@dataclass
class _Request:
    method: str
    path: str
    query: str        # the raw query string, latin-1 as sent
    headers: dict[str, str]
    client: str
    receive: Callable
    send: Callable

    @classmethod
    def from_scope(cls, scope: dict, receive, send) -> "_Request":
        headers = {name.decode("latin-1"): value.decode("latin-1") for name, value in scope["headers"]}
        client = scope.get("client")
        return cls(scope["method"], scope["path"], scope["query_string"].decode("latin-1"), headers,
                   client[0] if client else "unknown", receive, send)

    @property
    def query_fields(self) -> dict[str, list[str]]:
        return urllib.parse.parse_qs(self.query, keep_blank_values=True)


class _BodyTooLarge(Exception):
    pass


class _BodyNotReceived(Exception):
    """The client went away or stalled before its body was complete: nothing of it is processed."""

    def __init__(self, timed_out: bool):
        self.timed_out = timed_out


def _resolver(future: asyncio.Future) -> Callable:
    """A callback other threads may call with one value: it resolves `future` on its loop."""
    loop = future.get_loop()

    def settle(value=None) -> None:
        if not future.done():
            future.set_result(value)

    def callback(value=None) -> None:
        try:
            loop.call_soon_threadsafe(settle, value)
        except RuntimeError:  # the loop is closed: the server stopped, nobody waits for this answer
            pass

    return callback


class _App:
    """The ASGI application: routes, token, limits, and answers after commit."""

    def __init__(self, server: HttpServer):
        self.server = server
        self.settings = server.settings

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            return
        request = _Request.from_scope(scope, receive, send)
        try:
            await self._route(request)
        except Exception:  # a bug here costs this request a 500, never the process or other requests
            log.exception("http source: internal error answering a %s request", request.method)
            with contextlib.suppress(Exception):  # the answer may have been under way already
                await self._reply(request, 500, {"error": "internal error"}, close=True)

    async def _route(self, request: _Request) -> None:
        if request.method == "GET" and request.path == "/healthz":
            return await self._reply(request, 200, {"status": "ok", "inflight": self.server.pipeline.inflight})
        if request.method == "GET" and request.path == "/metrics":
            return await self._reply(request, 200, metrics.render(), metrics.CONTENT_TYPE)
        if request.method not in ("GET", "POST"):
            return await self._reply(request, 405, {"error": "pushes are POST or GET"}, close=True)
        if not await self._admitted(request):
            return
        if request.method == "GET":
            return await self._get_push(request)
        if request.path.startswith("/hooks/"):
            return await self._alert_hook(request, request.path[len("/hooks/"):])
        body = await self._body_or_answer(request)
        if body is not None:
            await self._ingest(request, body, request.headers.get("content-type"))

    async def _admitted(self, request: _Request) -> bool:
        """The token check, rate-limited per client address; answers 429/401 itself when refusing."""
        throttle = self.server.throttle
        if throttle.locked(request.client):
            await self._reply(request, 429, {"error": "too many wrong tokens from this address; retry later"},
                              close=True, extra=[(b"retry-after", str(round(throttle.window)).encode())])
            return False
        if self.server.authorized(request.headers, request.query_fields):
            return True
        if throttle.failed(request.client):
            metrics.HTTP_TOKEN_LOCKOUTS.inc()
            log.warning("http source: %d missing or wrong tokens from %s within %.0f s; answering it 429 for %.0f s",
                        throttle.max_failures, request.client, throttle.window, throttle.window)
        await self._reply(request, 401, {"error": "missing or wrong token"}, close=True)  # the body is not read
        return False

    async def _get_push(self, request: _Request) -> None:
        pairs = [(k, v) for k, v in urllib.parse.parse_qsl(request.query, keep_blank_values=True) if k != "token"]
        if not pairs:
            return await self._reply(request, 400, {"error": "a GET push carries the event in its query string (data=<json>)"})
        await self._ingest(request, urllib.parse.urlencode(pairs).encode(), "application/x-www-form-urlencoded")

    async def _body_or_answer(self, request: _Request) -> bytes | None:
        """The whole body; None when it was refused (413, recorded as too-large; 408) or the client left."""
        try:
            return await self._read_body(request)
        except _BodyTooLarge:
            await self._too_large(request)
        except _BodyNotReceived as e:
            if e.timed_out:
                await self._reply(request, 408, {"error": "the body did not arrive in time"}, close=True)
        return None

    async def _read_body(self, request: _Request) -> bytes:
        limit = self.settings.max_body_bytes
        declared = request.headers.get("content-length", "")
        if declared.isascii() and declared.isdigit() and int(declared) > limit:  # the parser checked its syntax
            raise _BodyTooLarge
        deadline = time.monotonic() + self.settings.body_timeout_seconds
        chunks, size = [], 0
        while True:
            try:
                message = await asyncio.wait_for(request.receive(), max(deadline - time.monotonic(), 0))
            except asyncio.TimeoutError:
                raise _BodyNotReceived(timed_out=True) from None
            if message["type"] == "http.disconnect":
                raise _BodyNotReceived(timed_out=False)
            size += len(message.get("body", b""))
            if size > limit:
                raise _BodyTooLarge
            chunks.append(message.get("body", b""))
            if not message.get("more_body"):
                return b"".join(chunks)

    async def _too_large(self, request: _Request) -> None:
        limit = self.settings.max_body_bytes
        error = f"HTTP body over the http source's max_body_bytes ({limit}); not read"
        recorded = asyncio.get_running_loop().create_future()
        await self.server.reject(Message(body=b"", source="http", on_done=_resolver(recorded)), TOO_LARGE, error)
        await self._within_commit_timeout(recorded)
        await self._reply(request, 413, {"error": error}, close=True)  # the rest of the body is not read

    async def _within_commit_timeout(self, future: asyncio.Future):
        """The future's value, or None when the commit timeout passed first."""
        try:
            return await asyncio.wait_for(future, self.settings.commit_timeout_seconds)
        except asyncio.TimeoutError:
            return None

    async def _ingest(self, request: _Request, body: bytes, content_type: str | None) -> None:
        outcome = asyncio.get_running_loop().create_future()
        await self.server.submit(Message(body=body, source="http", content_type=content_type,
                                         on_done=_resolver(outcome)))
        result: Result | None = await self._within_commit_timeout(outcome)
        if result is None:
            return await self._reply(request, 503, {"error": "not committed in time; retry"})
        reply = {"status": result.status.value, "events": result.events}
        if result.reason:
            reply["reason"] = result.reason
        if result.error:
            reply["error"] = result.error
        await self._reply(request, _STATUS[result.status], reply)

    async def _alert_hook(self, request: _Request, name: str) -> None:
        """An SLS alert asks a hook to act (dashboards/README.md, "The hook payload"): 200 once durably
        accepted; the hook then decides on a worker, as for inline events."""
        alerts = self.server.alerts
        hook = alerts.hook(name) if alerts else None
        if hook is None:
            return await self._reply(request, 404, {"error": f"hook {name!r} is not enabled in this shipper"}, close=True)
        try:
            body = await self._read_body(request)
        except _BodyTooLarge:
            return await self._reply(request, 413, {"error": "alert body over max_body_bytes"}, close=True)
        except _BodyNotReceived as e:
            if e.timed_out:
                await self._reply(request, 408, {"error": "the body did not arrive in time"}, close=True)
            return
        try:
            payload = alert_payload(body)
        except ValueError as e:
            return await self._reply(request, 400, {"error": str(e)})
        if payload["status"] != "firing":
            return await self._reply(request, 200, {"status": "ignored", "reason": f"alert status {payload['status']!r}"})
        targets = alert_events(payload, hook.name)
        if not targets:
            return await self._reply(request, 400, {"error": "no alert row names an `instance_id`"})
        key = repeat_key(payload)
        fresh = await self.server.off_loop(alerts.claim, hook.name, key, targets)
        if fresh and not await self._record_accepted(accepted_records(hook.name, fresh, payload)):
            # Not durably accepted: forget the claim, so SLS's retry of this notification is accepted.
            await self.server.off_loop(alerts.release, hook.name, key, fresh)
            return await self._reply(request, 503, {"error": "not recorded in time; retry"})
        alerts.schedule(hook, fresh)
        if len(fresh) < len(targets):
            log.info("hook %s: alert %s repeated for %d instance(s); not acting again",
                     hook.name, key, len(targets) - len(fresh))
        await self._reply(request, 200, {"status": ACCEPTED if fresh else "repeat", "instances": len(targets),
                                         "accepted": len(fresh), "repeats": len(targets) - len(fresh)})

    async def _record_accepted(self, records: list[dict]) -> bool:
        """Commit the `accepted` records through the pipeline; whether they committed in time."""
        committed = asyncio.get_running_loop().create_future()
        await self.server.off_loop(self.server.pipeline.record, events.ACTIONS_TABLE, records, _resolver(committed))
        return bool(await self._within_commit_timeout(committed))

    async def _reply(self, request: _Request, status: int, body: dict | bytes, content_type: str = "application/json",
                     close: bool = False, extra: list[tuple[bytes, bytes]] = ()) -> None:
        payload = body if isinstance(body, bytes) else orjson.dumps(body)
        metrics.HTTP_REQUESTS.inc(labels={"code": str(status)})
        headers = [(b"content-type", content_type.encode()), (b"content-length", str(len(payload)).encode()), *extra]
        if close:  # the body was not (all) read: the connection cannot carry another request
            headers.append((b"connection", b"close"))
        await request.send({"type": "http.response.start", "status": status, "headers": headers})
        await request.send({"type": "http.response.body", "body": payload})
        log.debug("http %s %s -> %d", request.method, request.path, status)


def check(source: HttpSourceSettings, config=None) -> list[Finding]:
    findings = []
    if os.environ.get(source.token_env):
        findings.append(Finding("ok", f"http source: token variable {source.token_env} is set"))
    else:
        # `shipper run` starts without it and warns (pushes get 401): not a FAIL, the same word as run's
        findings.append(Finding("warn", f"http source: {source.token_env} is not set: every push would get 401; "
                                        f"export it with the token your senders use"))
    host, port = parse_listen(source.listen)
    try:
        with socket.create_server((host, port)):
            pass
        findings.append(Finding("ok", f"http source: {source.listen} is free to listen on"))
    except OSError as e:  # `shipper run` binds the same address and stops when it cannot
        findings.append(Finding("FAIL", f"http source: cannot listen on {source.listen} ({e.strerror or e}); "
                                        f"stop what holds it (another shipper?) or change `listen`"))
    if source.tls_cert:
        findings.append(_check_tls(source))
    return findings


def _check_tls(source: HttpSourceSettings) -> Finding:
    """Load the pair the way `shipper run` will, so a bad path or a key that does not match shows here."""
    try:
        ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER).load_cert_chain(source.tls_cert, source.tls_key)
    except OSError as e:  # ssl.SSLError is an OSError
        return Finding("FAIL", f"http source: cannot use tls_cert {source.tls_cert!r} / tls_key {source.tls_key!r} "
                               f"({e.strerror or e}); fix the paths or the files (PEM chain and its key)")
    return Finding("ok", f"http source: TLS certificate {source.tls_cert} and its key load")


registry.register(registry.Component(
    registry.SOURCE, "http", HttpSourceSettings,
    build=lambda settings, runtime: HttpServer(settings, runtime.pipeline, alerts=runtime.alerts), check=check))
