"""The `shipper` command: parse, load the config, call into the package. Nothing else lives here.

This module holds the `main` group and what its commands share (the --config and --store options, config
loading); each command group is a module: run (run, check, replay), search (search, lifecycle),
dashboards (the dashboards group), simulate (simulate, normalize), audit (audit, backfill), config (config,
init). format draws tables.
"""
from __future__ import annotations

import os
from pathlib import Path

import click

from shipper import __version__, config as config_mod, config_files

CONFIG_HELP = ("Config file, read alone, never merged (default: $SHIPPER_CONFIG, ./config.toml, "
               "/etc/shipper/config.toml, else the packaged default; `shipper config` shows which).")
CONFIG_OPTION = click.option("--config", "config_path", metavar="PATH", help=CONFIG_HELP)
STORE_OPTION = click.option("--store", type=click.Choice(("sqlite", "sls")),
                            help="Which configured store to read (default: sqlite when configured, else sls).")


def load_config(path: str | None) -> config_mod.Config:
    """The config in force: `path` (--config), else the one discovered; a ConfigError becomes the CLI's error."""
    found = config_files.discover(path, os.environ, Path.cwd())
    try:
        return config_mod.load(found.path, os.environ, found.base, found.why)
    except config_mod.ConfigError as e:
        raise click.ClickException(str(e)) from None


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(__version__, prog_name="shipper")
def main() -> None:
    """shipper: ECS events from CloudMonitor and EventBridge into a searchable audit trail.

    \b
    Start here:
      shipper run                     ingest (no config yet: a demo fleet into ./shipper-demo)
      shipper config                  which config file is in force, and its settings
      shipper search 'state: Deleted' released instances
      shipper lifecycle i-bp1...      one instance's whole timeline, released or not
    """


# The command modules read the names above, so they are imported after them.
from shipper.cli import audit, config, dashboards, run, search, simulate  # noqa: E402

for _command in (run.run, run.check, run.replay, search.search, search.lifecycle, dashboards.dashboards,
                 simulate.simulate, simulate.normalize,
                 audit.audit,
                 audit.backfill, config.config, config.init):
    main.add_command(_command)
del _command
