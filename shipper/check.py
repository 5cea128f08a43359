"""`shipper check`: validate the config and reach every configured service, one line per finding."""
from __future__ import annotations

import os
import socket
import sqlite3
import ssl
import stat
from dataclasses import dataclass
from pathlib import Path

from shipper.config import Config, HttpSourceSettings, MnsSourceSettings, SimulateSourceSettings, SlsSinkSettings, SqliteSinkSettings, parse_listen


@dataclass(frozen=True)
class Finding:
    level: str  # "ok", "warn" (works, but look), "FAIL" (shipper run would not work)
    text: str


def check(config: Config) -> list[Finding]:
    findings = [Finding("ok", f"config {config.path}: valid")]
    for source in config.sources:
        if isinstance(source, SimulateSourceSettings):
            findings.append(Finding("warn", f"simulate source: a demo fleet of {source.instances} instances "
                                            f"is enabled; remove it in production"))
        elif isinstance(source, HttpSourceSettings):
            findings += _check_http(source)
        elif isinstance(source, MnsSourceSettings):
            findings.append(_check_mns(source))
    if config.hooks.restart.enabled or config.hooks.lb_drain.enabled:
        findings.append(_check_openapi(config))
    for sink in config.sinks:
        if isinstance(sink, SqliteSinkSettings):
            findings.append(_check_sqlite(sink))
        elif isinstance(sink, SlsSinkSettings):
            findings += _check_sls(sink)
    return findings


def _check_openapi(config: Config) -> Finding:
    from shipper.hooks.openapi import ApiError, OpenApi
    from shipper.credentials import Credentials, MissingCredentials

    try:
        credentials = Credentials.from_env()
        count = OpenApi(config.openapi, credentials).count_instances()
    except MissingCredentials as e:
        return Finding("FAIL", f"hooks: {e}")
    except ApiError as e:
        return Finding("FAIL", f"hooks: ECS in {config.openapi.region} refused DescribeInstances for access key "
                               f"{credentials.access_key_id} ({e.code}); check [openapi] and the key's ECS permissions")
    modes = ", ".join(f"{name} {'dry-run' if hook.dry_run else 'LIVE'}"
                      for name, hook in (("restart", config.hooks.restart), ("lb_drain", config.hooks.lb_drain))
                      if hook.enabled)
    return Finding("ok", f"hooks ({modes}): ECS in {config.openapi.region} reachable as "
                         f"{credentials.access_key_id} ({count} instances)")


def _check_sls(sink: SlsSinkSettings) -> list[Finding]:
    from shipper.credentials import Credentials, MissingCredentials
    from shipper.slsclient import error_code, make_client

    try:
        client = make_client(sink.endpoint, Credentials.from_env(), timeout=sink.timeout_seconds)
    except MissingCredentials as e:
        return [Finding("FAIL", f"sls sink: {e}")]
    findings = []
    for logstore in (sink.events_logstore, sink.actions_logstore, sink.deadletter_logstore):
        try:
            client.get_logstore(sink.project, logstore)
            findings.append(Finding("ok", f"sls sink: {sink.project}/{logstore} at {sink.endpoint} reachable"))
        except Exception as e:
            code = error_code(e)
            hint = {"ProjectNotExist": "create the project or fix `project`",
                    "LogStoreNotExist": "run `shipper dashboards import --project " + sink.project + "`"}.get(
                code, "check `endpoint` and the ALIBABA_CLOUD_* credentials")
            findings.append(Finding("FAIL", f"sls sink: {sink.project}/{logstore} at {sink.endpoint}: {code}; {hint}"))
    return findings


def _check_http(source: HttpSourceSettings) -> list[Finding]:
    findings = []
    if os.environ.get(source.token_env):
        findings.append(Finding("ok", f"http source: token variable {source.token_env} is set"))
    else:
        findings.append(Finding("FAIL", f"http source: {source.token_env} is not set: every push would get 401; "
                                        f"export it with the token your senders use"))
    host, port = parse_listen(source.listen)
    try:
        with socket.create_server((host, port)):
            pass
        findings.append(Finding("ok", f"http source: {source.listen} is free to listen on"))
    except OSError as e:  # `shipper run` binds the same address and stops when it cannot
        findings.append(Finding("FAIL", f"http source: cannot listen on {source.listen} ({e.strerror or e}); "
                                        f"stop what holds it (another shipper?) or change `listen`"))
    if source.tls_cert:
        findings.append(_check_tls(source))
    return findings


def _check_tls(source: HttpSourceSettings) -> Finding:
    """Load the pair the way `shipper run` will, so a bad path or a key that does not match shows here."""
    try:
        ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER).load_cert_chain(source.tls_cert, source.tls_key)
    except OSError as e:  # ssl.SSLError is an OSError
        return Finding("FAIL", f"http source: cannot use tls_cert {source.tls_cert!r} / tls_key {source.tls_key!r} "
                               f"({e.strerror or e}); fix the paths or the files (PEM chain and its key)")
    return Finding("ok", f"http source: TLS certificate {source.tls_cert} and its key load")


def _check_mns(source: MnsSourceSettings) -> Finding:
    from shipper.credentials import Credentials, MissingCredentials
    from shipper.sources.mns import MnsFatal, check_queue

    try:
        credentials = Credentials.from_env()
        info = check_queue(source, credentials)
    except MissingCredentials as e:
        return Finding("FAIL", f"mns source: {e}")
    except MnsFatal as e:
        return Finding("FAIL", str(e))
    return Finding("ok", f"mns source: queue {source.queue!r} at {source.endpoint} reachable as "
                         f"{credentials.access_key_id} (visibility {info['visibility_timeout']} s, "
                         f"{info['active_messages']} waiting, {info['inactive_messages']} in flight)")


def _check_sqlite(sink: SqliteSinkSettings) -> Finding:
    from shipper.sinks.sqlite import StoreError, connect

    path = Path(sink.path)
    # No write bit at all means read-only by intent. Root writes it anyway (so os.access and even a real
    # write say yes when `check` runs as root), but `shipper run` as a service user would 503 every push.
    mode = stat.S_IMODE(path.stat().st_mode) if path.exists() else None
    if mode is not None and not mode & 0o222:
        return Finding("FAIL", f"sqlite sink: {path} is read-only (mode {mode:04o}): every push would get 503; "
                               f"chmod u+w {path}")
    try:
        conn = connect(path)
        try:
            count = conn.execute('SELECT count(*) FROM "ecs-events"').fetchone()[0]
            _probe_write(conn)
        finally:
            conn.close()
    except StoreError as e:
        return Finding("FAIL", f"sqlite sink: {e}")
    except sqlite3.Error as e:
        return Finding("FAIL", f"sqlite sink: {path} cannot be written ({e}); every push would get 503: "
                               f"check the owner and mode of the file and its folder")
    return Finding("ok", f"sqlite sink: {path} writable ({count} events stored)")


def _probe_write(conn) -> None:
    """Insert a row and roll it back: SQLite opens a file it may only read without a word (read-only), and
    only a real write finds out."""
    conn.execute("BEGIN IMMEDIATE")
    try:
        conn.execute('INSERT INTO "shipper-deadletter" DEFAULT VALUES')
    finally:
        conn.execute("ROLLBACK")
