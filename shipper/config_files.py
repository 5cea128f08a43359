"""Where a config comes from and how one is shown: the files that travel with the package, the discovery of
the file in force (`--config`, else $SHIPPER_CONFIG, else ./config.toml, else /etc/shipper/config.toml, else the
packaged embedded default), and the settings printed back as TOML (`shipper config`)."""
from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

# The files that travel with the package. A wheel or sdist install carries them in shipper/_packaged/ (setup.py
# copies them there from the repository's top level, where DESIGN keeps them); a source checkout reads them in place.
_INSTALLED = Path(__file__).parent / "_packaged"
CONTENT_ROOT = _INSTALLED if _INSTALLED.is_dir() else Path(__file__).parent.parent
EMBEDDED_DEFAULT = CONTENT_ROOT / "config.toml"
PRODUCTION_TEMPLATE = CONTENT_ROOT / "deploy" / "config.production.toml"
DASHBOARDS = CONTENT_ROOT / "dashboards"

ENV_VAR = "SHIPPER_CONFIG"
ETC_CONFIG = Path("/etc/shipper/config.toml")
# Why a file is in force (`shipper config` prints it).
FLAG = "named by --config"
ENV = "named by $SHIPPER_CONFIG"
CWD = "./config.toml in the current folder (no --config or $SHIPPER_CONFIG)"
ETC = "/etc/shipper/config.toml (no --config, $SHIPPER_CONFIG or ./config.toml)"
PACKAGED = ("the packaged embedded default (no --config, $SHIPPER_CONFIG, ./config.toml or "
            "/etc/shipper/config.toml); its relative paths resolve against the current folder")


@dataclass(frozen=True)
class Found:
    """The config file in force, why (one of FLAG .. PACKAGED), and the folder its relative paths resolve against."""
    path: Path
    why: str
    base: Path


def discover(flag: str | None, environ: Mapping[str, str], cwd: Path, etc: Path = ETC_CONFIG) -> Found:
    """--config, else $SHIPPER_CONFIG, else ./config.toml, else /etc/shipper/config.toml, else the packaged default.

    A file named by --config or $SHIPPER_CONFIG is in force even when missing (`load` says so): a typo must not
    fall through to another config. The packaged default's folder is inside the installation, so its relative
    paths resolve against the current folder."""
    for why, named in ((FLAG, flag), (ENV, environ.get(ENV_VAR))):
        if named:
            path = cwd / named
            return Found(path, why, path.parent)
    for why, path in ((CWD, cwd / "config.toml"), (ETC, etc)):
        if path.is_file():
            return Found(path, why, path.parent)
    return Found(EMBEDDED_DEFAULT, PACKAGED, cwd)


def to_toml(config: Any) -> str:
    """The settings in force (a shipper.config.Config), every default filled in, as TOML that loads back to the same settings. A string
    holding a secret (the value of a substituted variable named *SECRET, *TOKEN, *PASSWORD or *KEY) is "***"."""
    lines: list[str] = []
    for f in dataclasses.fields(config):  # path, origin and secrets are about the file, not settings: skipped
        value = getattr(config, f.name)
        if dataclasses.is_dataclass(value):
            lines += _toml_table(f"[{f.name}]", value, config.secrets)
        elif isinstance(value, tuple):
            for item in value:
                lines += _toml_table(f"[[{f.name}]]", item, config.secrets)
        elif isinstance(value, dict):
            for name, item in value.items():
                lines += _toml_table(f"[{f.name}.{name}]", item, config.secrets)
    return "\n".join(lines).lstrip("\n") + "\n"


def _toml_table(header: str, settings: Any, secrets: frozenset) -> list[str]:
    return ["", header] + [f"{f.name} = {_toml_value(getattr(settings, f.name), secrets)}"
                           for f in dataclasses.fields(settings)]


def _toml_value(value: Any, secrets: frozenset) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, tuple):
        return "[" + ", ".join(_toml_value(v, secrets) for v in value) + "]"
    if isinstance(value, str):
        text = "***" if any(secret in value for secret in secrets) else value.replace("$", "$$")
        return '"' + "".join(_toml_char(c) for c in text) + '"'
    raise TypeError(f"no TOML form for {value!r}")


def _toml_char(c: str) -> str:
    if c.isprintable() and c not in '"\\':
        return c
    if c in '"\\':
        return "\\" + c
    return f"\\u{ord(c):04x}" if ord(c) < 0x10000 else f"\\U{ord(c):08x}"
