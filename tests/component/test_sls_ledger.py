"""The SLS sink writes each event_uid once, through aliyun-log-python-sdk against the SLS emulator.

Request limits (4096 logs per PutLogs) and error codes are reference/sls.md §4.3 and §5. The events
logstore has the index `shipper dashboards import` gives it (GetLogs on event_uid needs it, sls.md §8).
"""
from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest

from shipper import events
from shipper.cloud import Credentials
from shipper.ledger import Ledger, writer_id
from shipper.sinks.sls import SlsSink, SlsSinkError, SlsSinkSettings
from shipper.telemetry import metrics
from tests.emulators.sls import SlsEmulator
from tests.fakes import FakeClock

AK, SK = "LTAIledgerKEY0005", "ledger-secret-Zx8Cv6Bn4"
PROJECT = "ecs-audit"
EVENTS, ACTIONS, DEADLETTER = "ecs-events", "shipper-actions", "shipper-deadletter"
REPO = Path(__file__).resolve().parents[2]
EVENTS_INDEX = json.loads((REPO / "dashboards" / "index" / "ecs-events.json").read_text())["index"]
STORE = f"sls:127.0.0.1/{PROJECT}/{EVENTS}"


@pytest.fixture
def sls():
    with SlsEmulator(credentials={AK: SK}) as emulator:
        for project in (PROJECT, "ecs-audit-2"):
            emulator.create_project(project)
            emulator.create_logstore(project, EVENTS, index=EVENTS_INDEX)
            for store in (ACTIONS, DEADLETTER):
                emulator.create_logstore(project, store)
        yield emulator


@pytest.fixture
def ledger(tmp_path):
    ledger = Ledger(tmp_path / "ledger.db")
    yield ledger
    ledger.close()


def make_sink(sls, ledger, **settings) -> SlsSink:
    clock = FakeClock()
    settings = {"endpoint": sls.endpoint, "project": PROJECT, "retry_seconds": 1.0} | settings
    return SlsSink(SlsSinkSettings(**settings), Credentials(AK, SK), ledger=ledger, sleep=clock.sleep,
                   clock=clock.clock)


def event(n: int, **values) -> dict:
    values = {"raw": f'{{"n": {n}}}'} | values
    return events.new_event(event_uid=f"uid-{n}", category="lifecycle", event_time_ms=str(int(time.time() * 1000)),
                            instance_id=f"i-{n}", **values)


def stored_uids(sls, project=PROJECT) -> Counter:
    return Counter(log.contents["event_uid"] for log in sls.logs(project, EVENTS))


def test_copies_inside_one_batch_collapse_to_the_first(sls, ledger):
    dropped = metrics.COPIES_DROPPED.value({"sink": "sls"})
    batch = [event(1, received_time="first"), event(2), event(1, received_time="second"), event(1)]
    assert make_sink(sls, ledger).write(events.EVENTS_TABLE, batch) == 2
    assert stored_uids(sls) == {"uid-1": 1, "uid-2": 1}
    (first,) = [log for log in sls.logs(PROJECT, EVENTS) if log.contents["event_uid"] == "uid-1"]
    assert first.contents["received_time"] == "first"
    assert metrics.COPIES_DROPPED.value({"sink": "sls"}) == dropped + 2


def test_a_redelivered_batch_sends_nothing_and_a_restarted_sink_remembers(sls, ledger, tmp_path):
    batch = [event(n) for n in range(50)]
    assert make_sink(sls, ledger).write(events.EVENTS_TABLE, batch) == 50
    requests = sls.request_count("PutLogs")
    assert make_sink(sls, ledger).write(events.EVENTS_TABLE, batch) == 0
    restarted = Ledger(tmp_path / "ledger.db")
    assert make_sink(sls, restarted).write(events.EVENTS_TABLE, batch + [event(50)]) == 1
    restarted.close()
    assert sls.request_count("PutLogs") == requests + 1
    assert stored_uids(sls) == Counter(f"uid-{n}" for n in range(51))


def test_a_batch_that_failed_on_its_third_request_is_completed_with_only_the_rest(sls, ledger):
    """10,000 logs take 3 requests (4096 + 4096 + 1808); the third fails past the retry budget."""
    batch = [event(n) for n in range(10_000)]
    sls.faults.fail_next("ServerBusy", count=1000, after=2)
    with pytest.raises(SlsSinkError, match="ServerBusy"):
        make_sink(sls, ledger).write(events.EVENTS_TABLE, batch)
    assert len(stored_uids(sls)) == 8192
    sls.faults.clear()
    requests = sls.request_count("PutLogs")
    assert make_sink(sls, ledger).write(events.EVENTS_TABLE, batch) == 1808  # the redelivery
    assert sls.request_count("PutLogs") == requests + 1
    assert stored_uids(sls) == Counter(f"uid-{n}" for n in range(10_000))  # each once


def test_two_projects_sharing_the_ledger_never_mask_each_other(sls, ledger):
    batch = [event(n) for n in range(5)]
    assert make_sink(sls, ledger).write(events.EVENTS_TABLE, batch) == 5
    assert make_sink(sls, ledger, project="ecs-audit-2").write(events.EVENTS_TABLE, batch) == 5
    assert stored_uids(sls, "ecs-audit-2") == stored_uids(sls, PROJECT) == Counter(f"uid-{n}" for n in range(5))


def test_an_event_sls_refused_is_not_remembered(sls, ledger):
    """Dead-lettered, not stored: if its message comes back (another sink failed), it is tried again."""
    batch = [event(1), event(2, raw="x" * 1_100_000)]  # a value over 1 MB is refused (sls.md §4.3)
    assert make_sink(sls, ledger).write(events.EVENTS_TABLE, batch) == 1
    assert ledger.fresh(STORE, ["uid-1", "uid-2"]) == {"uid-2"}
    assert len(sls.logs(PROJECT, DEADLETTER)) == 1


def test_actions_are_not_deduped(sls, ledger):
    """A hook's decision and its outcome share the event's uid; both are records of their own."""
    action = {field: "" for field in events.ACTION_FIELDS} | {"event_uid": "uid-1", "hook": "restart"}
    assert make_sink(sls, ledger).write(events.ACTIONS_TABLE, [action, action | {"outcome": "succeeded"}]) == 2
    assert len(sls.logs(PROJECT, ACTIONS)) == 2


def test_the_sink_writes_everything_when_the_ledger_is_unusable(sls, tmp_path):
    (tmp_path / "data").write_text("a file where the data folder should be")
    broken = Ledger(tmp_path / "data" / "ledger.db")
    errors = metrics.LEDGER_ERRORS.total()
    batch = [event(n) for n in range(20)]
    assert make_sink(sls, broken).write(events.EVENTS_TABLE, batch) == 20
    assert make_sink(sls, broken).write(events.EVENTS_TABLE, batch) == 20  # a copy: better than a loss
    assert stored_uids(sls) == Counter({f"uid-{n}": 2 for n in range(20)})
    assert metrics.LEDGER_ERRORS.total() > errors


# -- requests whose outcome is unknown --------------------------------------------------------------------

def test_a_lost_answer_is_asked_about_and_what_landed_is_not_sent_again(sls, ledger):
    """SLS stored the request and the answer never came (LogRequestError): the retry asks, and sends nothing."""
    batch = [event(n) for n in range(100)]
    sls.faults.lose_answers(count=1)
    dropped = metrics.COPIES_DROPPED.value({"sink": "sls"})
    checked = metrics.SLS_UNKNOWN_OUTCOMES.value({"settled": "checked"})
    assert make_sink(sls, ledger, retry_seconds=30.0).write(events.EVENTS_TABLE, batch) == 100
    assert stored_uids(sls) == Counter(f"uid-{n}" for n in range(100))  # each once
    assert sls.request_count("PutLogs") == 1
    assert sls.request_count("GetLogs") == 4  # 30 uids a question (SLS's keyword limit)
    assert ledger.fresh(STORE, [f"uid-{n}" for n in range(100)]) == set()
    assert metrics.COPIES_DROPPED.value({"sink": "sls"}) == dropped + 100
    assert metrics.SLS_UNKNOWN_OUTCOMES.value({"settled": "checked"}) == checked + 1


def test_a_lost_answer_that_used_up_the_retry_budget_is_settled_at_the_next_write(sls, ledger):
    batch = [event(n) for n in range(20)]
    sls.faults.lose_answers(count=1)
    sink = make_sink(sls, ledger)  # retry_seconds 1: less than the wait before SLS can be asked
    with pytest.raises(SlsSinkError, match="LogRequestError"):
        sink.write(events.EVENTS_TABLE, batch)
    assert sink.write(events.EVENTS_TABLE, batch + [event(20)]) == 1  # the redelivery, and one new event
    assert stored_uids(sls) == Counter(f"uid-{n}" for n in range(21))
    assert sls.request_count("PutLogs") == 2


def test_when_sls_cannot_be_asked_the_logs_are_sent_again(sls, ledger, caplog):
    """A copy rather than a loss: GetLogs fails, so nothing is known to have landed."""
    batch = [event(n) for n in range(5)]
    sls.faults.lose_answers(count=1)
    sls.faults.fail_next("InternalServerError", operation="GetLogs")
    unchecked = metrics.SLS_UNKNOWN_OUTCOMES.value({"settled": "unchecked"})
    with caplog.at_level(logging.WARNING, logger="shipper.sinks.sls"):
        assert make_sink(sls, ledger, retry_seconds=30.0).write(events.EVENTS_TABLE, batch) == 5
    assert stored_uids(sls) == Counter({f"uid-{n}": 2 for n in range(5)})
    assert metrics.SLS_UNKNOWN_OUTCOMES.value({"settled": "unchecked"}) == unchecked + 1
    (line,) = [r.getMessage() for r in caplog.records if "GetLogs" in r.getMessage()]
    assert EVENTS in line and "InternalServerError" in line and SK not in line
    assert ledger.fresh(STORE, [f"uid-{n}" for n in range(5)]) == set()  # committed once sent


KILLED_AT_COMMIT = """
import os, signal, sys
from shipper import events
from shipper.cloud import Credentials
from shipper.ledger import Ledger
from shipper.sinks.sls import SlsSink, SlsSinkSettings
from tests.component.test_sls_ledger import AK, SK, PROJECT, event

# SIGKILL once SLS has answered, before the ledger hears of it: the request is stored and still pending.
Ledger.commit = lambda *args, **kwargs: os.kill(os.getpid(), signal.SIGKILL)
ledger = Ledger(sys.argv[2])
SlsSink(SlsSinkSettings(endpoint=sys.argv[1], project=PROJECT), Credentials(AK, SK), ledger=ledger).write(
    events.EVENTS_TABLE, [event(n) for n in range(int(sys.argv[3]))])
"""


def test_a_writer_killed_in_flight_is_settled_on_the_next_start_without_a_copy(sls, tmp_path):
    killed = subprocess.run([sys.executable, "-c", KILLED_AT_COMMIT, sls.endpoint, str(tmp_path / "ledger.db"), "40"],
                            cwd=REPO, capture_output=True, text=True, timeout=60)
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    assert len(stored_uids(sls)) == 40
    restarted = Ledger(tmp_path / "ledger.db")
    assert restarted.fresh(STORE, ["uid-0"]) == {"uid-0"}  # the kill came before the commit
    sink = make_sink(sls, restarted)
    assert sink.write(events.EVENTS_TABLE, [event(n) for n in range(41)]) == 1  # redelivered, and one new
    restarted.close()
    assert stored_uids(sls) == Counter(f"uid-{n}" for n in range(41))
    assert sls.request_count("PutLogs") == 2 and sls.request_count("GetLogs") == 2
    assert Ledger(tmp_path / "ledger.db").orphans(STORE) == []


def test_another_live_processs_request_in_flight_is_left_to_it(sls, ledger):
    other = Ledger(ledger.path)
    other.writer = writer_id(os.getppid())  # a process that runs: the one that started the tests
    other.begin(STORE, ["uid-1"], int(time.time()), int(time.time()))
    assert make_sink(sls, ledger).write(events.EVENTS_TABLE, [event(2)]) == 1
    assert sls.request_count("GetLogs") == 0
    other.close()


def test_the_same_input_dead_lettered_twice_is_written_once(sls, ledger):
    """`shipper replay` of a folder twice: its dead letters carry the same deadletter_uid (source + input)."""
    letter = events.dead_letter(reason="not-json", source="file:a.json", message_id="", received_time="",
                                error="not JSON", raw=b"{oops")
    sink = make_sink(sls, ledger)
    assert sink.write(events.DEADLETTER_TABLE, [dict(letter), dict(letter)]) == 1
    assert make_sink(sls, ledger).write(events.DEADLETTER_TABLE, [dict(letter)]) == 0
    assert [log.contents["deadletter_uid"] for log in sls.logs(PROJECT, DEADLETTER)] == [letter["deadletter_uid"]]
