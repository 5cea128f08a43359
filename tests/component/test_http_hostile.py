"""The http source facing hostile or broken clients: after each, the server is alive, the next good push
gets 200, and every acknowledged event is stored.

The in-process server runs with short limits (1 s head/body timeouts, 3 token failures) so the file stays
fast; one `shipper run` subprocess takes the floods with its shipped defaults.
"""
import concurrent.futures
import datetime
import http.client
import logging
import os
import re
import resource
import signal
import socket
import sqlite3
import ssl
import statistics
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from shipper import events
from shipper.telemetry import metrics
from shipper.config import BatchSettings
from shipper.sources.http import HttpSourceSettings
from shipper.pipeline import Pipeline
from shipper.sinks.sqlite import SqliteSink
from shipper.sources.http import HttpServer
from tests.conftest import REPO

TOKEN = "hostile-token-7a6b5c4d3e2f"
LIMIT = 64 * 1024


def event_body(uid: str) -> bytes:
    return ('{"ver": "1.0", "id": "%s", "product": "ECS", "level": "INFO", "name": "Instance:StateChange", '
            '"userId": "1543729860417752", "eventTime": "20250318T102249.760+0800", "regionId": "cn-shanghai", '
            '"resourceId": "acs:ecs:cn-shanghai:1543729860417752:instance/i-uf6a8k2m5q9t3w7x1z4c", '
            '"content": {"resourceId": "i-uf6a8k2m5q9t3w7x1z4c", "resourceType": "ALIYUN::ECS::Instance", '
            '"state": "Running"}}' % uid).encode()


def new_uid() -> str:
    return str(uuid.uuid4()).upper()


class Target:
    """A running http source (in-process or `shipper run`) and the store behind it."""

    def __init__(self, port: int, db: Path, alive, tls: ssl.SSLContext | None = None):
        self.port, self.db, self.alive, self.tls = port, db, alive, tls
        self.acknowledged: list[str] = []

    def connection(self, timeout: float = 10) -> http.client.HTTPConnection:
        if self.tls:
            return http.client.HTTPSConnection("127.0.0.1", self.port, timeout=timeout, context=self.tls)
        return http.client.HTTPConnection("127.0.0.1", self.port, timeout=timeout)

    def request(self, method: str, path: str, body=None, headers=None) -> tuple[int, bytes]:
        conn = self.connection()
        try:
            conn.request(method, path, body=body, headers=headers or {})
            response = conn.getresponse()
            return response.status, response.read()
        finally:
            conn.close()

    def push(self, body: bytes = b"", uid: str = "", headers=None) -> int:
        uid = uid or new_uid()
        status, _ = self.request("POST", "/", body or event_body(uid), {"X-Shipper-Token": TOKEN, **(headers or {})})
        if status == 200:
            self.acknowledged.append(uid)
        return status

    def rows(self, table: str, where: str = "1") -> list[dict]:
        conn = sqlite3.connect(self.db)
        conn.row_factory = sqlite3.Row
        try:
            return [dict(r) for r in conn.execute(f'SELECT * FROM "{table}" WHERE {where}')]
        except sqlite3.OperationalError:  # no table yet: nothing stored
            return []
        finally:
            conn.close()

    def raw(self, data: bytes, timeout: float = 5.0) -> bytes:
        """Send bytes on a fresh connection; everything the server answers until it closes (or `timeout`)."""
        with socket.create_connection(("127.0.0.1", self.port), timeout=timeout) as sock:
            sock.sendall(data)
            return read_until_closed(sock, timeout)

    def assert_healthy(self) -> None:
        assert self.alive(), "the server stopped"
        assert self.push() == 200
        stored = {r["event_uid"].upper() for r in self.rows(events.EVENTS_TABLE)}
        assert set(self.acknowledged) <= stored


def read_until_closed(sock: socket.socket, timeout: float) -> bytes:
    sock.settimeout(timeout)
    data = b""
    try:
        while chunk := sock.recv(65536):
            data += chunk
    except (TimeoutError, ConnectionResetError):
        pass
    return data


def status_of(answer: bytes) -> int:
    match = re.match(rb"HTTP/1\.1 (\d{3}) ", answer)
    return int(match.group(1)) if match else 0


@pytest.fixture
def make_target(tmp_path, monkeypatch):
    """An in-process http source on a SQLite store, with short limits; settings override them."""
    monkeypatch.setenv("SHIPPER_WEBHOOK_TOKEN", TOKEN)
    started = []

    def make(tls: ssl.SSLContext | None = None, **overrides) -> Target:
        pipeline = Pipeline([SqliteSink(tmp_path / "e.db")], BatchSettings(linger_ms=20)).start()
        settings = dict(listen="127.0.0.1:0", max_body_bytes=LIMIT, commit_timeout_seconds=10,
                        header_timeout_seconds=1, body_timeout_seconds=1, max_token_failures=3,
                        token_lockout_seconds=1)
        srv = HttpServer(HttpSourceSettings(**{**settings, **overrides}), pipeline).start()
        started.append((srv, pipeline))
        return Target(int(srv.address.rsplit(":", 1)[1]), tmp_path / "e.db", srv._thread.is_alive, tls)

    yield make
    for srv, pipeline in started:
        srv.stop()
        pipeline.close(5)
        srv.close()


@pytest.fixture
def target(make_target) -> Target:
    return make_target()


def test_500_concurrent_pushes_are_all_answered_and_stored(target):
    uids = [new_uid() for _ in range(500)]
    with concurrent.futures.ThreadPoolExecutor(500) as pool:
        answers = list(pool.map(lambda uid: _push_or_error(target, uid), uids))
    assert answers == [200] * 500
    target.assert_healthy()


def _push_or_error(target: Target, uid: str):
    try:
        return target.push(uid=uid)
    except OSError as e:  # a reset connection: what a short listen backlog does
        return type(e).__name__


def test_keep_alive_answers_do_not_wait_for_a_delayed_ack(target):
    """Headers and body written apart, with Nagle on, stall each answer after the first ~40 ms (the
    client's delayed ACK). A median far under that holds on any machine; the exact figure is a benchmark."""
    conn = target.connection()
    latencies = []
    for _ in range(21):
        started = time.monotonic()
        conn.request("GET", "/healthz")
        conn.getresponse().read()
        latencies.append(time.monotonic() - started)
    conn.close()
    assert statistics.median(latencies[1:]) < 0.03, latencies


def test_silent_and_dribbling_heads_are_cut_off(target):
    with socket.create_connection(("127.0.0.1", target.port)) as silent, \
            socket.create_connection(("127.0.0.1", target.port)) as dribbler:
        t0 = time.monotonic()
        with pytest.raises(OSError):  # the server hangs up on it
            for byte in b"POST / HTTP/1.1\r\nHost: x\r\n" + b"X: y\r\n" * 20:  # never finishing the head
                dribbler.sendall(bytes([byte]))
                time.sleep(0.02)
        assert read_until_closed(silent, 5) == b""  # closed, unanswered
        assert read_until_closed(dribbler, 5) == b""
        assert time.monotonic() - t0 < 4
    target.assert_healthy()


def test_a_stalled_body_gets_408_and_is_not_processed(target):
    uid = new_uid()
    body = event_body(uid)
    head = f"POST / HTTP/1.1\r\nHost: x\r\nX-Shipper-Token: {TOKEN}\r\nContent-Length: {len(body)}\r\n\r\n"
    with socket.create_connection(("127.0.0.1", target.port)) as sock:
        sock.sendall(head.encode() + body[:-10])
        assert status_of(read_until_closed(sock, 5)) == 408
    target.assert_healthy()
    assert target.rows(events.EVENTS_TABLE, f"event_uid = '{uid}'") == []
    assert target.rows(events.DEADLETTER_TABLE) == []


def test_a_body_cut_short_by_a_hang_up_is_not_processed(target, caplog, capfd):
    uid = new_uid()
    body = event_body(uid)
    head = f"POST / HTTP/1.1\r\nHost: x\r\nX-Shipper-Token: {TOKEN}\r\nContent-Length: {len(body)}\r\n\r\n"
    with socket.create_connection(("127.0.0.1", target.port)) as sock:
        sock.sendall(head.encode() + body[:-10])
    time.sleep(0.2)
    target.assert_healthy()
    assert target.rows(events.EVENTS_TABLE, f"event_uid = '{uid}'") == [] and target.rows(events.DEADLETTER_TABLE) == []
    assert_no_traceback(caplog, capfd)


def assert_no_traceback(caplog, capfd) -> None:
    assert not [r for r in caplog.records if r.exc_info], "a traceback was logged"
    assert "Traceback" not in capfd.readouterr().err


def test_clients_that_hang_up_before_the_answer_log_no_traceback(target, caplog, capfd):
    caplog.set_level(logging.DEBUG)
    uid = new_uid()
    body = event_body(uid)
    heads = [f"POST / HTTP/1.1\r\nHost: x\r\nX-Shipper-Token: {TOKEN}\r\nContent-Length: {len(body)}\r\n\r\n".encode() + body,
             b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\n\r\n",  # no token: 401 to a closed socket
             b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n" * 50]
    for head in heads:
        sock = socket.create_connection(("127.0.0.1", target.port))
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")  # close = RST
        sock.sendall(head)
        sock.close()
    time.sleep(0.5)  # the push commits and its answer meets a reset connection
    target.assert_healthy()
    assert_no_traceback(caplog, capfd)


def chunked(body: bytes, size: int = 1000) -> bytes:
    pieces = [body[i:i + size] for i in range(0, len(body), size)]
    return b"".join(b"%x\r\n%s\r\n" % (len(p), p) for p in pieces) + b"0\r\n\r\n"


def test_chunked_bodies_are_accepted_up_to_max_body_bytes(target):
    uid = new_uid()
    head = f"POST / HTTP/1.1\r\nHost: x\r\nX-Shipper-Token: {TOKEN}\r\nTransfer-Encoding: chunked\r\n\r\n"
    assert status_of(target.raw(head.encode() + chunked(event_body(uid)) , timeout=2)) == 200
    target.acknowledged.append(uid)
    huge = b'{"x": "' + b"y" * LIMIT + b'"}'
    assert status_of(target.raw(head.encode() + chunked(huge, 8192))) == 413
    (letter,) = target.rows(events.DEADLETTER_TABLE)
    assert letter["reason"] == "too-large"
    target.assert_healthy()


@pytest.mark.parametrize("framing", [
    "Content-Length: 5\r\nTransfer-Encoding: chunked",  # request smuggling: which length wins?
    "Content-Length: \u00b2",                            # a digit to str.isdigit(), not to int()
    "Content-Length: " + "9" * 5000,                    # past int()'s 4300-digit limit
    "Content-Length: -1",
    "Content-Length: 5\r\nContent-Length: 6",
])
def test_bad_framing_is_400_and_nothing_is_stored(target, caplog, capfd, framing):
    body = event_body(new_uid())
    head = f"POST / HTTP/1.1\r\nHost: x\r\nX-Shipper-Token: {TOKEN}\r\n{framing}\r\n\r\n".encode()
    assert status_of(target.raw(head + chunked(body))) == 400
    assert target.rows(events.EVENTS_TABLE) == [] and target.rows(events.DEADLETTER_TABLE) == []
    target.assert_healthy()
    assert_no_traceback(caplog, capfd)


@pytest.mark.parametrize("garbage", [b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03" + os.urandom(64),
                                     b"BREW /pot HTTP/1.1\r\nHost: x\r\n\r\n", b"\r\n\r\n\r\n",
                                     b"GET / HTTP/1.1\r\nX: " + b"a" * 100_000 + b"\r\n\r\n"])
def test_garbage_and_oversized_heads_do_not_hurt(target, garbage):
    assert status_of(target.raw(garbage)) in (0, 400, 405, 431)
    target.assert_healthy()


@pytest.mark.parametrize("body", [
    b"content=%7B%22state%22%3A%22Running%22%7D&content=%7B%22state%22%3A%22Stopped%22%7D&name=Instance%3AStateChange",
    b"data=%7B%7D&data=%7B%22id%22%3A%22x%22%7D"])
def test_duplicate_form_fields_are_dead_lettered_not_last_wins(target, body):
    status, reply = target.request("POST", "/", body, {"X-Shipper-Token": TOKEN,
                                                        "Content-Type": "application/x-www-form-urlencoded"})
    assert status == 400 and b"twice" in reply
    (letter,) = target.rows(events.DEADLETTER_TABLE)
    assert letter["reason"] == "not-an-event"
    target.assert_healthy()


def test_token_failures_are_rate_limited_per_address(target, caplog):
    caplog.set_level(logging.INFO)
    lockouts = metrics.HTTP_TOKEN_LOCKOUTS.total()
    wrong = [target.request("POST", "/?token=guess-%d" % i, event_body(new_uid()))[0] for i in range(3)]
    assert wrong == [401] * 3
    status, reply = target.request("POST", "/", event_body(new_uid()), {"X-Shipper-Token": TOKEN})
    assert status == 429  # even the right token: a locked-out address learns nothing
    assert metrics.HTTP_TOKEN_LOCKOUTS.total() == lockouts + 1
    assert "3 missing or wrong tokens from 127.0.0.1" in caplog.text
    assert TOKEN not in caplog.text and "guess-" not in caplog.text
    assert target.rows(events.EVENTS_TABLE) == []
    time.sleep(1.1)  # token_lockout_seconds
    target.assert_healthy()


def test_connections_over_max_connections_get_503_at_once(make_target):
    target = make_target(max_connections=8, header_timeout_seconds=30)
    held = [socket.create_connection(("127.0.0.1", target.port)) for _ in range(8)]
    try:
        time.sleep(0.2)
        assert status_of(target.raw(b"", timeout=2)) == 503
    finally:
        for sock in held:
            sock.close()
    time.sleep(0.2)
    target.assert_healthy()


def self_signed(tmp_path: Path) -> tuple[Path, Path, ssl.SSLContext]:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.datetime.now(datetime.timezone.utc)
    import ipaddress
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), False)
            .sign(key, hashes.SHA256()))
    cert_path, key_path = tmp_path / "cert.pem", tmp_path / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    client = ssl.create_default_context(cafile=str(cert_path))
    return cert_path, key_path, client


def test_tls_when_tls_cert_and_tls_key_are_set(make_target, tmp_path, caplog):
    cert, key, client = self_signed(tmp_path)
    caplog.set_level(logging.INFO)
    target = make_target(tls=client, tls_cert=str(cert), tls_key=str(key))
    assert f"listening on https://127.0.0.1:{target.port}" in caplog.text
    assert target.raw(b"POST / HTTP/1.1\r\nHost: x\r\n\r\n", timeout=2)[:4] != b"HTTP"  # plain HTTP gets no answer
    target.assert_healthy()
    assert target.request("GET", "/healthz")[0] == 200


@pytest.fixture
def shipper_run(tmp_path):
    """`shipper run` with the shipped config (defaults for every http limit) on a free port."""
    text = (REPO / "config.toml").read_text().replace('listen = "127.0.0.1:8787"', 'listen = "127.0.0.1:0"')
    (tmp_path / "config.toml").write_text(text)
    env = dict(os.environ, SHIPPER_WEBHOOK_TOKEN=TOKEN)
    proc = subprocess.Popen([sys.executable, "-m", "shipper", "run"], cwd=tmp_path, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    lines = []
    while not (match := re.search(r"listening on http://127\.0\.0\.1:(\d+)", lines[-1] if lines else "")):
        line = proc.stdout.readline().decode()
        assert line, "shipper run exited early:\n" + "".join(lines)
        lines.append(line)
    proc.target = Target(int(match.group(1)), tmp_path / "shipper-demo" / "events.db", lambda: proc.poll() is None)
    yield proc
    if proc.poll() is None:
        proc.kill()
        proc.wait()


def threads_and_rss_kib(pid: int) -> tuple[int, int]:
    status = dict(line.split(":", 1) for line in Path(f"/proc/{pid}/status").read_text().splitlines())
    return int(status["Threads"]), int(status["VmRSS"].split()[0])


def test_shipper_run_survives_an_idle_flood_and_hostile_clients(shipper_run):
    target = shipper_run.target
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (min(max(soft, 4096), hard), hard))  # this side holds 2000 too
    threads_before, rss_before = threads_and_rss_kib(shipper_run.pid)
    flood = [socket.create_connection(("127.0.0.1", target.port)) for _ in range(2000)]
    try:
        time.sleep(0.5)
        t0 = time.monotonic()
        assert target.push() == 200
        assert time.monotonic() - t0 < 1.0
        threads, rss = threads_and_rss_kib(shipper_run.pid)
        assert threads <= threads_before + 4  # a thread per connection would be 2000
        assert rss - rss_before < 100 * 1024
    finally:
        for sock in flood:
            sock.close()
    for framing in ("Content-Length: \u00b2", "Content-Length: " + "9" * 5000, "Content-Length: 1\r\nTransfer-Encoding: chunked"):
        assert status_of(target.raw(f"POST / HTTP/1.1\r\nX-Shipper-Token: {TOKEN}\r\n{framing}\r\n\r\n".encode())) == 400
    with socket.create_connection(("127.0.0.1", target.port)) as sock:
        sock.sendall(f"POST / HTTP/1.1\r\nX-Shipper-Token: {TOKEN}\r\nContent-Length: 500\r\n\r\n{{".encode())
    target.assert_healthy()
    shipper_run.send_signal(signal.SIGTERM)
    output = shipper_run.communicate(timeout=30)[0].decode()
    assert shipper_run.returncode == 0, output
    assert "Traceback" not in output and TOKEN not in output
    stored = {r["event_uid"].upper() for r in target.rows(events.EVENTS_TABLE)}
    assert set(target.acknowledged) <= stored
