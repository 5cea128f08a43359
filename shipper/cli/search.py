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
@click.option("--all-copies", is_flag=True,
              help="SLS only: show every stored copy of a redelivered event, not one row per event_uid.")
@STORE_OPTION
@CONFIG_OPTION
def search(query, since, start, end, limit, as_json, table, store, config_path, all_copies) -> None:
    """Search stored events with SLS query syntax: the same rows from SQLite and from SLS.

    \b
    Examples:
      shipper search 'state: Deleted'                       released instances
      shipper search 'instance_id: i-bp1f3kq7z2m9w4x6c8v0'  one instance
      shipper search '__topic__: interruption' --since 7d   spot interruptions this week
      shipper search 'state: Stopped and not region_id: cn-beijing'
      shipper search 'event_name: "Instance:SystemMaintenance.Reboot" and event_status: Scheduled'
      shipper search 'instance_name: #"web server"'         the words in this order
      shipper search 'event_time_ms >= 1750000000000'
      shipper search '* | select state, count(DISTINCT event_uid) as n group by state'

    \b
    A search part, optionally followed by | and SQL:
      key: value, value*, a?c, key: * (present)    words match whole tokens, any case
      "a b"    both words, anywhere;   #"a b"    the phrase (no `not` in a search with one)
      and, or, not, ( ); numeric >, <, =, in [a b] on event_time_ms
      SLS's precedence: and > not > or, so `a not b and c` = a and not (b and c),
      `not a and b` = not (a and b); use parentheses for anything else.
    In the SQL part, "x" names a column, 'x' is a string.

    Reads the config's sqlite sink (translated) or SLS (passed through). SLS keeps every copy of an
    event that was delivered twice; without a SQL part, each event_uid is shown once (its first copy)
    unless --all-copies. A SQL part runs on every copy: count events with count(DISTINCT event_uid).
    """
    from shipper.cli.format import DEFAULT_COLUMNS, format_table

    since_ms, until_ms = _window(since, start, end)
    try:
        parse(query)  # a typo is reported before any store is opened
        reader = _open_store(load_config(config_path), store)
        result = reader.search(query, table=table, since_ms=since_ms, until_ms=until_ms, limit=limit,
                               all_copies=all_copies)
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

    Works long after release: name, type and zone come from the instance registry or from earlier events
    when the Deleted event lacks them. Each stop says why (stop_cause: spot-reclaim, system, billing-lock,
    expired, user, api, service, user-or-api). Events with the same time are shown in lifecycle order
    (Pending, Starting, Running, Stopping, Stopped, Deleted), then as received.

    \b
    With ActionTrail calls in the store, each state change says which call caused it:
      Stopped — StopInstance by RAM user alice from 203.0.113.7 via console, 4 s before
    (--json: a `caused_by` object on each state change, null when no call explains it).
    """
    from shipper.cli.format import format_table
    from shipper.instances.registry import read_entry, registry_path
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
    summary = summarize(timeline, read_entry(registry_path(config.shipper.data_dir), instance_id))
    for key, value in summary.items():
        click.echo(f"{key + ':':<16}{value}")
    click.echo()
    columns = ["event_time", "event_name", "state", "stop_cause", "event_status", "level", "instance_name",
               "instance_type"]
    click.echo(format_table(columns, [[e[c] for c in columns] for e in timeline]))
    if any(e["category"] == events.API_CALL_CATEGORY for e in timeline):
        click.echo("\ncaused by:")
        for e in (e for e in timeline if e["state"]):
            caller = e["caused_by"]["text"] if e["caused_by"] else "no call on record"
            click.echo(f"{e['event_time']}  {e['state']} — {caller}")
