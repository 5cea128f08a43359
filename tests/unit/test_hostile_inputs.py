"""Hostile input end to end: whatever bytes and headers arrive, shipper stores events or dead letters and
keeps running (issue 9). Property tests for decode and normalize, then `run` itself under bad input."""
import http.client
import json
import logging
import socket
import sqlite3
import threading
import urllib.parse
from types import SimpleNamespace

import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

from shipper import config, runner
from shipper.telemetry import metrics
from shipper.decode import Rejected
from shipper.instances.registry import InstanceRegistry
from shipper.normalize import events_from_bytes, normalize
from tests.waiting import wait_until

FORM = "application/x-www-form-urlencoded"
TOKEN = "hostile-test-token"
# Bounded for CI on a slow 2-core machine; the examples are small, so no deadline is needed.
PROPERTY = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])

CHARSETS = st.one_of(
    st.sampled_from(["utf-8", "UTF8", "gbk", "GB2312", "gb18030", "latin-1", "ISO-8859-1", "unicode_escape",
                     "raw_unicode_escape", "utf-7", "punycode", "idna", "rot13", "base64", "hex", "zlib", "bz2",
                     "uu", "quopri", "utf-16", "utf-32", "undefined", "mbcs", "", '"utf-8"', "x" * 200]),
    st.text(max_size=20),
)
CONTENT_TYPES = st.one_of(st.none(), st.just(FORM), st.builds(lambda c: f"{FORM}; charset={c}", CHARSETS),
                          st.text(max_size=60))
# Text that codecs turn into surprises: escapes (\ud800 is a lone surrogate under unicode_escape), utf-7
# shifts, percent-encoded bytes of every value, punycode-looking tails.
TRICKY_TEXT = st.from_regex(r"(\\[ux][0-9a-fA-F]{2,4}|\\U0000d800|\+2D[A-Za-z0-9+/]{0,4}-?|%[0-9A-Fa-f]{2}|[a-z:/*{}\[\]\"-]){0,12}",
                            fullmatch=True)
FIELD_TEXT = st.one_of(TRICKY_TEXT, st.text(max_size=12))
TRICKY_FIELDS = st.dictionaries(
    st.sampled_from(["regionId", "resourceId", "id", "eventTime", "level", "userId", "instanceName", "time"]),
    st.one_of(FIELD_TEXT, FIELD_TEXT.map(lambda t: "acs:ecs:cn-hangzhou:1:instance/" + t)),
    max_size=5,
)
# Mostly an event envelope (so that decoded text reaches records), sometimes anything.
ENVELOPE_FIELDS = st.one_of(
    TRICKY_FIELDS.map(lambda f: {"name": "Instance:StateChange", "product": "ECS", **f}),
    st.tuples(TRICKY_FIELDS, FIELD_TEXT).map(
        lambda f: {"name": "Instance:StateChange", **f[0], "content": json.dumps({"instanceId": f[1], "state": "Running"})}),
    st.dictionaries(st.sampled_from(["name", "content", "alert", "specversion", "type", "source", "data"]),
                    FIELD_TEXT, max_size=5),
)
FORM_BODIES = ENVELOPE_FIELDS.map(lambda fields: "&".join(
    f"{urllib.parse.quote(k)}={v if '%' in v else urllib.parse.quote(v, safe='%:/')}" for k, v in fields.items()
).encode("latin-1", "replace"))
BODIES = st.one_of(st.binary(max_size=300), FORM_BODIES,
                   ENVELOPE_FIELDS.map(lambda f: json.dumps(f, ensure_ascii=False).encode("utf-8", "surrogatepass")))


def assert_storable(records: list[dict]) -> None:
    for record in records:
        for name, value in record.items():
            assert isinstance(value, str), name
            value.encode("utf-8")  # every store encodes text as UTF-8


@PROPERTY
@given(body=BODIES, content_type=CONTENT_TYPES)
def test_any_bytes_and_any_declared_charset_give_events_or_a_reason(body, content_type):
    try:
        records = events_from_bytes(body, received_ms=1_700_000_000_000, content_type=content_type)
    except Rejected as e:
        assert e.reason in ("not-json", "bad-encoding", "not-an-event", "too-large")
        return
    assert_storable(records)


JSON_LEAVES = st.one_of(st.none(), st.booleans(), st.integers(), st.integers(min_value=10**4400, max_value=10**4401),
                        st.floats(), st.text(max_size=10), FIELD_TEXT, st.sampled_from(["\ud800", "a\udfffb"]))
JSON_VALUES = st.recursive(JSON_LEAVES, lambda inner: st.one_of(st.lists(inner, max_size=4),
                                                                st.dictionaries(st.text(max_size=6), inner, max_size=4)),
                           max_leaves=12)
ENVELOPE_DOCS = st.one_of(
    st.fixed_dictionaries({"name": st.one_of(st.just("Instance:StateChange"), FIELD_TEXT),
                           "content": st.dictionaries(st.sampled_from(["instanceId", "state", "instanceName", "notBefore"]),
                                                      JSON_VALUES, max_size=4)},
                          optional={"id": JSON_LEAVES, "regionId": JSON_LEAVES, "resourceId": JSON_LEAVES,
                                    "eventTime": JSON_LEAVES, "level": JSON_LEAVES}),
    st.fixed_dictionaries({"alert": st.dictionaries(st.sampled_from(["eventName", "dedupId", "eventContentMap", "arn"]),
                                                    JSON_VALUES, max_size=4)}),
    st.fixed_dictionaries({"specversion": JSON_LEAVES, "type": st.one_of(st.just("ecs:Instance:StateChange"), FIELD_TEXT),
                           "source": st.one_of(st.just("acs.ecs"), FIELD_TEXT), "id": JSON_LEAVES,
                           "data": st.dictionaries(st.text(max_size=6), JSON_VALUES, max_size=4)}),
    st.dictionaries(st.text(max_size=6), JSON_VALUES, max_size=5),
)


@PROPERTY
@given(doc=ENVELOPE_DOCS, raw=FIELD_TEXT)
def test_normalize_of_any_dict_gives_a_storable_record_or_a_reason(doc, raw):
    try:
        record = normalize(doc, raw=raw, received_ms=1_700_000_000_000)
    except Rejected as e:
        assert e.reason in ("bad-encoding", "not-an-event")
        return
    assert_storable([record])


# ---------------------------------------------------------------------------------------------------
# `shipper run` under hostile input: nothing from input, stores or the cache leaves the main loop.

def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def running(tmp_path, monkeypatch):
    """runner.run in a thread, its periodic cache save every 50 ms, serving http on a free port."""
    monkeypatch.setattr(runner, "PROGRESS_EVERY_SECONDS", 0.05)
    monkeypatch.setenv("SHIPPER_WEBHOOK_TOKEN", TOKEN)
    port = free_port()
    cfg = config.from_dict({"shipper": {"data_dir": str(tmp_path / "data"), "shutdown_grace_seconds": 5},
                            "sources": [{"type": "http", "listen": f"127.0.0.1:{port}"}],
                            "sinks": [{"type": "sqlite"}]})
    run = SimpleNamespace(port=port, data=tmp_path / "data", stop=threading.Event(), outcome={})

    def target():
        try:
            run.outcome["status"] = runner.run(cfg, run.stop)
        except BaseException as e:  # what would end `shipper run` with a traceback
            run.outcome["error"] = e

    run.thread = threading.Thread(target=target)
    run.thread.start()
    wait_until(lambda: _listening(port) or not run.thread.is_alive(), timeout=30)
    yield run
    run.stop.set()
    run.thread.join(30)


def _listening(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
        return True
    except OSError:
        return False


def post(port: int, body: bytes, content_type: str) -> int:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    conn.request("POST", "/", body=body, headers={"X-Shipper-Token": TOKEN, "Content-Type": content_type})
    status = conn.getresponse().status
    conn.close()
    return status


def finish(run) -> None:
    """Let the main loop tick a few more times, then stop it as SIGTERM would: run() must return 0."""
    run.thread.join(0.3)
    assert run.thread.is_alive(), f"run() ended early: {run.outcome}"
    run.stop.set()
    run.thread.join(30)
    assert run.outcome == {"status": 0}


@pytest.mark.parametrize("charset", ["unicode_escape", "utf-7"])
def test_a_surrogate_form_push_is_dead_lettered_and_run_keeps_going(running, charset):
    body = b"name=Instance%3AStateChange&product=ECS&resourceId=acs%3Aecs%3Acn-hangzhou%3A1%3Ainstance%2F%5Cud800"
    if charset == "utf-7":
        body = b"name=Instance%3AStateChange&product=ECS&resourceId=acs%3Aecs%3Acn-hangzhou%3A1%3Ainstance%2F%2B2AA-"
    assert post(running.port, body, f"{FORM}; charset={charset}") == 400
    assert post(running.port, b"name=Instance%3AStateChange&product=ECS&resourceId=acs%3Aecs%3Acn-hangzhou%3A1%3Ainstance%2Fi-ok",
                FORM) == 200
    finish(running)
    conn = sqlite3.connect(running.data / "events.db")
    assert conn.execute("SELECT reason FROM \"shipper-deadletter\"").fetchall() == [("bad-encoding",)]


def test_a_failing_cache_save_is_logged_once_counted_and_retried_until_it_succeeds(running, monkeypatch, caplog):
    real_save, calls = InstanceRegistry.save, []

    def disk_full_three_times(self):
        calls.append(1)
        if len(calls) <= 3:
            raise sqlite3.OperationalError("database or disk is full")
        return real_save(self)

    monkeypatch.setattr(InstanceRegistry, "save", disk_full_three_times)
    before = metrics.CACHE_SAVE_ERRORS.total()
    caplog.set_level(logging.INFO)
    body = b"name=Instance%3AStateChange&product=ECS&resourceId=acs%3Aecs%3Acn-hangzhou%3A1%3Ainstance%2Fi-cached&instanceName=web-1"
    assert post(running.port, body, FORM) == 200
    wait_until(lambda: len(calls) > 4)
    finish(running)
    assert metrics.CACHE_SAVE_ERRORS.total() - before == 3
    failures = [r for r in caplog.records if "database or disk is full" in r.getMessage()]
    assert len(failures) == 1 and "\n" not in failures[0].getMessage() and failures[0].exc_info is None
    row = sqlite3.connect(running.data / "instances.db").execute("SELECT instance_name FROM instances WHERE instance_id = ?",
                                                        ("i-cached",)).fetchone()
    assert row == ("web-1",)  # the entries that failed to save were saved on a later try
