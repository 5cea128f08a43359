"""`shipper run`: build sinks, the pipeline and the sources from the config; run until SIGTERM/SIGINT.

Shutdown order follows the delivery guarantee: stop receiving, flush, acknowledge what committed (for MNS:
delete), exit within `shutdown_grace_seconds`. A source that cannot go on (queue missing, key refused)
stops the process the same way, with exit status 1.
"""
from __future__ import annotations

import logging
import signal
import threading
from contextlib import contextmanager

from shipper import events, registry
from shipper.telemetry import health, metrics
from shipper.telemetry.api import MonitoringServer
from shipper.config import Config
from shipper.cloud import Credentials, credentials_for
from shipper.audit.report import Auditor
from shipper.hooks.alert_keys import AlertKeys, alert_keys_path
from shipper.hooks.alerts import AlertIntake
from shipper.hooks.engine import HookEngine
from shipper.cloud.actiontrail import ActionTrail
from shipper.cloud.openapi import OpenApi
from shipper.instances.inventory import InventorySync, Lookups
from shipper.instances.registry import InstanceRegistry, registry_path
from shipper.ledger import Ledger, ledger_path
from shipper.pipeline import Pipeline
from shipper.read.stores import open_store
from shipper.trail_poller import TrailPoller, state_path

log = logging.getLogger("shipper.run")

PROGRESS_EVERY_SECONDS = 10.0


class HooksError(Exception):
    """Hooks or the inventory are enabled but cannot run (no credentials); the message says what to set."""


class Runtime:
    """What components are built with (registry.Component.build(settings, runtime)), built in order:
    the instance registry (and its inventory sync), the sinks and the pipeline, the hook engine, then the
    sources."""

    def __init__(self, config: Config, on_fatal=lambda message: None):
        self.config = config
        self.on_fatal = on_fatal
        self.instances = InstanceRegistry(registry_path(config.shipper.data_dir))
        self.inventory: InventorySync | None = None
        self._lookups: Lookups | None = None
        self.ledger = Ledger(ledger_path(config.shipper.data_dir), days=config.shipper.ledger_days)
        self.pipeline: Pipeline | None = None
        self.engine: HookEngine | None = None
        self.alerts: AlertIntake | None = None
        self._openapi: OpenApi | None = None
        self.trail_poller: TrailPoller | None = None
        self.state = "starting"                  # then "running", "stopping": /readyz is 503 but while running
        self.health: list[health.Health] = []    # each sink's and source's, for /readyz
        self.api: MonitoringServer | None = None

    def start_api(self) -> None:
        """With `[api] listen` on: the monitoring port, first, so /healthz answers while the rest starts."""
        if not self.config.api.enabled:
            return
        metrics.LEDGER_ENTRIES.set_function(self.ledger.size)
        metrics.REGISTRY_INSTANCES.set_function(self.instances.size)
        self.api = MonitoringServer(self.config.api.listen, self.not_ready).start()

    def not_ready(self) -> dict[str, str]:
        """What /readyz names: {} once running with every sink and source working (within the window)."""
        if self.state != "running":
            return {"shipper": self.state}
        return health.not_ready(self.health, self.config.api.ready_window_seconds)

    def credentials(self, what: str, error: type[Exception]) -> Credentials:
        """The ALIBABA_CLOUD_* credentials, or `error` saying "<what>: set …"."""
        return credentials_for(what, error)

    def openapi(self, what: str = "hooks") -> OpenApi:
        """One OpenAPI client for the hooks and the inventory; every DescribeInstances answer feeds the
        instance registry."""
        if self._openapi is None:
            self._openapi = OpenApi(self.config.openapi, self.credentials(what, HooksError),
                                    on_instance=self.instances.remember)
        return self._openapi

    def start_inventory(self) -> None:
        """With `[inventory] enabled`: the sync thread, and lookups of unknown instances before each batch.
        Waits (bounded) for the first sync, so the first events already find their instances."""
        settings = self.config.inventory
        if not settings.enabled:
            return
        api = self.openapi("inventory")
        self._lookups = Lookups(api, settings.lookup_wait_ms / 1000, self.config.openapi.regions[0])
        self.instances.set_lookup(self._lookups)
        self.inventory = InventorySync(api, settings.interval_seconds, on_synced=self._auditor()).start()
        if not self.inventory.first_done.wait(settings.startup_wait_seconds):
            log.warning("inventory: the first sync is still running after %.0f s; starting the sources anyway",
                        settings.startup_wait_seconds)

    def start_actiontrail(self) -> None:
        """With `[actiontrail] enabled`: the LookupEvents poller, into the started pipeline."""
        settings = self.config.actiontrail
        if not settings.enabled:
            return
        api = self.openapi("actiontrail")
        self.trail_poller = TrailPoller(ActionTrail(api), api.regions, self.pipeline.record, settings,
                                        state_path(self.config.shipper.data_dir)).start()

    def _auditor(self):
        """With `[audit] enabled`: after each sync, the trail reconciled with it into shipper-audit. A batch
        of findings that fails to commit is found again (the same finding_uid) by the next sync."""
        if not self.config.audit.enabled:
            return None
        pipeline = self.pipeline

        def record(findings: list[dict]) -> None:
            pipeline.record(events.AUDIT_TABLE, findings, lambda ok: ok or log.warning(
                "audit: %d finding records not written; the next sync finds them again", len(findings)))

        return Auditor(lambda: open_store(self.config), record, self.config.audit.drift_window_seconds).on_synced

    def recent_events(self, instance_id: str) -> list[dict]:
        return self.engine.recent_events(instance_id) if self.engine else []

    def build_pipeline(self) -> Pipeline:
        sinks = [registry.for_settings(s).build(s, self) for s in self.config.sinks]
        self.pipeline = Pipeline(sinks, self.config.batch, enrichers=(self.instances.enrich,),
                                 max_inflight_events=self.config.shipper.max_inflight_events,
                                 max_message_bytes=self.config.shipper.max_message_bytes)
        self.health.extend(self.pipeline.sink_health)
        return self.pipeline

    def build_hooks(self) -> HookEngine | None:
        """The enabled hooks on one engine, told of every commit; None when no hook is enabled. With hooks
        on, accepted alert notifications are kept in data_dir: a repeat after a restart is known."""
        enabled = self.config.enabled_hooks()
        if not enabled:
            return None
        pipeline = self.pipeline
        self.engine = HookEngine([], lambda records, done: pipeline.record(events.ACTIONS_TABLE, records, done))
        for settings in enabled:
            hook = registry.for_settings(settings).build(settings, self)
            self.engine.hooks.append(hook)
            log.info("hook %s enabled%s", hook.name, " in DRY-RUN mode (decides and records, calls nothing that "
                     "changes the fleet)" if settings.dry_run else ": it WILL act on the fleet")
        self.pipeline.add_listener(self.engine.on_commit)
        self.alerts = AlertIntake(self.engine, AlertKeys(alert_keys_path(self.config.shipper.data_dir)))
        return self.engine

    def build_sources(self) -> list:
        """Each source; one with a `health` (e.g. MNS: its receives work) is watched by /readyz."""
        sources = [registry.for_settings(s).build(s, self) for s in self.config.sources]
        self.health.extend(source.health for source in sources if hasattr(source, "health"))
        return sources

    def close(self, sources: list, grace: float) -> bool:
        """Stop receiving, let hooks finish what is due, flush, acknowledge; True when all was written."""
        self.state = "stopping"
        for source in sources:
            source.stop()
        if self.trail_poller:
            self.trail_poller.close()
        if self.engine:
            self.engine.close(min(grace / 2, 5.0))  # undecided events come back with their messages
        drained = self.pipeline.close(grace) if self.pipeline else True
        for source in sources:
            source.close()
        if self.alerts:
            self.alerts.close()
        self.close_stores()
        if self.api:
            self.api.close()
        return drained

    def close_stores(self) -> None:
        """Stop the inventory and save the registry and the ledger: after the pipeline has flushed."""
        if self.inventory:
            self.inventory.close()
        if self._lookups:
            self._lookups.close()
        self.instances.close()
        self.ledger.close()


@contextmanager
def delivery(config: Config):
    """A started pipeline into the configured sinks with the instance registry (and, when enabled, its
    inventory), for `shipper replay`; the caller closes the pipeline (its flush), the registry and the ledger
    are saved and closed on the way out."""
    runtime = Runtime(config)
    try:
        pipeline = runtime.build_pipeline()
        runtime.start_inventory()
        yield pipeline.start()
    finally:
        runtime.close_stores()


def _progress_line(sinks: list[str]) -> str:
    """The counts so far; new rows per sink, since each sink stores an event once (a sum would count it twice)."""
    new_rows = ", ".join(f"{metrics.EVENTS_STORED.value({'sink': name}):.0f} in {name}" for name in sinks)
    return (f"{metrics.EVENTS_COMMITTED.total():.0f} events committed (new: {new_rows}), "
            f"{metrics.DEAD_LETTERS.total():.0f} dead letters, "
            f"{metrics.SINK_ERRORS.total():.0f} sink errors, {metrics.INFLIGHT.value():.0f} in flight")


NO_SOURCES_WARNING = ("no [[sources]] in the config: no events will arrive (only [actiontrail] api calls and "
                      "[inventory]/[audit] findings, when enabled); add a [[sources]] table of type \"mns\" or "
                      "\"http\" (README: Turning the demo off)")


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
    runtime = Runtime(config, on_fatal)
    started = []
    try:
        runtime.start_api()
        pipeline = runtime.build_pipeline()
        runtime.build_hooks()
        runtime.start_inventory()
        pipeline.start()
        runtime.start_actiontrail()
        for source in runtime.build_sources():
            started.append(source.start())
    except BaseException:
        runtime.close(started, config.shipper.shutdown_grace_seconds)
        raise
    runtime.state = "running"
    sink_names = [s.name for s in pipeline.sinks]
    log.info("running: %d source(s) into %s; Ctrl-C or SIGTERM stops after a flush", len(started),
             ", ".join(sink_names))
    if not started:
        log.warning("%s", NO_SOURCES_WARNING)
    last = None
    while not stop.wait(PROGRESS_EVERY_SECONDS):
        runtime.instances.try_save()  # never raises: input, stores and the registry must not end the process
        line = _progress_line(sink_names)
        if line != last:
            log.info("%s", line)
            last = line
    log.info("stopping: no new input; flushing (up to %.0f s)", config.shipper.shutdown_grace_seconds)
    drained = runtime.close(started, config.shipper.shutdown_grace_seconds)
    log.info("%s", _progress_line(sink_names))
    if fatal:
        log.error("stopped: %s", fatal[0])
        return 1
    if not drained:
        log.error("shutdown grace period ended before every batch was written; "
                  "unacknowledged messages will be delivered again by their senders")
        return 1
    log.info("stopped cleanly")
    return 0
