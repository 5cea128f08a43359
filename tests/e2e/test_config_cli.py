"""Config discovery, `shipper config` and `shipper init` as an operator runs them (issue 14)."""
import os
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from shipper import config_files

ENV = {k: v for k, v in os.environ.items() if k != "SHIPPER_CONFIG"}


def shipper(*args, cwd, env=ENV):
    return subprocess.run([sys.executable, "-m", "shipper", *args], cwd=cwd, capture_output=True, text=True,
                          timeout=60, env=env)


def test_config_in_an_empty_folder_is_the_packaged_default_with_its_demo_store_here(tmp_path):
    if config_files.ETC_CONFIG.exists():
        pytest.skip(f"{config_files.ETC_CONFIG} exists on this machine and comes before the packaged default")
    result = shipper("config", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith(f"# in force: {config_files.EMBEDDED_DEFAULT}\n# why: the packaged embedded default")
    settings = tomllib.loads(result.stdout)
    assert settings["shipper"]["data_dir"] == str(tmp_path / "shipper-demo")
    assert [s["type"] for s in settings["sources"]] == ["simulate", "http"]


def test_env_then_flag_choose_the_file_and_secret_variables_are_masked(tmp_path):
    (tmp_path / "a.toml").write_text('[[sinks]]\ntype = "sls"\nendpoint = "127.0.0.1:9"\nproject = "${PROJECT}"\n'
                                     '[[sources]]\ntype = "mns"\nqueue = "q"\nendpoint = "http://h/${MNS_SECRET}"\n')
    (tmp_path / "b.toml").write_text('[shipper]\ndata_dir = "b-data"\n[[sinks]]\ntype = "sqlite"\n')
    env = dict(ENV, SHIPPER_CONFIG=str(tmp_path / "a.toml"), PROJECT="ecs-audit", MNS_SECRET="hunter2")
    result = shipper("config", cwd=tmp_path, env=env)
    assert result.returncode == 0, result.stderr
    assert "# why: named by $SHIPPER_CONFIG" in result.stdout
    assert 'project = "ecs-audit"' in result.stdout and 'endpoint = "***"' in result.stdout
    assert "hunter2" not in result.stdout + result.stderr
    result = shipper("config", "--config", "b.toml", cwd=tmp_path, env=env)
    assert "# why: named by --config" in result.stdout
    assert f'data_dir = "{tmp_path / "b-data"}"' in result.stdout


def test_an_unset_variable_stops_every_command_with_one_line(tmp_path):
    (tmp_path / "config.toml").write_text('[shipper]\ndata_dir = "${STATE_DIR}"\n[[sinks]]\ntype = "sqlite"\n')
    for command in (["config"], ["check"], ["search", "*"]):
        result = shipper(*command, cwd=tmp_path)
        assert result.returncode == 1
        assert result.stderr == (f"Error: {tmp_path / 'config.toml'}: [shipper]: `data_dir`: ${{STATE_DIR}} is not "
                                 "set; set it, or give a default: ${STATE_DIR:-...}\n")


def test_init_writes_a_starter_and_refuses_to_overwrite(tmp_path):
    result = shipper("init", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "config.toml").read_bytes() == config_files.EMBEDDED_DEFAULT.read_bytes()
    (tmp_path / "config.toml").write_text("# mine\n")
    result = shipper("init", cwd=tmp_path)
    assert result.returncode == 1 and result.stderr == "Error: config.toml exists: pass --force to overwrite it\n"
    assert (tmp_path / "config.toml").read_text() == "# mine\n"
    assert shipper("init", "--force", cwd=tmp_path).returncode == 0
    assert (tmp_path / "config.toml").read_bytes() == config_files.EMBEDDED_DEFAULT.read_bytes()
    result = shipper("init", "--production", "--path", "etc/shipper/config.toml", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    written = tmp_path / "etc" / "shipper" / "config.toml"
    assert written.read_bytes() == config_files.PRODUCTION_TEMPLATE.read_bytes()


def test_search_with_a_config_elsewhere_reads_the_store_beside_that_config(tmp_path, fixtures_dir):
    host, other = tmp_path / "host", tmp_path / "other"
    host.mkdir(), other.mkdir()
    (host / "config.toml").write_text('[shipper]\ndata_dir = "./data"\n[[sinks]]\ntype = "sqlite"\n')
    result = shipper("replay", str(fixtures_dir / "a_statechange_deleted.json"), cwd=host)
    assert result.returncode == 0, result.stderr
    result = shipper("search", "state: Deleted", "--from", "2025-04-28T00:00:00Z", "--to", "2025-04-30T00:00:00Z",
                     "--json", "--config", str(Path("..") / "host" / "config.toml"), cwd=other)
    assert result.returncode == 0, result.stderr
    assert len(result.stdout.splitlines()) == 1
    assert not (other / "data").exists()
