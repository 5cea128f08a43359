"""The instance registry: a released instance keeps its name, type, zone, tags and charge type."""
import json
import logging
import sqlite3
import subprocess
import sys

import pytest

from shipper.telemetry import metrics
from shipper.instances.model import Instance
from shipper.instances.registry import InstanceRegistry, read_entry
from shipper.events import new_event
from shipper.sinks.sqlite import StoreError
from tests.fakes import FakeClock

ID = "i-bp1cache00000000000a"


def event(state, time, **values):
    return new_event(instance_id=ID, event_name="Instance:StateChange", state=state, event_time=time, **values)


def test_a_bare_deleted_event_is_filled_from_what_was_seen_alive(tmp_path):
    cache = InstanceRegistry(tmp_path / "i.db")
    cache.enrich([event("Running", "2025-01-01T00:00:00.000Z", instance_name="web-1", instance_type="ecs.g7.large",
                       private_ip="10.0.0.5", region_id="cn-hangzhou")])
    deleted = event("Deleted", "2025-01-03T00:00:00.000Z")
    cache.enrich([deleted])
    assert (deleted["instance_name"], deleted["instance_type"], deleted["private_ip"], deleted["region_id"]) == \
        ("web-1", "ecs.g7.large", "10.0.0.5", "cn-hangzhou")
    assert cache.get(ID)["last_state"] == "Deleted"


def test_an_events_own_values_win_and_update_the_entry(tmp_path):
    cache = InstanceRegistry(tmp_path / "i.db")
    cache.enrich([event("Running", "2025-01-01T00:00:00.000Z", instance_name="old-name")])
    renamed = event("Running", "2025-01-02T00:00:00.000Z", instance_name="new-name")
    cache.enrich([renamed])
    assert renamed["instance_name"] == "new-name" and cache.get(ID)["instance_name"] == "new-name"


def test_a_late_older_event_does_not_roll_back_the_last_state(tmp_path):
    cache = InstanceRegistry(tmp_path / "i.db")
    cache.enrich([event("Running", "2025-01-02T00:00:00.000Z")])
    cache.enrich([event("Stopped", "2025-01-01T00:00:00.000Z")])
    assert cache.get(ID)["last_state"] == "Running"


def test_masked_ids_are_not_cached(tmp_path):
    cache = InstanceRegistry(tmp_path / "i.db")
    cache.enrich([new_event(instance_id="i-bp1***7xk", instance_name="x")])
    assert cache.get("i-bp1***7xk") is None


def test_describe_answers_add_zone_tags_and_charge_type_and_survive_a_restart(tmp_path):
    cache = InstanceRegistry(tmp_path / "i.db")
    cache.remember(Instance(instance_id=ID, status="Running", tags={"team": "web", "env": "prod"},
                            charge_type="PrePaid", spot_strategy="NoSpot", zone_id="cn-hangzhou-h",
                            instance_type="ecs.g7.large", instance_name="web-1", private_ips=("10.0.0.5",)))
    cache.close()
    entry = read_entry(tmp_path / "i.db", ID)
    assert entry["zone_id"] == "cn-hangzhou-h" and entry["charge_type"] == "PrePaid"
    assert json.loads(entry["tags"]) == {"env": "prod", "team": "web"}
    again = InstanceRegistry(tmp_path / "i.db")
    deleted = event("Deleted", "2025-01-03T00:00:00.000Z")
    again.enrich([deleted])
    assert deleted["instance_name"] == "web-1"


def test_replayed_release_is_stored_with_name_and_lifecycle_shows_cached_zone(tmp_path):
    (tmp_path / "config.toml").write_text('[shipper]\ndata_dir = "./data"\n[[sinks]]\ntype = "sqlite"\n')
    base = {"name": "Instance:StateChange", "resourceId": f"acs:ecs:cn-hangzhou:1:instance/{ID}", "regionId": "cn-hangzhou"}
    running = dict(base, id="r1", eventTime="20250101T080000.000+0800",
                   content={"resourceId": ID, "state": "Running", "instanceName": "web-1", "instanceType": "ecs.g7.large"})
    deleted = dict(base, id="d1", eventTime="20250103T080000.000+0800", content={"resourceId": ID, "state": "Deleted"})
    (tmp_path / "a.json").write_text(json.dumps(running))
    (tmp_path / "b.json").write_text(json.dumps(deleted))
    replay = subprocess.run([sys.executable, "-m", "shipper", "replay", "a.json"], cwd=tmp_path, capture_output=True)
    assert replay.returncode == 0, replay.stderr
    cache = InstanceRegistry(tmp_path / "data" / "instances.db")  # what the hooks' DescribeInstances would add
    cache.remember(Instance(instance_id=ID, status="Running", tags={}, zone_id="cn-hangzhou-h"))
    cache.close()
    assert subprocess.run([sys.executable, "-m", "shipper", "replay", "b.json"], cwd=tmp_path).returncode == 0
    conn = sqlite3.connect(tmp_path / "data" / "events.db")
    name, kind = conn.execute('SELECT instance_name, instance_type FROM "ecs-events" WHERE state = ?', ("Deleted",)).fetchone()
    assert (name, kind) == ("web-1", "ecs.g7.large")
    life = subprocess.run([sys.executable, "-m", "shipper", "lifecycle", ID], cwd=tmp_path, capture_output=True)
    assert b"cn-hangzhou-h" in life.stdout and b"web-1" in life.stdout


def test_a_save_that_finds_the_disk_full_keeps_its_entries_and_saves_them_once_space_returns(tmp_path):
    cache = InstanceRegistry(tmp_path / "i.db")
    cache.enrich([event("Running", "2025-01-01T00:00:00.000Z", instance_name="first")])
    cache.save()
    pages = cache._conn.execute("PRAGMA page_count").fetchone()[0]
    cache._conn.execute(f"PRAGMA max_page_count = {pages}")  # the disk is full: no page can be added
    for i in range(300):
        cache.enrich([new_event(instance_id=f"i-full{i:04d}", instance_name="x" * 200, event_time="2025-01-02T00:00:00.000Z")])
    for _ in range(2):  # the second try must fail the same way, not on a transaction left open
        with pytest.raises(sqlite3.OperationalError, match="database or disk is full"):
            cache.save()
    cache._conn.execute("PRAGMA max_page_count = 1000000")  # space returns
    assert cache.save() == 300
    cache.close()
    saved = sqlite3.connect(tmp_path / "i.db").execute("SELECT count(*) FROM instances").fetchone()[0]
    assert saved == 301


def test_try_save_never_raises_logs_one_line_per_outage_and_counts_each_failure(tmp_path, monkeypatch, caplog):
    cache = InstanceRegistry(tmp_path / "i.db")
    cache.enrich([event("Running", "2025-01-01T00:00:00.000Z", instance_name="web-1")])
    real_save, failures = InstanceRegistry.save, iter([True, True, False])

    def save(self):
        if next(failures, False):
            raise sqlite3.OperationalError("disk I/O error")
        return real_save(self)

    monkeypatch.setattr(InstanceRegistry, "save", save)
    before = metrics.CACHE_SAVE_ERRORS.total()
    assert [cache.try_save() for _ in range(3)] == [False, False, True]
    assert metrics.CACHE_SAVE_ERRORS.total() - before == 2
    errors = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert len(errors) == 1 and "disk I/O error" in errors[0].getMessage() and str(tmp_path) in errors[0].getMessage()
    assert read_entry(tmp_path / "i.db", ID)["instance_name"] == "web-1"


def test_describe_answers_with_lone_surrogates_are_stored_with_replacement_characters(tmp_path):
    cache = InstanceRegistry(tmp_path / "i.db")
    cache.remember(Instance(instance_id=ID, status="Running", tags={"team\ud800": "w\udc00b"}, instance_name="n\ud800"))
    assert cache.save() == 1
    entry = read_entry(tmp_path / "i.db", ID)
    assert entry["instance_name"] == "n?" and json.loads(entry["tags"]) == {"team?": "w?b"}


def damage_pages(path):
    data = bytearray(path.read_bytes())
    data[4096:] = b"\x5a" * (len(data) - 4096)  # every page but the header's
    path.write_bytes(bytes(data))


@pytest.mark.parametrize("damage", ["not a database", "damaged pages"])
def test_a_damaged_cache_is_moved_aside_with_one_line_and_a_fresh_one_started(tmp_path, caplog, damage):
    path = tmp_path / "i.db"
    if damage == "not a database":
        path.write_bytes(b"this is not an sqlite file" * 100)
    else:
        cache = InstanceRegistry(path)
        for i in range(50):
            cache.enrich([new_event(instance_id=f"i-{i:04d}", instance_name="x" * 300, event_time="2025-01-01")])
        cache.close()
        damage_pages(path)
    cache = InstanceRegistry(path)
    cache.enrich([event("Running", "2025-01-01T00:00:00.000Z", instance_name="web-1")])
    cache.close()
    assert read_entry(path, ID)["instance_name"] == "web-1"
    (aside,) = tmp_path.glob("i.db.corrupt-*[0-9]")
    assert aside.stat().st_size > 0
    (line,) = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    assert "damaged" in line and aside.name in line and "\n" not in line


def test_a_cache_that_cannot_be_opened_is_one_line_naming_the_file(tmp_path):
    (tmp_path / "i.db").mkdir()
    with pytest.raises(StoreError, match=r"i\.db: cannot open the instance registry: .*; fix or remove the file"):
        InstanceRegistry(tmp_path / "i.db")


def test_replay_with_a_damaged_cache_starts_instead_of_a_traceback(tmp_path, fixtures_dir):
    (tmp_path / "config.toml").write_text('[shipper]\ndata_dir = "./data"\n[[sinks]]\ntype = "sqlite"\n')
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "instances.db").write_bytes(b"\x00garbage" * 512)
    result = subprocess.run([sys.executable, "-m", "shipper", "replay", str(fixtures_dir / "a_statechange_running.json")],
                            cwd=tmp_path, capture_output=True)
    assert result.returncode == 0, result.stderr
    assert b"Traceback" not in result.stderr


# -- the registry grown up: describe answers first, lookups, stop causes, ordering --------------------------

def described(instance_id=ID, **overrides) -> Instance:
    fields = dict(instance_id=instance_id, status="Running", tags={"team": "web"}, charge_type="PostPaid",
                  spot_strategy="NoSpot", zone_id="cn-shanghai-e", region_id="cn-shanghai",
                  instance_type="ecs.c7.large", instance_name="api-7", private_ips=("172.19.0.7",))
    return Instance(**(fields | overrides))


def at(state, ms, **values):
    return new_event(instance_id=ID, event_name="Instance:StateChange", category="lifecycle", state=state,
                     event_time_ms=str(ms), event_time=f"2025-01-01T00:00:{ms // 1000 % 60:02d}.{ms % 1000:03d}Z",
                     event_uid=f"{state}-{ms}", **values)


def test_a_deleted_event_arriving_first_is_filled_from_the_inventory(tmp_path):
    registry = InstanceRegistry(tmp_path / "i.db")
    registry.remember(described())
    deleted = at("Deleted", 5000)
    registry.enrich([deleted])
    assert (deleted["instance_name"], deleted["instance_type"], deleted["zone_id"], deleted["region_id"],
            deleted["charge_type"], deleted["spot_strategy"], json.loads(deleted["tags"])) == \
        ("api-7", "ecs.c7.large", "cn-shanghai-e", "cn-shanghai", "PostPaid", "NoSpot", {"team": "web"})
    assert deleted["stop_cause"] == "user-or-api"


def test_unknown_instances_of_a_batch_are_looked_up_together_per_region_and_not_asked_again(tmp_path):
    asked = []
    registry = InstanceRegistry(tmp_path / "i.db", clock=FakeClock())

    def lookup(wanted):
        asked.append({region: sorted(ids) for region, ids in wanted.items()})
        registry.remember(described())  # the other one is gone (released): absent from the answer

    registry.set_lookup(lookup)
    other = "i-uf6gone000000000001"
    batch = [at("Running", 1000, region_id="cn-shanghai"),
             new_event(instance_id=other, state="Deleted", region_id="cn-shanghai", event_uid="x"),
             at("Stopping", 2000, region_id="cn-shanghai")]
    registry.enrich(batch)
    assert asked == [{"cn-shanghai": sorted([ID, other])}]
    assert batch[0]["zone_id"] == batch[2]["zone_id"] == "cn-shanghai-e" and batch[1]["zone_id"] == ""
    registry.enrich([new_event(instance_id=other, state="Deleted", region_id="cn-shanghai", event_uid="y")])
    assert len(asked) == 1  # described: known; released: not asked again within LOOKUP_AGAIN_SECONDS


def test_a_failed_or_missing_lookup_leaves_the_rows_as_they_are(tmp_path):
    registry = InstanceRegistry(tmp_path / "i.db", lookup=lambda wanted: None)
    row = at("Stopped", 1000, instance_name="kept")
    registry.enrich([row])
    assert (row["instance_name"], row["zone_id"], row["stop_cause"]) == ("kept", "", "user-or-api")


@pytest.mark.parametrize("evidence, cause", [
    (new_event(event_name="Instance:PreemptibleInstanceInterruption", category="interruption"), "spot-reclaim"),
    (new_event(event_name="Instance:SystemFailure.Reboot", category="failure"), "system"),
    (new_event(event_name="Instance:AccountUnbalanced.Stop", category="lifecycle"), "billing-lock"),
])
def test_a_stop_gets_the_cause_an_earlier_event_explains_even_across_a_restart(tmp_path, evidence, cause):
    registry = InstanceRegistry(tmp_path / "i.db")
    registry.enrich([evidence | {"instance_id": ID, "event_uid": "e-1", "event_time_ms": "1000"}])
    registry.close()
    again = InstanceRegistry(tmp_path / "i.db")
    stop = at("Deleted", 200_000)
    again.enrich([stop])
    assert stop["stop_cause"] == cause


def test_the_lock_the_inventory_saw_explains_a_stop(tmp_path):
    registry = InstanceRegistry(tmp_path / "i.db")
    registry.remember(described(lock_reasons=("financial",)))
    stop = at("Stopped", 1000)
    registry.enrich([stop])
    assert stop["stop_cause"] == "billing-lock"
    registry.remember(described())  # the lock lifted
    later = at("Stopped", 9000)
    registry.enrich([later])
    assert later["stop_cause"] == "user-or-api"


@pytest.mark.parametrize("arrival", [("Starting", "Stopped"), ("Stopped", "Starting")])
def test_a_tie_in_event_time_is_broken_by_the_lifecycle_order_not_by_arrival(tmp_path, arrival):
    registry = InstanceRegistry(tmp_path / "i.db")
    registry.enrich([at(state, 7000) for state in arrival])
    assert registry.get(ID)["last_state"] == "Stopped"  # Pending < Starting < Running < Stopping < Stopped < Deleted


def test_a_registry_file_of_an_earlier_version_gains_the_new_columns(tmp_path):
    path = tmp_path / "i.db"
    old = sqlite3.connect(path)
    old.execute("CREATE TABLE instances (instance_id TEXT PRIMARY KEY, instance_name TEXT NOT NULL DEFAULT '')")
    old.execute("INSERT INTO instances VALUES (?, 'old-web')", (ID,))
    old.commit()
    old.close()
    registry = InstanceRegistry(path)
    deleted = at("Deleted", 1000)
    registry.enrich([deleted])
    registry.close()
    assert deleted["instance_name"] == "old-web"
    assert read_entry(path, ID)["last_state"] == "Deleted"
