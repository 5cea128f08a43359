"""Which config file is in force, ${VAR} substitution, relative paths, and `shipper config`'s TOML (issue 14)."""
import dataclasses
import tomllib
from pathlib import Path

import pytest

from shipper import config, config_files
from shipper.config import ConfigError

SQLITE = '[[sinks]]\ntype = "sqlite"\n'


@pytest.fixture
def places(tmp_path):
    """A working folder and an /etc stand-in, each with a config file, and a file named by flag or env."""
    cwd, etc = tmp_path / "work", tmp_path / "etc" / "config.toml"
    for path in (cwd / "config.toml", etc, tmp_path / "named" / "x.toml"):
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(SQLITE)
    return cwd, etc, tmp_path


def test_discovery_order_flag_env_cwd_etc_packaged(places):
    cwd, etc, tmp = places
    env = {"SHIPPER_CONFIG": str(tmp / "named" / "x.toml")}
    assert config_files.discover("../named/x.toml", env, cwd, etc) == config_files.Found(
        cwd / "../named/x.toml", config_files.FLAG, cwd / "../named")
    assert config_files.discover(None, env, cwd, etc) == config_files.Found(tmp / "named" / "x.toml", config_files.ENV, tmp / "named")
    assert config_files.discover(None, {}, cwd, etc) == config_files.Found(cwd / "config.toml", config_files.CWD, cwd)
    (cwd / "config.toml").unlink()
    assert config_files.discover(None, {"SHIPPER_CONFIG": ""}, cwd, etc) == config_files.Found(etc, config_files.ETC, etc.parent)
    etc.unlink()
    found = config_files.discover(None, {}, cwd, etc)
    # The packaged default's own folder is inside the installation: its relative paths follow the current folder.
    assert found == config_files.Found(config_files.EMBEDDED_DEFAULT, config_files.PACKAGED, cwd)
    assert config.load(found.path, {}, found.base).shipper.data_dir == str(cwd / "shipper-demo")


def test_a_missing_named_file_never_falls_through_to_another(places):
    cwd, etc, tmp = places
    found = config_files.discover(None, {"SHIPPER_CONFIG": str(tmp / "typo.toml")}, cwd, etc)
    with pytest.raises(ConfigError, match=r"typo.toml: no such config file \(fix or unset \$SHIPPER_CONFIG\)"):
        config.load(found.path, {}, found.base, found.why)
    found = config_files.discover("typo.toml", {}, cwd, etc)
    with pytest.raises(ConfigError, match=r"typo.toml: no such config file \(check --config"):
        config.load(found.path, {}, found.base, found.why)


def test_relative_paths_resolve_against_the_config_folder_not_the_current_one(tmp_path, monkeypatch):
    folder = tmp_path / "elsewhere"
    folder.mkdir()
    (folder / "c.toml").write_text('[shipper]\ndata_dir = "./state"\n[[sinks]]\ntype = "sqlite"\npath = "db/e.db"\n'
                                   '[[sources]]\ntype = "http"\ntls_cert = "tls/c.pem"\ntls_key = "/abs/k.pem"\n')
    monkeypatch.chdir(tmp_path)
    c = config.load("elsewhere/c.toml")
    assert c.shipper.data_dir == str(folder / "state")
    assert c.sink("sqlite").path == str(folder / "db" / "e.db")
    assert (c.sources[0].tls_cert, c.sources[0].tls_key) == (str(folder / "tls" / "c.pem"), "/abs/k.pem")
    # The sqlite default follows the resolved data_dir.
    (folder / "d.toml").write_text('[shipper]\ndata_dir = "state"\n' + SQLITE)
    assert config.load(folder / "d.toml").sink("sqlite").path == str(folder / "state" / "events.db")


def doc(**values):
    return {"sources": [{"type": "mns", "queue": "q", **values}], "sinks": [{"type": "sqlite"}]}


@pytest.mark.parametrize("written, environ, expected", [
    ("${EP}", {"EP": "https://1.mns.cn-hangzhou.aliyuncs.com"}, "https://1.mns.cn-hangzhou.aliyuncs.com"),
    ("https://${UID}.mns.${R:-cn-hangzhou}.aliyuncs.com", {"UID": "7"}, "https://7.mns.cn-hangzhou.aliyuncs.com"),
    ("https://${UID}.mns.${R:-cn-hangzhou}.aliyuncs.com", {"UID": "7", "R": ""}, "https://7.mns.cn-hangzhou.aliyuncs.com"),
    ("https://${UID}.mns.${R:-cn-hangzhou}.aliyuncs.com", {"UID": "7", "R": "eu-central-1"},
     "https://7.mns.eu-central-1.aliyuncs.com"),
    ("https://h/$${NOT}$$", {"NOT": "x"}, "https://h/${NOT}$"),
    ("https://h/$x", {}, "https://h/$x"),
])
def test_variables_are_substituted_in_string_values(written, environ, expected):
    assert config.from_dict(doc(endpoint=written), "c.toml", environ).sources[0].endpoint == expected


@pytest.mark.parametrize("written, message", [
    ("${MNS_EP}", "c.toml: [[sources]] #1: `endpoint`: ${MNS_EP} is not set; set it, or give a default: "
                  "${MNS_EP:-...}"),
    ("${MNS EP}", "c.toml: [[sources]] #1: `endpoint`: '${MNS EP}' has a `${` that is not ${VAR} or ${VAR:-default}; "
                  "write $$ for a literal $"),
])
def test_a_bad_or_unset_variable_is_one_line_naming_it_and_the_key(written, message):
    with pytest.raises(ConfigError) as e:
        config.from_dict(doc(endpoint=written), "c.toml", {})
    assert str(e.value) == message


def test_unset_variable_in_a_nested_table_names_the_table():
    with pytest.raises(ConfigError, match=r"^c.toml: \[hooks.restart\]: `opt_in_tag`: \$\{TAG\} is not set"):
        config.from_dict({"hooks": {"restart": {"opt_in_tag": "${TAG}"}}, "sinks": [{"type": "sqlite"}]}, "c.toml", {})


def test_printed_settings_load_back_the_same_and_mask_secret_variables(tmp_path):
    (tmp_path / "c.toml").write_text(
        '[shipper]\ndata_dir = "./d"\n[openapi]\nregions = ["${REGION}"]\n'
        '[[sources]]\ntype = "mns"\nqueue = "q"\nendpoint = "https://${UID}.mns.cn-hangzhou.aliyuncs.com/?t=${MNS_TOKEN}"\n'
        '[[sinks]]\ntype = "sls"\nendpoint = "127.0.0.1:9"\nproject = "p$$1"\n'
        '[hooks.restart]\nenabled = true\nopt_in_tag = "k=\\"v\\"\\u00e9\\t"\ninstances = ["i-1"]\n')
    environ = {"REGION": "cn-beijing", "UID": "42", "MNS_TOKEN": "s3cr3t-value"}
    loaded = config.load(tmp_path / "c.toml", environ)
    text = config_files.to_toml(loaded)
    assert "s3cr3t-value" not in text and 'endpoint = "***"' in text
    assert 'project = "p$$1"' in text and f'data_dir = "{tmp_path / "d"}"' in text
    back = config.from_dict(tomllib.loads(text), str(tmp_path / "c.toml"), {})
    # Everything but the masked value loads back the same.
    assert back.sources[0].endpoint == "https://***"
    unmasked = config.from_dict(tomllib.loads(text.replace('"***"', f'"{loaded.sources[0].endpoint}"')),
                                str(tmp_path / "c.toml"), {})
    assert unmasked == dataclasses.replace(loaded, origin="", secrets=frozenset())


def test_only_secret_named_variables_are_masked():
    loaded = config.from_dict(doc(endpoint="https://${UID}.example/${API_KEY}"), "c.toml", {"UID": "1", "API_KEY": "k9"})
    assert loaded.secrets == {"k9"}
    plain = config.from_dict(doc(endpoint="https://${UID}.example"), "c.toml", {"UID": "1"})
    assert 'endpoint = "https://1.example"' in config_files.to_toml(plain)


def test_production_template_needs_its_variables_and_keeps_hooks_in_dry_run():
    with pytest.raises(ConfigError, match=r"`endpoint`: \$\{SHIPPER_MNS_ENDPOINT\} is not set"):
        config.load(config_files.PRODUCTION_TEMPLATE, {})
    c = config.load(config_files.PRODUCTION_TEMPLATE, {"SHIPPER_MNS_ENDPOINT": "https://1.mns.cn-hangzhou.aliyuncs.com",
                                                 "SHIPPER_SLS_PROJECT": "ecs-audit"})
    assert [s.type for s in c.sources] == ["mns"] and [s.type for s in c.sinks] == ["sls"]
    assert c.shipper.data_dir == "/var/lib/shipper" and c.inventory.enabled
    assert all(h.enabled and h.dry_run for h in c.hooks.values())
    assert c.api.listen == "127.0.0.1:9598"
    container = config.load(config_files.PRODUCTION_TEMPLATE, {"SHIPPER_MNS_ENDPOINT": "h:1", "SHIPPER_SLS_PROJECT": "p",
                                                         "SHIPPER_API_LISTEN": "0.0.0.0:9598"})
    assert container.api.listen == "0.0.0.0:9598"


def test_packaged_content_is_where_the_cli_looks():
    assert config_files.EMBEDDED_DEFAULT.is_file() and config_files.PRODUCTION_TEMPLATE.is_file()
    assert (config_files.DASHBOARDS / "index").is_dir()
    assert Path(config_files.EMBEDDED_DEFAULT).read_text().startswith("# shipper's embedded default")
