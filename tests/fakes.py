"""Fakes shared by the tests: one sink, one clock."""
import threading
import time


class FakeSink:
    """A sink in memory: keeps every batch it is given; can be told to fail or to block.

    `fail`: a message; while it is set every write raises RuntimeError(fail) and keeps nothing.
    `gate`: set at first; clear it and writes block until it is set again.
    """

    name = "fake"

    def __init__(self, fail: str = ""):
        self.batches: list[tuple[str, list[dict]]] = []
        self.fail = fail
        self.gate = threading.Event()
        self.gate.set()
        self.closed = False

    def write(self, table, records):
        self.gate.wait()
        if self.fail:
            raise RuntimeError(self.fail)
        self.batches.append((table, list(records)))
        return len(records)

    def close(self):
        self.closed = True

    def rows(self, table) -> list[dict]:
        return [r for t, batch in self.batches if t == table for r in batch]


class FakeClock:
    """Time that moves only when told. Read it as `now`, by calling it or by clock(); sleep() records each
    delay in `delays` and advances `now` at once, so retry budgets and grace delays pass instantly.

    `real_sleep`: seconds of real time each sleep() also takes, so that a timer in an emulator (an instance
    going Starting -> Running, a load balancer job) can fire meanwhile.
    """

    def __init__(self, now: float = 1000.0, real_sleep: float = 0.0):
        self.now = now
        self.real_sleep = real_sleep
        self.delays: list[float] = []

    def __call__(self) -> float:
        return self.now

    def clock(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.delays.append(seconds)
        self.now += seconds
        if self.real_sleep:
            time.sleep(self.real_sleep)
