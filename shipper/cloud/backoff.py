"""Exponential backoff with jitter: the one formula behind every retried cloud call.

A wait is min(cap, base * 2**attempt) seconds scaled by a uniform draw between `floor` and 1. With floor 0
(full jitter) consumers that failed together do not retry in step. Each caller keeps its own loop, since
what ends one differs (a stop event, a deadline, an attempt count), and its own base, cap and numbering
of `attempt`; only the arithmetic lives here. `rng` is injectable; the default is the `random` module.
"""
from __future__ import annotations

import random
from dataclasses import dataclass

MAX_DOUBLINGS = 20  # base * 2**20 is past every cap in use; keeps the float finite whatever the attempt


@dataclass(frozen=True)
class Backoff:
    base: float         # seconds at attempt 0
    cap: float          # the step never exceeds this
    floor: float = 0.0  # the smallest share of the step a wait can be; 0 is full jitter

    def step(self, attempt: int) -> float:
        """The un-jittered wait after `attempt` doublings."""
        return min(self.cap, self.base * 2 ** min(attempt, MAX_DOUBLINGS))

    def seconds(self, attempt: int, rng: random.Random = random) -> float:  # type: ignore[assignment]
        """A jittered wait, between floor * step(attempt) and step(attempt)."""
        if self.floor:
            return self.step(attempt) * rng.uniform(self.floor, 1.0)
        return rng.uniform(0, self.step(attempt))
