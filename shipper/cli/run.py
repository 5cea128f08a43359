"""`shipper run`, `shipper check` and `shipper replay`: the commands that ingest, and the one that checks
the config they would run with."""
from __future__ import annotations

import sys
from pathlib import Path

import click

from shipper.cli import CONFIG_OPTION, load_config


@click.command()
@CONFIG_OPTION
def run(config_path: str | None) -> None:
    """Run the main job: sources -> normalize -> batch -> sinks, until Ctrl-C or SIGTERM.

    Messages are acknowledged only after their events are committed to every sink; input that is not an
    event is dead-lettered (table shipper-deadletter) with a reason, never dropped.
    """
    from shipper import runner
    from shipper.telemetry import logs
    from shipper.sinks.sqlite import StoreError
    from shipper.sources import SourceError

    config = load_config(config_path)
    logs.setup(config.shipper.log_level, tuple(s.token_env for s in config.sources if hasattr(s, "token_env")),
               config.shipper.log_format)
    try:
        status = runner.run(config)
    except (StoreError, SourceError, runner.HooksError) as e:
        raise click.ClickException(str(e)) from None
    sys.exit(status)


@click.command()
@CONFIG_OPTION
@click.option("--permissions", is_flag=True,
              help="Only print the RAM actions this config's sources, sinks and hooks call (for a RAM policy).")
@click.option("--json", "as_json", is_flag=True,
              help='One JSON object per finding and line: {"level": "ok"|"warn"|"FAIL", "text": ...}.')
def check(config_path: str | None, permissions: bool, as_json: bool) -> None:
    """Validate the config and reach every configured service: one line per finding.

    FAIL lines are what would stop `shipper run` (a missing queue, a refused key, an unwritable store);
    the exit status is 1 when there is one. warn lines are what `shipper run` starts with and warns about
    (an unset push token, the demo fleet).
    """
    from shipper.check import check as run_check, format_finding, required_permissions

    config = load_config(config_path)
    if permissions:
        for action in required_permissions(config):
            click.echo(action)
        return
    findings = run_check(config)
    for finding in findings:
        click.echo(format_finding(finding, as_json))
    if any(f.level == "FAIL" for f in findings):
        sys.exit(1)


@click.command()
@click.argument("path", type=click.Path(exists=True, path_type=Path))
@CONFIG_OPTION
def replay(path: Path, config_path: str | None) -> None:
    """Ingest PATH (a JSON file, an NDJSON file or a folder of them) into the configured sinks.

    Safe to repeat: an event already stored (same event_uid) is not stored twice, nor is a dead letter of
    the same input. The summary says how many events each sink did not hold before ("new events").
    """
    from shipper import runner
    from shipper.telemetry import logs
    from shipper.sinks.sqlite import StoreError
    from shipper.sources.file import ReplayError, replay as run_replay, total_bytes

    config = load_config(config_path)
    logs.setup("warning")
    try:
        with runner.delivery(config) as pipeline:
            size = total_bytes(path)
            with click.progressbar(length=size, label=f"replaying {path}", file=sys.stderr,
                                   show_pos=False, show_percent=True) as bar:
                summary = run_replay(path, pipeline, bar.update, config.shipper.shutdown_grace_seconds)
    except (ReplayError, StoreError, runner.HooksError) as e:
        raise click.ClickException(str(e)) from None
    reasons = ", ".join(f"{n} {r}" for r, n in sorted(summary.reasons.items()))
    new = ", ".join(f"{n} in {sink}" for sink, n in summary.new_events.items())
    click.echo(f"{summary.messages} messages: {summary.events} events committed, "
               f"{summary.dead_lettered} dead-lettered{f' ({reasons})' if reasons else ''}, "
               f"{summary.failed} failed; new events: {new}", err=True)
    if summary.failed:
        raise click.ClickException(f"{summary.failed} messages were not committed; see the errors above and replay again")
