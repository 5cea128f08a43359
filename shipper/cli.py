"""The `shipper` command: parse, load the config, call into the package. Nothing else lives here."""
from __future__ import annotations

import http.client
import os
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
import urllib.parse
from pathlib import Path

import click
import orjson

from shipper import __version__, config as config_mod, events
from shipper.decode import Rejected
from shipper.normalize import events_from_bytes
from shipper.query.parser import QueryError, parse
from shipper.simulate import ENVELOPES, FleetSimulator, write_ndjson

CONFIG_HELP = "Config file (default: ./config.toml). Read alone, never merged."


def _load_config(path: str | None) -> config_mod.Config:
    try:
        return config_mod.load(path or "config.toml")
    except config_mod.ConfigError as e:
        raise click.ClickException(str(e)) from None


def _open_store(config: config_mod.Config, store: str | None):
    """The store to read: the sqlite sink's, else SLS's; `store` picks when both are configured."""
    from shipper.search import SlsStore, SqliteStore

    sqlite = config.sqlite_sink()
    sls = next((s for s in config.sinks if isinstance(s, config_mod.SlsSinkSettings)), None)
    if store == "sls" or (store is None and sqlite is None and sls is not None):
        if sls is None:
            raise click.ClickException(f"{config.path}: no [[sinks]] of type \"sls\" to search")
        from shipper.credentials import Credentials, MissingCredentials
        from shipper.slsclient import make_client

        try:
            credentials = Credentials.from_env()
        except MissingCredentials as e:
            raise click.ClickException(f"sls: {e}") from None
        logstores = {events.EVENTS_TABLE: sls.events_logstore, events.ACTIONS_TABLE: sls.actions_logstore,
                     events.DEADLETTER_TABLE: sls.deadletter_logstore}
        return SlsStore(make_client(sls.endpoint, credentials, timeout=sls.timeout_seconds), sls.project, logstores)
    if sqlite is None:
        raise click.ClickException(f"{config.path}: no [[sinks]] of type \"sqlite\" or \"sls\" to search")
    from shipper.sinks.sqlite import StoreError, connect

    try:
        return SqliteStore(connect(sqlite.path, create=False))
    except StoreError as e:
        raise click.ClickException(str(e)) from None


STORE_OPTION = click.option("--store", type=click.Choice(("sqlite", "sls")),
                            help="Which configured store to read (default: sqlite when configured, else sls).")


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


@main.command()
@click.option("--config", "config_path", metavar="PATH", help=CONFIG_HELP)
def run(config_path: str | None) -> None:
    """Run the main job: sources -> normalize -> batch -> sinks, until Ctrl-C or SIGTERM.

    Messages are acknowledged only after their events are committed to every sink; input that is not an
    event is dead-lettered (table shipper-deadletter) with a reason, never dropped.
    """
    from shipper import logsetup, runner
    from shipper.sinks.sqlite import StoreError
    from shipper.sources import SourceError

    config = _load_config(config_path)
    logsetup.setup(config.shipper.log_level, tuple(s.token_env for s in config.sources if hasattr(s, "token_env")))
    try:
        status = runner.run(config)
    except (StoreError, SourceError, runner.HooksError) as e:
        raise click.ClickException(str(e)) from None
    sys.exit(status)


@main.command()
@click.option("--config", "config_path", metavar="PATH", help=CONFIG_HELP)
def check(config_path: str | None) -> None:
    """Validate the config and reach every configured service: one line per finding.

    FAIL lines are what would stop `shipper run` (a missing queue, a refused key, an unwritable store);
    the exit status is 1 when there is one.
    """
    from shipper.check import check as run_check

    findings = run_check(_load_config(config_path))
    for finding in findings:
        click.echo(f"{finding.level:<4} {finding.text}")
    if any(f.level == "FAIL" for f in findings):
        sys.exit(1)


@main.command()
@click.argument("file", default="-", metavar="[FILE|-]")
def normalize(file: str) -> None:
    """Print each event of FILE (or stdin) as one normalized JSON line.

    FILE may hold one event, a JSON array, NDJSON, a base64 MNS body or a form-encoded push. Input that is
    not an event prints {"error": REASON, ...} and the exit status is 1.
    """
    from shipper.sources.file import ReplayError, iter_messages, split_messages

    received_ms = int(time.time() * 1000)
    try:
        messages = list(split_messages(sys.stdin.buffer.read(), "-")) if file == "-" else list(iter_messages(Path(file)))
    except ReplayError as e:
        raise click.ClickException(str(e)) from None
    failed = False
    out = sys.stdout.buffer
    for name, body in messages:
        try:
            for record in events_from_bytes(body, received_ms=received_ms):
                out.write(orjson.dumps(record) + b"\n")
        except Rejected as e:
            failed = True
            out.write(orjson.dumps({"error": e.reason, "detail": e.error, "input": name}) + b"\n")
    out.flush()
    sys.exit(1 if failed else 0)


@main.command()
@click.argument("path", type=click.Path(exists=True, path_type=Path))
@click.option("--config", "config_path", metavar="PATH", help=CONFIG_HELP)
def replay(path: Path, config_path: str | None) -> None:
    """Ingest PATH (a JSON file, an NDJSON file or a folder of them) into the configured sinks.

    Safe to repeat: an event already stored (same event_uid) is not stored twice.
    """
    from shipper import logsetup, runner
    from shipper.sinks.sqlite import StoreError
    from shipper.sources.file import ReplayError, replay as run_replay, total_bytes

    config = _load_config(config_path)
    logsetup.setup("warning")
    try:
        pipeline = runner.build_pipeline(config).start()
        size = total_bytes(path)
        with click.progressbar(length=size, label=f"replaying {path}", file=sys.stderr,
                               show_pos=False, show_percent=True) as bar:
            summary = run_replay(path, pipeline, bar.update, config.shipper.shutdown_grace_seconds)
    except (ReplayError, StoreError) as e:
        raise click.ClickException(str(e)) from None
    reasons = ", ".join(f"{n} {r}" for r, n in sorted(summary.reasons.items()))
    click.echo(f"{summary.messages} messages: {summary.events} events committed, "
               f"{summary.dead_lettered} dead-lettered{f' ({reasons})' if reasons else ''}, "
               f"{summary.failed} failed", err=True)
    if summary.failed:
        raise click.ClickException(f"{summary.failed} messages were not committed; see the errors above and replay again")


def _window(since, start, end):
    from shipper.search import window

    try:
        return window(since, start, end)
    except ValueError as e:
        raise click.BadParameter(str(e), param_hint="--since/--from/--to") from None


@main.command()
@click.argument("query")
@click.option("--since", metavar="DURATION", help="Only the last DURATION: 30m, 24h, 7d. Default: all time.")
@click.option("--from", "start", metavar="TIME", help="Start time (2025-06-14T01:15:02Z, 2025-06-14, epoch).")
@click.option("--to", "end", metavar="TIME", help="End time, same forms as --from.")
@click.option("--limit", default=100, show_default=True, type=click.IntRange(1), help="At most this many rows.")
@click.option("--json", "as_json", is_flag=True, help="One JSON object per line instead of a table.")
@click.option("--table", default=events.EVENTS_TABLE, show_default=True,
              type=click.Choice(list(events.TABLE_FIELDS)), help="Which store to search.")
@STORE_OPTION
@click.option("--config", "config_path", metavar="PATH", help=CONFIG_HELP)
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
    from shipper.search import DEFAULT_COLUMNS, format_table

    since_ms, until_ms = _window(since, start, end)
    try:
        parse(query)  # a typo is reported before any store is opened
        reader = _open_store(_load_config(config_path), store)
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


@main.command()
@click.argument("instance_id")
@click.option("--json", "as_json", is_flag=True, help="The timeline as one JSON object per line.")
@STORE_OPTION
@click.option("--config", "config_path", metavar="PATH", help=CONFIG_HELP)
def lifecycle(instance_id: str, as_json: bool, store: str | None, config_path: str | None) -> None:
    """Show INSTANCE_ID's whole timeline: what it was, when it was created, stopped and released.

    Works long after release: name and type come from earlier events when the Deleted event lacks them.
    """
    from shipper.instances.cache import cache_path, read_entry
    from shipper.search import format_table, lifecycle as timeline_of, summarize

    config = _load_config(config_path)
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


@main.group()
def dashboards() -> None:
    """SLS content as code: logstore indexes, the lifecycle dashboard, saved searches and alerts.

    \b
      shipper dashboards validate                      offline: shapes, queries, fields, local runs
      shipper dashboards import --project P --dry-run  print the plan, change nothing
      shipper dashboards import --project P            create what is missing, update what differs
      shipper dashboards export --project P --out DIR  write what the project holds, same layout

    import and export reach SLS at --endpoint (default: the config's sls sink) with the
    ALIBABA_CLOUD_* credentials; alert webhooks take ${SHIPPER_HOST}, ${SHIPPER_WEBHOOK_TOKEN} and
    ${OPERATOR_WEBHOOK_URL} from the environment (see dashboards/README.md).
    """


DIR_OPTION = click.option("--dir", "root", default="dashboards", show_default=True,
                          type=click.Path(file_okay=False, path_type=Path), help="The content folder.")


@dashboards.command("validate")
@DIR_OPTION
def dashboards_validate(root: Path) -> None:
    """Check every file offline: one `file: reason` line per problem, exit 1 if any."""
    from shipper.dashboards import validate

    if not root.is_dir():
        raise click.ClickException(f"{root}: no such folder (pass --dir)")
    problems = validate(root)
    for problem in problems:
        click.echo(str(problem))
    if problems:
        raise click.ClickException(f"{len(problems)} problem{'s' if len(problems) != 1 else ''} in {root}")
    click.echo(f"{root}: valid", err=True)


def _sls_client(config_path: str | None, endpoint: str | None):
    from shipper.credentials import Credentials, MissingCredentials
    from shipper.slsclient import make_client

    if not endpoint:
        config = _load_config(config_path)
        sls = next((s for s in config.sinks if isinstance(s, config_mod.SlsSinkSettings)), None)
        if sls is None:
            raise click.BadParameter(f"give --endpoint, or add an sls sink to {config.path}", param_hint="--endpoint")
        endpoint = sls.endpoint
    try:
        return make_client(endpoint, Credentials.from_env())
    except MissingCredentials as e:
        raise click.ClickException(f"sls: {e}") from None


ENDPOINT_OPTION = click.option("--endpoint", metavar="HOST", help="SLS endpoint (default: the config's sls sink).")


@dashboards.command("import")
@click.option("--project", required=True, help="The SLS project to write into.")
@click.option("--dry-run", is_flag=True, help="Print the plan; change nothing.")
@DIR_OPTION
@ENDPOINT_OPTION
@click.option("--config", "config_path", metavar="PATH", help=CONFIG_HELP)
def dashboards_import(project, dry_run, root, endpoint, config_path) -> None:
    """Create missing logstores and indexes; create or update dashboards, saved searches and alerts.

    Idempotent: a second run plans only `unchanged` steps. The plan is printed either way.
    """
    from shipper.dashboards import DashboardsError, apply, plan_import
    from shipper.slsclient import error_code

    client = _sls_client(config_path, endpoint)
    try:
        steps = plan_import(client, project, root, placeholders=os.environ)
        for step in steps:
            click.echo(str(step))
        if not dry_run:
            apply(client, project, steps)
    except DashboardsError as e:
        raise click.ClickException(str(e)) from None
    except Exception as e:
        detail = e.get_error_message() if hasattr(e, "get_error_message") else ""
        raise click.ClickException(f"sls: {project}: {error_code(e)} {detail}".rstrip()) from None
    changes = sum(1 for step in steps if step.action != "unchanged")
    click.echo(f"{'would change' if dry_run else 'changed'} {changes} of {len(steps)}", err=True)


@dashboards.command("export")
@click.option("--project", required=True, help="The SLS project to read.")
@click.option("--out", required=True, type=click.Path(file_okay=False, path_type=Path), help="Folder to write.")
@ENDPOINT_OPTION
@click.option("--config", "config_path", metavar="PATH", help=CONFIG_HELP)
def dashboards_export(project, out, endpoint, config_path) -> None:
    """Write the project's indexes, dashboards, saved searches and alerts as files (validate can read them)."""
    from shipper.dashboards import export
    from shipper.slsclient import error_code

    try:
        written = export(_sls_client(config_path, endpoint), project, out)
    except click.ClickException:
        raise
    except Exception as e:
        raise click.ClickException(f"sls: {project}: {error_code(e)}") from None
    click.echo(f"wrote {len(written)} files to {out}", err=True)


@main.command()
@click.option("--instances", default=20, show_default=True, type=click.IntRange(1), help="Fleet size.")
@click.option("--duration", default=3600.0, show_default=True, type=click.FloatRange(1),
              help="Simulated seconds of history, ending now.")
@click.option("--rate", default=0.0, show_default=True, type=click.FloatRange(0),
              help="Messages per second to send (0: as fast as possible).")
@click.option("--seed", default=1, show_default=True, help="Same seed, same fleet, same bytes.")
@click.option("--envelope", default="mixed", show_default=True, type=click.Choice(("mixed",) + ENVELOPES),
              help="cms (CloudMonitor event), cms-subscription (CloudMonitor push), eventbridge, or a mix.")
@click.option("--out", type=click.Path(dir_okay=False, writable=True), help="Write NDJSON to this file.")
@click.option("--to", "url", metavar="URL", help="POST each message to a running shipper's http source.")
@click.option("--token-env", default="SHIPPER_WEBHOOK_TOKEN", show_default=True,
              help="With --to: the variable holding the push token (sent as X-Shipper-Token).")
def simulate(instances, duration, rate, seed, envelope, out, url, token_env) -> None:
    """Emit a seeded fleet's realistic ECS events: to stdout (NDJSON), a file, or an HTTP URL.

    Instances are created, started, stopped and released; spot instances get an interruption notice and
    are deleted 5 minutes later; some get system maintenance with its status sequence.

    \b
      shipper simulate --instances 5 | shipper normalize
      shipper simulate --out fleet.ndjson && shipper replay fleet.ndjson
      SHIPPER_WEBHOOK_TOKEN=... shipper simulate --to http://127.0.0.1:8787/
    """
    if out and url:
        raise click.BadParameter("choose --out or --to, not both", param_hint="--out/--to")
    now_ms = int(time.time() * 1000)
    sim = FleetSimulator(instances=instances, seed=seed, envelope=envelope,
                         start_ms=now_ms - int(duration * 1000), duration_s=duration)
    stream = _paced(sim.events(), rate)
    if url:
        _post_all(list(stream), url, token_env)
    elif out:
        with open(out, "wb") as fp:
            count = write_ndjson(stream, fp)
        click.echo(f"wrote {count} messages for {instances} instances to {out}", err=True)
    else:
        write_ndjson(stream, sys.stdout.buffer)


def _paced(stream, rate: float):
    if not rate:
        yield from stream
        return
    next_at = time.monotonic()
    for item in stream:
        delay = next_at - time.monotonic()
        if delay > 0:
            time.sleep(delay)
        next_at += 1.0 / rate
        yield item


POST_CONNECTIONS = 16  # a push is answered only after its commit: keep many in flight


def _post_all(messages: list, url: str, token_env: str) -> None:
    parts = urllib.parse.urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise click.BadParameter(f"{url!r} is not an http(s) URL", param_hint="--to")
    token = os.environ.get(token_env, "")
    if not token and "token=" not in parts.query:
        raise click.ClickException(f"--to: set {token_env} to the http source's token (or pass --token-env NAME)")
    conn_class = http.client.HTTPSConnection if parts.scheme == "https" else http.client.HTTPConnection
    target = urllib.parse.urlunsplit(("", "", parts.path or "/", parts.query, ""))
    headers = {"Content-Type": "application/json", "X-Shipper-Token": token}
    local = threading.local()

    def post(event) -> int:
        if not hasattr(local, "conn"):
            local.conn = conn_class(parts.hostname, parts.port, timeout=60)
        local.conn.request("POST", target, body=event.body, headers=headers)
        response = local.conn.getresponse()
        response.read()
        return response.status

    refused: dict[int, int] = {}
    try:
        with ThreadPoolExecutor(POST_CONNECTIONS) as pool, \
                click.progressbar(length=len(messages), label=f"posting to {parts.scheme}://{parts.netloc}",
                                  file=sys.stderr) as bar:
            for status in pool.map(post, messages):
                bar.update(1)
                if status // 100 != 2:
                    refused[status] = refused.get(status, 0) + 1
    except OSError as e:
        raise click.ClickException(f"--to {parts.scheme}://{parts.netloc}: {e.strerror or e}; "
                                   f"is `shipper run` listening there?") from None
    sent = len(messages) - sum(refused.values())
    click.echo(f"posted {len(messages)} messages: {sent} accepted", err=True)
    if refused:
        detail = ", ".join(f"{n} × HTTP {code}" for code, n in sorted(refused.items()))
        raise click.ClickException(f"refused: {detail} (401: wrong token; 503: sink not committing)")
