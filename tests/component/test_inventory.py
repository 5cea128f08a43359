"""The inventory sync and the lookups: the real OpenAPI client against the emulator, feeding the registry."""
import time

import pytest

from shipper.cloud import Credentials
from shipper.cloud.openapi import OpenApi
from shipper.config import OpenApiSettings
from shipper.events import new_event
from shipper.instances.inventory import InventorySync, Lookups
from shipper.instances.registry import InstanceRegistry
from shipper.simulate import FleetSimulator
from shipper.telemetry import metrics
from tests.emulators.openapi import OpenApiEmulator
from tests.fakes import FakeClock

KEY_ID, SECRET = "LTAIinventoryKEY01", "inventory-secret-Zx9Cv7Bn5M"


@pytest.fixture
def emulator():
    with OpenApiEmulator(credentials={KEY_ID: SECRET}) as api:
        yield api


@pytest.fixture
def fleet():
    """Over 100 instances in the biggest region (several DescribeInstances pages), spread over 3+ regions."""
    return FleetSimulator(instances=320, seed=3, start_ms=1_767_225_600_000).fleet


def wired(emulator, tmp_path, regions, **overrides):
    registry = InstanceRegistry(tmp_path / "instances.db")
    settings = OpenApiSettings(regions=tuple(regions), ecs_endpoint=emulator.endpoint, timeout_seconds=5.0,
                               **overrides)
    api = OpenApi(settings, Credentials(KEY_ID, SECRET), sleep=FakeClock().sleep, on_instance=registry.remember)
    return registry, api


def regions_of(fleet) -> list[str]:
    return sorted({i.region_id for i in fleet})


def test_a_sync_lists_every_instance_of_every_region_through_paging(emulator, tmp_path, fleet):
    emulator.add_sim_fleet(fleet)
    registry, api = wired(emulator, tmp_path, regions_of(fleet))
    assert len(regions_of(fleet)) >= 3
    assert max(sum(1 for i in fleet if i.region_id == r) for r in regions_of(fleet)) > 100
    assert InventorySync(api, 600).sync() == len(fleet)
    for sim in fleet:
        entry = registry.get(sim.instance_id)
        assert (entry["instance_name"], entry["zone_id"], entry["region_id"], entry["charge_type"]) == \
            (sim.name, sim.zone_id, sim.region_id, sim.charge_type)
    assert emulator.request_counts()["DescribeInstances"] > len(regions_of(fleet))  # the big region: pages


def test_all_regions_come_from_describe_regions(emulator, tmp_path, fleet):
    emulator.add_sim_fleet(fleet)
    registry, api = wired(emulator, tmp_path, ["all"])
    assert InventorySync(api, 600).sync() == len(fleet)
    assert emulator.request_counts()["DescribeRegions"] == 1


def test_a_failing_region_is_counted_and_the_others_still_listed_then_it_recovers(emulator, tmp_path, fleet):
    emulator.add_sim_fleet(fleet)
    registry, api = wired(emulator, tmp_path, regions_of(fleet))
    before = metrics.INVENTORY_ERRORS.total()
    emulator.fail_next("Forbidden.RAM", "DescribeInstances")  # the first region's first page: not retryable
    seen = InventorySync(api, 600).sync()
    first = regions_of(fleet)[0]
    assert seen == sum(1 for i in fleet if i.region_id != first)
    assert metrics.INVENTORY_ERRORS.total() == before + 1
    assert InventorySync(api, 600).sync() == len(fleet)


def test_lookups_fill_a_batch_in_one_call_per_region(emulator, tmp_path, fleet):
    emulator.add_sim_fleet(fleet[:30])
    registry, api = wired(emulator, tmp_path, regions_of(fleet))
    registry.set_lookup(Lookups(api, wait_seconds=5.0, default_region="cn-hangzhou"))
    batch = [new_event(instance_id=i.instance_id, region_id=i.region_id, event_uid=f"u{n}", state="Running")
             for n, i in enumerate(fleet[:30])]
    registry.enrich(batch)
    assert all(r["zone_id"] == i.zone_id and r["instance_type"] == i.instance_type for r, i in zip(batch, fleet))
    assert emulator.request_counts()["DescribeInstances"] == len({i.region_id for i in fleet[:30]})


def test_a_slow_lookup_holds_the_batch_no_longer_than_its_wait_and_fills_later_events(emulator, tmp_path, fleet):
    emulator.add_sim_fleet(fleet[:1])
    registry, api = wired(emulator, tmp_path, regions_of(fleet))
    lookups = Lookups(api, wait_seconds=0.3, default_region="cn-hangzhou")
    registry.set_lookup(lookups)
    emulator.set_latency(1.5, "DescribeInstances")
    sim = fleet[0]
    first = new_event(instance_id=sim.instance_id, region_id=sim.region_id, event_uid="a", state="Running")
    late = metrics.LOOKUPS.total()
    started = time.monotonic()
    registry.enrich([first])
    assert time.monotonic() - started < 1.2
    assert first["zone_id"] == "" and metrics.LOOKUPS.total() == late + 1  # written as it is, counted late
    time.sleep(1.6)  # the late answer still reaches the registry
    second = new_event(instance_id=sim.instance_id, event_uid="b", state="Stopped")
    registry.enrich([second])
    assert second["zone_id"] == sim.zone_id
    lookups.close()


def test_check_reaches_ecs_in_every_region_for_the_inventory_and_names_it(emulator, fleet, monkeypatch):
    from shipper import config
    from shipper.check import check

    emulator.add_sim_fleet(fleet[:10])
    cfg = config.from_dict({"sinks": [{"type": "sqlite", "path": ":memory:"}], "inventory": {"enabled": True},
                            "openapi": {"regions": regions_of(fleet), "ecs_endpoint": emulator.endpoint}})
    monkeypatch.delenv("ALIBABA_CLOUD_ACCESS_KEY_ID", raising=False)
    monkeypatch.delenv("ALIBABA_CLOUD_ACCESS_KEY_SECRET", raising=False)
    [missing] = [f for f in check(cfg) if "ECS" in f.text or "ALIBABA" in f.text]
    assert missing.level == "FAIL" and missing.text.startswith("inventory:")
    monkeypatch.setenv("ALIBABA_CLOUD_ACCESS_KEY_ID", KEY_ID)
    monkeypatch.setenv("ALIBABA_CLOUD_ACCESS_KEY_SECRET", SECRET)
    [reached] = [f for f in check(cfg) if "ECS" in f.text]
    assert reached.level == "ok" and reached.text.startswith("inventory: ECS in ")
    assert "(10 instances)" in reached.text
