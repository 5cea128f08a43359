"""`shipper search` and `shipper lifecycle`: read a store (shipper.read) and show what it holds."""
from __future__ import annotations

import click
import orjson

from shipper import config as config_mod, events
from shipper.cli import CONFIG_OPTION, STORE_OPTION, load_config
from shipper.query.parser import QueryError, parse


def _open_store(config: config_mod.Config, store: str | None):
    from shipper.read.stores import StoreUnavailable, open_store

    try:
        return open_store(config, store)
    except StoreUnavailable as e:
        raise click.ClickException(str(e)) from None


def _window(since, start, end):
    from shipper.times import window

    try:
        return window(since, start, end)
    except ValueError as e:
        raise click.BadParameter(str(e), param_hint="--since/--from/--to") from None


@click.command()
@click.argument("query")
@click.option("--since", metavar="DURATION", help="Only the last DURATION: 30m, 24h, 7d. Default: all time.")
@click.option("--from", "start", metavar="TIME", help="Start time (2025-06-14T01:15:02Z, 2025-06-14, epoch).")
@click.option("--to", "end", metavar="TIME", help="End time, same forms as --from.")
@click.option("--limit", default=100, show_default=True, type=click.IntRange(1), help="At most this many rows.")
@click.option("--json", "as_json", is_flag=True, help="One JSON object per line instead of a table.")
@click.option("--table", default=events.EVENTS_TABLE, show_default=True,
              type=click.Choice(list(events.TABLE_FIELDS)), help="Which store to search.")
@STORE_OPTION
@CONFIG_OPTION
def search(query, since, start, end, limit, as_json, table, store, config_path) -> None:
    """Search stored events with SLS query syntax.

    \b
    Examples:
      shipper search 'state: Deleted'                       released instances
      shipper search 'instance_id: i-bp1f3kq7z2m9w4x6c8v0'  one instance
      shipper search '__topic__: interruption' --since 7d   spot interruptions this week
      shipper search 'state: Stopped and not region_id: cn-beijing'
      shipper search 'event_name: "Instance:SystemMaintenance.Reboot" and event_status: Scheduled'
      shipper search 'event_time_ms >= 1750000000000'
      shipper search '* | select state, count(DISTINCT event_uid) as n group by state'

    A search part (key: value, value*, and/or/not, parentheses, numeric comparisons on event_time_ms),
    optionally followed by | and SQL. Reads the config's sqlite sink (translated) or SLS (passed through).
    """
    from shipper.cli.format import DEFAULT_COLUMNS, format_table

    since_ms, until_ms = _window(since, start, end)
    try:
        parse(query)  # a typo is reported before any store is opened
        reader = _open_store(load_config(config_path), store)
        result = reader.search(query, table=table, since_ms=since_ms, until_ms=until_ms, limit=limit)
    except QueryError as e:
        raise click.ClickException(f"query: {e}") from None
    if as_json:
        for row in result.as_dicts():
            click.echo(orjson.dumps(row).decode())
        return
    columns = result.columns
    if table == events.EVENTS_TABLE and "|" not in query:
        columns = list(DEFAULT_COLUMNS)
    elif "|" not in query:
        columns = [c for c in result.columns if c not in ("raw_base64", "detail", "time_ms", "topic", "source_host")]
    rows = [[row[c] for c in columns] for row in result.as_dicts()]
    click.echo(format_table(columns, rows))
    click.echo(f"({len(rows)} row{'s' if len(rows) != 1 else ''}{', limit reached' if len(rows) == limit else ''})", err=True)


@click.command()
@click.argument("instance_id")
@click.option("--json", "as_json", is_flag=True, help="The timeline as one JSON object per line.")
@STORE_OPTION
@CONFIG_OPTION
def lifecycle(instance_id: str, as_json: bool, store: str | None, config_path: str | None) -> None:
    """Show INSTANCE_ID's whole timeline: what it was, when it was created, stopped and released.

    Works long after release: name and type come from earlier events when the Deleted event lacks them.
    """
    from shipper.cli.format import format_table
    from shipper.instances.cache import cache_path, read_entry
    from shipper.read.lifecycle import summarize, timeline as timeline_of

    config = load_config(config_path)
    try:
        timeline = timeline_of(_open_store(config, store), instance_id)
    except QueryError as e:
        raise click.ClickException(str(e)) from None
    if not timeline:
        raise click.ClickException(f"no events for {instance_id} in the store")
    if as_json:
        for event in timeline:
            click.echo(orjson.dumps(event).decode())
        return
    summary = summarize(timeline, read_entry(cache_path(config.shipper.data_dir), instance_id))
    for key, value in summary.items():
        click.echo(f"{key + ':':<16}{value}")
    click.echo()
    columns = ["event_time", "event_name", "state", "event_status", "level", "instance_name", "instance_type"]
    click.echo(format_table(columns, [[e[c] for c in columns] for e in timeline]))
