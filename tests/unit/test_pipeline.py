"""The delivery guarantee at the pipeline level: acknowledge only after commit, never lose input."""
import base64
import threading
import time

import pytest

from shipper import events
from shipper.config import BatchSettings
from shipper.pipeline import Message, Pipeline, Status
from tests.conftest import FIXTURES
from tests.fakes import FakeSink
from tests.waiting import wait_until as wait_for


def event_body(n: int) -> bytes:
    return (FIXTURES / "a_statechange_running.json").read_bytes().replace(b'"id": "', f'"id": "{n}-'.encode(), 1)


def collect():
    results, lock = [], threading.Lock()

    def on_done(result):
        with lock:
            results.append(result)
    return results, on_done


def test_acknowledged_only_after_the_batch_is_written():
    sink = FakeSink()
    sink.gate.clear()
    pipeline = Pipeline([sink], BatchSettings(max_events=2, linger_ms=10_000)).start()
    results, on_done = collect()
    pipeline.submit(Message(event_body(1), "test", on_done=on_done))
    pipeline.submit(Message(event_body(2), "test", on_done=on_done))
    time.sleep(0.1)
    assert results == []  # the sink has not returned yet
    sink.gate.set()
    wait_for(lambda: len(results) == 2)
    assert {r.status for r in results} == {Status.COMMITTED}
    assert sum(len(b) for _, b in sink.batches) == 2
    assert pipeline.close(5) and sink.closed


def test_group_commit_writes_at_once_when_idle_and_gathers_during_a_write():
    sink = FakeSink()
    pipeline = Pipeline([sink], BatchSettings(max_events=3, linger_ms=10_000)).start()
    results, on_done = collect()
    started = time.monotonic()
    pipeline.submit(Message(event_body(0), "test", on_done=on_done))
    wait_for(lambda: results)
    assert time.monotonic() - started < 5  # not held back by linger_ms: the sink was free
    sink.gate.clear()  # the next write blocks; what arrives meanwhile gathers, cut by count
    for n in range(1, 8):
        pipeline.submit(Message(event_body(n), "test"))
    wait_for(lambda: len(sink.batches) == 1 and pipeline.inflight == 7)
    time.sleep(0.1)
    sink.gate.set()
    wait_for(lambda: sum(len(b) for _, b in sink.batches) == 8)
    sizes = [len(b) for _, b in sink.batches]
    assert sizes[0] == 1 and max(sizes) == 3 and len(sizes) <= 5  # alone when idle, then gathered, cut by count
    pipeline.close(5)


def test_batches_cut_by_bytes():
    sink = FakeSink()
    one = len(event_body(0))
    pipeline = Pipeline([sink], BatchSettings(max_events=100, max_bytes=3 * one, linger_ms=50)).start()
    for n in range(6):
        pipeline.submit(Message(event_body(n), "test"))
    wait_for(lambda: sum(len(b) for _, b in sink.batches) == 6)
    assert all(len(b) < 6 for _, b in sink.batches)
    pipeline.close(5)


def test_sink_failure_reports_failed_and_never_committed():
    sink = FakeSink(fail="disk on fire")
    pipeline = Pipeline([sink], BatchSettings(linger_ms=0)).start()
    results, on_done = collect()
    pipeline.submit(Message(event_body(1), "test", on_done=on_done))
    wait_for(lambda: results)
    assert results[0].status is Status.FAILED and "disk on fire" in results[0].error
    pipeline.close(5)


def test_one_failing_sink_of_two_fails_the_message():
    good, bad = FakeSink(), FakeSink(fail="disk on fire")
    pipeline = Pipeline([good, bad], BatchSettings(linger_ms=0)).start()
    results, on_done = collect()
    pipeline.submit(Message(event_body(1), "test", on_done=on_done))
    wait_for(lambda: results)
    assert results[0].status is Status.FAILED
    pipeline.close(5)


@pytest.mark.parametrize("body, reason", [
    (b"", "not-json"),
    (b"<html>502</html>", "not-json"),
    (b'{"ver": "1.0", "id": "x"', "not-json"),
    (b"\xff\xfe\x00garbage", "bad-encoding"),
    (b'{"ruleId": "r", "curLevel": "WARN"}', "not-an-event"),
    (b'{"name": 5, "content": []}', "not-an-event"),
    (b"[1, 2, 3]", "not-an-event"),
    (b'{"name": "Instance:StateChange", "content": {"state": "' + b"x" * (2 << 20) + b'"}}', "too-large"),
])
def test_undecodable_input_is_dead_lettered_with_reason_and_raw_bytes(body, reason):
    sink = FakeSink()
    pipeline = Pipeline([sink], BatchSettings(linger_ms=0)).start()
    results, on_done = collect()
    pipeline.submit(Message(body, "test", message_id="m-1", on_done=on_done))
    wait_for(lambda: results)
    assert results[0].status is Status.DEAD_LETTERED and results[0].reason == reason
    (letter,) = sink.rows(events.DEADLETTER_TABLE)
    assert letter["reason"] == reason and letter["source"] == "test" and letter["message_id"] == "m-1"
    assert base64.b64decode(letter["raw_base64"]) == body
    assert letter["error"] and len(letter["error"]) < 300
    pipeline.close(5)


def test_submit_blocks_while_inflight_is_full_then_resumes():
    sink = FakeSink()
    sink.gate.clear()
    pipeline = Pipeline([sink], BatchSettings(max_events=1, linger_ms=0), max_inflight_events=2).start()
    submitted = []

    def producer():
        for n in range(5):
            pipeline.submit(Message(event_body(n), "test"))
            submitted.append(n)

    thread = threading.Thread(target=producer, daemon=True)
    thread.start()
    time.sleep(0.2)
    assert len(submitted) <= 3  # 2 buffered (+1 being written): the producer waits
    assert pipeline.inflight <= 2
    sink.gate.set()
    thread.join(5)
    assert submitted == [0, 1, 2, 3, 4]
    pipeline.close(5)
    assert len(sink.rows(events.EVENTS_TABLE)) == 5


def test_close_flushes_what_is_buffered_and_refuses_new_input():
    sink = FakeSink()
    pipeline = Pipeline([sink], BatchSettings(linger_ms=60_000)).start()
    results, on_done = collect()
    pipeline.submit(Message(event_body(1), "test", on_done=on_done))
    assert pipeline.close(5)
    assert [r.status for r in results] == [Status.COMMITTED]
    late, on_late = collect()
    pipeline.submit(Message(event_body(2), "test", on_done=on_late))
    assert late[0].status is Status.FAILED


def test_a_message_with_several_events_is_acknowledged_once_after_all_commit():
    sink = FakeSink()
    pipeline = Pipeline([sink], BatchSettings(max_events=2, linger_ms=0)).start()
    results, on_done = collect()
    body = b"[" + b",".join(event_body(n) for n in range(5)) + b"]"
    pipeline.submit(Message(body, "test", on_done=on_done))
    wait_for(lambda: results)
    time.sleep(0.05)
    assert len(results) == 1 and results[0].status is Status.COMMITTED and results[0].events == 5
    pipeline.close(5)
