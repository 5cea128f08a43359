import sqlite3
import threading

import pytest

from shipper import events
from shipper.normalize import events_from_bytes
from shipper.sinks.sqlite import SqliteSink, StoreError, connect


def fixture_events(fixtures_dir, *names):
    out = []
    for name in names:
        out += events_from_bytes((fixtures_dir / name).read_bytes(), received_ms=1_700_000_000_000)
    return out


def test_repeated_event_uid_is_stored_once(tmp_path, fixtures_dir):
    sink = SqliteSink(tmp_path / "e.db")
    records = fixture_events(fixtures_dir, "a_statechange_pending.json", "a_statechange_running.json")
    assert sink.write(events.EVENTS_TABLE, records) == 2
    assert sink.write(events.EVENTS_TABLE, records) == 0
    form = fixture_events(fixtures_dir, "b_subscription_formstyle_interruption.json", "b_subscription_form_urlencoded.txt")
    assert sink.write(events.EVENTS_TABLE, form) == 1  # one push in two encodings
    sink.close()
    conn = sqlite3.connect(tmp_path / "e.db")
    assert conn.execute('SELECT count(*) FROM "ecs-events"').fetchone()[0] == 3


def test_every_schema_field_is_a_column_and_searched_fields_are_indexed(tmp_path):
    conn = connect(tmp_path / "e.db")
    for table, fields in events.TABLE_FIELDS.items():
        columns = {row[1] for row in conn.execute(f'PRAGMA table_info("{table}")')}
        assert set(fields) <= columns
    indexed = {conn.execute(f'PRAGMA index_info("{name}")').fetchone()[2]
               for (name,) in conn.execute("SELECT name FROM sqlite_master WHERE type='index' AND tbl_name='ecs-events'")}
    assert set(events.INDEXED_EVENT_FIELDS) <= indexed
    assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def test_numbers_are_stored_as_numbers_and_meta_columns_follow_the_record(tmp_path, fixtures_dir):
    sink = SqliteSink(tmp_path / "e.db")
    (record,) = fixture_events(fixtures_dir, "a_preemptible_interruption.json")
    sink.write(events.EVENTS_TABLE, [record])
    conn = sqlite3.connect(tmp_path / "e.db")
    ms, time_ms, topic = conn.execute('SELECT event_time_ms, time_ms, topic FROM "ecs-events"').fetchone()
    assert ms == int(record["event_time_ms"]) == time_ms
    assert topic == "interruption"


def test_a_reader_sees_committed_rows_while_a_writer_holds_a_transaction(tmp_path, fixtures_dir):
    sink = SqliteSink(tmp_path / "e.db")
    sink.write(events.EVENTS_TABLE, fixture_events(fixtures_dir, "a_statechange_pending.json"))
    writer = sqlite3.connect(tmp_path / "e.db", isolation_level=None)
    writer.execute("BEGIN IMMEDIATE")
    writer.execute('INSERT INTO "ecs-events" (event_uid, event_time_ms) VALUES (?, ?)', ("x", 1))
    reader = connect(tmp_path / "e.db", create=False)
    got = []
    t = threading.Thread(target=lambda: got.append(reader.execute('SELECT count(*) FROM "ecs-events"').fetchone()[0]))
    t.start()
    t.join(2)
    assert got == [1]  # WAL: the reader is not blocked and sees only committed rows
    writer.execute("ROLLBACK")


def test_a_record_sqlite_cannot_encode_fails_its_batch_only_and_releases_the_write_lock(tmp_path, fixtures_dir):
    sink = SqliteSink(tmp_path / "e.db")
    (good,) = fixture_events(fixtures_dir, "a_statechange_pending.json")
    bad = dict(good, event_uid="bad", instance_name="web-\ud800")  # UnicodeEncodeError, not an sqlite3.Error
    with pytest.raises(StoreError, match="write to ecs-events failed"):
        sink.write(events.EVENTS_TABLE, [bad])
    assert sink.write(events.EVENTS_TABLE, [good]) == 1  # not "cannot start a transaction within a transaction"
    other = sqlite3.connect(tmp_path / "e.db", isolation_level=None, timeout=0.1)
    other.execute("BEGIN IMMEDIATE")  # the failed batch holds no write lock
    other.execute("ROLLBACK")


def test_a_reader_opens_read_only_and_leaves_a_rollback_journal_store_as_it_is(tmp_path, fixtures_dir):
    sink = SqliteSink(tmp_path / "e.db")
    sink.write(events.EVENTS_TABLE, fixture_events(fixtures_dir, "a_statechange_pending.json"))
    sink.close()
    plain = sqlite3.connect(tmp_path / "e.db")
    assert plain.execute("PRAGMA journal_mode=DELETE").fetchone() == ("delete",)
    plain.close()
    reader = connect(tmp_path / "e.db", create=False)
    assert reader.execute('SELECT count(*) FROM "ecs-events"').fetchone() == (1,)
    with pytest.raises(sqlite3.OperationalError, match="readonly"):
        reader.execute("PRAGMA query_only=OFF")
        reader.execute('DELETE FROM "ecs-events"')
    reader.close()
    assert sqlite3.connect(tmp_path / "e.db").execute("PRAGMA journal_mode").fetchone() == ("delete",)
