"""Every stored row says what its instance was and why it stopped, whatever the arrival order: a simulated
fleet over several regions, inventoried from the OpenAPI emulator, fed to `shipper replay` in order, shuffled
and reversed."""
import os
import random
import sqlite3
import subprocess
import sys

import pytest

from shipper.normalize import events_from_bytes
from shipper.simulate import FleetSimulator, write_ndjson
from tests.emulators.openapi import OpenApiEmulator

KEY_ID, SECRET = "LTAIidentityKEY0007", "identity-secret-Qw3Er5Ty7U"
START_MS = 1_767_225_600_000  # 2026-01-01T00:00:00Z


@pytest.fixture(scope="module")
def fleet():
    sim = FleetSimulator(instances=200, seed=12, start_ms=START_MS, duration_s=6 * 3600, duplicate_ratio=0.1)
    return sim, list(sim.events())


@pytest.fixture(scope="module")
def cloud(fleet):
    sim, _ = fleet
    with OpenApiEmulator(credentials={KEY_ID: SECRET}) as api:
        api.add_sim_fleet(sim.fleet)
        yield api


def replay(tmp_path, api, regions, messages, inventory=True) -> sqlite3.Connection:
    feed = tmp_path / "feed.ndjson"
    with feed.open("wb") as fp:
        write_ndjson(messages, fp)
    region_list = ", ".join(f'"{r}"' for r in regions)
    (tmp_path / "config.toml").write_text(f'''
[shipper]
data_dir = "./data"
[[sinks]]
type = "sqlite"
[batch]
max_events = 200
[openapi]
regions = [{region_list}]
ecs_endpoint = "{api.endpoint}"
[inventory]
enabled = {"true" if inventory else "false"}
''')
    env = dict(os.environ, ALIBABA_CLOUD_ACCESS_KEY_ID=KEY_ID, ALIBABA_CLOUD_ACCESS_KEY_SECRET=SECRET)
    done = subprocess.run([sys.executable, "-m", "shipper", "replay", str(feed)], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    conn = sqlite3.connect(tmp_path / "data" / "events.db")
    conn.row_factory = sqlite3.Row
    return conn


def regions_of(sim) -> list[str]:
    return sorted({i.region_id for i in sim.fleet})


@pytest.mark.parametrize("order", ["shuffled", "reversed"])
def test_every_row_of_a_known_instance_has_name_type_and_zone_in_any_arrival_order(tmp_path, fleet, cloud, order):
    sim, messages = fleet
    assert len(regions_of(sim)) >= 3
    feed = list(reversed(messages)) if order == "reversed" else random.Random(5).sample(messages, len(messages))
    conn = replay(tmp_path, cloud, regions_of(sim), feed)
    by_id = {i.instance_id: i for i in sim.fleet}
    rows = conn.execute('SELECT * FROM "ecs-events"').fetchall()
    assert len(rows) == len({m.body for m in messages})  # each event once
    wrong = [(r["instance_id"], r["state"], r["instance_name"], r["instance_type"], r["zone_id"]) for r in rows
             if (r["instance_name"], r["instance_type"], r["zone_id"]) !=
             (by_id[r["instance_id"]].name, by_id[r["instance_id"]].instance_type, by_id[r["instance_id"]].zone_id)]
    assert wrong == [], f"{len(wrong)} of {len(rows)} rows lack their instance's identity: {wrong[:5]}"


def test_every_stop_carries_the_cause_the_simulator_planned(tmp_path, fleet, cloud):
    sim, messages = fleet
    planned = {}
    for message in messages:
        if message.state in ("Stopped", "Deleted"):
            [record] = events_from_bytes(message.body, received_ms=0)
            planned[record["event_uid"]] = message.stop_cause
    assert set(planned.values()) == {"spot-reclaim", "system", "billing-lock", "expired", "user-or-api"}
    conn = replay(tmp_path, cloud, regions_of(sim), messages)
    stored = {r["event_uid"]: r["stop_cause"] for r in
              conn.execute('SELECT event_uid, stop_cause FROM "ecs-events" WHERE state IN (\'Stopped\', \'Deleted\')')}
    assert stored == planned


def test_with_the_inventory_off_nothing_asks_the_cloud_and_zones_stay_unknown(tmp_path, fleet, cloud):
    """The embedded default: rows are filled only from what earlier-arrived events said (events carry no
    zone); identity on every row needs the inventory (the tests above)."""
    sim, messages = fleet
    calls = len(cloud.calls())
    conn = replay(tmp_path, cloud, regions_of(sim), list(reversed(messages)), inventory=False)
    rows = conn.execute('SELECT zone_id FROM "ecs-events"').fetchall()
    assert rows and all(r["zone_id"] == "" for r in rows)
    assert len(cloud.calls()) == calls
