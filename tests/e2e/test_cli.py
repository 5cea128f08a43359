"""The CLI as an operator runs it: normalize, replay, search, lifecycle, simulate."""
import json
import os
import socket
import sqlite3
import subprocess
import sys

import pytest


def shipper(*args, cwd, stdin=None, env=None):
    return subprocess.run([sys.executable, "-m", "shipper", *args], cwd=cwd, input=stdin,
                          capture_output=True, timeout=120, env=env)


@pytest.fixture
def workdir(tmp_path):
    (tmp_path / "config.toml").write_text('[[sinks]]\ntype = "sqlite"\npath = "./data/events.db"\n')
    return tmp_path


def test_normalize_prints_one_line_per_event(fixtures_dir, workdir):
    result = shipper("normalize", str(fixtures_dir / "a_statechange_deleted.json"), cwd=workdir)
    assert result.returncode == 0, result.stderr
    (line,) = result.stdout.decode().splitlines()
    record = json.loads(line)
    assert record["state"] == "Deleted" and record["event_time"] == "2025-04-28T22:53:18.427Z"


def test_normalize_reads_stdin_and_ndjson(fixtures_dir, workdir):
    lines = b"\n".join(json.dumps(json.loads((fixtures_dir / n).read_text())).encode()
                       for n in ("a_statechange_pending.json", "c_statechange_stopped.json"))
    result = shipper("normalize", "-", cwd=workdir, stdin=lines)
    assert result.returncode == 0
    assert [json.loads(x)["envelope"] for x in result.stdout.decode().splitlines()] == ["cms", "eventbridge"]


@pytest.mark.parametrize("name, reason", [("bad_not_json.txt", "not-json"), ("bad_truncated.json", "not-json"),
                                          ("bad_wrong_types.json", "not-an-event"), ("bad_empty.txt", "not-json"),
                                          ("bad_trailing_comma.json", "not-json"), ("bad_json_not_event.json", "not-an-event")])
def test_normalize_bad_input_prints_error_line_and_exits_1(fixtures_dir, workdir, name, reason):
    result = shipper("normalize", str(fixtures_dir / name), cwd=workdir)
    assert result.returncode == 1
    assert json.loads(result.stdout)["error"] == reason
    assert b"Traceback" not in result.stderr


def test_replay_fixtures_then_search_and_lifecycle(fixtures_dir, workdir):
    result = shipper("replay", str(fixtures_dir), cwd=workdir)
    assert result.returncode == 0, result.stderr
    summary = result.stderr.decode()
    # 36 files, README.md included (it is not an event): 29 valid events, 7 dead letters.
    assert "29 events committed, 7 dead-lettered" in summary, summary
    again = shipper("replay", str(fixtures_dir), cwd=workdir)
    assert again.returncode == 0

    found = shipper("search", "state: Stopped", "--json", cwd=workdir)
    assert found.returncode == 0, found.stderr
    ids = sorted(json.loads(x)["instance_id"] for x in found.stdout.decode().splitlines())
    assert ids == ["i-bp1t6y0u4i8o2p6a0s4d", "i-uf6a8k2m5q9t3w7x1z4c", "i-uf6v8b2n6m0q4w8e2r6t"]

    every = shipper("search", "*", "--json", "--limit", "1000", cwd=workdir)
    uids = [json.loads(x)["event_uid"] for x in every.stdout.decode().splitlines()]
    assert len(uids) == len(set(uids)) == 28  # replayed twice, stored once; the two form pushes are one

    table = shipper("search", "__topic__: interruption", cwd=workdir)
    assert table.returncode == 0 and b"i-wz9e4h8k2n6r0u3y7b1f" in table.stdout and b"event_time" in table.stdout

    letters = shipper("search", "reason: not-json", "--table", "shipper-deadletter", "--json", cwd=workdir)
    assert len(letters.stdout.decode().splitlines()) == 5  # 5 not-json files (README.md too), each once

    life = shipper("lifecycle", "i-uf6a8k2m5q9t3w7x1z4c", cwd=workdir)
    assert life.returncode == 0, life.stderr
    text = life.stdout.decode()
    for state in ("Pending", "Starting", "Running", "Stopping", "Stopped"):
        assert state in text
    assert "created:" in text and "2025-03-18T02:22:04.517Z" in text


def test_lifecycle_carries_name_and_type_into_a_bare_deleted_event(workdir):
    created = {"id": "u1", "name": "Instance:StateChange", "eventTime": "20250101T080000.000+0800",
               "resourceId": "acs:ecs:cn-hangzhou:1:instance/i-bp1aaaaaaaaaaaaaaaaa", "regionId": "cn-hangzhou",
               "content": {"resourceId": "i-bp1aaaaaaaaaaaaaaaaa", "state": "Created", "instanceName": "web-1",
                           "instanceType": "ecs.g7.large"}}
    deleted = {"id": "u2", "name": "Instance:StateChange", "eventTime": "20250103T093000.000+0800",
               "resourceId": "acs:ecs:cn-hangzhou:1:instance/i-bp1aaaaaaaaaaaaaaaaa", "regionId": "cn-hangzhou",
               "content": {"resourceId": "i-bp1aaaaaaaaaaaaaaaaa", "state": "Deleted"}}
    (workdir / "two.ndjson").write_text(json.dumps(created) + "\n" + json.dumps(deleted) + "\n")
    assert shipper("replay", "two.ndjson", cwd=workdir).returncode == 0
    life = shipper("lifecycle", "i-bp1aaaaaaaaaaaaaaaaa", "--json", cwd=workdir)
    last = json.loads(life.stdout.decode().splitlines()[-1])
    assert last["state"] == "Deleted" and last["instance_name"] == "web-1" and last["instance_type"] == "ecs.g7.large"
    text = shipper("lifecycle", "i-bp1aaaaaaaaaaaaaaaaa", cwd=workdir).stdout.decode()
    assert "lifetime:" in text and "2d 01:30:00" in text


def test_operator_errors_are_one_line_without_traceback(workdir, tmp_path):
    cases = [
        (["search", "state: (", ], "query"),
        (["search", "*", "--since", "yesterday"], "not a duration"),
        (["lifecycle", "i-nothere"], "no local store yet"),
        (["run", "--config", str(tmp_path / "missing.toml")], "no such config file"),
        (["replay", str(tmp_path / "nothing-here")], "does not exist"),
    ]
    for args, expected in cases:
        result = shipper(*args, cwd=workdir)
        err = result.stderr.decode()
        assert result.returncode != 0, args
        assert expected in err, (args, err)
        assert "Traceback" not in err, (args, err)


def test_simulate_output_replays_into_the_store(workdir):
    result = shipper("simulate", "--instances", "5", "--seed", "7", "--out", "fleet.ndjson", cwd=workdir)
    assert result.returncode == 0, result.stderr
    lines = (workdir / "fleet.ndjson").read_bytes().splitlines()
    assert len(lines) >= 15  # at least created, starting, running for each
    same = shipper("simulate", "--instances", "5", "--seed", "7", cwd=workdir)
    assert same.stdout.splitlines()[0].startswith(b"{")
    replayed = shipper("replay", "fleet.ndjson", cwd=workdir)
    assert replayed.returncode == 0
    assert f"{len(lines)} messages" in replayed.stderr.decode() and "0 dead-lettered" in replayed.stderr.decode()


def test_help_teaches(workdir):
    result = shipper("--help", cwd=workdir)
    assert result.returncode == 0
    for command in (b"run", b"normalize", b"replay", b"search", b"lifecycle", b"simulate"):
        assert command in result.stdout
    assert b"state: Deleted" in shipper("search", "--help", cwd=workdir).stdout


# --- check: what `run` would hit ---------------------------------------------------------------------

def test_check_fails_a_store_without_write_permission_even_when_root_could_write_it(workdir):
    from shipper.sinks.sqlite import SqliteSink

    store = workdir / "data" / "events.db"
    SqliteSink(store).close()
    store.chmod(0o444)
    result = shipper("check", cwd=workdir)
    out = result.stdout.decode()
    assert result.returncode == 1, out
    assert f"FAIL sqlite sink: {store} is read-only (mode 0444)" in out and "chmod u+w" in out
    store.chmod(0o644)
    assert f"ok   sqlite sink: {store} writable" in shipper("check", cwd=workdir).stdout.decode()


def test_check_fails_when_the_listen_address_is_taken(workdir):
    with socket.create_server(("127.0.0.1", 0)) as taken:
        port = taken.getsockname()[1]
        (workdir / "config.toml").write_text(f'[[sources]]\ntype = "http"\nlisten = "127.0.0.1:{port}"\n'
                                             '[[sinks]]\ntype = "sqlite"\npath = "./data/events.db"\n')
        result = shipper("check", cwd=workdir, env=dict(os.environ, SHIPPER_WEBHOOK_TOKEN="t"))
    out = result.stdout.decode()
    assert result.returncode == 1, out
    assert f"FAIL http source: cannot listen on 127.0.0.1:{port}" in out and "change `listen`" in out


def test_check_fails_tls_files_that_run_could_not_load(workdir):
    (workdir / "config.toml").write_text('[[sources]]\ntype = "http"\nlisten = "127.0.0.1:0"\n'
                                         'tls_cert = "missing.pem"\ntls_key = "missing.key"\n'
                                         '[[sinks]]\ntype = "sqlite"\npath = "./data/events.db"\n')
    result = shipper("check", cwd=workdir, env=dict(os.environ, SHIPPER_WEBHOOK_TOKEN="t"))
    out = result.stdout.decode()
    assert result.returncode == 1, out
    assert f"FAIL http source: cannot use tls_cert '{workdir / 'missing.pem'}'" in out and "Traceback" not in out


# --- search: a reader that reads only what it is asked ------------------------------------------------

@pytest.fixture
def store(fixtures_dir, workdir):
    assert shipper("replay", str(fixtures_dir), cwd=workdir).returncode == 0
    return workdir


@pytest.fixture(scope="module")
def empty_store(tmp_path_factory):
    """A store with its tables and no rows: a query is refused before it reads any."""
    from shipper.sinks.sqlite import SqliteSink

    workdir = tmp_path_factory.mktemp("empty-store")
    (workdir / "config.toml").write_text('[[sinks]]\ntype = "sqlite"\npath = "./data/events.db"\n')
    SqliteSink(workdir / "data" / "events.db").close()
    return workdir


@pytest.mark.parametrize("query, refused", [
    ('* | select raw_base64 from "shipper-deadletter"', '"shipper-deadletter": the SQL part reads `log`'),
    ("* | select raw_base64 from `Shipper-Deadletter`", "`Shipper-Deadletter`: the SQL part reads `log`"),
    ("* | select name, sql from sqlite_master", "reading 'sqlite_master'"),
    ("* | select name from pragma_table_info('x')", "one SELECT of `log` (this query touches 'sqlite_master')"),
    ('* | select count(*) from "ecs-events"', '"ecs-events": the SQL part reads `log`'),  # around --since
    ('* | select count(*) from "ECS-events"', '"ECS-events": the SQL part reads `log`'),
    ("* | select count(*) from main.sqlite_schema", "reading 'sqlite_schema'"),
    ("* | select length(randomblob(1000000000))", "the function randomblob()"),
    ("* | select n from (with recursive r(n) as (select 1 union all select n + 1 from r) select n from r)",
     "a recursive WITH"),
])
def test_search_sql_reads_only_the_searched_rows(empty_store, query, refused):
    result = shipper("search", query, "--since", "1h", cwd=empty_store)
    err = result.stderr.decode()
    assert result.returncode == 1 and refused in err and "Traceback" not in err, err
    assert len(err.strip().splitlines()) == 1


def test_search_opens_the_store_read_only_and_converts_nothing(store):
    db = store / "data" / "events.db"
    conn = sqlite3.connect(db)
    conn.execute("PRAGMA journal_mode=DELETE")
    conn.close()
    result = shipper("search", "* | select count(*) as n", cwd=store)
    assert result.returncode == 0, result.stderr
    assert sqlite3.connect(db).execute("PRAGMA journal_mode").fetchone() == ("delete",)


def test_search_numbers_out_of_range_and_blobs_are_handled(store):
    for query in ("event_time_ms in [0 99999999999999999999999999999]", "event_time_ms > 1e999"):
        result = shipper("search", query, cwd=store)
        err = result.stderr.decode()
        assert result.returncode == 1 and "out of range" in err and "Traceback" not in err, err
    conn = sqlite3.connect(store / "data" / "events.db")  # another tool wrote a blob into the store
    conn.execute("""UPDATE "ecs-events" SET raw = x'6162' WHERE event_uid = (SELECT max(event_uid) FROM "ecs-events")""")
    conn.commit()
    result = shipper("search", "* | select raw where typeof(raw) = 'blob'", "--json", cwd=store)
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout) == {"raw": "X'6162'"}
