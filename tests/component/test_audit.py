"""The audit against the inventory emulator and a SQLite store: a simulated fleet with 5% of its events lost
before ingestion gives exactly the matching unrecorded-* findings; replaying the lost events clears them;
`shipper audit` exits 1 while findings are open and 0 once they are cleared."""
import random
import time

import orjson
import pytest
from click.testing import CliRunner

from shipper import config as config_mod, runner
from shipper.cli import main
from shipper.simulate import FleetSimulator, write_ndjson
from shipper.sources.file import replay
from tests.emulators.openapi import OpenApiEmulator

KEY_ID, SECRET = "LTAIauditKEY00000013", "audit-secret-Lk9Jh7Gf5D"
# A day and more ago: the emulator dates every instance's CreationTime a day back, so all of them were created
# after this trail began, and a lost creation is a hole (never a baseline).
START_MS = (int(time.time()) - 86400 - 3 * 3600) * 1000
STATE_CHANGE = "Instance:StateChange"


@pytest.fixture(scope="module")
def fleet():
    sim = FleetSimulator(instances=150, seed=21, start_ms=START_MS, duration_s=3600)
    messages = list(sim.events())
    lost = set(random.Random(5).sample(range(len(messages)), len(messages) // 20))
    return (sim, [m for i, m in enumerate(messages) if i not in lost], [m for i, m in enumerate(messages) if i in lost])


def final_states(messages) -> dict:
    states = {}
    for m in messages:
        if m.event_name == STATE_CHANGE:
            states[m.instance_id] = m.state
    return states


def expected_findings(fleet) -> set:
    """What the lost events leave unrecorded, worked out from the simulator's own truth."""
    _, kept, lost = fleet
    truth = final_states(sorted(kept + lost, key=lambda m: m.time_ms))
    kept_states = {}
    for m in kept:
        if m.event_name == STATE_CHANGE:
            kept_states.setdefault(m.instance_id, set()).add(m.state)
    expected = set()
    for instance_id, final in truth.items():
        seen = kept_states.get(instance_id, set())
        if final != "Deleted" and "Pending" not in seen:
            expected.add(("unrecorded-creation", instance_id))
        if final == "Deleted" and seen and "Deleted" not in seen:
            expected.add(("unrecorded-release", instance_id))
    return expected


@pytest.fixture
def cloud(fleet):
    sim, kept, lost = fleet
    truth = final_states(sorted(kept + lost, key=lambda m: m.time_ms))
    with OpenApiEmulator(credentials={KEY_ID: SECRET}) as api:
        for instance in sim.fleet:
            if truth.get(instance.instance_id, "Deleted") != "Deleted":
                api.add_instance(instance.instance_id, name=instance.name, region_id=instance.region_id,
                                 status=truth[instance.instance_id])
        yield api


def write_config(tmp_path, api, regions, audit: bool):
    path = tmp_path / ("audit.toml" if audit else "ingest.toml")
    path.write_text(f'''
[shipper]
data_dir = "{tmp_path / 'data'}"
[[sinks]]
type = "sqlite"
[openapi]
regions = [{", ".join(f'"{r}"' for r in regions)}]
ecs_endpoint = "{api.endpoint}"
[inventory]
enabled = {"true" if audit else "false"}
interval_seconds = 3600
[audit]
enabled = {"true" if audit else "false"}
''')
    return str(path)


def ingest(tmp_path, config_path, messages):
    feed = tmp_path / "feed.ndjson"
    with feed.open("wb") as fp:
        write_ndjson(messages, fp)
    with runner.delivery(config_mod.load(config_path)) as pipeline:
        summary = replay(feed, pipeline, lambda n: None, 30)
    assert summary.failed == 0 and summary.dead_lettered == 0


def synced(config_path, syncs: int):
    """`syncs` inventory syncs of a running shipper, each one's findings committed before the next."""
    runtime = runner.Runtime(config_mod.load(config_path))
    pipeline = runtime.build_pipeline().start()
    try:
        runtime.start_inventory()
        for _ in range(syncs - 1):
            settle(pipeline)
            runtime.inventory.sync()
        settle(pipeline)
    finally:
        runtime.close([], 10)


def settle(pipeline):
    deadline = time.monotonic() + 10
    while pipeline.inflight and time.monotonic() < deadline:
        time.sleep(0.02)


def audit(config_path):
    result = CliRunner().invoke(main, ["audit", "--json", "--config", config_path])
    return result.exit_code, orjson.loads(result.output) if result.exit_code in (0, 1) else result.output


def test_lost_events_give_exactly_their_findings_and_replaying_them_clears_them(tmp_path, fleet, cloud, monkeypatch):
    monkeypatch.setenv("ALIBABA_CLOUD_ACCESS_KEY_ID", KEY_ID)
    monkeypatch.setenv("ALIBABA_CLOUD_ACCESS_KEY_SECRET", SECRET)
    sim, kept, lost = fleet
    regions = sorted({i.region_id for i in sim.fleet})
    ingest_config, audit_config = write_config(tmp_path, cloud, regions, False), write_config(tmp_path, cloud, regions, True)
    ingest(tmp_path, ingest_config, kept)
    expected = expected_findings(fleet)
    assert {kind for kind, _ in expected} == {"unrecorded-creation", "unrecorded-release"}

    synced(audit_config, syncs=2)                       # a release needs two complete syncs without the instance
    status, report = audit(audit_config)
    assert status == 1
    assert {(f["finding"], f["instance_id"]) for f in report["findings"]} == expected
    assert report["open_total"] == len(expected) and report["baseline"] == 0

    ingest(tmp_path, ingest_config, lost)               # the lost events arrive late
    synced(audit_config, syncs=1)
    status, report = audit(audit_config)
    assert (status, report["open_total"], report["findings"]) == (0, 0, [])
    assert report["created_in_trail"] == report["instances"] == len({m.instance_id for m in kept + lost})


def test_audit_exits_2_when_there_is_no_store_to_read(tmp_path, cloud):
    status, output = audit(write_config(tmp_path, cloud, ["cn-hangzhou"], True))
    assert status == 2 and "no local store yet" in output
