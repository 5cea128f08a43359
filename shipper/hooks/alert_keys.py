"""The alert notifications already accepted: `<data_dir>/alert_keys.db`, so a repeat never acts twice.

SLS repeats a firing alert's notification (and retries one it thinks undelivered) with the same
`fingerprint` and `fired_time`; the hook endpoint accepts each (hook, repeat key, instance) once. The keys
must outlive a restart (a repeat arriving after one must not restart an instance again), so they live in a
small SQLite file next to instances.db: one INSERT OR IGNORE per notification tells, atomically and
durably, which instances are new, with no second process or service to run. Keys older than
MAX_AGE_SECONDS are dropped: SLS stops repeating a firing long before that, and a new firing of the same
group has a new fired_time, hence a new key.

The endpoint claims a key before committing its `accepted` record, and releases it when that commit fails:
a crash between the two leaves a key without its record, so that firing's repeats are not acted on (its
next firing is). The other order would risk acting twice, which is what the key exists to prevent.
"""
from __future__ import annotations

import sqlite3
import threading
import time
from pathlib import Path
from typing import Callable

MAX_AGE_SECONDS = 7 * 86400
PRUNE_EVERY = 1000  # claims between two deletions of expired keys


def alert_keys_path(data_dir: str | Path) -> Path:
    return Path(data_dir) / "alert_keys.db"


class AlertKeys:
    """Thread-safe; `path` ":memory:" keeps the keys for this process only (an embedded server, tests)."""

    def __init__(self, path: str | Path, max_age_seconds: float = MAX_AGE_SECONDS,
                 clock: Callable[[], float] = time.time):
        if str(path) != ":memory:":
            Path(path).parent.mkdir(parents=True, exist_ok=True)
        self.max_age_seconds, self._clock = max_age_seconds, clock
        self._lock = threading.Lock()
        self._db = sqlite3.connect(str(path), check_same_thread=False, isolation_level=None)
        # WAL + synchronous=FULL: an accepted key is on disk when claim() returns, before the 200 is sent.
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=FULL")
        self._db.execute("CREATE TABLE IF NOT EXISTS alert_keys (hook TEXT, repeat_key TEXT, instance_id TEXT, "
                         "accepted REAL, PRIMARY KEY (hook, repeat_key, instance_id)) WITHOUT ROWID")
        self._claims = 0
        self._prune()

    def claim(self, hook: str, key: str, instances: list[str]) -> list[str]:
        """The instances not yet accepted for (hook, key), now marked accepted; the others are repeats."""
        now = self._clock()
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                new = [i for i in instances if self._db.execute(
                    "INSERT OR IGNORE INTO alert_keys VALUES (?, ?, ?, ?)", (hook, key, i, now)).rowcount]
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._claims += 1
            if self._claims % PRUNE_EVERY == 0:
                self._prune()
        return new

    def release(self, hook: str, key: str, instances: list[str]) -> None:
        """Forget claims whose accepted record was not committed: the sender's retry must be accepted."""
        with self._lock:
            self._db.executemany("DELETE FROM alert_keys WHERE hook = ? AND repeat_key = ? AND instance_id = ?",
                                 [(hook, key, i) for i in instances])

    def _prune(self) -> None:
        self._db.execute("DELETE FROM alert_keys WHERE accepted < ?", (self._clock() - self.max_age_seconds,))

    def close(self) -> None:
        with self._lock:
            self._db.close()
