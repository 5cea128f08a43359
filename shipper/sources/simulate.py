"""The `simulate` source: a seeded demo fleet fed through the real pipeline, like Vector's demo_logs.

It emits the fleet's recent history (event times ending now) once, paced at `rate` messages/s, and
logs what it handed over. First it describes its fleet to the instance registry, as an inventory sync
would, so the demo's rows show zone, tags and charge type with no cloud account. Remove it from
config.toml in production.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
import threading
import time
from typing import Callable

from shipper import registry
from shipper.registry import Finding
from shipper.pipeline import Message, Pipeline, Result, Status
from shipper.instances.model import Instance
from shipper.simulate import ENVELOPES, FleetSimulator, SimInstance

log = logging.getLogger("shipper.sources.simulate")

ENVELOPE_CHOICES = ("mixed",) + ENVELOPES


@dataclass(frozen=True)
class SimulateSourceSettings:
    """A demo fleet, like Vector's demo_logs: remove it in production."""
    type: str = "simulate"
    instances: int = 20
    seed: int = 1
    duration_seconds: float = 3600.0        # simulated span, ending now
    rate: float = 200.0                     # messages per second handed to the pipeline
    envelope: str = "mixed"

    def validate(self) -> None:
        registry.positive(self, "instances", "duration_seconds", "rate")
        if self.envelope not in ENVELOPE_CHOICES:
            raise registry.Invalid(f"`envelope` must be one of {', '.join(ENVELOPE_CHOICES)}, got {self.envelope!r}")


class SimulateRunner:
    def __init__(self, settings: SimulateSourceSettings, pipeline: Pipeline,
                 describe: Callable[[Instance], None] = lambda instance: None):
        """`describe`: what a DescribeInstances answer feeds (the instance registry's `remember`)."""
        self.settings = settings
        self.pipeline = pipeline
        self._describe = describe
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._retry: list[Message] = []
        self.committed = 0
        self.dead_lettered = 0
        self._thread = threading.Thread(target=self._run, name="shipper-simulate", daemon=True)

    def start(self) -> "SimulateRunner":
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(5)

    def close(self) -> None:
        """Nothing to acknowledge upstream: the demo fleet has no sender to tell."""

    def _on_done(self, message: Message, result: Result) -> None:
        with self._lock:
            if result.status is Status.FAILED:
                self._retry.append(message)
            elif result.status is Status.COMMITTED:
                self.committed += result.events
            else:
                self.dead_lettered += 1

    def _submit(self, body: bytes, message_id: str) -> None:
        message = Message(body=body, source="simulate", message_id=message_id)
        message.on_done = lambda result: self._on_done(message, result)
        self.pipeline.submit(message)

    def _run(self) -> None:
        s = self.settings
        now_ms = int(time.time() * 1000)
        sim = FleetSimulator(instances=s.instances, seed=s.seed, envelope=s.envelope,
                             start_ms=now_ms - int(s.duration_seconds * 1000), duration_s=s.duration_seconds)
        for instance in sim.fleet:
            self._describe(described(instance))
        interval = 1.0 / s.rate
        next_at = time.monotonic()
        sent = 0
        for sent, event in enumerate(sim.events(), 1):
            if self._stop.is_set():
                return
            self._submit(event.body, f"sim-{sent}")
            next_at += interval
            delay = next_at - time.monotonic()
            if delay > 0:
                self._stop.wait(delay)
        log.info("simulate source: handed over %d events of a %d-instance demo fleet (seed %d); "
                 "try `shipper search 'state: Deleted'` or `shipper lifecycle <instance_id>`",
                 sent, s.instances, s.seed)
        while not self._stop.wait(1.0):  # a sink outage: send the refused messages again
            with self._lock:
                retry, self._retry = self._retry, []
            for message in retry:
                self.pipeline.submit(message)


def described(instance: SimInstance) -> Instance:
    """A demo instance as DescribeInstances would answer for it while it runs."""
    return Instance(instance_id=instance.instance_id, status="Running", tags=dict(instance.tags),
                    spot_strategy="SpotAsPriceGo" if instance.spot else "NoSpot", charge_type=instance.charge_type,
                    zone_id=instance.zone_id, region_id=instance.region_id, instance_type=instance.instance_type,
                    instance_name=instance.name, private_ips=(instance.private_ip,),
                    public_ips=(instance.public_ip,) if instance.public_ip else ())


def check(settings: SimulateSourceSettings, config=None) -> list[Finding]:
    return [Finding("warn", f"simulate source: a demo fleet of {settings.instances} instances is enabled; "
                            f"remove it in production")]


registry.register(registry.Component(
    registry.SOURCE, "simulate", SimulateSourceSettings,
    build=lambda settings, runtime: SimulateRunner(settings, runtime.pipeline, runtime.instances.remember),
    check=check))
