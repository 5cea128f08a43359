"""The delivery ledger: what each store committed, shared by processes, bounded in time, never in the way."""
import logging
import os

from shipper.ledger import MAX_UIDS_PER_QUERY, PRUNE_EVERY_SECONDS, Ledger, is_running, writer_id
from shipper.telemetry import metrics
from tests.fakes import FakeClock

STORE = "sls:cn-hangzhou.log.aliyuncs.com/ecs-audit/ecs-events"
DAY = 86400
GONE = "4194304:1"  # above the largest pid Linux gives (pid_max is at most 2**22)


def test_committed_uids_are_not_fresh_for_that_store_only(tmp_path):
    ledger = Ledger(tmp_path / "ledger.db")
    assert ledger.fresh(STORE, ["a", "b", "c"]) == {"a", "b", "c"}
    ledger.commit(STORE, ["a", "b"])
    assert ledger.fresh(STORE, ["a", "b", "c"]) == {"c"}
    assert ledger.fresh("sls:other/ecs-audit/ecs-events", ["a", "c"]) == {"a", "c"}  # stores never mask each other


def test_a_second_process_on_the_host_sees_the_commits_and_they_outlive_a_restart(tmp_path):
    first, second = Ledger(tmp_path / "ledger.db"), Ledger(tmp_path / "ledger.db")
    first.commit(STORE, ["a"])
    second.commit(STORE, ["b"])
    assert first.fresh(STORE, ["a", "b", "c"]) == second.fresh(STORE, ["a", "b", "c"]) == {"c"}
    first.close()
    second.close()
    assert Ledger(tmp_path / "ledger.db").fresh(STORE, ["a", "b", "c"]) == {"c"}


def test_more_uids_than_one_query_binds(tmp_path):
    ledger = Ledger(tmp_path / "ledger.db")
    uids = [f"uid-{n}" for n in range(MAX_UIDS_PER_QUERY * 3 + 7)]
    ledger.commit(STORE, uids[::2])
    assert ledger.fresh(STORE, uids) == set(uids[1::2])


def test_entries_are_forgotten_after_the_window(tmp_path):
    clock = FakeClock(now=1_700_000_000.0)
    ledger = Ledger(tmp_path / "ledger.db", days=2, clock=clock)
    ledger.commit(STORE, ["old"])
    clock.now += DAY
    ledger.commit(STORE, ["recent"])
    clock.now += 1.5 * DAY + PRUNE_EVERY_SECONDS
    ledger.commit(STORE, ["new"])  # "old" is now 2.5 days old, "recent" 1.5
    assert ledger.fresh(STORE, ["old", "recent", "new"]) == {"old"}


def test_a_damaged_file_is_moved_aside_and_a_new_ledger_started(tmp_path, caplog):
    path = tmp_path / "ledger.db"
    path.write_bytes(b"this is not a database" * 100)
    ledger = Ledger(path)
    errors = metrics.LEDGER_ERRORS.total()
    with caplog.at_level(logging.WARNING, logger="shipper.ledger"):
        assert ledger.fresh(STORE, ["a"]) == {"a"}  # cannot read: everything is fresh (a copy, never a loss)
    assert metrics.LEDGER_ERRORS.total() == errors + 1
    (aside,) = tmp_path.glob("ledger.db.corrupt-*")
    assert aside.read_bytes().startswith(b"this is not a database")
    assert "damaged" in caplog.text and aside.name in caplog.text
    ledger.commit(STORE, ["a"])
    assert ledger.fresh(STORE, ["a", "b"]) == {"b"}


def test_an_unusable_ledger_says_so_once_per_streak_and_recovers_by_itself(tmp_path, caplog):
    blocker = tmp_path / "data"
    blocker.write_text("a file where the data folder should be")
    ledger = Ledger(blocker / "ledger.db")
    errors = metrics.LEDGER_ERRORS.total()
    with caplog.at_level(logging.WARNING, logger="shipper.ledger"):
        for _ in range(3):
            assert ledger.fresh(STORE, ["a", "b"]) == {"a", "b"}
            ledger.commit(STORE, ["a"])  # forgotten, without raising
    assert metrics.LEDGER_ERRORS.total() == errors + 6
    assert [r.message.count("cannot") for r in caplog.records] == [1]  # one line for the streak
    assert str(blocker / "ledger.db") in caplog.text
    caplog.clear()
    blocker.unlink()
    with caplog.at_level(logging.WARNING, logger="shipper.ledger"):
        ledger.commit(STORE, ["a"])
        assert ledger.fresh(STORE, ["a", "b"]) == {"b"}
    assert "works again" in caplog.text


def test_a_pending_request_is_settled_by_its_answer(tmp_path):
    ledger = Ledger(tmp_path / "ledger.db")
    accepted = ledger.begin(STORE, ["a", "b"], 100, 160)
    refused = ledger.begin(STORE, ["c"], 100, 100)
    assert ledger.fresh(STORE, ["a", "b", "c"]) == {"a", "b", "c"}  # pending is not committed
    ledger.commit(STORE, ["a", "b"], settles=accepted)
    ledger.forget(refused)
    assert ledger.fresh(STORE, ["a", "b", "c"]) == {"c"}
    ledger.writer = GONE  # as if this process had died: nothing of it is left to settle
    assert Ledger(tmp_path / "ledger.db").orphans(STORE) == []


def test_only_the_pending_requests_of_a_writer_that_is_gone_are_orphans(tmp_path):
    clock = FakeClock(now=1_700_000_000.0)
    killed, alive, me = (Ledger(tmp_path / "ledger.db", clock=clock) for _ in range(3))
    killed.writer, alive.writer = GONE, writer_id(os.getppid())  # the parent process runs
    in_flight = killed.begin(STORE, ["a", "b"], 100, 160)
    killed.begin("sls:other/ecs-audit/ecs-events", ["c"], 100, 100)
    alive.begin(STORE, ["d"], 100, 100)
    me.begin(STORE, ["e"], 100, 100)
    assert me.orphans(STORE) == [in_flight]
    assert in_flight.uids == ("a", "b") and (in_flight.from_s, in_flight.to_s, in_flight.sent) == (100, 160, clock.now)


def test_a_writer_is_its_pid_and_start_time_so_a_reused_pid_is_not_mistaken_for_it():
    me = writer_id(os.getpid())
    assert is_running(me)
    pid, _, started = me.partition(":")
    assert started  # Linux: the start time is known
    assert not is_running(f"{pid}:{int(started) + 1}")  # the same pid, another process
    assert not is_running(GONE)
