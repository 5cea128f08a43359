from pathlib import Path

import pytest

from shipper import config
from shipper.config import ConfigError
from tests.conftest import REPO


def test_shipped_config_loads_with_demo_fleet_http_and_sqlite():
    c = config.load(REPO / "config.toml")
    assert [s.type for s in c.sources] == ["simulate", "http"]
    assert c.sources[1].listen == "127.0.0.1:8787"  # never all interfaces by default
    # The demo fleet has its own store beside the file, never a production data_dir (issue 14).
    assert c.shipper.data_dir == str(REPO / "shipper-demo")
    assert c.sink("sqlite").path == str(REPO / "shipper-demo" / "events.db")
    assert c.batch.max_events == 4096


def test_defaults_fill_missing_keys_and_sqlite_path_follows_data_dir():
    c = config.from_dict({"shipper": {"data_dir": "/var/lib/shipper"}, "sinks": [{"type": "sqlite"}]})
    assert c.sink("sqlite").path == str(Path("/var/lib/shipper") / "events.db")
    assert c.shipper.shutdown_grace_seconds == 20
    assert c.batch.linger_ms == 500


@pytest.mark.parametrize("doc, expected", [
    ({"sinks": [{"type": "sqlite", "paht": "x"}]}, "[[sinks]] #1 (type 'sqlite'): unknown key `paht`; did you mean `path`?"),
    ({"batch": {"max_events": "10"}, "sinks": [{"type": "sqlite"}]}, "[batch]: `max_events` must be a whole number, got '10'"),
    ({"batch": {"max_events": 0}, "sinks": [{"type": "sqlite"}]}, "`max_events` must be greater than 0"),
    ({"sources": [{"type": "kafka"}], "sinks": [{"type": "sqlite"}]}, "type = 'kafka' is not known; use one of: http, mns, simulate"),
    ({"sources": [{"type": "http", "listen": "8787"}], "sinks": [{"type": "sqlite"}]}, "`listen` must be host:port"),
    ({"sources": [{"type": "simulate", "envelope": "sns"}], "sinks": [{"type": "sqlite"}]}, "`envelope` must be one of"),
    ({"shipper": {"log_level": "loud"}, "sinks": [{"type": "sqlite"}]}, "`log_level` must be one of"),
    ({"sinks": []}, "no [[sinks]]"),
    ({"sink": [{"type": "sqlite"}]}, "unknown key `sink`; did you mean `sinks`?"),
    ({"sources": {"type": "http"}, "sinks": [{"type": "sqlite"}]}, "`sources` must be an array of tables"),
])
def test_bad_config_is_one_line_naming_the_key(doc, expected):
    with pytest.raises(ConfigError) as e:
        config.from_dict(doc, "cfg.toml")
    message = str(e.value)
    assert expected in message
    assert message.startswith("cfg.toml: ")
    assert "\n" not in message


def test_missing_file_and_bad_toml(tmp_path):
    with pytest.raises(ConfigError, match="no such config file"):
        config.load(tmp_path / "nope.toml")
    bad = tmp_path / "bad.toml"
    bad.write_text("[shipper\n")
    with pytest.raises(ConfigError, match="not valid TOML"):
        config.load(bad)


def test_integer_accepted_where_a_number_is_expected():
    c = config.from_dict({"shipper": {"shutdown_grace_seconds": 5}, "sinks": [{"type": "sqlite"}]})
    assert c.shipper.shutdown_grace_seconds == 5.0


@pytest.mark.parametrize("table, key, value", [
    ("shipper", "shutdown_grace_seconds", "nan"),
    ("source", "commit_timeout_seconds", "nan"),
    ("source", "commit_timeout_seconds", "inf"),
    ("shipper", "shutdown_grace_seconds", "-inf"),
])
def test_config_numbers_must_be_finite(tmp_path, table, key, value):
    # TOML has nan and inf: nan grace gave a traceback at SIGTERM, a nan commit timeout a 503 for every push.
    text = {"shipper": f"[shipper]\n{key} = {value}\n[[sinks]]\ntype = \"sqlite\"\n",
            "source": f"[[sources]]\ntype = \"http\"\n{key} = {value}\n[[sinks]]\ntype = \"sqlite\"\n"}[table]
    (tmp_path / "c.toml").write_text(text)
    with pytest.raises(ConfigError) as e:
        config.load(tmp_path / "c.toml")
    assert f"`{key}` must be a finite number, got {value}" in str(e.value)
    assert "\n" not in str(e.value) and str(e.value).startswith(str(tmp_path / "c.toml"))
