"""Hooks: a decision first, a cloud call second, both recorded in `shipper-actions`.

A hook is a small class (Cloud Custodian style) the engine (hooks/engine.py) drives:

    name: str                                   "restart" or "lb_drain"
    wants(event) -> bool                        cheap, pure: does this normalized event trigger the hook?
    delay_seconds(event) -> float               how long after receipt to decide (restart: grace delay)
    run(event, trigger, emit) -> None           blocking; runs on a worker thread, one at a time per
                                                instance; calls emit(record) exactly once with the
                                                decision record, and again for each later outcome record

Records are dicts over events.ACTION_FIELDS (see `action_record`). The engine commits them through the
pipeline; the message that carried the event is acknowledged once every hook's decision record committed.
"""
from __future__ import annotations

import time
from typing import Callable, Protocol

from shipper import events

ACTED, DRY_RUN, SKIPPED = "acted", "dry-run", "skipped"
SUCCEEDED, FAILED, PENDING = "succeeded", "failed", "pending"
INLINE, ALERT = "inline", "alert"


class Hook(Protocol):
    name: str

    def wants(self, event: dict) -> bool: ...

    def delay_seconds(self, event: dict) -> float: ...

    def run(self, event: dict, trigger: str, emit: Callable[[dict], None]) -> None: ...


def now_text() -> str:
    return events.format_time_ms(int(time.time() * 1000))


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
