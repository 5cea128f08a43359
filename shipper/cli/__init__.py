"""The `shipper` command: parse, load the config, call into the package. Nothing else lives here.

This module holds the `main` group and what its commands share (the --config and --store options, config
loading); each command group is a module: run (run, check, replay), search (search, lifecycle),
dashboards (the dashboards group), simulate (simulate, normalize), audit (audit, backfill). format draws tables.
"""
from __future__ import annotations

import click

from shipper import __version__, config as config_mod

CONFIG_HELP = "Config file (default: ./config.toml). Read alone, never merged."
CONFIG_OPTION = click.option("--config", "config_path", metavar="PATH", help=CONFIG_HELP)
STORE_OPTION = click.option("--store", type=click.Choice(("sqlite", "sls")),
                            help="Which configured store to read (default: sqlite when configured, else sls).")


def load_config(path: str | None) -> config_mod.Config:
    """The config at `path` (default ./config.toml); a ConfigError becomes the CLI's error message."""
    try:
        return config_mod.load(path or "config.toml")
    except config_mod.ConfigError as e:
        raise click.ClickException(str(e)) from None


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(__version__, prog_name="shipper")
def main() -> None:
    """shipper: ECS events from CloudMonitor and EventBridge into a searchable audit trail.

    \b
    Start here:
      shipper run                     ingest with ./config.toml (a demo fleet into ./shipper-data)
      shipper search 'state: Deleted' released instances
      shipper lifecycle i-bp1...      one instance's whole timeline, released or not
    """


# The command modules read the names above, so they are imported after them.
from shipper.cli import audit, dashboards, run, search, simulate  # noqa: E402

for _command in (run.run, run.check, run.replay, search.search, search.lifecycle, dashboards.dashboards,
                 simulate.simulate, simulate.normalize,
                 audit.audit,
                 audit.backfill):
    main.add_command(_command)
del _command
