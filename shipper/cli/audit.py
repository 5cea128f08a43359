"""`shipper audit`: is the trail complete? (the findings of the reconciliation, shipper/audit)."""
from __future__ import annotations

import sys
import time

import click
import orjson

from shipper.cli import CONFIG_OPTION, STORE_OPTION, load_config


class AuditError(click.ClickException):
    """The report could not be made (config, store, query): exit status 2, so 1 always means open findings."""
    exit_code = 2


@click.command()
@click.option("--json", "as_json", is_flag=True, help="The report as one JSON object.")
@STORE_OPTION
@CONFIG_OPTION
def audit(as_json: bool, store: str | None, config_path: str | None) -> None:
    """Print how complete the trail is: where it begins, the instances it covers, the open findings by kind.

    \b
    Exit status: 0 no open finding, 1 open findings (for cron and CI), 2 the report could not be made.
    Findings are written by `shipper run` with [audit] enabled, after each inventory sync:
      unrecorded-creation  a listed instance created after the trail began, with no creation recorded
      unrecorded-release   the trail says alive, two complete syncs did not list it, no release recorded
      state-drift          the listed status differs from the last recorded state for drift_window_seconds
    A finding is cleared when the missing record arrives. Baselines (instances older than the trail) are
    counted, not open.
    """
    from shipper.audit.report import completeness
    from shipper.cli.format import format_table
    from shipper.query.parser import QueryError
    from shipper.read.stores import StoreUnavailable, open_store

    try:
        config = load_config(config_path)
        report = completeness(open_store(config, store))
    except click.ClickException as e:
        raise AuditError(e.message) from None
    except (StoreUnavailable, QueryError) as e:
        raise AuditError(str(e)) from None
    if as_json:
        click.echo(orjson.dumps(report.as_dict()).decode())
    else:
        if not config.audit.enabled:
            click.echo("note: [audit] enabled = false in this config: `shipper run` records no new findings", err=True)
        click.echo(f"{'trail begins:':<22}{report.trail_start or '(no records yet)'}")
        click.echo(f"{'instances in trail:':<22}{report.instances} ({report.created_in_trail} with their creation)")
        click.echo(f"{'older than the trail:':<22}{report.baseline} (baseline)")
        click.echo(f"{'open findings:':<22}{report.open_total}")
        for kind, count in report.open.items():
            click.echo(f"  {kind:<20}{count}")
        if report.findings:
            columns = ["found_time", "finding", "instance_id", "region_id", "inventory_status", "recorded_state",
                       "instance_name"]
            click.echo()
            click.echo(format_table(columns, [[f[c] for c in columns] for f in report.findings]))
    sys.exit(1 if report.open_total else 0)


@click.command()
@click.option("--since", default="90d", show_default=True, metavar="DURATION",
              help="How far back to read ActionTrail (it keeps 90 days): 30d, 90d, 12h.")
@CONFIG_OPTION
def backfill(since: str, config_path: str | None) -> None:
    """Fill a new installation from ActionTrail's history and the current inventory.

    Every ECS call that touched an instance becomes an api-call record (detail says "source": "backfill"),
    written through the configured sinks; the inventory fills the instance registry. Safe to repeat: a
    record already stored (same event_uid) is not stored twice. Interrupted, it resumes where it stopped
    when run again (checkpoint: <data_dir>/backfill.json). Needs actiontrail:LookupEvents and
    ecs:DescribeInstances (ecs:DescribeRegions for regions = ["all"]).
    """
    from shipper import runner
    from shipper.audit.backfill import BackfillError, checkpoint_path, run as run_backfill
    from shipper.cloud import CloudError
    from shipper.cloud.actiontrail import ActionTrail
    from shipper.sinks.sqlite import StoreError
    from shipper.telemetry import logs
    from shipper.config import TRAIL_RETENTION_DAYS as TRAIL_DAYS
    from shipper.times import parse_duration_ms

    try:
        since_ms = parse_duration_ms(since)
    except ValueError as e:
        raise click.BadParameter(str(e), param_hint="--since") from None
    if since_ms > TRAIL_DAYS * 86_400_000:
        raise click.BadParameter(f"ActionTrail keeps {TRAIL_DAYS} days: at most {TRAIL_DAYS}d", param_hint="--since")
    config = load_config(config_path)
    logs.setup("warning")
    now_ms = int(time.time() * 1000)
    runtime = runner.Runtime(config)
    try:
        pipeline = runtime.build_pipeline().start()
        api = runtime.openapi("backfill")
        with click.progressbar(length=1, label="backfill", file=sys.stderr, show_percent=True) as bar:
            summary = run_backfill(pipeline, api, ActionTrail(api), checkpoint_path(config.shipper.data_dir),
                                   now_ms - since_ms, now_ms, on_progress=bar.update,
                                   set_total=lambda ms: setattr(bar, "length", max(ms, 1)))
        pipeline.close(config.shipper.shutdown_grace_seconds)
    except CloudError as e:
        raise click.ClickException(f"backfill stopped: {e.service} {e.code}: {e.message}; what was written stays, "
                                   "run it again to resume") from None
    except (BackfillError, StoreError, runner.HooksError) as e:
        raise click.ClickException(str(e)) from None
    finally:
        runtime.close_stores()
    click.echo(f"{'resumed' if summary.resumed else 'backfilled'} {summary.window}: {summary.regions} region(s), "
               f"{summary.calls} calls read, {summary.records} api-call records written (stored once each), "
               f"{summary.instances} instances listed", err=True)
