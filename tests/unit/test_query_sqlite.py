"""SLS queries run against SQLite tables of the store's shape (reference/sls.md §7, §8)."""
import sqlite3

import pytest

from shipper.events import ACTIONS_TABLE, EVENTS_TABLE, NUMERIC_FIELDS, TABLE_FIELDS, new_event
from shipper.query import QueryError, parse, register_functions, to_sqlite
from shipper.read.stores import SqliteStore

T0 = 1772697600000  # 2026-03-05T08:00:00.000Z
A = "i-bp1f3kq7z2m9w4x6c8v0"  # created, runs, stops, is released (cn-hangzhou)
B = "i-uf6d2hj8n4p1r7t3y5w9"  # created, stops four times (cn-shanghai)
C = "i-bp1q8w3e5r7t9y2u4i6o"  # spot interruption now
D = "i-t4n7b2v5c8x1z3l6k9j0"  # spot interruption last year
E = "i-bp1c9x6z3v0b7n4m1q8w"  # only its release is known (cn-shanghai)
M = "i-bp1m5n8b1v4c7x0z3a6s"  # scheduled maintenance, then executing
STATE_CHANGE = "Instance:StateChange"
INTERRUPTION = "Instance:PreemptibleInstanceInterruption"
REBOOT = "Instance:SystemMaintenance.Reboot"


def event(uid, instance, category, name, time_ms, event_time, region="cn-hangzhou", **extra):
    record = new_event(**{"event_uid": uid, "instance_id": instance, "category": category, "event_name": name,
                          "event_time": event_time, "region_id": region, "product": "ECS", "level": "INFO", **extra})
    record["event_time_ms"] = time_ms
    return {**record, "time_ms": time_ms, "topic": category, "source_host": "shipper-host-1"}


EVENTS = [
    event("a-pending", A, "lifecycle", STATE_CHANGE, T0, "2026-03-05T08:00:00.000Z", state="Pending",
          instance_type="ecs.g6.large", instance_name="web server",
          detail='{"instanceId":"i-bp1f3kq7z2m9w4x6c8v0","state":"Pending"}'),
    event("a-running", A, "lifecycle", STATE_CHANGE, T0 + 60_000, "2026-03-05T08:01:00.000Z", state="Running",
          private_ip="10.0.0.5", public_ip="47.1.2.3"),
    event("c-interrupt", C, "interruption", INTERRUPTION, T0 + 1_800_000, "2026-03-05T08:30:00.000Z",
          action="delete", level="WARN"),
    event("a-stopped", A, "lifecycle", STATE_CHANGE, T0 + 3_600_000, "2026-03-05T09:00:00.000Z", state="Stopped"),
    event("b-pending", B, "lifecycle", STATE_CHANGE, T0 + 3_660_000, "2026-03-05T09:01:00.000Z", "cn-shanghai",
          state="Pending", instance_type="ecs.c7.xlarge"),
    event("b-stop-1", B, "lifecycle", STATE_CHANGE, T0 + 3_720_000, "2026-03-05T09:02:00.000Z", "cn-shanghai",
          state="Stopped"),
    event("b-stop-2", B, "lifecycle", STATE_CHANGE, T0 + 3_780_000, "2026-03-05T09:03:00.000Z", "cn-shanghai",
          state="Stopped"),
    event("b-stop-3", B, "lifecycle", STATE_CHANGE, T0 + 3_840_000, "2026-03-05T09:04:00.000Z", "cn-shanghai",
          state="Stopped"),
    event("b-stop-4", B, "lifecycle", STATE_CHANGE, T0 + 3_900_000, "2026-03-05T09:05:00.000Z", "cn-shanghai",
          state="Stopped"),
    event("e-deleted", E, "lifecycle", STATE_CHANGE, T0 + 5_000_000, "2026-03-05T09:23:20.000Z", "cn-shanghai",
          state="Deleted", instance_type="ecs.t6.small"),
    event("a-deleted", A, "lifecycle", STATE_CHANGE, T0 + 7_200_000, "2026-03-05T10:00:00.000Z", state="Deleted",
          instance_type="ecs.g7.large"),
    event("m-scheduled", M, "maintenance", REBOOT, T0 + 7_260_000, "2026-03-05T10:01:00.000Z",
          event_status="Scheduled", not_before="2026-03-07T18:00:00.000Z"),
    event("m-executing", M, "maintenance", REBOOT, T0 + 7_320_000, "2026-03-05T10:02:00.000Z",
          event_status="Executing"),
    event("d-interrupt", D, "interruption", INTERRUPTION, 1754189467412, "2025-08-03T02:51:07.412Z",
          action="delete", level="WARN"),
]
UIDS = {e["event_uid"] for e in EVENTS}
LIFECYCLE = {e["event_uid"] for e in EVENTS if e["category"] == "lifecycle"}
STOPPED = {"a-stopped", "b-stop-1", "b-stop-2", "b-stop-3", "b-stop-4"}


def create_table(conn, table):
    columns = [f'"{f}" {"INTEGER" if f == "event_time_ms" else "REAL" if f in NUMERIC_FIELDS else "TEXT"}'
               for f in TABLE_FIELDS[table]]
    conn.execute(f'CREATE TABLE "{table}" ({", ".join(columns)}, time_ms INTEGER, topic TEXT, source_host TEXT)')


def insert(conn, table, rows):
    for row in rows:
        names = ", ".join(f'"{name}"' for name in row)
        conn.execute(f'INSERT INTO "{table}" ({names}) VALUES ({", ".join("?" * len(row))})', list(row.values()))


@pytest.fixture(scope="module")
def conn():
    conn = sqlite3.connect(":memory:")
    register_functions(conn)
    create_table(conn, EVENTS_TABLE)
    insert(conn, EVENTS_TABLE, EVENTS)
    yield conn
    conn.close()


def run(conn, query, table=EVENTS_TABLE, **window):
    """Rows as `shipper search` gets them: through SqliteStore, under its authorizer and limits."""
    return SqliteStore(conn).search(query, table=table, limit=window.pop("limit", None), **window).rows


def uids(conn, query, **window):
    """event_uid of each row returned by a search (no SQL part), in the order returned."""
    sql, params = to_sqlite(parse(query), EVENTS_TABLE, **window)
    cursor = conn.execute(sql, params)
    column = [d[0] for d in cursor.description].index("event_uid")
    return [row[column] for row in cursor]


# --- the lifecycle examples of reference/sls.md §7 ---------------------------------------------------

def test_example_one_instance(conn):
    assert set(uids(conn, f"instance_id: {A}")) == {"a-pending", "a-running", "a-stopped", "a-deleted"}


def test_example_stopped_or_deleted_in_a_region(conn):
    query = "__topic__: lifecycle and (state: Stopped or state: Deleted) and region_id: cn-hangzhou"
    assert set(uids(conn, query)) == {"a-stopped", "a-deleted"}


def test_example_scheduled_maintenance(conn):
    assert uids(conn, "__topic__: maintenance and event_status: Scheduled") == ["m-scheduled"]


def test_example_recent_interruptions(conn):
    assert uids(conn, "event_time_ms >= 1772697600000 and __topic__: interruption") == ["c-interrupt"]


def test_example_created_and_released(conn):
    cursor = conn.execute(*to_sqlite(parse(
        "__topic__: lifecycle and (state: Pending or state: Deleted) | select instance_id, "
        "max_by(instance_type, __time__) as type, "
        "min(case when state = 'Pending' then event_time end) as created, "
        "max(case when state = 'Deleted' then event_time end) as released "
        "group by instance_id order by released desc limit 1000"), EVENTS_TABLE))
    assert [d[0] for d in cursor.description] == ["instance_id", "type", "created", "released"]
    assert cursor.fetchall() == [
        (A, "ecs.g7.large", "2026-03-05T08:00:00.000Z", "2026-03-05T10:00:00.000Z"),
        (E, "ecs.t6.small", None, "2026-03-05T09:23:20.000Z"),
        (B, "ecs.c7.xlarge", "2026-03-05T09:01:00.000Z", None),  # not released: NULL sorts last, as in SLS
    ]


def test_example_timeline(conn):
    rows = run(conn, f"instance_id: {A} | select event_time, event_name, state, event_status, level "
                     "order by event_time_ms limit 1000")
    assert rows == [
        ("2026-03-05T08:00:00.000Z", STATE_CHANGE, "Pending", "", "INFO"),
        ("2026-03-05T08:01:00.000Z", STATE_CHANGE, "Running", "", "INFO"),
        ("2026-03-05T09:00:00.000Z", STATE_CHANGE, "Stopped", "", "INFO"),
        ("2026-03-05T10:00:00.000Z", STATE_CHANGE, "Deleted", "", "INFO"),
    ]


def test_example_events_per_state(conn):
    rows = run(conn, "__topic__: lifecycle | select state, count(DISTINCT event_uid) as events "
                     "group by state order by events desc")
    assert rows[0] == ("Stopped", 5)
    assert dict(rows) == {"Stopped": 5, "Pending": 2, "Deleted": 2, "Running": 1}


def test_example_instances_stopped_more_than_three_times(conn):
    rows = run(conn, "__topic__: lifecycle and state: Stopped | select instance_id, count(DISTINCT event_uid) "
                     "as stops group by instance_id having count(DISTINCT event_uid) > 3 order by stops desc limit 100")
    assert rows == [(B, 4)]


def test_example_events_per_hour_and_category(conn):
    rows = run(conn, "* | select date_trunc('hour', __time__) as h, __topic__ as category, "
                     "count(DISTINCT event_uid) as n group by h, category order by h limit 1000")
    assert [row[0] for row in rows] == sorted(row[0] for row in rows)
    assert sorted(rows) == [
        ("2025-08-03 02:00:00.000", "interruption", 1),
        ("2026-03-05 08:00:00.000", "interruption", 1),
        ("2026-03-05 08:00:00.000", "lifecycle", 2),
        ("2026-03-05 09:00:00.000", "lifecycle", 7),
        ("2026-03-05 10:00:00.000", "lifecycle", 1),
        ("2026-03-05 10:00:00.000", "maintenance", 2),
    ]


# --- search semantics --------------------------------------------------------------------------------

@pytest.mark.parametrize("query, expected", [
    ('event_name: "Instance:StateChange"', LIFECYCLE),
    ("event_name: Instance*", UIDS),
    ("event_name: statechange", LIFECYCLE),  # `:` is a default delimiter (the shipped SLS index keeps it whole)
    ("state: stop", set()),  # whole tokens only
    ("state: stop*", STOPPED),
    ("state: st?pped", STOPPED),
    ("state: STOPPED", STOPPED),
    ("state: s*d", STOPPED),
    ("state: p*g", {"a-pending", "b-pending"}),
    ("state: s?d", set()),
    ("instance_type: *", {"a-pending", "b-pending", "e-deleted", "a-deleted"}),
    ("not instance_type: *", UIDS - {"a-pending", "b-pending", "e-deleted", "a-deleted"}),
    ('instance_type: ""', UIDS - {"a-pending", "b-pending", "e-deleted", "a-deleted"}),
    ('instance_name: "web server"', {"a-pending"}),
    ('instance_name: "server web"', {"a-pending"}),  # SLS: a quoted value means each of its tokens
    ('instance_name: #"web server"', {"a-pending"}),  # a phrase: the tokens consecutively, in order
    ('instance_name: #"server web"', set()),
    ('instance_name: #"server"', {"a-pending"}),
    ('instance_name: #"WEB"', {"a-pending"}),
    ('instance_name: "web nginx"', set()),
    ("instance_name: server", {"a-pending"}),
    ("instance_name: serv", set()),
    ("instance_name: serv*", {"a-pending"}),
    ("detail: instanceId", {"a-pending"}),
    (f'detail: "instanceId {A} state"', {"a-pending"}),
    (f'detail: "{A} instanceId"', {"a-pending"}),
    (f'detail: #"{A} instanceId"', set()),
    (f'detail: #"instanceId {A}"', {"a-pending"}),
    # bare words: every text column
    ("cn-shanghai", {"b-pending", "b-stop-1", "b-stop-2", "b-stop-3", "b-stop-4", "e-deleted"}),
    ("cn-shanghai and not stopped", {"b-pending", "e-deleted"}),
    ('"10.0.0.5"', {"a-running"}),
    ('"10.0.0.5 47.1.2.3"', {"a-running"}),  # each token, in any column
    ('#"10.0.0.5 47.1.2.3"', set()),  # a phrase never spans two fields
    ('#"Deleted"', {"e-deleted", "a-deleted"}),
    ('#"state: pending"', {"a-pending"}),  # detail {..."state":"Pending"}: consecutive tokens, delimiters between
    ('#"pending state"', set()),
    ("WARN", {"c-interrupt", "d-interrupt"}),
    ("2026-03-07T18*", {"m-scheduled"}),
    # reserved fields
    ("__source__: shipper-host-1", UIDS),
    ("__topic__: lifecycle not state: Stopped", LIFECYCLE - STOPPED),
    ("__time__ >= 1772701200", {"a-stopped", "b-pending", "b-stop-1", "b-stop-2", "b-stop-3", "b-stop-4",
                                "e-deleted", "a-deleted", "m-scheduled", "m-executing"}),
    ("__time__: 1772697660", {"a-running"}),
    # numbers
    ("event_time_ms: 1772697600000", {"a-pending"}),
    ("event_time_ms in [1772697600000 1772697660000)", {"a-pending"}),
    ("event_time_ms in (1772697600000 1772697660000]", {"a-running"}),
    ("event_time_ms < 1772697600000", {"d-interrupt"}),
    ("not event_time_ms >= 1772697600000", {"d-interrupt"}),
    ("event_time_ms: *", UIDS),
    ("*", UIDS),
    ("* and instance_id: i-bp1m5n8b1v4c7x0z3a6s", {"m-scheduled", "m-executing"}),
])
def test_search(conn, query, expected):
    assert set(uids(conn, query)) == expected


def test_search_returns_newest_first_up_to_the_limit(conn):
    assert uids(conn, "*", limit=3) == ["m-executing", "m-scheduled", "a-deleted"]


def test_time_window_is_half_open(conn):
    window = {"since_ms": T0 + 3_600_000, "until_ms": T0 + 7_200_000}
    assert set(uids(conn, "*", **window)) == {"a-stopped", "b-pending", "b-stop-1", "b-stop-2", "b-stop-3",
                                               "b-stop-4", "e-deleted"}
    assert run(conn, "* | select count(*) as n", **window) == [(7,)]
    assert set(uids(conn, "state: Stopped", since_ms=T0 + 3_800_000)) == {"b-stop-3", "b-stop-4"}


def test_parameters_keep_values_out_of_the_sql_text():
    sql, params = to_sqlite(parse("state: #\"x' or 1=1 --\" and event_time_ms > 5"), EVENTS_TABLE)
    assert "1=1" not in sql and "x'" not in sql
    assert params == ["exact", "x' or 1=1 --", 5]


@pytest.mark.parametrize("query, message", [
    ("stat: Stopped", "unknown field 'stat' in 'ecs-events'; did you mean: state"),
    ("hook: lb_drain", "unknown field 'hook' in 'ecs-events'"),
    ("__tag__:__receive_time__: 1", "unknown field '__tag__:__receive_time__'"),
    ('state: "::"', "'::' has no searchable token"),
    ("state: a/*b", "a wildcard cannot start a word"),
])
def test_search_errors(query, message):
    with pytest.raises(QueryError) as caught:
        to_sqlite(parse(query), EVENTS_TABLE)
    assert message in str(caught.value)


def test_unknown_table():
    with pytest.raises(QueryError, match="unknown table"):
        to_sqlite(parse("*"), "events")


# --- SQL part ----------------------------------------------------------------------------------------

@pytest.mark.parametrize("query, expected", [
    ("* | select __time__ - __time__ % 300 as t, count(*) as n group by t order by t", [
        (1754189400, 1), (1772697600, 2), (1772699400, 1), (1772701200, 5), (1772701500, 1), (1772702400, 1),
        (1772704800, 3)]),
    ("* | select count_if(state = 'Stopped') as stops, count_if(__topic__ = 'maintenance') as m from log",
     [(5, 2)]),
    (f"instance_id: {E} | select arbitrary(region_id) as r", [("cn-shanghai",)]),
    (f"instance_id: {E} | select concat(arbitrary(region_id), '/', 'x') as r", [("cn-shanghai/x",)]),
    ("__topic__: lifecycle | select instance_id, min_by(state, __time__) as first, max_by(state, __time__) as last "
     "group by instance_id order by instance_id", [(E, "Deleted", "Deleted"), (A, "Pending", "Deleted"),
                                                   (B, "Pending", "Stopped")]),
    (f"instance_id: {A} and state: Deleted | select from_unixtime(__time__) as t, "
     "date_format(__time__, '%Y-%m-%d %H:%i:%s') as f, date_format(date_trunc('day', __time__), '%m/%d') as d, "
     "date_format(from_unixtime(__time__ + 61), '%H:%i %p %%') as g",
     [("2026-03-05 10:00:00.000", "2026-03-05 10:00:00", "03/05", "10:01 AM %")]),
    (f"instance_id: {E} | select cast(event_time_ms as varchar) as s, cast('12.5' as double) as d, "
     "try_cast('7' as bigint) as i", [("1772702600000", 12.5, 7)]),
    ("* | select approx_distinct(instance_id) as n", [(6,)]),
    ("* | select count(*) as n from (select distinct instance_id)", [(6,)]),  # FROM log added to a subquery
    ("* | select if(state = 'Stopped', 'down', 'other') as s, count(*) as n where instance_id = "
     f"'{B}' group by s order by s", [("down", 4), ("other", 1)]),
    ("* | select json_extract_scalar(detail, '$.state') as s where detail <> ''", [("Pending",)]),
    ("* | select date_trunc('month', __time__) as m, count(*) as n group by m order by m", [
        ("2025-08-01 00:00:00.000", 1), ("2026-03-01 00:00:00.000", 13)]),
    ("* | select date_trunc('week', __time__) as w group by w order by w", [  # weeks start on Monday
        ("2025-07-28 00:00:00.000",), ("2026-03-02 00:00:00.000",)]),
    ("* | select \"__topic__\" as t, count(*) -- a comment\n group by t order by t",
     [("interruption", 2), ("lifecycle", 10), ("maintenance", 2)]),
    ("* | select 1. as x, 'a(' as s, log.state where log.event_uid = 'c-interrupt'", [(1.0, "a(", "")]),
])
def test_sql(conn, query, expected):
    assert run(conn, query) == expected


@pytest.mark.parametrize("query, expected", [
    ('* | select count(*) as n where "state" = \'Deleted\'', [(2,)]),
    ('* | select "STATE", count(*) "n" where "__topic__" = \'lifecycle\' group by "STATE" order by "n" desc, 1 limit 2',
     [("Stopped", 5), ("Deleted", 2)]),
    ('* | select count(*) as "total" where state = \'Running\' order by "total"', [(1,)]),
])
def test_double_quotes_name_columns_and_aliases(conn, query, expected):
    assert run(conn, query) == expected


def test_sql_without_limit_gets_the_sls_default_or_the_given_limit(conn):
    sql, params = to_sqlite(parse("* | select event_uid order by event_uid"), EVENTS_TABLE)
    assert sql.endswith("LIMIT ?") and params == [100]
    assert run(conn, "* | select event_uid order by event_uid", limit=2) == [("a-deleted",), ("a-pending",)]
    assert len(run(conn, "* | select event_uid order by event_uid limit 3", limit=2)) == 3


@pytest.mark.parametrize("query, message", [
    ("* | select 1; drop table x", "read-only for queries: one SELECT only, no ';' at column 9"),
    ("* | select * from log where pragma = 1", "read-only for queries: 'pragma' is not allowed"),
    ("* | select count(*) as n where state = ?", "'?' (a parameter) is not allowed"),
    ("* | select count(*) as n where state = :s", "':' (a parameter) is not allowed"),
    ("* | select approx_percentile(event_time_ms, 0.5)", "approx_percentile is not supported by the local store"),
    ("* | select time_series(__time__, '5m', '%H:%i', '0') as t group by t",
     "time_series is not supported by the local store"),
    ("* | select date_trunc('fortnight', __time__)", "date_trunc unit 'fortnight' is not one of"),
    ("* | select date_trunc(state, __time__)", "date_trunc needs a literal unit"),
    ("* | select date_format(__time__, state)", "date_format needs a literal format"),
    ("* | select date_format(__time__, '%Y %U')", "'%U' in '%Y %U' is not supported by the local store"),
    ("* | select cast(state as json)", "cast to json is not supported by the local store"),
    ('* | select "__tag__:__receive_time__"', "is not kept by the local store"),
    # SLS reads "x" as a column (Presto); SQLite would take an unknown one for a string
    ('* | select count(*) as n where state = "Deleted"',
     '"Deleted" is not a column of ecs-events: double quotes name a column, as in SLS; write a string in single '
     "quotes: 'Deleted' at column 36 of the SQL part"),
    ('* | select "instance" group by "instance"', '"instance" is not a column of ecs-events'),
])
def test_sql_errors(query, message):
    with pytest.raises(QueryError) as caught:
        to_sqlite(parse(query), EVENTS_TABLE)
    assert message in str(caught.value)


# --- the actions table -------------------------------------------------------------------------------

ACTIONS = [
    {"hook": "lb_drain", "decision": "acted", "instance_id": C, "seconds_before_reclaim": 240.0},
    {"hook": "lb_drain", "decision": "dry-run", "instance_id": C, "seconds_before_reclaim": 200},
    {"hook": "lb_drain", "decision": "dry-run", "instance_id": D, "seconds_before_reclaim": 100},
    {"hook": "restart", "decision": "skipped", "instance_id": B, "seconds_before_reclaim": ""},
    {"hook": "restart", "decision": "acted", "instance_id": A, "seconds_before_reclaim": None},
]


@pytest.fixture(scope="module")
def actions():
    conn = sqlite3.connect(":memory:")
    register_functions(conn)
    create_table(conn, ACTIONS_TABLE)
    insert(conn, ACTIONS_TABLE, [
        {**dict.fromkeys(TABLE_FIELDS[ACTIONS_TABLE], ""), **row, "time_ms": T0 + i, "topic": row["hook"]}
        for i, row in enumerate(ACTIONS)])
    yield conn
    conn.close()


def test_actions_example(actions):
    # reference/sls.md §7's example, with the project's field name for the seconds left
    rows = run(actions, "hook: lb_drain | select decision, count(*) as n, "
                        "avg(cast(seconds_before_reclaim as double)) as avg_left group by decision order by decision",
               ACTIONS_TABLE)
    assert rows == [("acted", 1, 240.0), ("dry-run", 2, 150.0)]


@pytest.mark.parametrize("query, expected", [
    ("seconds_before_reclaim > 150", [(C, 240.0), (C, 200.0)]),  # an empty text never compares as a number
    ("not seconds_before_reclaim > 150", [(D, 100.0), (B, ""), (A, None)]),
    ("seconds_before_reclaim: *", [(C, 240.0), (C, 200.0), (D, 100.0)]),
    ('seconds_before_reclaim: ""', [(B, ""), (A, None)]),
    ("__topic__: restart and decision: acted", [(A, None)]),
])
def test_actions_numeric_field(actions, query, expected):
    rows = run(actions, f"{query} | select instance_id, seconds_before_reclaim order by time_ms", ACTIONS_TABLE)
    assert rows == expected


# --- limits of one search ----------------------------------------------------------------------------

def test_a_query_that_runs_too_long_is_stopped_with_one_clear_line(conn):
    store = SqliteStore(conn, time_limit_seconds=0.2)
    with pytest.raises(QueryError, match=r"^the query ran over 0\.2 s and was stopped; narrow it"):
        store.search("* | select count(*) from log a, log b, log c, log d, log e, log f, log g")
    assert store.search("__topic__: maintenance").rows  # the connection is usable afterwards


def test_no_single_value_may_exhaust_memory(conn):
    with pytest.raises(QueryError, match="too big"):
        SqliteStore(conn).search("* | select length(replace(printf('%.*c', 60000000, 'x'), 'x', 'xx')) as n")
