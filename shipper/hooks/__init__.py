"""Hooks: a decision first, a cloud call second, both recorded in `shipper-actions`.

A hook is a small class (Cloud Custodian style) the engine (hooks/engine.py) drives:

    name: str                                   "restart" or "lb_drain"
    dry_run: bool                               decide and record, never change the fleet
    wants(event) -> bool                        cheap, pure: does this normalized event trigger the hook?
    delay_seconds(event) -> float               how long after receipt to decide (restart: grace delay)
    decide(event, trigger) -> dict | Act        blocking; runs on a worker thread, one at a time per
                                                instance: a record that ends the matter (a skip), or an
                                                Act to change the fleet

Dry-run is applied in one place, `execute`: an Act's `dry_run` record is recorded instead of acting.
Records are dicts over events.ACTION_FIELDS (see `action_record`). The engine commits them through the
pipeline; the message that carried the event is acknowledged once every hook's decision record committed.
"""
from __future__ import annotations

import json
import time
from dataclasses import dataclass
from typing import Callable, Protocol

from shipper import registry
from shipper.times import format_time_ms

ACTED, DRY_RUN, SKIPPED = "acted", "dry-run", "skipped"
SUCCEEDED, FAILED, PENDING = "succeeded", "failed", "pending"
INLINE, ALERT = "inline", "alert"


Emit = Callable[[dict], None]


@dataclass(frozen=True)
class Act:
    """A decision to change the fleet: `dry_run` is the record a dry run keeps; `act(emit)` changes the
    fleet, emitting its decision record first and then each outcome record."""
    dry_run: dict
    act: Callable[[Emit], None]


class Hook(Protocol):
    name: str
    dry_run: bool

    def wants(self, event: dict) -> bool: ...

    def delay_seconds(self, event: dict) -> float: ...

    def decide(self, event: dict, trigger: str) -> "dict | Act": ...


def execute(hook: Hook, event: dict, trigger: str, emit: Emit) -> None:
    """Decide, then record or act: the one place dry-run is applied."""
    decision = hook.decide(event, trigger)
    if not isinstance(decision, Act):
        emit(decision)
    elif hook.dry_run:
        emit(decision.dry_run)
    else:
        decision.act(emit)


def detail_json(detail: dict) -> str:
    """A record's `detail`: compact JSON, keys in a stable order."""
    return json.dumps(detail, separators=(",", ":"), sort_keys=True)


def now_text() -> str:
    return format_time_ms(int(time.time() * 1000))


def action_record(*, hook: str, trigger: str, event: dict, decision: str, reason: str = "", outcome: str = "",
                  error_code: str = "", stop_cause: str = "", finished: bool = False,
                  seconds_before_reclaim: float | None = None, detail: str = "",
                  decided_time: str = "") -> dict:
    """One `shipper-actions` row; every field a string, as the stores expect.

    An outcome record repeats its decision's `decided_time` and gets `finished_time` = now."""
    stamp = now_text()
    return {
        "event_uid": event.get("event_uid", ""),
        "hook": hook,
        "trigger": trigger,
        "instance_id": event.get("instance_id", ""),
        "decision": decision,
        "reason": reason,
        "outcome": outcome,
        "error_code": error_code,
        "stop_cause": stop_cause,
        "decided_time": decided_time or stamp,
        "finished_time": stamp if finished else "",
        "seconds_before_reclaim": "" if seconds_before_reclaim is None else f"{seconds_before_reclaim:.3f}",
        "detail": detail,
    }


def validate_opt_in(settings) -> None:
    """The opt-in settings every hook has: `opt_in_tag` is TagKey=TagValue when set."""
    if settings.opt_in_tag and "=" not in settings.opt_in_tag:
        raise registry.Invalid(f"`opt_in_tag` must be TagKey=TagValue, got {settings.opt_in_tag!r}")


def not_negative(settings, *names: str) -> None:
    for name in names:
        if getattr(settings, name) < 0:
            raise registry.Invalid(f"`{name}` must be 0 or more, got {getattr(settings, name)!r}")
