"""The delivery ledger: what each store committed, shared by processes, bounded in time, never in the way."""
import logging

from shipper.ledger import MAX_UIDS_PER_QUERY, PRUNE_EVERY_SECONDS, Ledger
from shipper.telemetry import metrics
from tests.fakes import FakeClock

STORE = "sls:cn-hangzhou.log.aliyuncs.com/ecs-audit/ecs-events"
DAY = 86400


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
