"""Whether a sink or a source works: what /readyz reports.

A part that failed is not unready at once: a sink write or a receive fails now and then and is retried.
It is unready once it has gone the ready window without success: failures since, or a write begun then
that has not committed yet (a sink retrying inside one write counts from the write's start).
"""
from __future__ import annotations

import time
from typing import Callable


class Health:
    """A part's last attempt: `trying()`, then `ok()` or `failed(reason)`; thread-safe (one tuple, swapped whole)."""

    def __init__(self, name: str, clock: Callable[[], float] = time.monotonic):
        self.name = name  # as /readyz names it: "sink sqlite", "source mns:ecs-cms-event"
        self._clock = clock
        self._trouble: tuple[float, str] | None = None  # (since when no success, why)

    def trying(self) -> None:
        """An attempt begins; it counts against the window until it succeeds."""
        if self._trouble is None:
            self._trouble = (self._clock(), "no commit yet")

    def ok(self) -> None:
        self._trouble = None

    def failed(self, reason: str) -> None:
        trouble = self._trouble
        self._trouble = (trouble[0] if trouble else self._clock(), reason)

    def problem(self, window: float) -> str:
        """"" while ready: the last attempt worked, or the trouble began under `window` seconds ago."""
        trouble = self._trouble
        if trouble is None:
            return ""
        seconds = self._clock() - trouble[0]
        return f"no success for {seconds:.0f} s: {trouble[1]}" if seconds >= window else ""


def not_ready(parts: list[Health], window: float) -> dict[str, str]:
    """What /readyz names: each part unready for `window` seconds, with why; {} when all are ready."""
    return {part.name: problem for part in parts if (problem := part.problem(window))}
