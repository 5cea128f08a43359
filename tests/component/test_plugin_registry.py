"""Adding a component takes one module and one registration: a toy source, defined only here, is configured
by `[[sources]] type = "toy"`, validated with its own rules, checked by `shipper check`'s code, and run by
`shipper run` into the real SQLite sink."""
import sqlite3
import threading
from dataclasses import dataclass

import pytest

from shipper import config, registry, runner
from shipper.check import check, required_permissions
from shipper.pipeline import Message
from tests.conftest import FIXTURES
from tests.waiting import wait_until


@dataclass(frozen=True)
class ToySourceSettings:
    type: str = "toy"
    copies: int = 1

    def validate(self) -> None:
        registry.positive(self, "copies")


class ToySource:
    """Hands the pipeline `copies` copies of one fixture event, then idles."""

    def __init__(self, settings: ToySourceSettings, pipeline):
        self.settings, self.pipeline, self.acknowledged = settings, pipeline, []

    def start(self) -> "ToySource":
        body = (FIXTURES / "a_statechange_running.json").read_bytes()
        for n in range(self.settings.copies):
            self.pipeline.submit(Message(body, "toy", message_id=str(n), on_done=self.acknowledged.append))
        return self

    def stop(self) -> None:
        pass

    def close(self) -> None:
        pass


@pytest.fixture
def toy():
    built = []

    def build(settings, runtime):
        built.append(ToySource(settings, runtime.pipeline))
        return built[-1]

    registry.register(registry.Component(
        registry.SOURCE, "toy", ToySourceSettings, build=build,
        check=lambda settings, cfg: [registry.Finding("ok", f"toy source: {settings.copies} copies")],
        permissions=("toy:Play",)))
    yield built
    registry.unregister(registry.SOURCE, "toy")


def toy_config(tmp_path, **toy_keys) -> config.Config:
    return config.from_dict({"shipper": {"data_dir": str(tmp_path / "data"), "shutdown_grace_seconds": 5},
                             "sources": [{"type": "toy", **toy_keys}], "sinks": [{"type": "sqlite"}]},
                            str(tmp_path / "config.toml"))


def test_a_registered_toy_source_is_configured_checked_and_run_into_the_store(toy, tmp_path):
    cfg = toy_config(tmp_path, copies=3)
    assert cfg.sources == (ToySourceSettings(copies=3),)
    assert [f.text for f in check(cfg)][1] == "toy source: 3 copies"
    assert required_permissions(cfg) == ["toy:Play"]  # the sqlite sink calls no cloud service
    stop = threading.Event()
    status = []
    thread = threading.Thread(target=lambda: status.append(runner.run(cfg, stop)))
    thread.start()
    wait_until(lambda: toy and len(toy[0].acknowledged) == 3)
    stop.set()
    thread.join(30)
    assert status == [0]
    conn = sqlite3.connect(tmp_path / "data" / "events.db")
    assert conn.execute('SELECT count(*) FROM "ecs-events"').fetchone()[0] == 1  # three copies of one event
    conn.close()


def test_its_own_validation_and_the_unknown_keys_rule_apply(toy, tmp_path):
    with pytest.raises(config.ConfigError, match=r"\[\[sources\]\] #1 \(type 'toy'\): `copies` must be greater than 0"):
        toy_config(tmp_path, copies=0)
    with pytest.raises(config.ConfigError, match="unknown key `copiez`; did you mean `copies`"):
        toy_config(tmp_path, copiez=2)


def test_an_unregistered_type_is_refused_with_the_registered_choices(tmp_path):
    with pytest.raises(config.ConfigError, match="type = 'toy' is not known; use one of: http, mns, simulate"):
        toy_config(tmp_path)


def test_check_lists_the_ram_actions_of_the_configured_components_only(tmp_path):
    cfg = config.from_dict({"sources": [{"type": "mns", "endpoint": "127.0.0.1:1", "queue": "q"}],
                            "sinks": [{"type": "sqlite"}], "hooks": {"lb_drain": {"enabled": False},
                                                                   "restart": {"enabled": True}}})
    actions = required_permissions(cfg)
    assert "mns:ReceiveMessage" in actions and "ecs:StartInstance" in actions
    assert not [a for a in actions if a.startswith(("slb:", "log:"))]  # lb_drain is off, no sls sink


def test_the_inventory_needs_only_read_actions_and_describe_regions_only_for_all_regions():
    base = {"sinks": [{"type": "sqlite"}], "inventory": {"enabled": True}}
    assert required_permissions(config.from_dict(base)) == ["ecs:DescribeInstances"]
    everywhere = config.from_dict(base | {"openapi": {"regions": ["all"]}})
    assert required_permissions(everywhere) == ["ecs:DescribeInstances", "ecs:DescribeRegions"]
    assert required_permissions(config.from_dict({"sinks": [{"type": "sqlite"}],
                                                  "openapi": {"regions": ["all"]}})) == []
