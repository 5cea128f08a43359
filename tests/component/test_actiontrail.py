"""The ActionTrail client and poller: the real SDK against the OpenAPI emulator's LookupEvents, into SQLite."""
import json
import sqlite3
import time

import pytest

from shipper.cloud import Credentials
from shipper.cloud.actiontrail import MAX_WINDOW_SECONDS, ActionTrail
from shipper.cloud.openapi import OpenApi
from shipper.config import ActionTrailSettings, BatchSettings, OpenApiSettings
from shipper.pipeline import Pipeline
from shipper.sinks.sqlite import SqliteSink
from shipper.telemetry import metrics
from shipper.trail_poller import TrailPoller, state_path
from tests.emulators.openapi import OpenApiEmulator
from tests.fakes import FakeClock

KEY_ID, SECRET = "LTAItrailKEY000001", "trail-secret-Qw8Er6Ty4U"
REGION = "cn-hangzhou"
MINUTE = 60


class Later:
    """Real time plus an offset tests move: ActionTrail's clock and the poller's, shared. The offset stays
    under the emulator's 15-minute Timestamp window, which checks the SDK's real-time Timestamp against it."""

    def __init__(self):
        self.offset = 0.0

    def __call__(self) -> float:
        return time.time() + self.offset


@pytest.fixture
def later():
    return Later()


@pytest.fixture
def emulator(later):
    with OpenApiEmulator(credentials={KEY_ID: SECRET}, clock=later, start_delay=0.05,
                         lookup_calls_per_second=1000) as api:
        yield api


def openapi(emulator):
    settings = OpenApiSettings(regions=(REGION,), ecs_endpoint=emulator.endpoint,
                               actiontrail_endpoint=emulator.endpoint, timeout_seconds=5.0)
    return OpenApi(settings, Credentials(KEY_ID, SECRET), sleep=FakeClock().sleep)


def iso(seconds: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(seconds))


def stop_call(n: int, at: float, region: str = REGION) -> dict:
    return {"eventId": f"EVT-{n:05d}", "eventName": "StopInstance", "eventTime": iso(at), "acsRegion": region,
            "serviceName": "Ecs", "eventRW": "Write", "eventType": "ApiCall",
            "requestParameters": {"InstanceId": f"i-trail{n:05d}"},
            "userIdentity": {"type": "ram-user", "userName": "alice", "accessKeyId": "LTAI5tAliceKey0001"},
            "userAgent": "Aliyun-CLI/3.0.200", "sourceIpAddress": "203.0.113.7"}


class Wired:
    """A pipeline into SQLite and a poller on it, built again on the same data_dir to restart."""

    def __init__(self, emulator, later, tmp_path, **settings):
        self.emulator, self.later, self.tmp_path = emulator, later, tmp_path
        self.settings = ActionTrailSettings(enabled=True, **settings)
        self.pipeline = Pipeline([SqliteSink(tmp_path / "events.db")], BatchSettings(linger_ms=10)).start()
        self.api = openapi(emulator)
        self.restart()

    def restart(self):
        self.poller = TrailPoller(ActionTrail(self.api, calls_per_second=1000), self.api.regions, self.pipeline.record,
                                  self.settings, state_path(str(self.tmp_path)), clock=self.later)

    def rows(self) -> list[tuple[str, str]]:
        conn = sqlite3.connect(self.tmp_path / "events.db")
        try:
            return conn.execute('SELECT event_uid, actor_name FROM "ecs-events" ORDER BY event_uid').fetchall()
        finally:
            conn.close()

    def close(self):
        self.pipeline.close(10)


@pytest.fixture
def wired(emulator, later, tmp_path):
    setup = Wired(emulator, later, tmp_path)
    yield setup
    setup.close()


def uids(numbers) -> list[str]:
    return sorted(f"actiontrail:evt-{n:05d}:i-trail{n:05d}" for n in numbers)


# --- the client ------------------------------------------------------------------------------------


def test_lookup_events_pages_oldest_first_and_asks_for_ecs_writes_only(emulator):
    now = time.time()
    emulator.add_trail([stop_call(n, now - 3600 + n) for n in range(120)])
    emulator.add_trail([stop_call(900, now - 60) | {"serviceName": "Slb"}, stop_call(901, now - 60) | {"eventRW": "Read"},
                        stop_call(902, now - 60, region="cn-beijing")])
    events = list(ActionTrail(openapi(emulator), calls_per_second=1000).lookup_events(
        REGION, int((now - 7200) * 1000), int(now * 1000)))
    assert [e["eventId"] for e in events] == [f"EVT-{n:05d}" for n in range(120)]
    assert emulator.request_counts()["LookupEvents"] == 3               # 50 + 50 + 20


def test_a_long_window_is_asked_in_30_day_chunks_and_an_event_where_they_meet_comes_once(emulator):
    start = int(time.time()) - 80 * 86400
    boundary = start + MAX_WINDOW_SECONDS
    emulator.add_trail([stop_call(1, start + 10), stop_call(2, boundary), stop_call(3, boundary + 2 * 86400)])
    events = list(ActionTrail(openapi(emulator), calls_per_second=1000).lookup_events(
        REGION, start * 1000, (start + 70 * 86400) * 1000))
    assert [e["eventId"] for e in events] == ["EVT-00001", "EVT-00002", "EVT-00003"]
    assert emulator.request_counts()["LookupEvents"] == 3


def test_the_client_keeps_to_two_calls_a_second(emulator):
    """The emulator throttles past 2 a second: a client paced at 2 a second is (almost) never refused."""
    emulator.lookup_calls_per_second = 2
    now = time.time()
    emulator.add_trail([stop_call(n, now - 600 + n) for n in range(200)])       # 4 pages
    started = time.monotonic()
    api = OpenApi(OpenApiSettings(regions=(REGION,), actiontrail_endpoint=emulator.endpoint), Credentials(KEY_ID, SECRET))
    events = list(ActionTrail(api).lookup_events(REGION, int((now - 900) * 1000), int(now * 1000)))
    assert len(events) == 200
    assert emulator.request_counts()["LookupEvents"] <= 5                   # a retry at most, on a late packet
    assert time.monotonic() - started >= 1.5


# --- the poller ------------------------------------------------------------------------------------


def test_the_poller_writes_each_call_as_an_api_call_row(wired, emulator):
    now = time.time()
    emulator.add_trail([stop_call(n, now - 120 + n) for n in range(3)])
    assert wired.poller.poll() == 3
    wired.pipeline.close(10)
    conn = sqlite3.connect(wired.tmp_path / "events.db")
    row = conn.execute('SELECT category, envelope, event_name, actor_type, actor_access_key_id, instance_id, topic '
                       'FROM "ecs-events" WHERE event_uid = ?', (uids([0])[0],)).fetchone()
    assert row == ("api-call", "actiontrail", "ActionTrail:StopInstance", "ram-user", "LTAI****0001", "i-trail00000",
                   "api-call")


def test_a_ten_minute_delivery_delay_loses_no_call(wired, emulator, later):
    """Calls made over 5 minutes, each delivered 10 minutes late, polled every minute: each is written once."""
    emulator.delivery_delay = 600
    emulator.add_instance("i-shipper0001", status="Stopped")
    assert wired.poller.poll() == 0
    for n in range(5):
        emulator.add_trail([stop_call(n, later())])
        if n == 2:
            wired.api.start_instance("i-shipper0001", REGION)           # a real call, in the trail by its key
        later.offset += MINUTE
        assert wired.poller.poll() == 0                                 # nothing delivered yet
    written = 0
    for _ in range(9):                                                  # the last call: due 14 minutes on
        later.offset += MINUTE
        written += wired.poller.poll()
    assert written == 6
    assert [uid for uid, _ in wired.rows() if uid.startswith("actiontrail:evt-")] == uids(range(5))
    [(uid, actor)] = [row for row in wired.rows() if row[0].endswith(":i-shipper0001")]
    assert actor == "shipper"


def test_throttling_loses_no_call(wired, emulator):
    now = time.time()
    emulator.add_trail([stop_call(n, now - 300 + n) for n in range(120)])
    emulator.fail_next("Throttling.User", "LookupEvents", times=3)          # retried with backoff
    assert wired.poller.poll() == 120
    emulator.add_trail([stop_call(n, now - 230 + n) for n in range(120, 130)])
    errors = metrics.TRAIL_ERRORS.total()
    emulator.fail_next("Throttling.User", "LookupEvents", times=20)         # past every retry: asked next time
    assert wired.poller.poll() == 0
    assert metrics.TRAIL_ERRORS.total() == errors + 1
    emulator.clear_faults()
    assert wired.poller.poll() == 10
    assert [uid for uid, _ in wired.rows()] == uids(range(130))


def test_the_cursor_survives_a_restart(wired, emulator, later):
    now = time.time()
    emulator.add_trail([stop_call(1, now - 60)])
    assert wired.poller.poll() == 1
    saved = json.loads(state_path(str(wired.tmp_path)).read_text())["regions"][REGION]
    assert abs(saved / 1000 - later()) < 5
    later.offset += 5 * MINUTE
    # delivered since: one call within the overlap (asked again), one from before it (a poll without the
    # cursor would look back start_days and find it)
    emulator.add_trail([stop_call(2, now - 2 * 3600), stop_call(3, now)])
    wired.restart()
    assert wired.poller.poll() == 2                                     # 3, and 1 again (the overlap)
    assert [uid for uid, _ in wired.rows()] == uids([1, 3])


def test_overlap_copies_do_not_duplicate_rows(wired, emulator, later):
    now = time.time()
    emulator.add_trail([stop_call(n, now - 60 + n) for n in range(4)])
    assert wired.poller.poll() == 4
    later.offset += MINUTE
    assert wired.poller.poll() == 0                                     # the overlap's copies: skipped
    wired.restart()                                                     # a new process sends them again
    assert wired.poller.poll() == 4
    assert [uid for uid, _ in wired.rows()] == uids(range(4))           # SQLite keeps each uid once


def test_a_refused_region_is_counted_and_never_raises(wired, emulator):
    emulator.add_trail([stop_call(1, time.time() - 60)])
    errors = metrics.TRAIL_ERRORS.total()
    emulator.fail_next("Forbidden.RAM", "LookupEvents")
    assert wired.poller.poll() == 0
    assert metrics.TRAIL_ERRORS.total() == errors + 1
    assert not state_path(str(wired.tmp_path)).exists()                # the cursor did not move
    assert wired.poller.poll() == 1


def test_check_reads_the_trail_in_every_region_and_names_a_refusal(emulator, monkeypatch):
    from shipper import config
    from shipper.check import check

    cfg = config.from_dict({"sinks": [{"type": "sqlite", "path": ":memory:"}], "actiontrail": {"enabled": True},
                            "openapi": {"regions": [REGION, "cn-beijing"], "ecs_endpoint": emulator.endpoint,
                                        "actiontrail_endpoint": emulator.endpoint}})
    monkeypatch.setenv("ALIBABA_CLOUD_ACCESS_KEY_ID", KEY_ID)
    monkeypatch.setenv("ALIBABA_CLOUD_ACCESS_KEY_SECRET", SECRET)
    [reached] = [f for f in check(cfg) if f.text.startswith("actiontrail:")]
    assert reached.level == "ok" and f"{REGION}, cn-beijing" in reached.text
    emulator.fail_next("Forbidden.RAM", "LookupEvents")
    [refused] = [f for f in check(cfg) if f.text.startswith("actiontrail:")]
    assert refused.level == "FAIL" and "Forbidden.RAM" in refused.text and SECRET not in refused.text


def test_an_event_the_mapper_fails_on_is_dead_lettered_and_the_others_go_on(wired, emulator, monkeypatch):
    """A mapper bug on one event costs that event a dead letter, never the region's cursor (a poison pill)."""
    from shipper import trail

    real = trail.records

    def failing_on_one(event, received_ms, source="poller"):
        if event["eventId"] == "EVT-00001":
            raise ValueError("a mapper bug")
        return real(event, received_ms, source)

    monkeypatch.setattr(trail, "records", failing_on_one)
    now = time.time()
    emulator.add_trail([stop_call(n, now - 120 + n) for n in range(3)])
    assert wired.poller.poll() == 2
    wired.pipeline.close(10)
    conn = sqlite3.connect(wired.tmp_path / "events.db")
    assert [r[0] for r in conn.execute('SELECT event_uid FROM "ecs-events" ORDER BY event_uid')] == uids([0, 2])
    assert conn.execute('SELECT reason, source, message_id FROM "shipper-deadletter"').fetchall() == \
        [("internal-error", f"actiontrail:{REGION}", "EVT-00001")]
    assert wired.poller._cursors[REGION] > 0


def test_a_hostile_event_is_mapped_without_raising():
    from shipper import trail

    event = stop_call(7, time.time()) | {"eventId": -(2 ** 64), "requestParameters": {"InstanceId": "i-x", "n": 2 ** 70}}
    [row] = trail.records(event, received_ms=0)
    assert row["instance_id"] == "i-x" and str(2 ** 70) in row["raw"]


def test_every_api_caused_change_of_a_simulated_fleet_shows_its_caller(emulator, tmp_path):
    """Issue 13's done-when, end to end through the emulated ActionTrail: the simulator's calls are seeded into
    the emulator's trail, its events go through the pipeline, the poller reads the trail, and the lifecycle
    join names for every state change exactly the call the simulator says caused it (SimEvent.caller)."""
    from shipper.normalize import events_from_bytes
    from shipper.pipeline import Message
    from shipper.read.lifecycle import timeline
    from shipper.read.stores import SqliteStore
    from shipper.simulate import FleetSimulator
    from shipper.sinks.sqlite import connect

    sim = FleetSimulator(instances=40, seed=21, start_ms=int(time.time() * 1000) - 3 * 3_600_000, duration_s=7200)
    messages = list(sim.events())
    emulator.add_trail(list(sim.trail()))
    regions = tuple(sorted({i.region_id for i in sim.fleet}))
    api = OpenApi(OpenApiSettings(regions=regions, ecs_endpoint=emulator.endpoint,
                                  actiontrail_endpoint=emulator.endpoint, timeout_seconds=5.0),
                  Credentials(KEY_ID, SECRET), sleep=FakeClock().sleep)
    pipeline = Pipeline([SqliteSink(tmp_path / "events.db")], BatchSettings(linger_ms=10)).start()
    for n, message in enumerate(messages):
        pipeline.submit(Message(body=message.body, source="test", message_id=str(n)))
    poller = TrailPoller(ActionTrail(api, calls_per_second=1000), api.regions, pipeline.record,
                         ActionTrailSettings(enabled=True), state_path(str(tmp_path)))
    assert poller.poll() > 0
    pipeline.close(10)

    expected = {}
    for message in messages:
        if message.state:
            [record] = events_from_bytes(message.body, received_ms=0)
            expected[record["event_uid"]] = message.caller.lower()
    assert sum(1 for caller in expected.values() if caller) > 50
    store = SqliteStore(connect(tmp_path / "events.db", create=False))
    found = {}
    for instance in sim.fleet:
        for event in timeline(store, instance.instance_id):
            if event["state"]:
                caused = event["caused_by"]
                found[event["event_uid"]] = caused["event_uid"].split(":")[1] if caused else ""
    assert found == expected
