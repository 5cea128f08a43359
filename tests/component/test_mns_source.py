"""The MNS source through the official SDK against the local MNS: nothing lost, nothing stuck."""
import base64
import logging
import sqlite3
import threading
import time

import pytest
from mns.account import Account
from mns.mns_exception import MNSClientNetworkException, MNSServerException

from shipper.config import BatchSettings
from shipper.sources.mns import MnsSourceSettings
from shipper.pipeline import Pipeline
from shipper.sinks.sqlite import SqliteSink
from shipper.cloud import CloudError, Credentials, MissingCredentials, NotFound
from shipper.cloud.mns import cloud_error
from shipper.sources.mns import MnsConsumer, MnsFatal
from shipper.simulate import FleetSimulator
from tests.emulators.mns import MnsEmulator
from tests.waiting import wait_until

KEY_ID = "LTAItestKEY0001"
SECRET = "mns-secret-Zx9Qw8Er7Ty6"
QUEUE = "ecs-cms-event"


@pytest.fixture
def mns():
    with MnsEmulator(credentials={KEY_ID: SECRET}) as emulator:
        emulator.create_queue(QUEUE, visibility_timeout=3)
        yield emulator


def sim_bodies(n_instances: int, seed: int = 3) -> list[bytes]:
    sim = FleetSimulator(instances=n_instances, seed=seed, start_ms=1_760_000_000_000, duration_s=3600)
    return [e.body for e in sim.events()]


def send_all(mns, bodies, base64_every=2):
    """Half raw JSON (encoding off), half base64 (the SDK default), as real producers do."""
    for i, body in enumerate(bodies):
        text = base64.b64encode(body).decode() if i % base64_every == 0 else body.decode()
        mns.send_message(QUEUE, text)


def settings(mns, **overrides):
    values = dict(endpoint=mns.endpoint, queue=QUEUE, receivers=2, wait_seconds=1, max_receives=5)
    values.update(overrides)
    return MnsSourceSettings(**values)


class Flaky:
    """Wraps the real SQLite sink; refuses every batch while `down` is set."""

    name = "flaky"

    def __init__(self, sink):
        self.sink, self.down, self.slow = sink, threading.Event(), 0.0

    def write(self, table, records):
        if self.down.is_set():
            raise RuntimeError("sink down")
        time.sleep(self.slow)
        return self.sink.write(table, records)

    def close(self):
        self.sink.close()


def start_consumer(mns, db, sink=None, **overrides):
    sink = sink or SqliteSink(db)
    pipeline = Pipeline([sink], BatchSettings(max_events=500, linger_ms=50)).start()
    consumer = MnsConsumer(settings(mns, **overrides), pipeline, Credentials(KEY_ID, SECRET)).start()
    return consumer, pipeline


def stop_consumer(consumer, pipeline):
    consumer.stop()
    pipeline.close(10)
    consumer.close()


def stored_uids(db) -> list[str]:
    conn = sqlite3.connect(db)
    return [r[0] for r in conn.execute('SELECT event_uid FROM "ecs-events"')]


def test_every_message_committed_once_and_deleted(mns, tmp_path):
    bodies = sim_bodies(60)
    send_all(mns, bodies)
    consumer, pipeline = start_consumer(mns, tmp_path / "e.db")
    wait_until(lambda: len(mns.deleted_message_ids(QUEUE)) == len(bodies))
    stop_consumer(consumer, pipeline)
    uids = stored_uids(tmp_path / "e.db")
    assert len(uids) == len(set(uids)) == len(bodies)
    assert mns.messages(QUEUE) == []
    assert len(set(mns.deleted_message_ids(QUEUE))) == len(bodies)
    assert mns.request_counts().get("DeleteMessage", 0) == 0  # batch deletes only
    assert mns.request_counts()["BatchDeleteMessage"] < len(bodies) / 4


def test_sink_outage_deletes_nothing_holds_refused_messages_and_recovers(mns, tmp_path):
    bodies = sim_bodies(10)
    send_all(mns, bodies)
    sink = Flaky(SqliteSink(tmp_path / "e.db"))
    sink.down.set()
    consumer, pipeline = start_consumer(mns, tmp_path / "e.db", sink=sink)
    wait_until(lambda: mns.request_counts().get("BatchReceiveMessage", 0) >= 1)
    time.sleep(4)  # longer than the 3 s visibility timeout
    assert mns.deleted_message_ids(QUEUE) == []
    # Refused messages are kept invisible and retried, not received again and again: no receive count
    # runs up towards max_receives while the sink is down.
    assert max(m.dequeue_count for m in mns.messages(QUEUE)) == 1
    assert mns.request_counts().get("ChangeMessageVisibility", 0) >= 1
    sink.down.clear()
    wait_until(lambda: len(mns.deleted_message_ids(QUEUE)) == len(bodies))
    stop_consumer(consumer, pipeline)
    assert len(stored_uids(tmp_path / "e.db")) == len(bodies)


def test_slow_commit_extends_visibility_instead_of_redelivering(mns, tmp_path):
    mns.send_message(QUEUE, sim_bodies(1)[0].decode())
    sink = Flaky(SqliteSink(tmp_path / "e.db"))
    sink.slow = 5.0  # longer than the 3 s visibility timeout
    consumer, pipeline = start_consumer(mns, tmp_path / "e.db", sink=sink, receivers=1)
    wait_until(lambda: len(mns.deleted_message_ids(QUEUE)) == 1, timeout=20)
    stop_consumer(consumer, pipeline)
    assert mns.request_counts().get("ChangeMessageVisibility", 0) >= 1
    assert len(stored_uids(tmp_path / "e.db")) == 1


def test_poison_messages_are_dead_lettered_deleted_and_do_not_block(mns, tmp_path):
    good = sim_bodies(3)
    mns.send_message(QUEUE, "<html>502 Bad Gateway</html>")
    mns.send_message(QUEUE, "eyJub3QiOiAiYW4gZXZlbnQifQ==")  # base64 of {"not": "an event"}
    send_all(mns, good)
    consumer, pipeline = start_consumer(mns, tmp_path / "e.db")
    wait_until(lambda: len(mns.deleted_message_ids(QUEUE)) == len(good) + 2)
    stop_consumer(consumer, pipeline)
    conn = sqlite3.connect(tmp_path / "e.db")
    reasons = sorted(r[0] for r in conn.execute('SELECT reason FROM "shipper-deadletter"'))
    assert reasons == ["not-an-event", "not-json"]
    sources = {r[0] for r in conn.execute('SELECT source FROM "shipper-deadletter"')}
    assert sources == {f"mns:{QUEUE}"}
    assert len(stored_uids(tmp_path / "e.db")) == len(good)


def test_message_received_too_often_is_dead_lettered_with_its_body(mns, tmp_path):
    body = sim_bodies(1)[0].decode()
    mns.create_queue("fast", visibility_timeout=1)
    mns.send_message("fast", body)
    q = Account(mns.endpoint, KEY_ID, SECRET).get_queue("fast")
    q.set_encoding(False)
    for _ in range(3):  # another consumer that keeps failing on it
        q.receive_message(wait_seconds=2)
    time.sleep(1.1)
    consumer, pipeline = start_consumer(mns, tmp_path / "e.db", queue="fast", max_receives=3)
    wait_until(lambda: len(mns.deleted_message_ids("fast")) == 1)
    stop_consumer(consumer, pipeline)
    conn = sqlite3.connect(tmp_path / "e.db")
    (reason, raw) = conn.execute('SELECT reason, raw_base64 FROM "shipper-deadletter"').fetchone()
    assert reason == "max-receives" and base64.b64decode(raw).decode() == body


def test_two_consumers_on_one_queue_commit_every_event_once(mns, tmp_path):
    bodies = sim_bodies(80)
    send_all(mns, bodies)
    db = tmp_path / "e.db"
    one = start_consumer(mns, db)
    two = start_consumer(mns, db)
    wait_until(lambda: len(mns.deleted_message_ids(QUEUE)) >= len(bodies))
    for consumer, pipeline in (one, two):
        stop_consumer(consumer, pipeline)
    deleted = mns.deleted_message_ids(QUEUE)
    assert len(deleted) == len(set(deleted)) == len(bodies)  # no double acknowledgement
    uids = stored_uids(db)
    assert len(uids) == len(set(uids)) == len(bodies)


def test_transient_errors_and_dropped_connections_lose_nothing(mns, tmp_path):
    bodies = sim_bodies(20)
    send_all(mns, bodies)
    mns.set_error_rates({"InternalError": 0.2, "QpsLimitExceeded": 0.1})
    mns.set_drop_rate(0.05)
    consumer, pipeline = start_consumer(mns, tmp_path / "e.db")
    wait_until(lambda: not mns.messages(QUEUE), timeout=60)
    stop_consumer(consumer, pipeline)
    assert sum(mns.fault_counts().values()) > 0
    assert len(set(stored_uids(tmp_path / "e.db"))) == len(bodies)


def test_outage_then_recovery(mns, tmp_path):
    bodies = sim_bodies(5)
    mns.set_outage(True)
    consumer, pipeline = start_consumer_after_check(mns, tmp_path / "e.db")
    send_all(mns, bodies)
    time.sleep(1.5)
    mns.set_outage(False)
    wait_until(lambda: not mns.messages(QUEUE), timeout=60)
    stop_consumer(consumer, pipeline)
    assert len(stored_uids(tmp_path / "e.db")) == len(bodies)


def start_consumer_after_check(mns, db):
    """Start while the service is up (start-up checks the queue), then let the test break it."""
    mns.set_outage(False)
    started = start_consumer(mns, db)
    mns.set_outage(True)
    return started


def test_missing_queue_is_fatal_naming_the_queue(mns, tmp_path):
    pipeline = Pipeline([SqliteSink(tmp_path / "e.db")], BatchSettings()).start()
    with pytest.raises(MnsFatal, match="queue 'nope' does not exist") as e:
        MnsConsumer(settings(mns, queue="nope"), pipeline, Credentials(KEY_ID, SECRET)).start()
    assert "\n" not in str(e.value)
    pipeline.close(5)


def test_a_passing_5xx_at_start_is_asked_again_not_fatal(mns, tmp_path):
    pipeline = Pipeline([SqliteSink(tmp_path / "e.db")], BatchSettings()).start()
    mns.fail_next("InternalError", "GetQueueAttributes", times=2)
    consumer = MnsConsumer(settings(mns), pipeline, Credentials(KEY_ID, SECRET)).start()
    assert consumer.visibility_timeout == 3
    consumer.stop()
    consumer.close(5)
    pipeline.close(5)


def test_wrong_secret_is_fatal_naming_the_key_never_the_secret(mns, tmp_path, caplog):
    caplog.set_level(logging.DEBUG)
    pipeline = Pipeline([SqliteSink(tmp_path / "e.db")], BatchSettings()).start()
    with pytest.raises(MnsFatal) as e:
        MnsConsumer(settings(mns), pipeline, Credentials(KEY_ID, "wrong-secret-123")).start()
    assert KEY_ID in str(e.value) and "SignatureDoesNotMatch" in str(e.value)
    assert "wrong-secret-123" not in str(e.value) + caplog.text
    pipeline.close(5)


def test_missing_credentials_say_which_variables():
    with pytest.raises(MissingCredentials, match="ALIBABA_CLOUD_ACCESS_KEY_ID and ALIBABA_CLOUD_ACCESS_KEY_SECRET"):
        Credentials.from_env({})
    assert SECRET not in repr(Credentials(KEY_ID, SECRET, "sts-token"))


def test_secret_absent_from_debug_logs_of_a_full_run(mns, tmp_path, caplog):
    caplog.set_level(logging.DEBUG)
    send_all(mns, sim_bodies(3))
    mns.send_message(QUEUE, "not json")
    mns.set_error_rates({"InternalError": 0.3}, operation="BatchReceiveMessage")
    consumer, pipeline = start_consumer(mns, tmp_path / "e.db")
    wait_until(lambda: not mns.messages(QUEUE), timeout=30)
    stop_consumer(consumer, pipeline)
    assert "mns source" in caplog.text  # it did log, at every level
    assert SECRET not in caplog.text


@pytest.mark.parametrize("exc, kind", [
    (MNSServerException("MessageNotExist", "Message not exist.", "r", "h"), "empty"),
    (MNSServerException("QueueNotExist", "The queue name you provided is not exist.", "r", "h"), "fatal"),
    (MNSServerException("SignatureDoesNotMatch", "sig", "r", "h"), "fatal"),
    (MNSServerException("InvalidAccessKeyId", "key", "r", "h"), "fatal"),
    (MNSServerException("AccessDenied", "denied", "r", "h"), "fatal"),
    (MNSServerException("InternalError", "Interal error.", "r", "h"), "retry"),
    (MNSServerException("QpsLimitExceeded", "slow down", "r", "h"), "retry"),
    (MNSClientNetworkException("NetWorkException", "connection refused"), "retry"),
])
def test_each_error_code_is_handled_on_purpose(exc, kind):
    assert classify(cloud_error(exc)) == kind


def classify(error: CloudError) -> str:
    """What the consumer does with it: nothing to receive (NotFound), stop (fatal), or back off and retry."""
    if isinstance(error, NotFound):
        return "empty"
    if error.fatal:
        return "fatal"
    return "retry" if error.retryable else "neither"


class Counting(Flaky):
    """Flaky, and counts every record it committed, copies included (SQLite itself ignores copies)."""

    def __init__(self, sink):
        super().__init__(sink)
        self.committed = 0

    def write(self, table, records):
        new = super().write(table, records)
        if table == "ecs-events":
            self.committed += len(records)
        return new


def test_backlog_drains_after_a_sink_outage_at_network_latency(mns, tmp_path):
    """Issue 8's failure, scaled down: a backlog, a sink outage longer than the visibility timeout, 10 ms
    on every MNS call. The queue must drain, almost nothing may be committed twice, nothing valid may be
    dead-lettered for max-receives."""
    bodies = sim_bodies(700, seed=8)
    send_all(mns, bodies)
    mns.set_latency(0.010)
    sink = Counting(SqliteSink(tmp_path / "e.db"))
    sink.down.set()
    consumer, pipeline = start_consumer(mns, tmp_path / "e.db", sink=sink, receivers=4, max_receives=3)
    time.sleep(8)  # the outage: more than twice the 3 s visibility timeout
    sink.down.clear()
    wait_until(lambda: not mns.messages(QUEUE), timeout=120)
    stop_consumer(consumer, pipeline)
    conn = sqlite3.connect(tmp_path / "e.db")
    assert conn.execute('SELECT count(*) FROM "shipper-deadletter"').fetchone()[0] == 0
    assert len(set(stored_uids(tmp_path / "e.db"))) == len(bodies)
    assert sink.committed - len(bodies) <= len(bodies) // 100, f"{sink.committed - len(bodies)} copies committed"
