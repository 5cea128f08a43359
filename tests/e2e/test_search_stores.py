"""`shipper search` gives the same rows from SQLite and from SLS for the same feed (issue 12, item 6).

A simulated fleet with redelivered duplicates is replayed by a host writing both stores, then again by a
second host writing SLS only (its own ledger, so SLS really holds copies, as DESIGN's "from two hosts").
SQLite keeps one copy of each event; `shipper search --store sls` shows each event_uid once (its first copy)
unless --all-copies.
"""
import json
import os
import subprocess
import sys
import time

import pytest

from shipper.simulate import FleetSimulator, write_ndjson
from tests.conftest import REPO
from tests.emulators.sls import SlsEmulator

AK, SK = "LTAIsearchKEY0012", "search-stores-secret-Zx8Cv6"
PROJECT = "ecs-audit"


def shipper(*args, cwd):
    env = dict(os.environ, ALIBABA_CLOUD_ACCESS_KEY_ID=AK, ALIBABA_CLOUD_ACCESS_KEY_SECRET=SK)
    return subprocess.run([sys.executable, "-m", "shipper", *args], cwd=cwd, env=env, capture_output=True,
                          timeout=120)


@pytest.fixture(scope="module")
def stores(tmp_path_factory):
    """A folder whose config.toml reads both stores, after the feed went to SQLite once and to SLS twice."""
    with SlsEmulator(credentials={AK: SK}) as sls:
        sls.create_project(PROJECT)
        for name in ("ecs-events", "shipper-actions", "shipper-deadletter"):
            content = json.loads((REPO / "dashboards" / "index" / f"{name}.json").read_text())
            sls.create_logstore(PROJECT, name, index=content["index"])
        root = tmp_path_factory.mktemp("stores")
        feed = root / "fleet.ndjson"
        sim = FleetSimulator(instances=40, seed=12, start_ms=int(time.time() * 1000) - 7_200_000,
                             duration_s=3600, duplicate_ratio=0.3)
        with feed.open("wb") as fp:
            write_ndjson(sim.events(), fp)
        sls_sink = f'[[sinks]]\ntype = "sls"\nendpoint = "{sls.endpoint}"\nproject = "{PROJECT}"\n'
        both, second_host = root / "host-a", root / "host-b"
        for host, sinks in ((both, '[[sinks]]\ntype = "sqlite"\npath = "./events.db"\n' + sls_sink),
                            (second_host, sls_sink)):
            host.mkdir()
            (host / "config.toml").write_text(f'[shipper]\ndata_dir = "./data"\n{sinks}')
            replayed = shipper("replay", str(feed), cwd=host)
            assert replayed.returncode == 0, replayed.stderr
        yield both


def search(folder, query, store, *extra):
    result = shipper("search", query, "--json", "--limit", "1000", "--store", store, *extra, cwd=folder)
    assert result.returncode == 0, result.stderr
    return [json.loads(line) for line in result.stdout.decode().splitlines()]


def as_text(rows):
    """Rows as comparable values: SLS answers strings, SQLite typed values and NULL."""
    return sorted(tuple(sorted((k, "" if v is None else str(v)) for k, v in row.items())) for row in rows)


@pytest.mark.parametrize("query", [
    "*",
    "state: Stopped",
    "__topic__: lifecycle and (state: Pending or state: Deleted)",
    # SLS's precedence (and > not > or): `not` takes the whole and-chain after it
    "__topic__: lifecycle not state: Running and region_id: cn-hangzhou",
    "not state: Running region_id: cn-hangzhou",
    "state: Stopped or not __topic__: lifecycle and region_id: cn-hangzhou",
    # a quoted value means each word; a phrase the words in order
    'event_name: "Instance:StateChange"',
    'event_name: #"Instance:StateChange"',
    '#"Deleted"',
    "event_time_ms > 0 and state: Running",
])
def test_same_rows_from_sqlite_and_sls(stores, query):
    local = search(stores, query, "sqlite")
    remote = search(stores, query, "sls")
    assert local, f"{query!r} finds nothing: the comparison would prove nothing"
    assert as_text(remote) == as_text(local)


def test_sls_keeps_copies_and_all_copies_shows_them(stores):
    local = search(stores, "*", "sqlite")
    copies = search(stores, "*", "sls", "--all-copies")
    uids = [row["event_uid"] for row in copies]
    assert len(set(uids)) == len(local) and len(uids) >= 2 * len(local)  # two hosts wrote every event


def test_precedence_cases_differ_from_the_old_reading(stores):
    """The precedence queries above are meaningful: the old reading, written out, finds other rows."""
    sls_reading = search(stores, "__topic__: lifecycle not state: Running and region_id: cn-hangzhou", "sqlite")
    old_reading = search(stores, "(__topic__: lifecycle and not state: Running) and region_id: cn-hangzhou", "sqlite")
    assert as_text(sls_reading) != as_text(old_reading)


@pytest.mark.parametrize("limit", ["7", "150"])
def test_limit_counts_events_not_copies(stores, limit):
    """150 events span several 100-row pages of copies; each shown is the copy SQLite kept."""
    local = as_text(search(stores, "*", "sqlite"))
    result = shipper("search", "*", "--json", "--limit", limit, "--store", "sls", cwd=stores)
    remote = [json.loads(line) for line in result.stdout.decode().splitlines()]
    assert len({row["event_uid"] for row in remote}) == len(remote) == int(limit)
    assert set(as_text(remote)) <= set(local)
