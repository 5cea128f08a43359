"""The SLS sink through aliyun-log-python-sdk 0.9.52 against the SLS emulator.

Expected values come from Alibaba Cloud's documented SLS API (reference/sls.md in the team's shared notes;
sections named in the tests) and tests/fixtures/README.md, never from the code under test.
"""
from __future__ import annotations

import base64
import datetime as dt
import logging
import queue
import socket
import time

import pytest
from aliyun.log import LogException

from shipper import events
from shipper.cloud import Credentials
from shipper.cloud.sls import error_code, is_retryable, make_client
from shipper.config import BatchSettings
from shipper.sinks.sls import SlsSinkSettings
from shipper.normalize import events_from_bytes
from shipper.pipeline import Message, Pipeline, Status
from shipper.simulate import FleetSimulator
from shipper.sinks.sls import LogEncoder, SlsSink, SlsSinkError, group_tail
from tests.conftest import FIXTURES
from tests.emulators.sls import SlsEmulator
from tests.fakes import FakeClock

AK = "LTAIexampleKEY01"
SK = "exampleSecret0123456789"
PROJECT = "ecs-audit"
EVENTS, ACTIONS, DEADLETTER = "ecs-events", "shipper-actions", "shipper-deadletter"
HOST = socket.gethostname()

# From the fixtures README: file -> (category, event_time).
FIXTURE_EXPECTED = {
    "a_statechange_stopped.json": ("lifecycle", "2025-04-02T14:45:37.886Z"),
    "a_preemptible_interruption.json": ("interruption", "2025-05-17T13:30:06.812Z"),
    "a_sysmaint_reboot_scheduled.json": ("maintenance", "2025-06-09T01:15:00.236Z"),
    "a_systemfailure_reboot_executing.json": ("failure", "2025-07-06T21:22:33.648Z"),
    "a_disk_stalled_executing.json": ("disk", "2025-09-02T07:48:26.377Z"),
    "a_snapshot_created.json": ("snapshot", "2025-09-17T18:03:42.584Z"),
    "a_eni_operation_completed.json": ("network", "2025-09-26T09:30:05.718Z"),
    "a_performancemodechange.json": ("performance", "2025-08-14T03:20:45.903Z"),
    "b_subscription_json_statechange_stopped.json": ("lifecycle", "2025-10-13T23:33:52.671Z"),
    "c_statechange_stopped.json": ("lifecycle", "2025-11-17T22:12:44.000Z"),
}


@pytest.fixture
def sls():
    with SlsEmulator(credentials={AK: SK}) as emulator:
        emulator.create_project(PROJECT)
        for store in (EVENTS, ACTIONS, DEADLETTER):
            emulator.create_logstore(PROJECT, store)
        emulator.limits.max_log_age_seconds = None  # fixtures are months old
        yield emulator


@pytest.fixture
def fake_time():
    return FakeClock()


def make_sink(sls: SlsEmulator, fake_time: FakeClock, *, secret: str = SK, **settings) -> SlsSink:
    settings.setdefault("endpoint", sls.endpoint)
    return SlsSink(SlsSinkSettings(project=PROJECT, **settings), Credentials(AK, secret),
                   sleep=fake_time.sleep, clock=fake_time.clock)


def epoch_ms(text: str) -> int:
    return round(dt.datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp() * 1000)


def fixture_records() -> dict[str, dict]:
    received_ms = int(time.time() * 1000)
    records = {}
    for path in sorted(FIXTURES.iterdir()):
        if path.name.startswith(("a_", "b_", "c_", "mns_")):
            records[path.name] = events_from_bytes(path.read_bytes(), received_ms=received_ms)[0]
    return records


def simulated_records(count: int, seed: int = 7) -> list[dict]:
    now_ms = int(time.time() * 1000)
    simulator = FleetSimulator(instances=max(20, count // 4), seed=seed, start_ms=now_ms - 3_600_000)
    records = []
    for event in simulator.events():
        records += events_from_bytes(event.body, received_ms=now_ms)
        if len(records) >= count:
            return records[:count]
    raise AssertionError("the simulator produced too few events")


def small_event(n: int, time_ms: int, **values) -> dict:
    return events.new_event(event_uid=f"uid-{n}", category="lifecycle", event_time_ms=str(time_ms),
                            instance_id=f"i-{n}", raw=f'{{"n": {n}}}', **values)


def stored_by_uid(sls: SlsEmulator, store: str = EVENTS) -> dict:
    return {log.contents["event_uid"]: log for log in sls.logs(PROJECT, store)}


# -- encoding -----------------------------------------------------------------------------------------

def test_log_group_bytes_match_the_reference_example():
    """sls.md §4.1: the 133-byte LogGroup of the worked example."""
    encoder = LogEncoder(("schema", "event_name", "state"))
    body = encoder.encode({"schema": "1", "event_name": "Instance:StateChange", "state": "Stopped"},
                          1772697600, 250000000)
    body += group_tail("lifecycle", "shipper-host-1", [("shipper_version", "0.1.0")])
    assert body.hex() == (
        "0a4e0880f0a4cd06120b0a06736368656d6112013112220a0a6576656e745f6e616d651214496e7374616e63653a5374"
        "6174654368616e676512100a057374617465120753746f707065642580b2e60e1a096c6966656379636c65220e736869"
        "707065722d686f73742d3132180a0f736869707065725f76657273696f6e1205302e312e30")


# -- routing and content ------------------------------------------------------------------------------

def test_every_fixture_event_is_stored_with_every_field_topic_time_and_tags(sls, fake_time):
    records = fixture_records()
    firsts = {}
    for name, record in records.items():
        firsts.setdefault(record["event_uid"], (name, record))
    assert len(firsts) == len(records) - 1  # the two forms of one push are one event
    sink = make_sink(sls, fake_time)
    assert sink.write(events.EVENTS_TABLE, list(records.values())) == len(firsts)

    stored = sls.logs(PROJECT, EVENTS)
    assert len(stored) == len(firsts)  # copies inside a batch collapse to the first
    for name, record in firsts.values():
        (log,) = [log for log in stored if log.contents == record]
        assert list(log.contents) == list(events.EVENT_FIELDS), name
        assert log.tags == {"shipper_host": HOST, "shipper_version": "0.1.0"}
        assert log.source == HOST
        if name in FIXTURE_EXPECTED:
            category, event_time = FIXTURE_EXPECTED[name]
            assert log.topic == category, name
            assert log.contents["event_time_ms"] == str(epoch_ms(event_time))
            # months old: SLS would refuse that __time__, so the write time stands in
            assert abs(log.time - time.time()) < 60, name
    assert sls.logs(PROJECT, DEADLETTER) == []


@pytest.mark.parametrize("age_seconds, uses_event_time", [(3600, True), (5 * 86400, True), (8 * 86400, False),
                                                          (-3600, False)])
def test_time_is_the_event_time_unless_sls_would_refuse_it(sls, fake_time, age_seconds, uses_event_time):
    event_ms = (int(time.time()) - age_seconds) * 1000 + 123
    make_sink(sls, fake_time).write(events.EVENTS_TABLE, [small_event(1, event_ms)])
    (log,) = sls.logs(PROJECT, EVENTS)
    assert log.contents["event_time_ms"] == str(event_ms)
    if uses_event_time:
        assert (log.time, log.time_ns) == (event_ms // 1000, 123_000_000)
    else:
        assert abs(log.time - time.time()) < 60


def test_empty_fields_are_kept_as_empty_strings(sls, fake_time):
    """`key: ""` must find events whose field is empty (sls.md §7), so the key is stored."""
    record = small_event(1, int(time.time() * 1000))
    make_sink(sls, fake_time).write(events.EVENTS_TABLE, [record])
    (log,) = sls.logs(PROJECT, EVENTS)
    assert log.contents["state"] == "" and log.contents["public_ip"] == ""


def test_actions_and_dead_letters_go_to_their_logstores_with_their_topics(sls, fake_time):
    action = {field: "" for field in events.ACTION_FIELDS} | {"event_uid": "e1", "hook": "restart", "decision": "acted"}
    letter = {field: "" for field in events.DEADLETTER_FIELDS} | {"reason": "not-json", "raw_base64": "eA=="}
    sink = make_sink(sls, fake_time)
    before = int(time.time())
    assert sink.write(events.ACTIONS_TABLE, [action]) == 1
    assert sink.write(events.DEADLETTER_TABLE, [letter]) == 1
    after = int(time.time())
    (stored_action,) = sls.logs(PROJECT, ACTIONS)
    (stored_letter,) = sls.logs(PROJECT, DEADLETTER)
    assert (stored_action.topic, stored_action.contents) == ("restart", action)
    assert (stored_letter.topic, stored_letter.contents) == ("not-json", letter)
    assert before <= stored_action.time <= after and before <= stored_letter.time <= after
    assert stored_action.tags["shipper_version"] == "0.1.0"


def test_deflate_bodies_are_accepted(sls, fake_time):
    record = small_event(1, int(time.time() * 1000))
    make_sink(sls, fake_time, compress="deflate").write(events.EVENTS_TABLE, [record])
    assert sls.logs(PROJECT, EVENTS)[0].contents == record


# -- batching -----------------------------------------------------------------------------------------

def test_ten_thousand_small_events_take_three_requests(sls, fake_time):
    """sls.md §4.3: at most 4096 logs per request -> ceil(10000 / 4096) = 3."""
    now_ms = int(time.time() * 1000)
    records = [small_event(n, now_ms) for n in range(10_000)]
    assert make_sink(sls, fake_time).write(events.EVENTS_TABLE, records) == 10_000
    assert sls.request_count("PutLogs") == 3
    assert len(stored_by_uid(sls)) == 10_000


def test_requests_stay_under_three_megabytes(sls, fake_time):
    """Seven 900 kB events: three fit in 3,000,000 bytes, four do not -> 3 requests, none refused."""
    now_ms = int(time.time() * 1000)
    records = [small_event(n, now_ms, detail="x" * 900_000) for n in range(7)]
    assert make_sink(sls, fake_time).write(events.EVENTS_TABLE, records) == 7
    assert sls.request_count("PutLogs") == 3
    assert len(stored_by_uid(sls)) == 7


def test_simulated_fleet_needs_far_fewer_requests_than_events(sls, fake_time):
    records = simulated_records(10_000)
    sink = make_sink(sls, fake_time)
    for start in range(0, len(records), 4096):  # the pipeline's batch size
        sink.write(events.EVENTS_TABLE, records[start:start + 4096])
    assert sls.request_count("PutLogs") <= len(records) // 200
    assert set(stored_by_uid(sls)) == {r["event_uid"] for r in records}
    for log in sls.logs(PROJECT, EVENTS):
        assert log.topic == log.contents["category"]


# -- retries ------------------------------------------------------------------------------------------

def test_nothing_is_lost_under_injected_server_errors_and_throttling(sls, fake_time):
    """20% 500/503 and 10% 403 quota errors, through the pipeline with redelivery of failed messages."""
    for code, rate in (("InternalServerError", 0.1), ("ServerBusy", 0.1),
                       ("WriteQuotaExceed", 0.05), ("ShardWriteQuotaExceed", 0.05)):
        sls.faults.set_error_rate(code, rate)
    sls.faults.fail_next("ServerBusy", 8)  # outlasts the first batch's budget: it must be redelivered
    now_ms = int(time.time() * 1000)
    simulator = FleetSimulator(instances=1000, seed=11, start_ms=now_ms - 3_600_000)
    bodies = [event.body for event in simulator.events()][:3000]
    assert len(bodies) == 3000
    expected = {events_from_bytes(body, received_ms=now_ms)[0]["event_uid"] for body in bodies}
    sink = make_sink(sls, fake_time, retry_seconds=0.3)
    pipeline = Pipeline([sink], BatchSettings(max_events=500, linger_ms=20)).start()
    results: queue.Queue = queue.Queue()

    def submit(body: bytes) -> None:
        pipeline.submit(Message(body, source="test", on_done=lambda result: results.put((body, result))))

    for body in bodies:
        submit(body)
    done = redelivered = 0
    while done < len(bodies):
        body, result = results.get(timeout=60)
        if result.status is Status.FAILED:
            redelivered += 1
            submit(body)
        else:
            assert result.status is Status.COMMITTED
            done += 1
    assert pipeline.close(timeout=30)
    assert redelivered > 0
    stored = [log.contents["event_uid"] for log in sls.logs(PROJECT, EVENTS)]
    assert set(stored) == expected  # every event, possibly more than once
    assert sls.logs(PROJECT, DEADLETTER) == []


def test_throttling_is_retried_by_the_sink(sls, fake_time):
    """sls.md §5: the SDK does not retry 403 quota errors; the sink must."""
    sls.faults.fail_next("WriteQuotaExceed", 2)
    sls.faults.fail_next("ShardWriteQuotaExceed", 1)
    record = small_event(1, int(time.time() * 1000))
    assert make_sink(sls, fake_time).write(events.EVENTS_TABLE, [record]) == 1
    assert len(fake_time.delays) == 3
    assert sls.request_count("PutLogs") == 4
    assert len(sls.logs(PROJECT, EVENTS)) == 1


def test_retries_give_up_after_retry_seconds_by_raising(sls, fake_time):
    sls.faults.set_error_rate("ServerBusy", 1.0)
    sink = make_sink(sls, fake_time, retry_seconds=5.0)
    with pytest.raises(SlsSinkError, match="ServerBusy"):
        sink.write(events.EVENTS_TABLE, [small_event(1, int(time.time() * 1000))])
    assert fake_time.delays and sum(fake_time.delays) <= 5.0
    for attempt, delay in enumerate(fake_time.delays):  # full jitter under an exponential bound
        assert 0 <= delay <= min(10.0, 0.1 * 2 ** attempt)
    # One request per attempt: no hidden SDK retries (it would send 10 per 5xx, 1 s apart).
    assert sls.request_count("PutLogs") == len(fake_time.delays) + 1
    assert sls.logs(PROJECT, DEADLETTER) == []


def test_network_errors_are_retried(sls, fake_time):
    sls.faults.outage = True
    sink = make_sink(sls, fake_time, retry_seconds=1.0)
    with pytest.raises(SlsSinkError, match="LogRequestError"):
        sink.write(events.EVENTS_TABLE, [small_event(1, int(time.time() * 1000))])
    assert len(fake_time.delays) >= 2


# -- refused data -------------------------------------------------------------------------------------

def test_missing_logstore_dead_letters_every_event(sls, fake_time):
    now_ms = int(time.time() * 1000)
    records = [small_event(n, now_ms) for n in range(5)]
    sink = make_sink(sls, fake_time, events_logstore="no-such-store")
    assert sink.write(events.EVENTS_TABLE, records) == 0
    letters = sls.logs(PROJECT, DEADLETTER)
    assert len(letters) == 5
    for letter, record in zip(letters, records):
        assert letter.topic == "sls-rejected"
        assert letter.contents["reason"] == "sls-rejected"
        assert letter.contents["source"] == "sink:sls"
        assert letter.contents["message_id"] == record["event_uid"]
        assert letter.contents["error"].startswith("LogStoreNotExist")
        assert base64.b64decode(letter.contents["raw_base64"]).decode() == record["raw"]


def test_an_event_sls_refuses_is_dead_lettered_alone_with_its_raw_cut_to_fit(sls, fake_time):
    """sls.md §4.3/§5: a value over 1 MB is refused; split to find the log, keep the rest."""
    now_ms = int(time.time() * 1000)
    records = [small_event(n, now_ms) for n in range(20)]
    records[13]["raw"] = "x" * 1_100_000
    assert make_sink(sls, fake_time).write(events.EVENTS_TABLE, records) == 19
    assert set(stored_by_uid(sls)) == {f"uid-{n}" for n in range(20) if n != 13}
    (letter,) = sls.logs(PROJECT, DEADLETTER)
    assert letter.contents["message_id"] == "uid-13"
    assert letter.contents["error"].startswith("PostBodyTooLarge")
    assert "raw cut to 700000 of 1100000 bytes" in letter.contents["error"]
    assert base64.b64decode(letter.contents["raw_base64"]) == b"x" * 700_000


def test_when_the_dead_letter_write_fails_too_the_batch_fails(sls, fake_time):
    sls.faults.fail_next("SignatureNotMatch", 2)
    with pytest.raises(SlsSinkError, match="SignatureNotMatch"):
        make_sink(sls, fake_time).write(events.EVENTS_TABLE, [small_event(1, int(time.time() * 1000))])
    assert sls.logs(PROJECT, EVENTS) == [] and sls.logs(PROJECT, DEADLETTER) == []


# -- endpoints and secrets ----------------------------------------------------------------------------

@pytest.mark.parametrize("form", ["127.0.0.1:{port}", "http://127.0.0.1:{port}", "localhost:{port}"])
def test_loopback_endpoint_forms(sls, fake_time, form):
    """sls.md §1: IP and localhost endpoints with a port must not be turned into <project>.host."""
    sink = make_sink(sls, fake_time, endpoint=form.format(port=sls.port), retry_seconds=0.5)
    assert sink.write(events.EVENTS_TABLE, [small_event(1, int(time.time() * 1000))]) == 1
    assert len(sls.logs(PROJECT, EVENTS)) == 1


def test_domain_endpoints_keep_the_project_subdomain():
    client = make_client("https://cn-hangzhou.log.aliyuncs.com", Credentials(AK, SK))
    assert client._isRowIp is False
    assert client.timeout == 30


def test_the_secret_never_appears_in_logs_or_errors(sls, fake_time, caplog):
    caplog.set_level(logging.DEBUG)
    wrong = "wrongSecretValue987654321"
    sls.faults.fail_next("ServerBusy", 2)
    make_sink(sls, fake_time).write(events.EVENTS_TABLE, [small_event(1, int(time.time() * 1000))])
    with pytest.raises(SlsSinkError) as raised:
        make_sink(sls, fake_time, secret=wrong).write(events.EVENTS_TABLE, [small_event(2, int(time.time() * 1000))])
    assert "SignatureNotMatch" in str(raised.value)
    assert caplog.records  # the SDK's transport did log at DEBUG
    for text in (caplog.text, str(raised.value), repr(raised.value)):
        assert SK not in text and wrong not in text


@pytest.mark.parametrize("code, status, retryable", [
    ("WriteQuotaExceed", 403, True), ("ShardWriteQuotaExceed", 403, True), ("ExceedQuota", 403, True),
    ("InternalServerError", 500, True), ("ServerBusy", 503, True), ("RequestTimeout", 0, True),
    ("LogRequestError", 0, True), ("SomeNewServerError", 502, True),
    ("SignatureNotMatch", 401, False), ("Unauthorized", 401, False), ("ProjectNotExist", 404, False),
    ("LogStoreNotExist", 404, False), ("PostBodyInvalid", 400, False), ("InvalidKey", 400, False),
    ("PostBodyTooLarge", 400, False), ("RequestTimeTooSkewed", 400, False),
])
def test_retryable_codes_follow_the_reference(code, status, retryable):
    """sls.md §5."""
    error = LogException(code, "message", "req-1", status)
    assert error_code(error) == code
    assert is_retryable(code, status) is retryable
