"""`shipper search` and `shipper lifecycle` as an operator reads them (issue 14, item 6): time windows in the
forms the error names, columns and formats, saved searches, and the same value types from SQLite and SLS."""
import csv
import io
import json
import os
import re
import subprocess
import sys

import pytest

from shipper.cloud.credentials import Credentials
from shipper.hooks import action_record
from shipper.sinks.sls import SlsSink, SlsSinkSettings
from shipper.sinks.sqlite import SqliteSink
from tests.conftest import FIXTURES, REPO
from tests.emulators.sls import SlsEmulator

AK, SK = "LTAIsearchCLI0014", "search-cli-secret-Hj3Kl5"
PROJECT = "ecs-audit"
INSTANCE = "i-uf6a8k2m5q9t3w7x1z4c"  # tests/fixtures: Pending .. Stopped on 2025-03-18


def shipper(*args, cwd):
    env = dict(os.environ, ALIBABA_CLOUD_ACCESS_KEY_ID=AK, ALIBABA_CLOUD_ACCESS_KEY_SECRET=SK)
    return subprocess.run([sys.executable, "-m", "shipper", *args], cwd=cwd, env=env, capture_output=True,
                          timeout=60)


def ok(*args, cwd) -> str:
    result = shipper(*args, cwd=cwd)
    assert result.returncode == 0, result.stderr.decode()
    return result.stdout.decode()


def refused(*args, cwd) -> str:
    """The one error line of a refused command."""
    result = shipper(*args, cwd=cwd)
    err = result.stderr.decode()
    assert result.returncode != 0 and "Traceback" not in err, err
    assert len(err.strip().splitlines()) == 1, err
    return err


def actions(uid: str) -> list[dict]:
    """Two shipper-actions rows, as the hooks write them: an lb_drain failure with its reclaim time, a skip."""
    event = {"event_uid": uid, "instance_id": "i-bp1f3kq7z2m9w4x6c8v0"}
    return [action_record(hook="lb_drain", trigger="interruption", event=event, decision="acted", reason="opted-in",
                          outcome="failed", error_code="IncorrectBackendServerStatus", stop_cause="spot-reclaim",
                          finished=True, seconds_before_reclaim=241.5, detail='{"groups":["rsp-1"]}'),
            action_record(hook="restart", trigger="lifecycle", event=event, decision="skipped",
                          reason="not-opted-in")]


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    """The project's fixtures replayed into a SQLite store, and two action records."""
    root = tmp_path_factory.mktemp("search-cli")
    (root / "config.toml").write_text('[[sinks]]\ntype = "sqlite"\npath = "./data/events.db"\n')
    assert shipper("replay", str(FIXTURES), cwd=root).returncode == 0
    sink = SqliteSink(root / "data" / "events.db")
    sink.write("shipper-actions", actions("a1b2c3d4-0000-4000-8000-1234567890ab"))
    sink.close()
    return root


def rows(text: str) -> list[dict]:
    return [json.loads(line) for line in text.splitlines()]


# --- time windows ---------------------------------------------------------------------------------------

def test_from_and_to_take_every_form_their_error_names(store):
    err = refused("search", "*", "--from", "yesterday", cwd=store)
    forms = re.search(r"use (.*)$", err.strip()).group(1).replace(" or ", ", ").split(", ")
    examples = {"epoch seconds": "1749863702"}
    assert len(forms) >= 3, err
    for form in forms:
        for option in ("--from", "--to"):
            shipper_form = examples.get(form, form)
            assert shipper("search", "*", option, shipper_form, cwd=store).returncode == 0, (option, form)


def test_a_date_as_from_and_to_is_that_whole_day(store):
    day = rows(ok("search", "*", "--from", "2025-04-28", "--to", "2025-04-28", "--json", cwd=store))
    assert [r["event_time"] for r in day] == ["2025-04-28T22:53:18.427Z"]  # the only event of that day


# --- formats and columns --------------------------------------------------------------------------------

def test_csv_json_and_columns_show_the_same_rows(store):
    as_json = rows(ok("search", "state: Stopped", "--json", "--columns", "instance_id,event_time_ms", cwd=store))
    assert as_json and all(list(r) == ["instance_id", "event_time_ms"] for r in as_json)
    assert all(isinstance(r["event_time_ms"], int) for r in as_json)
    assert rows(ok("search", "state: Stopped", "--format", "json", "--columns", "instance_id,event_time_ms",
                   cwd=store)) == as_json
    as_csv = list(csv.DictReader(io.StringIO(ok("search", "state: Stopped", "--format", "csv", "--columns",
                                                "instance_id,event_time_ms", cwd=store))))
    assert as_csv == [{k: str(v) for k, v in r.items()} for r in as_json]
    every = next(csv.reader(io.StringIO(ok("search", "state: Stopped", "--format", "csv", cwd=store))))
    assert "raw" in every and "stop_cause" in every  # without --columns, csv has every column, as json
    table = ok("search", "state: Stopped", "--columns", "state,instance_id", cwd=store).splitlines()
    assert table[0].split() == ["state", "instance_id"] and table[2].startswith("Stopped ")


def test_columns_and_format_mistakes_are_one_line(store):
    assert "--columns: no column 'nope'" in refused("search", "*", "--columns", "event_time,nope", cwd=store)
    assert "drop one of --json and --format csv" in refused("search", "*", "--json", "--format", "csv", cwd=store)


def test_default_tables_show_what_tells_rows_apart(store):
    interruptions = ok("search", "__topic__: interruption", cwd=store).splitlines()
    assert {"not_before", "instance_type", "action"} <= set(interruptions[0].split())
    assert "2025-05-17T13:35:06.812Z" in interruptions[-1] + interruptions[-2]  # a reclaim time is shown
    running = ok("search", "state: Running", cwd=store).splitlines()
    assert "not_before" not in running[0].split()  # only when a row has one
    table = ok("search", "*", "--table", "shipper-actions", cwd=store).splitlines()
    assert max(len(line) for line in table) < 150, table  # every column was 237 wide
    assert {"decision", "outcome", "error_code"} <= set(table[0].split())
    assert "IncorrectBackendServerStatus" in "\n".join(table)


# --- saved searches -------------------------------------------------------------------------------------

def test_saved_search_runs_its_query_on_its_logstore(store):
    saved = json.loads((REPO / "dashboards" / "savedsearches" / "dead-letters.json").read_text())
    found = rows(ok("search", "--saved", "dead-letters", "--json", cwd=store))
    assert found == rows(ok("search", saved["searchQuery"], "--table", saved["logstore"], "--json", cwd=store))
    assert {r["reason"] for r in found} == {"not-json", "not-an-event"}
    interruptions = ok("search", "--saved", "interruptions", cwd=store).splitlines()
    assert "not_before" in interruptions[0].split() and len(interruptions) == 2 + 3


def test_unknown_saved_search_lists_the_names(store):
    err = refused("search", "--saved", "interuptions", cwd=store)
    assert "no saved search 'interuptions'" in err and "interruptions, " in err and "stops-by-cause" in err
    assert "one of them" in refused("search", "*", "--saved", "interruptions", cwd=store)
    assert "drop --table" in refused("search", "--saved", "interruptions", "--table", "ecs-events", cwd=store)


# --- lifecycle --json -----------------------------------------------------------------------------------

def test_lifecycle_json_starts_with_the_summary(store):
    first, *timeline = rows(ok("lifecycle", INSTANCE, "--json", cwd=store))
    summary = first["summary"]
    text = ok("lifecycle", INSTANCE, cwd=store)
    for key, value in summary.items():
        assert f"{key + ':':<16}{value}" in text
    assert summary["created"] == "2025-03-18T02:22:04.517Z" and summary["events"] == len(timeline) == 5
    assert [e["state"] for e in timeline] == ["Pending", "Starting", "Running", "Stopping", "Stopped"]


# --- the same value types from both stores --------------------------------------------------------------

@pytest.fixture(scope="module")
def both(tmp_path_factory):
    """A folder whose config writes and reads SQLite and SLS (the emulator), after the same feed went to both."""
    with SlsEmulator(credentials={AK: SK}) as sls:
        sls.create_project(PROJECT)
        for name in ("ecs-events", "shipper-actions"):
            index = json.loads((REPO / "dashboards" / "index" / f"{name}.json").read_text())["index"]
            sls.create_logstore(PROJECT, name, index=index)
        root = tmp_path_factory.mktemp("both-stores")
        (root / "config.toml").write_text(
            '[shipper]\ndata_dir = "./data"\n[[sinks]]\ntype = "sqlite"\npath = "./events.db"\n'
            f'[[sinks]]\ntype = "sls"\nendpoint = "{sls.endpoint}"\nproject = "{PROJECT}"\n')
        for name in ("a_statechange_pending.json", "a_statechange_stopped.json", "c_statechange_stopped.json",
                     "a_preemptible_interruption.json"):
            ok("replay", str(FIXTURES / name), cwd=root)
        records = actions("e5f6a7b8-0000-4000-8000-1234567890ab")
        SqliteSink(root / "events.db").write("shipper-actions", records)
        SlsSink(SlsSinkSettings(endpoint=sls.endpoint, project=PROJECT), Credentials(AK, SK)).write(
            "shipper-actions", records)
        yield root


@pytest.mark.parametrize("store", ["sqlite", "sls"])
def test_numeric_fields_are_numbers_in_search_and_lifecycle(both, store):
    found = rows(ok("search", "*", "--json", "--store", store, cwd=both))
    assert len(found) == 4 and all(isinstance(r["event_time_ms"], int) for r in found)
    instance = next(r["instance_id"] for r in found if r["state"] == "Stopped")
    _, *timeline = rows(ok("lifecycle", instance, "--json", "--store", store, cwd=both))
    assert timeline and all(isinstance(e["event_time_ms"], int) for e in timeline)
    assert {e["event_uid"]: e["event_time_ms"] for e in timeline} == \
        {r["event_uid"]: r["event_time_ms"] for r in found if r["instance_id"] == instance}
    decisions = rows(ok("search", "*", "--table", "shipper-actions", "--json", "--store", store, cwd=both))
    assert sorted(r["seconds_before_reclaim"] for r in decisions if r["seconds_before_reclaim"]) == [241.5]
    assert [r["seconds_before_reclaim"] for r in decisions if r["hook"] == "restart"] == [None]


def test_lifecycle_json_is_the_same_from_both_stores(both):
    instance = rows(ok("search", "state: Stopped", "--json", "--limit", "1", cwd=both))[0]["instance_id"]
    sqlite, sls = (ok("lifecycle", instance, "--json", "--store", s, cwd=both) for s in ("sqlite", "sls"))
    assert sqlite == sls


# --- shell completion -----------------------------------------------------------------------------------

def test_shell_completion_works_as_the_readme_says(tmp_path):
    readme = (REPO / "README.md").read_text()
    assert 'eval "$(_SHIPPER_COMPLETE=bash_source shipper)"' in readme
    env = dict(os.environ, _SHIPPER_COMPLETE="bash_source")
    script = subprocess.run([sys.executable, "-m", "shipper"], env=env, capture_output=True, timeout=30, cwd=tmp_path)
    assert b"_shipper_completion()" in script.stdout
    env.update(_SHIPPER_COMPLETE="bash_complete", COMP_WORDS="shipper search --format ", COMP_CWORD="3")
    answer = subprocess.run([sys.executable, "-m", "shipper"], env=env, capture_output=True, timeout=30, cwd=tmp_path)
    assert answer.stdout.decode().split() == ["plain,table", "plain,json", "plain,csv"]
