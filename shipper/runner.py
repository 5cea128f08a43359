"""`shipper run`: build sinks, the pipeline and the sources from the config; run until SIGTERM/SIGINT.

Shutdown order follows the delivery guarantee: stop receiving, flush, acknowledge what committed (for MNS:
delete), exit within `shutdown_grace_seconds`. A source that cannot go on (queue missing, key refused)
stops the process the same way, with exit status 1.
"""
from __future__ import annotations

import logging
import signal
import threading

from shipper import events, metrics
from shipper.hooks.engine import HookEngine
from shipper.hooks.lb_drain import LbDrainHook
from shipper.hooks.openapi import OpenApi
from shipper.hooks.restart import RestartHook
from shipper.hooks.alert_keys import AlertKeys, alert_keys_path
from shipper.config import Config, HttpSourceSettings, MnsSourceSettings, SimulateSourceSettings
from shipper.config import SlsSinkSettings, SqliteSinkSettings
from shipper.pipeline import Pipeline
from shipper.sinks.sls import SlsSink
from shipper.sinks.sqlite import SqliteSink, StoreError
from shipper.sources.http import HttpServer
from shipper.credentials import Credentials, MissingCredentials
from shipper.instances.cache import InstanceCache, cache_path
from shipper.sources.mns import MnsConsumer, MnsFatal
from shipper.sources.simulate import SimulateRunner

log = logging.getLogger("shipper.run")

PROGRESS_EVERY_SECONDS = 10.0


def build_sinks(config: Config) -> list:
    sinks = []
    for settings in config.sinks:
        if isinstance(settings, SqliteSinkSettings):
            sinks.append(SqliteSink(settings.path))
        elif isinstance(settings, SlsSinkSettings):
            try:
                credentials = Credentials.from_env()
            except MissingCredentials as e:
                raise StoreError(f"sls sink: {e}") from None
            sinks.append(SlsSink(settings, credentials))
        else:
            raise TypeError(f"no sink for {settings!r}")
    return sinks


def build_pipeline(config: Config) -> Pipeline:
    """The pipeline into the configured sinks, with the instance cache; close both when done."""
    pipeline = Pipeline(build_sinks(config), config.batch, max_inflight_events=config.shipper.max_inflight_events,
                        max_message_bytes=config.shipper.max_message_bytes)
    pipeline.cache = InstanceCache(cache_path(config.shipper.data_dir))
    return pipeline


class HooksError(Exception):
    """Hooks are enabled but cannot run (no credentials); the message says what to set."""


def build_hooks(config: Config, pipeline: Pipeline) -> HookEngine | None:
    """The enabled hooks on one engine whose decisions are committed through `pipeline`; None if none."""
    restart, drain = config.hooks.restart, config.hooks.lb_drain
    if not (restart.enabled or drain.enabled):
        return None
    try:
        credentials = Credentials.from_env()
    except MissingCredentials as e:
        raise HooksError(f"hooks: {e}") from None
    api = OpenApi(config.openapi, credentials, on_instance=pipeline.cache.remember)
    engine = HookEngine([], lambda records, done: pipeline.record(events.ACTIONS_TABLE, records, done))
    if restart.enabled:
        engine.hooks.append(RestartHook(restart, api, recent_events=engine.recent_events))
    if drain.enabled:
        engine.hooks.append(LbDrainHook(drain, api, recent_events=engine.recent_events))
    for hook, settings in ((h, getattr(config.hooks, h.name)) for h in engine.hooks):
        log.info("hook %s enabled%s", hook.name, " in DRY-RUN mode (decides and records, calls nothing that "
                 "changes the fleet)" if settings.dry_run else ": it WILL act on the fleet")
    return engine


def build_sources(config: Config, pipeline: Pipeline, on_fatal) -> list:
    sources = []
    for settings in config.sources:
        if isinstance(settings, HttpSourceSettings):
            # With hooks on, accepted alert notifications are kept in data_dir: a repeat after a restart is known.
            keys = AlertKeys(alert_keys_path(config.shipper.data_dir)) if pipeline.hooks else None
            sources.append(HttpServer(settings, pipeline, alert_keys=keys))
        elif isinstance(settings, SimulateSourceSettings):
            sources.append(SimulateRunner(settings, pipeline))
        elif isinstance(settings, MnsSourceSettings):
            try:
                credentials = Credentials.from_env()
            except MissingCredentials as e:
                raise MnsFatal(f"mns source: {e}") from None
            sources.append(MnsConsumer(settings, pipeline, credentials, on_fatal=on_fatal))
    return sources


def _progress_line() -> str:
    return (f"{metrics.EVENTS_COMMITTED.total():.0f} events committed "
            f"({metrics.EVENTS_STORED.total():.0f} new rows), "
            f"{metrics.DEAD_LETTERS.total():.0f} dead letters, "
            f"{metrics.SINK_ERRORS.total():.0f} sink errors, {metrics.INFLIGHT.value():.0f} in flight")


def run(config: Config, stop: threading.Event | None = None) -> int:
    """Run until a signal, a fatal source error, or `stop`; returns the exit status."""
    stop = stop or threading.Event()
    fatal: list[str] = []

    def on_fatal(message: str) -> None:
        fatal.append(message)
        stop.set()

    if threading.current_thread() is threading.main_thread():  # before any source starts: a signal
        for sig in (signal.SIGTERM, signal.SIGINT):           # during start-up still gets its flush
            signal.signal(sig, lambda signum, frame: stop.set())
    pipeline = build_pipeline(config).start()
    started = []
    try:
        pipeline.hooks = build_hooks(config, pipeline)
        for source in build_sources(config, pipeline, on_fatal):
            started.append(source.start())
    except BaseException:
        _shutdown(started, pipeline, config.shipper.shutdown_grace_seconds)
        raise
    sinks = ", ".join(s.name for s in pipeline.sinks)
    log.info("running: %d source(s) into %s; Ctrl-C or SIGTERM stops after a flush", len(started), sinks)
    last = None
    while not stop.wait(PROGRESS_EVERY_SECONDS):
        pipeline.cache.try_save()  # never raises: input, stores and the cache must not end the process
        line = _progress_line()
        if line != last:
            log.info("%s", line)
            last = line
    log.info("stopping: no new input; flushing (up to %.0f s)", config.shipper.shutdown_grace_seconds)
    drained = _shutdown(started, pipeline, config.shipper.shutdown_grace_seconds)
    log.info("%s", _progress_line())
    if fatal:
        log.error("stopped: %s", fatal[0])
        return 1
    if not drained:
        log.error("shutdown grace period ended before every batch was written; "
                  "unacknowledged messages will be delivered again by their senders")
        return 1
    log.info("stopped cleanly")
    return 0


def _shutdown(sources: list, pipeline: Pipeline, grace: float) -> bool:
    for source in sources:
        source.stop()
    if pipeline.hooks:
        pipeline.hooks.close(min(grace / 2, 5.0))  # undecided events come back with their messages
    drained = pipeline.close(grace)
    for source in sources:
        source.close()
    pipeline.cache.close()
    return drained
