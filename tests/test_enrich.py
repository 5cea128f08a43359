"""The instance cache: a released instance keeps its name, type, zone, tags and charge type."""
import json
import sqlite3
import subprocess
import sys

from shipper.actions.openapi import Instance
from shipper.enrich import InstanceCache, read_entry
from shipper.events import new_event

ID = "i-bp1cache00000000000a"


def event(state, time, **values):
    return new_event(instance_id=ID, event_name="Instance:StateChange", state=state, event_time=time, **values)


def test_a_bare_deleted_event_is_filled_from_what_was_seen_alive(tmp_path):
    cache = InstanceCache(tmp_path / "i.db")
    cache.enrich(event("Running", "2025-01-01T00:00:00.000Z", instance_name="web-1", instance_type="ecs.g7.large",
                       private_ip="10.0.0.5", region_id="cn-hangzhou"))
    deleted = event("Deleted", "2025-01-03T00:00:00.000Z")
    cache.enrich(deleted)
    assert (deleted["instance_name"], deleted["instance_type"], deleted["private_ip"], deleted["region_id"]) == \
        ("web-1", "ecs.g7.large", "10.0.0.5", "cn-hangzhou")
    assert cache.get(ID)["last_state"] == "Deleted"


def test_an_events_own_values_win_and_update_the_entry(tmp_path):
    cache = InstanceCache(tmp_path / "i.db")
    cache.enrich(event("Running", "2025-01-01T00:00:00.000Z", instance_name="old-name"))
    renamed = event("Running", "2025-01-02T00:00:00.000Z", instance_name="new-name")
    cache.enrich(renamed)
    assert renamed["instance_name"] == "new-name" and cache.get(ID)["instance_name"] == "new-name"


def test_a_late_older_event_does_not_roll_back_the_last_state(tmp_path):
    cache = InstanceCache(tmp_path / "i.db")
    cache.enrich(event("Running", "2025-01-02T00:00:00.000Z"))
    cache.enrich(event("Stopped", "2025-01-01T00:00:00.000Z"))
    assert cache.get(ID)["last_state"] == "Running"


def test_masked_ids_are_not_cached(tmp_path):
    cache = InstanceCache(tmp_path / "i.db")
    cache.enrich(new_event(instance_id="i-bp1***7xk", instance_name="x"))
    assert cache.get("i-bp1***7xk") is None


def test_describe_answers_add_zone_tags_and_charge_type_and_survive_a_restart(tmp_path):
    cache = InstanceCache(tmp_path / "i.db")
    cache.remember(Instance(instance_id=ID, status="Running", tags={"team": "web", "env": "prod"},
                            charge_type="PrePaid", spot_strategy="NoSpot", zone_id="cn-hangzhou-h",
                            instance_type="ecs.g7.large", instance_name="web-1", private_ips=("10.0.0.5",)))
    cache.close()
    entry = read_entry(tmp_path / "i.db", ID)
    assert entry["zone_id"] == "cn-hangzhou-h" and entry["charge_type"] == "PrePaid"
    assert json.loads(entry["tags"]) == {"env": "prod", "team": "web"}
    again = InstanceCache(tmp_path / "i.db")
    deleted = event("Deleted", "2025-01-03T00:00:00.000Z")
    again.enrich(deleted)
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
    cache = InstanceCache(tmp_path / "data" / "instances.db")  # what the hooks' DescribeInstances would add
    cache.remember(Instance(instance_id=ID, status="Running", tags={}, zone_id="cn-hangzhou-h"))
    cache.close()
    assert subprocess.run([sys.executable, "-m", "shipper", "replay", "b.json"], cwd=tmp_path).returncode == 0
    conn = sqlite3.connect(tmp_path / "data" / "events.db")
    name, kind = conn.execute('SELECT instance_name, instance_type FROM "ecs-events" WHERE state = ?', ("Deleted",)).fetchone()
    assert (name, kind) == ("web-1", "ecs.g7.large")
    life = subprocess.run([sys.executable, "-m", "shipper", "lifecycle", ID], cwd=tmp_path, capture_output=True)
    assert b"cn-hangzhou-h" in life.stdout and b"web-1" in life.stdout
