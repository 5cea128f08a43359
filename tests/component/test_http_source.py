"""The http source against a real SQLite store: tokens, status codes, dead letters, secrets."""
import http.client
import logging
import socket
import sqlite3
import threading
import urllib.parse

import pytest

from shipper import events
from shipper.config import BatchSettings
from shipper.sources.http import HttpSourceSettings
from shipper.pipeline import Pipeline
from shipper.sinks.sqlite import SqliteSink
from shipper.sources.http import HttpServer
from tests.fakes import FakeSink
from tests.waiting import wait_until

TOKEN = "tok-9f8e7d6c5b4a3928"


class GatedSink(SqliteSink):
    """Holds every write until `gate` is set: a commit that is still under way."""
    name = "gated"

    def __init__(self, path):
        super().__init__(path)
        self.entered, self.gate = threading.Event(), threading.Event()

    def write(self, table, records):
        self.entered.set()
        self.gate.wait(10)
        return super().write(table, records)


@pytest.fixture
def server(tmp_path, monkeypatch, request):
    monkeypatch.setenv("SHIPPER_WEBHOOK_TOKEN", TOKEN)
    sink = FakeSink(fail="store unavailable") if getattr(request, "param", "") == "failing" else SqliteSink(tmp_path / "e.db")
    pipeline = Pipeline([sink], BatchSettings(linger_ms=20)).start()
    settings = HttpSourceSettings(listen="127.0.0.1:0", max_body_bytes=64 * 1024, commit_timeout_seconds=10)
    srv = HttpServer(settings, pipeline).start()
    srv.db = tmp_path / "e.db"
    yield srv
    srv.stop()
    pipeline.close(5)
    srv.close()


def call(srv, method, path, body=None, headers=None):
    host, port = srv.address.split(":")
    conn = http.client.HTTPConnection(host, int(port), timeout=10)
    conn.request(method, path, body=body, headers=headers or {})
    response = conn.getresponse()
    data = response.read()
    conn.close()
    return response.status, data


def rows(srv, table):
    conn = sqlite3.connect(srv.db)
    conn.row_factory = sqlite3.Row
    return [dict(r) for r in conn.execute(f'SELECT * FROM "{table}"')]


def test_post_json_with_header_token_is_committed_before_200(server, fixtures_dir):
    body = (fixtures_dir / "c_statechange_stopped.json").read_bytes()
    status, data = call(server, "POST", "/", body, {"X-Shipper-Token": TOKEN, "Content-Type": "application/json"})
    assert status == 200, data
    (row,) = rows(server, events.EVENTS_TABLE)  # already there when the answer arrives
    assert row["instance_id"] and row["instance_id"] in body.decode() and row["envelope"] == "eventbridge"


def test_form_push_with_query_token_and_bearer_token(server, fixtures_dir):
    body = (fixtures_dir / "b_subscription_form_urlencoded.txt").read_bytes()
    status, _ = call(server, "POST", f"/cms?token={TOKEN}", body, {"Content-Type": "application/x-www-form-urlencoded"})
    assert status == 200
    body = (fixtures_dir / "a_statechange_pending.json").read_bytes()
    status, _ = call(server, "POST", "/", body, {"Authorization": f"Bearer {TOKEN}"})
    assert status == 200
    assert {r["envelope"] for r in rows(server, events.EVENTS_TABLE)} == {"cms-subscription", "cms"}


def test_get_push_with_data_parameter(server, fixtures_dir):
    data = (fixtures_dir / "b_subscription_json_statechange_stopped.json").read_text()
    query = urllib.parse.urlencode({"data": data, "token": TOKEN})
    status, _ = call(server, "GET", f"/cms?{query}")
    assert status == 200
    (row,) = rows(server, events.EVENTS_TABLE)
    assert row["event_uid"] and row["event_uid"] in data


@pytest.mark.parametrize("headers, path", [({}, "/"), ({"X-Shipper-Token": "wrong"}, "/"), ({}, "/?token=wrong"),
                                           ({"Authorization": "Bearer "}, "/")])
def test_missing_or_wrong_token_is_401_and_stores_nothing(server, fixtures_dir, headers, path):
    body = (fixtures_dir / "a_statechange_pending.json").read_bytes()
    status, _ = call(server, "POST", path, body, headers)
    assert status == 401
    assert rows(server, events.EVENTS_TABLE) == [] and rows(server, events.DEADLETTER_TABLE) == []


def test_not_an_event_is_400_and_dead_lettered(server, fixtures_dir):
    body = (fixtures_dir / "bad_json_not_event.json").read_bytes()
    status, data = call(server, "POST", "/", body, {"X-Shipper-Token": TOKEN})
    assert status == 400 and b"not-an-event" in data
    (letter,) = rows(server, events.DEADLETTER_TABLE)
    assert letter["reason"] == "not-an-event" and letter["source"] == "http"


def test_over_the_size_limit_is_413_and_recorded(server):
    body = b"{" + b" " * (64 * 1024) + b"}"
    status, _ = call(server, "POST", "/", body, {"X-Shipper-Token": TOKEN})
    assert status == 413
    (letter,) = rows(server, events.DEADLETTER_TABLE)
    assert letter["reason"] == "too-large"


@pytest.mark.parametrize("server", ["failing"], indirect=True)
def test_sink_failure_is_503_so_the_sender_retries(server, fixtures_dir):
    body = (fixtures_dir / "a_statechange_pending.json").read_bytes()
    status, _ = call(server, "POST", "/", body, {"X-Shipper-Token": TOKEN})
    assert status == 503


def test_health_and_metrics_need_no_token(server):
    assert call(server, "GET", "/healthz")[0] == 200
    status, data = call(server, "GET", "/metrics")
    assert status == 200 and b"shipper_events_committed_total" in data


def test_token_never_reaches_the_logs(server, fixtures_dir, caplog):
    caplog.set_level(logging.DEBUG)
    body = (fixtures_dir / "a_statechange_pending.json").read_bytes()
    call(server, "POST", f"/?token={TOKEN}", body)
    call(server, "POST", "/?token=not-it", body)
    call(server, "GET", f"/?token={TOKEN}&data=%7B%7D")
    assert caplog.records  # debug logging did run
    assert TOKEN not in caplog.text


def test_unset_token_variable_refuses_every_push(tmp_path, monkeypatch, fixtures_dir, caplog):
    monkeypatch.delenv("SHIPPER_WEBHOOK_TOKEN", raising=False)
    pipeline = Pipeline([SqliteSink(tmp_path / "e.db")], BatchSettings(linger_ms=0)).start()
    srv = HttpServer(HttpSourceSettings(listen="127.0.0.1:0"), pipeline).start()
    try:
        assert "SHIPPER_WEBHOOK_TOKEN is not set" in caplog.text
        body = (fixtures_dir / "a_statechange_pending.json").read_bytes()
        assert call(srv, "POST", "/", body, {"X-Shipper-Token": ""})[0] == 401
    finally:
        srv.stop()
        pipeline.close(5)
        srv.close()


def test_stop_refuses_new_connections_and_waiting_pushes_are_answered_after_the_final_flush(tmp_path, monkeypatch,
                                                                                             fixtures_dir):
    monkeypatch.setenv("SHIPPER_WEBHOOK_TOKEN", TOKEN)
    sink = GatedSink(tmp_path / "e.db")
    pipeline = Pipeline([sink], BatchSettings()).start()
    srv = HttpServer(HttpSourceSettings(listen="127.0.0.1:0"), pipeline).start()
    srv.db = tmp_path / "e.db"
    body = (fixtures_dir / "a_statechange_pending.json").read_bytes()
    answer = []
    waiting = threading.Thread(target=lambda: answer.append(call(srv, "POST", "/", body, {"X-Shipper-Token": TOKEN})))
    waiting.start()
    wait_until(sink.entered.is_set, timeout=10)
    srv.stop()
    host, port = srv.address.split(":")
    wait_until(lambda: _refused(host, int(port)), timeout=5)
    assert answer == []  # still waiting for its commit
    sink.gate.set()
    pipeline.close(5)
    srv.close()
    waiting.join(5)
    assert answer and answer[0][0] == 200
    assert len(rows(srv, events.EVENTS_TABLE)) == 1


def _refused(host: str, port: int) -> bool:
    try:
        socket.create_connection((host, port), timeout=1).close()
    except ConnectionRefusedError:
        return True
    return False
