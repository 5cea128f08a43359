"""Pure parts behind the write-side CLI (issue 14): MNS target URLs and send batches, the dead-letter id,
the progress line per sink, and dead letters stored once in SQLite, old stores included."""
import sqlite3

import pytest

from shipper import events
from shipper.cloud.mns import SEND_BATCH_BYTES, SEND_BATCH_MESSAGES, send_batches
from shipper.push import is_mns_target, mns_target
from shipper.runner import _progress_line
from shipper.sinks.sqlite import SqliteSink
from shipper.telemetry import metrics


def test_mns_target_forms():
    assert mns_target("mns://123.mns.cn-hangzhou.aliyuncs.com/ecs-cms-event") == \
        ("https://123.mns.cn-hangzhou.aliyuncs.com", "ecs-cms-event")
    assert mns_target("mns+http://127.0.0.1:9921/q") == ("http://127.0.0.1:9921", "q")
    assert is_mns_target("mns+http://x/q") and not is_mns_target("http://127.0.0.1:8787/")
    for bad in ("mns://host", "mns://host/a/b", "mns:///q", "mns://host/q?x=1", "http://host/q"):
        with pytest.raises(ValueError, match="mns://HOST/QUEUE"):
            mns_target(bad)


def test_send_batches_keep_order_within_the_count_and_size_limits():
    bodies = [f"m{i}" for i in range(40)]
    batches = list(send_batches(bodies))
    assert [len(b) for b in batches] == [16, 16, 8] and sum(batches, []) == bodies
    big = "x" * 30000
    sized = list(send_batches([big, big, big, "é" * 3000]))  # 3000 two-byte characters: 6000 bytes
    assert [len(b) for b in sized] == [2, 2]
    assert all(sum(len(m.encode()) for m in b) <= SEND_BATCH_BYTES and len(b) <= SEND_BATCH_MESSAGES for b in sized)
    assert list(send_batches(["y" * 70000, "z"])) == [["y" * 70000], ["z"]]  # too big alone: MNS names it


def test_dead_letter_id_is_the_source_and_input():
    letter = events.dead_letter(reason="not-json", source="file", message_id="a.json", received_time="t",
                                error="e", raw=b"nope")
    again = events.dead_letter(reason="not-json", source="file", message_id="a.json", received_time="later",
                               error="e", raw=b"nope")
    other = events.dead_letter(reason="not-json", source="http", message_id="a.json", received_time="t",
                               error="e", raw=b"nope")
    assert letter["deadletter_uid"] == again["deadletter_uid"] != other["deadletter_uid"]
    assert set(letter) == set(events.DEADLETTER_FIELDS)


def test_progress_line_counts_new_rows_per_sink_not_their_sum():
    metrics.EVENTS_STORED.inc(7, labels={"sink": "ops-a"})
    metrics.EVENTS_STORED.inc(5, labels={"sink": "ops-b"})
    line = _progress_line(["ops-a", "ops-b"])
    assert "(new: 7 in ops-a, 5 in ops-b)" in line


def test_a_dead_letter_is_stored_once_also_in_a_store_made_before_the_id(tmp_path):
    path = tmp_path / "events.db"
    old = sqlite3.connect(path)  # the table as an earlier version made it, with a row of its own
    old.execute('CREATE TABLE "shipper-deadletter" (reason TEXT NOT NULL DEFAULT \'\', source TEXT NOT NULL '
                'DEFAULT \'\', message_id TEXT NOT NULL DEFAULT \'\', received_time TEXT NOT NULL DEFAULT \'\', '
                'error TEXT NOT NULL DEFAULT \'\', raw_base64 TEXT NOT NULL DEFAULT \'\', time_ms INTEGER, '
                'topic TEXT NOT NULL DEFAULT \'\', source_host TEXT NOT NULL DEFAULT \'\')')
    old.execute('INSERT INTO "shipper-deadletter" (reason) VALUES (\'not-json\')')
    old.commit()
    old.close()
    sink = SqliteSink(path)
    letter = events.dead_letter(reason="not-json", source="file", message_id="x", received_time="t", error="e",
                                raw=b"{")
    assert sink.write(events.DEADLETTER_TABLE, [letter]) == 1
    assert sink.write(events.DEADLETTER_TABLE, [dict(letter, received_time="later")]) == 0
    sink.close()
    rows = sqlite3.connect(path).execute('SELECT deadletter_uid FROM "shipper-deadletter"').fetchall()
    assert sorted(rows) == [("",), (letter["deadletter_uid"],)]
