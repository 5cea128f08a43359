"""`shipper simulate` and `shipper normalize`: make events without a cloud, and see what shipper makes of them."""
from __future__ import annotations

import os
import sys
import time
from pathlib import Path

import click
import orjson

from shipper.decode import Rejected
from shipper.normalize import events_from_bytes
from shipper.simulate import ENVELOPES, FleetSimulator, write_ndjson


@click.command()
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


@click.command()
@click.option("--instances", default=20, show_default=True, type=click.IntRange(1), help="Fleet size.")
@click.option("--duration", default=3600.0, show_default=True, type=click.FloatRange(1),
              help="Simulated seconds of history, ending at --end.")
@click.option("--end", metavar="TIME", help="When the history ends (default: now), e.g. 2026-06-14T12:00:00Z.")
@click.option("--rate", default=0.0, show_default=True, type=click.FloatRange(0),
              help="Messages per second to send (0: as fast as possible).")
@click.option("--seed", default=1, show_default=True,
              help="Same seed, same fleet; with the same --end too, the same bytes.")
@click.option("--envelope", default="mixed", show_default=True, type=click.Choice(("mixed",) + ENVELOPES),
              help="cms (CloudMonitor event), cms-subscription (CloudMonitor push), eventbridge, or a mix.")
@click.option("--out", type=click.Path(dir_okay=False, writable=True), help="Write NDJSON to this file.")
@click.option("--to", "url", metavar="URL",
              help="POST each message to a running shipper's http source (http(s)://HOST:PORT/), or publish it "
                   "to an MNS queue: mns://HOST/QUEUE (https), mns+http://HOST:PORT/QUEUE (the emulator).")
@click.option("--token-env", default="SHIPPER_WEBHOOK_TOKEN", show_default=True,
              help="With --to http(s)://: the variable holding the push token (sent as X-Shipper-Token).")
def simulate(instances, duration, end, rate, seed, envelope, out, url, token_env) -> None:
    """Emit a seeded fleet's realistic ECS events: to stdout (NDJSON), a file, an HTTP URL or an MNS queue.

    Instances are created, started, stopped and released; spot instances get an interruption notice and
    are deleted 5 minutes later; some get system maintenance with its status sequence. The history ends
    now unless --end says when: the same --seed and --end give the same bytes.

    \b
      shipper simulate --instances 5 | shipper normalize
      shipper simulate --out fleet.ndjson && shipper replay fleet.ndjson
      SHIPPER_WEBHOOK_TOKEN=... shipper simulate --to http://127.0.0.1:8787/
      ALIBABA_CLOUD_ACCESS_KEY_ID=... ALIBABA_CLOUD_ACCESS_KEY_SECRET=... \\
        shipper simulate --to mns://<account-id>.mns.cn-hangzhou.aliyuncs.com/ecs-cms-event
    """
    from shipper.push import is_mns_target
    from shipper.times import parse_instant_ms

    if out and url:
        raise click.BadParameter("choose --out or --to, not both", param_hint="--out/--to")
    try:
        end_ms = parse_instant_ms(end) if end else int(time.time() * 1000)
    except ValueError as e:
        raise click.BadParameter(str(e), param_hint="--end") from None
    sim = FleetSimulator(instances=instances, seed=seed, envelope=envelope,
                         start_ms=end_ms - int(duration * 1000), duration_s=duration)
    stream = _paced(sim.events(), rate)
    if url and is_mns_target(url):
        _publish_all(list(stream), url)
    elif url:
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


def _post_all(messages: list, url: str, token_env: str) -> None:
    """POST every message to `url` (shipper.push) with a progress bar. A refusal every push would get (401,
    429) stops at once; the others are counted, then reported, each with what it means."""
    from shipper.push import STOP_STATUSES, Pusher, explain

    try:
        pusher = Pusher(url)
    except ValueError as e:
        raise click.BadParameter(str(e), param_hint="--to") from None
    token = os.environ.get(token_env, "")
    if not token and not pusher.token_in_url:
        raise click.ClickException(f"--to: set {token_env} to the http source's token (or pass --token-env NAME)")
    refused: dict[int, int] = {}
    try:
        with click.progressbar(length=len(messages), label=f"posting to {pusher.origin}", file=sys.stderr) as bar:
            for status in pusher.post_all((m.body for m in messages), token):
                if status in STOP_STATUSES:
                    raise click.ClickException(f"--to {pusher.origin}: {explain(status, token_env)}")
                bar.update(1)
                if status // 100 != 2:
                    refused[status] = refused.get(status, 0) + 1
    except OSError as e:
        raise click.ClickException(f"--to {pusher.origin}: {e.strerror or e}; "
                                   f"is `shipper run` listening there?") from None
    sent = len(messages) - sum(refused.values())
    click.echo(f"posted {len(messages)} messages: {sent} accepted", err=True)
    if refused:
        detail = "; ".join(f"{n} × {explain(code, token_env)}" for code, n in sorted(refused.items()))
        raise click.ClickException(f"refused: {detail}")


def _publish_all(messages: list, url: str) -> None:
    """Publish every message to the MNS queue `url` names, with a progress bar; the first failure stops."""
    from shipper.cloud import CloudError, credentials_for
    from shipper.push import mns_target, publish_all

    try:
        endpoint, queue = mns_target(url)
    except ValueError as e:
        raise click.BadParameter(str(e), param_hint="--to") from None
    credentials = credentials_for("--to mns", click.ClickException)
    sent = 0
    try:
        with click.progressbar(length=len(messages), label=f"publishing to {queue} at {endpoint}",
                               file=sys.stderr) as bar:
            for count in publish_all((m.body for m in messages), url, credentials):
                sent += count
                bar.update(count)
    except CloudError as e:
        raise click.ClickException(f"--to {url}: MNS refused after {sent} messages: {e.code}: {e.message}") from None
    click.echo(f"published {sent} messages to queue {queue} at {endpoint}", err=True)
