"""`shipper config` (which config is in force, and its settings) and `shipper init` (a starter config)."""
from __future__ import annotations

from pathlib import Path

import click

from shipper import config_files
from shipper.cli import CONFIG_OPTION, load_config


@click.command("config")
@CONFIG_OPTION
def config(config_path: str | None) -> None:
    """Print which config file is in force and why, then every setting as TOML (defaults filled in, relative
    paths resolved, ${VAR} substituted; values of variables named *SECRET, *TOKEN, *PASSWORD or *KEY masked).

    \b
    Discovery: --config PATH, else $SHIPPER_CONFIG, else ./config.toml, else /etc/shipper/config.toml,
    else the packaged embedded default.
    """
    loaded = load_config(config_path)
    click.echo(f"# in force: {loaded.path}\n# why: {loaded.origin}\n")
    click.echo(config_files.to_toml(loaded), nl=False)


@click.command()
@click.option("--production", is_flag=True,
              help="The production template (MNS source, SLS sink, inventory, hooks in dry-run, /var/lib/shipper) "
                   "instead of the embedded default (demo fleet, local SQLite).")
@click.option("--path", "path", default="config.toml", show_default=True, type=click.Path(dir_okay=False, path_type=Path),
              help="Where to write it.")
@click.option("--force", is_flag=True, help="Overwrite the file if it exists.")
def init(production: bool, path: Path, force: bool) -> None:
    """Write a commented starter config, then edit it and run `shipper check --config PATH`."""
    template = config_files.PRODUCTION_TEMPLATE if production else config_files.EMBEDDED_DEFAULT
    if path.exists() and not force:
        raise click.ClickException(f"{path} exists: pass --force to overwrite it")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(template.read_bytes())
    except OSError as e:
        raise click.ClickException(f"{path}: cannot write the config: {e.strerror}") from None
    what = "the production template" if production else "the embedded default"
    click.echo(f"wrote {path} ({what}); edit it, then: shipper check --config {path}", err=True)
