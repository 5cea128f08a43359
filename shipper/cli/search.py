"""`shipper search` and `shipper lifecycle`: read a store (shipper.read) and show what it holds."""
from __future__ import annotations

from pathlib import Path

import click
import orjson

from shipper import config as config_mod, config_files, events
from shipper.cli import CONFIG_OPTION, STORE_OPTION, load_config
from shipper.cli.format import FORMATS
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
        raise click.ClickException(f"--since/--from/--to: {e}") from None


def _saved_search(name: str) -> tuple[str, str]:
    """(query, table) of the saved search NAME in the SLS content installed with shipper (the one
    `shipper dashboards import` imports by default): dashboards/savedsearches/NAME.json."""
    from shipper.dashboards.load import load, of

    entities, problems = load(config_files.DASHBOARDS)
    saved = of(entities, "savedsearch")
    if name not in saved:
        broken = [p for p in problems if Path(p.file).stem == name]
        if broken:
            raise click.ClickException(str(broken[0]))
        known = ", ".join(sorted(saved)) or f"none (no {config_files.DASHBOARDS / 'savedsearches'} folder)"
        raise click.ClickException(f"--saved: no saved search {name!r}; known: {known}")
    body = saved[name].body
    if body["logstore"] not in events.TABLE_FIELDS:
        raise click.ClickException(f"{saved[name].file}: logstore {body['logstore']!r} is not one shipper "
                                   f"searches ({', '.join(events.TABLE_FIELDS)})")
    return body["searchQuery"], body["logstore"]


def _columns(asked: str | None, fmt: str, query: str, table: str, result) -> list[str]:
    """--columns if given (each must be in the result); else every column for json/csv, and for a table
    the result's columns with a SQL part, the table's default columns without."""
    from shipper.cli.format import default_columns

    if asked:
        columns = [c.strip() for c in asked.split(",") if c.strip()]
        unknown = [c for c in columns if c not in result.columns]
        if unknown or not columns:
            raise click.ClickException(f"--columns: no column {unknown[0] if unknown else asked!r} in these rows; "
                                       f"the columns: {', '.join(result.columns)}")
        return columns
    if fmt != "table" or parse(query).sql is not None:
        return list(result.columns)
    return default_columns(table, result.as_dicts())


@click.command()
@click.argument("query", required=False)
@click.option("--saved", metavar="NAME", help="Run the saved search NAME (dashboards/savedsearches/NAME.json) "
                                               "against its logstore, instead of QUERY.")
@click.option("--since", metavar="DURATION", help="Only the last DURATION: 30m, 24h, 7d. Default: all time.")
@click.option("--from", "start", metavar="TIME",
              help="Start time: 2025-06-14T01:15:02Z, 2025-06-14 01:15:02 (UTC), 2025-06-14, epoch seconds.")
@click.option("--to", "end", metavar="TIME", help="End time (excluded), same forms; a date takes in its whole day.")
@click.option("--limit", default=100, show_default=True, type=click.IntRange(1), help="At most this many rows.")
@click.option("--format", "fmt", type=click.Choice(FORMATS),
              help="table (default), json (one object per line) or csv (a header line, then the rows).")
@click.option("--json", "as_json", is_flag=True, help="Same as --format json.")
@click.option("--columns", metavar="A,B,C", help="Show these columns, in this order (any format).")
@click.option("--table", type=click.Choice(list(events.TABLE_FIELDS)),
              help=f"Which store to search. Default: {events.EVENTS_TABLE} (a saved search: its logstore).")
@click.option("--all-copies", is_flag=True,
              help="SLS only: show every stored copy of a redelivered event, not one row per event_uid.")
@STORE_OPTION
@CONFIG_OPTION
def search(query, saved, since, start, end, limit, fmt, as_json, columns, table, store, config_path,
           all_copies) -> None:
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
      shipper search 'state: Deleted' --from 2025-06-01 --to 2025-06-30 --format csv > released.csv
      shipper search --saved interruptions                  a saved search of the SLS content

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
    A table shows a few columns (plus action, not_before and stop_cause when a row has one); json and csv
    show every column. Numeric fields (event_time_ms, seconds_before_reclaim) are numbers in json.
    """
    from shipper.cli.format import format_rows

    if (query is None) == (saved is None):
        raise click.ClickException("give a QUERY or --saved NAME (one of them)")
    if as_json and fmt not in (None, "json"):
        raise click.ClickException(f"--json is --format json; drop one of --json and --format {fmt}")
    fmt = "json" if as_json else fmt or "table"
    if saved:
        if table:
            raise click.ClickException("--saved searches its own logstore; drop --table")
        query, table = _saved_search(saved)
    table = table or events.EVENTS_TABLE
    since_ms, until_ms = _window(since, start, end)
    try:
        parse(query)  # a typo is reported before any store is opened
        reader = _open_store(load_config(config_path), store)
        result = reader.search(query, table=table, since_ms=since_ms, until_ms=until_ms, limit=limit,
                               all_copies=all_copies)
    except QueryError as e:
        raise click.ClickException(f"query: {e}") from None
    rows = result.as_dicts()
    text = format_rows(fmt, _columns(columns, fmt, query, table, result), rows)
    if text:
        click.echo(text)
    if fmt == "table":
        click.echo(f"({len(rows)} row{'s' if len(rows) != 1 else ''}{', limit reached' if len(rows) == limit else ''})",
                   err=True)


@click.command()
@click.argument("instance_id")
@click.option("--json", "as_json", is_flag=True,
              help='One JSON object per line: {"summary": {...}} first, then each event of the timeline.')
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

    --json prints the summary first, as {"summary": {...}}, then one line per event; numeric fields
    (event_time_ms) are numbers, as in `shipper search --json`.
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
    summary = summarize(timeline, read_entry(registry_path(config.shipper.data_dir), instance_id))
    if as_json:
        for line in [{"summary": summary}, *timeline]:
            click.echo(orjson.dumps(line).decode())
        return
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
