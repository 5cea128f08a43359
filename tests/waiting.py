"""Polling for tests that watch another thread or process."""
import time


def wait_until(predicate, timeout: float = 60.0, interval: float = 0.02) -> None:
    """Return once predicate() is true; fail the test if it is not within `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, f"condition not reached within {timeout} s"
        time.sleep(interval)
