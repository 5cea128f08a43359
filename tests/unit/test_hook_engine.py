"""The hook engine inside the pipeline: decide, record, then acknowledge; one task at a time per instance."""
import threading
import time

from shipper import events
from shipper.hooks import ACTED, SKIPPED, action_record
from shipper.hooks.engine import HookEngine
from shipper.config import BatchSettings
from shipper.pipeline import Message, Pipeline, Status
from tests.conftest import FIXTURES
from tests.fakes import FakeSink
from tests.waiting import wait_until as wait_for


class StoppedHook:
    """Acts on Stopped events; records what it saw and whether two runs ever overlapped per instance."""

    name = "probe"
    dry_run = False

    def __init__(self, delay=0.0, work=0.0, fail=False):
        self.delay, self.work, self.fail = delay, work, fail
        self.seen, self.overlap, self.active = [], False, set()
        self.lock = threading.Lock()

    def wants(self, event):
        return event["state"] == "Stopped"

    def delay_seconds(self, event):
        return self.delay

    def decide(self, event, trigger):
        with self.lock:
            if event["instance_id"] in self.active:
                self.overlap = True
            self.active.add(event["instance_id"])
        time.sleep(self.work)
        with self.lock:
            self.active.discard(event["instance_id"])
            self.seen.append(event["event_uid"])
        if self.fail:
            raise RuntimeError("bug")
        return action_record(hook=self.name, trigger=trigger, event=event, decision=ACTED, reason="test")


def make(hook, **batch):
    sink = FakeSink()
    pipeline = Pipeline([sink], BatchSettings(linger_ms=10, **batch))
    engine = HookEngine([hook], lambda records, done: pipeline.record(events.ACTIONS_TABLE, records, done))
    pipeline.add_listener(engine.on_commit)
    return pipeline.start(), sink


def stopped(uid: str, instance: str = "i-uf6a8k2m5q9t3w7x1z4c") -> bytes:
    body = (FIXTURES / "a_statechange_stopped.json").read_text()
    return body.replace("i-uf6a8k2m5q9t3w7x1z4c", instance).replace('"id": "', f'"id": "{uid}-', 1).encode()


def test_mns_style_message_is_acknowledged_only_after_the_decision_is_recorded():
    hook = StoppedHook(delay=0.3)
    pipeline, sink = make(hook)
    results = []
    started = time.monotonic()
    pipeline.submit(Message(stopped("a"), "mns:q", on_done=results.append))
    wait_for(lambda: sink.rows(events.EVENTS_TABLE))
    assert results == []  # committed, but the hook has not decided yet
    wait_for(lambda: results)
    assert time.monotonic() - started >= 0.3
    assert results[0].status is Status.COMMITTED
    (row,) = sink.rows(events.ACTIONS_TABLE)
    assert row["hook"] == "probe" and row["trigger"] == "inline" and row["decision"] == ACTED
    pipeline.close(5)


def test_http_style_message_is_answered_at_commit_and_the_hook_still_runs():
    hook = StoppedHook(delay=0.3)
    pipeline, sink = make(hook)
    committed, done = [], []
    pipeline.submit(Message(stopped("b"), "http", on_committed=committed.append, on_done=done.append))
    wait_for(lambda: committed)
    assert hook.seen == [] and done == []  # answered; the hook holds the message until it has decided
    assert committed[0].status is Status.COMMITTED
    wait_for(lambda: sink.rows(events.ACTIONS_TABLE))
    wait_for(lambda: done)
    assert len(committed) == 1 and done[0].status is Status.COMMITTED
    pipeline.close(5)


def test_events_no_hook_wants_are_acknowledged_at_commit():
    pipeline, sink = make(StoppedHook(delay=10))
    results = []
    body = (FIXTURES / "a_statechange_running.json").read_bytes()
    pipeline.submit(Message(body, "mns:q", on_done=results.append))
    wait_for(lambda: results)
    pipeline.close(5)


def test_one_task_at_a_time_per_instance_in_arrival_order():
    hook = StoppedHook(work=0.05)
    pipeline, sink = make(hook)
    for n in range(4):
        pipeline.submit(Message(stopped(f"same{n}"), "mns:q"))
    pipeline.submit(Message(stopped("other", "i-bp1other0000000000000"), "mns:q"))
    wait_for(lambda: len(hook.seen) == 5)
    assert not hook.overlap
    same = [uid for uid in hook.seen if uid.startswith("same")]
    assert same == sorted(same)
    pipeline.close(5)


def test_a_redelivered_event_is_not_acted_on_twice_but_is_acknowledged():
    hook = StoppedHook()
    pipeline, sink = make(hook)
    results = []
    pipeline.submit(Message(stopped("dup"), "mns:q", on_done=results.append))
    wait_for(lambda: results)
    pipeline.submit(Message(stopped("dup"), "mns:q", on_done=results.append))
    wait_for(lambda: len(results) == 2)
    time.sleep(0.1)
    assert len(hook.seen) == 1 and len(sink.rows(events.ACTIONS_TABLE)) == 1
    pipeline.close(5)


def test_a_failing_hook_is_recorded_as_a_skip_and_the_message_acknowledged():
    pipeline, sink = make(StoppedHook(fail=True))
    results = []
    pipeline.submit(Message(stopped("boom"), "mns:q", on_done=results.append))
    wait_for(lambda: results)
    (row,) = sink.rows(events.ACTIONS_TABLE)
    assert row["decision"] == SKIPPED and row["reason"] == "hook-error" and row["error_code"] == "RuntimeError"
    pipeline.close(5)
