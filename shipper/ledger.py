"""The delivery ledger: which event_uids each store has committed, so a redelivered copy is not sent again.

A sink asks `fresh(store, uids)` before it writes and calls `commit(store, uids)` after each request the
store accepted, so a batch that failed half-way is completed on redelivery with only what did not land.
`store` names one destination (`sls:<endpoint>/<project>/<logstore>`): two sinks never mask each other.

Before it sends a request, the sink records its uids as *pending* (`begin`), with the request's time range
and the writer (pid and process start time); the answer settles it (`commit(..., settles=pending)` or
`forget`). A request whose answer never came stays pending: when its writer was killed, `orphans` hands it to
the next process that writes to the store, which asks the store what landed. A live process's pending
requests are never handed to another.

It lives in `<data_dir>/ledger.db`, SQLite in WAL mode with a busy timeout, so several shipper processes
on one host share it. Entries are kept `days` after their commit (pruned now and then, not on every call):
MNS keeps a message at most 7 days, so a copy from a source comes back within that window.

The ledger only ever saves a duplicate, never a record: when it cannot be read or written (disk full, a
damaged file), `fresh` answers "all fresh" and `commit` forgets, the sink writes anyway (at-least-once beats
dedupe), one line is logged per failure streak and `shipper_ledger_errors_total` counts each failure.
A damaged file is moved aside and a new one started; every call retries, so it recovers by itself.
synchronous=NORMAL is enough for the same reason: a commit lost at power failure costs one duplicate.
"""
from __future__ import annotations

import logging
import os
import sqlite3
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable

import orjson

from shipper.sinks.sqlite import move_aside
from shipper.telemetry import metrics

log = logging.getLogger("shipper.ledger")

DEFAULT_DAYS = 7.0
PRUNE_EVERY_SECONDS = 600.0
BUSY_TIMEOUT_SECONDS = 10.0
# SQLite's default limit on bound parameters was 999 before 3.32; stay under it with the store bound too.
MAX_UIDS_PER_QUERY = 900


def ledger_path(data_dir: str | Path) -> Path:
    return Path(data_dir) / "ledger.db"


@dataclass(frozen=True)
class Pending:
    """A request sent whose answer has not been heard: its uids may or may not be in the store."""
    request: int
    store: str
    uids: tuple[str, ...]
    from_s: int  # the request's __time__ range, so the question to the store can be narrow
    to_s: int
    sent: float  # the ledger's clock (time.time()) when it was sent


def _process_start(pid: int) -> str:
    """When process `pid` started (clock ticks after boot, field 22 of /proc/<pid>/stat; "" where there is no
    /proc): with the pid, it tells a process from a later one that was given the same pid."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return ""
    return stat.rsplit(")", 1)[1].split()[19]  # after "pid (comm)", fields count from 3


def writer_id(pid: int) -> str:
    return f"{pid}:{_process_start(pid)}"


def is_running(writer: str) -> bool:
    """Whether the process that wrote as `writer` still runs."""
    pid, _, started = writer.partition(":")
    try:
        os.kill(int(pid), 0)
    except PermissionError:  # another user's process: it exists
        pass
    except (OSError, ValueError):
        return False
    return _process_start(int(pid)) == started


def _connect(path: Path) -> sqlite3.Connection:
    path.parent.mkdir(parents=True, exist_ok=True)
    conn = sqlite3.connect(path, check_same_thread=False, isolation_level=None, timeout=BUSY_TIMEOUT_SECONDS)
    try:
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=NORMAL")
        conn.execute("CREATE TABLE IF NOT EXISTS committed (store TEXT NOT NULL, event_uid TEXT NOT NULL, "
                     "committed_ms INTEGER NOT NULL, PRIMARY KEY (store, event_uid)) WITHOUT ROWID")
        conn.execute("CREATE INDEX IF NOT EXISTS committed_by_time ON committed (committed_ms)")
        # One row per request in flight, its uids in one JSON array: one insert and one delete per request.
        conn.execute("CREATE TABLE IF NOT EXISTS pending (request INTEGER PRIMARY KEY, store TEXT NOT NULL, "
                     "writer TEXT NOT NULL, from_s INTEGER NOT NULL, to_s INTEGER NOT NULL, "
                     "sent_ms INTEGER NOT NULL, uids BLOB NOT NULL)")
    except BaseException:
        conn.close()
        raise
    return conn


def _is_damaged(error: sqlite3.Error) -> bool:
    name = getattr(error, "sqlite_errorname", "")
    return name.startswith("SQLITE_CORRUPT") or name == "SQLITE_NOTADB"


class Ledger:
    def __init__(self, path: str | Path, *, days: float = DEFAULT_DAYS, clock: Callable[[], float] = time.time):
        """Opens on first use, and reopens after a failure: constructing it never fails."""
        self.path = Path(path)
        self.days = days
        self._clock = clock
        self._lock = threading.Lock()
        self._conn: sqlite3.Connection | None = None
        self._failing = False
        self._next_prune = 0.0
        self.writer = writer_id(os.getpid())

    def fresh(self, store: str, uids: list[str]) -> set[str]:
        """The uids the store has not committed; all of them when the ledger cannot be read."""
        wanted = set(uids)
        with self._lock:
            try:
                conn = self._connection()
                known = set()
                for start in range(0, len(uids), MAX_UIDS_PER_QUERY):
                    part = uids[start:start + MAX_UIDS_PER_QUERY]
                    marks = ",".join("?" * len(part))
                    known.update(row[0] for row in conn.execute(
                        f"SELECT event_uid FROM committed WHERE store = ? AND event_uid IN ({marks})", (store, *part)))
            except (sqlite3.Error, OSError) as error:
                self._failed("read", error)
                return wanted
            self._recovered()
            return wanted - known

    def begin(self, store: str, uids: list[str], from_s: int, to_s: int) -> Pending | None:
        """Record a request about to be sent (`from_s`..`to_s`: its __time__ range); None when the ledger cannot
        be written (the request is then sent untracked: a kill in flight may cost copies)."""
        sent = self._clock()
        with self._lock:
            try:
                request = self._connection().execute(
                    "INSERT INTO pending (store, writer, from_s, to_s, sent_ms, uids) VALUES (?, ?, ?, ?, ?, ?)",
                    (store, self.writer, from_s, to_s, int(sent * 1000), orjson.dumps(uids))).lastrowid
            except (sqlite3.Error, OSError) as error:
                self._failed("write", error)
                return None
            self._recovered()
        return Pending(request, store, tuple(uids), from_s, to_s, sent)

    def commit(self, store: str, uids: Iterable[str], *, settles: Pending | None = None) -> None:
        """Remember that the store has these uids, and drop the pending request they settle (one transaction);
        forgets them when it cannot write."""
        now = self._clock()
        rows = [(store, uid, int(now * 1000)) for uid in uids]
        with self._lock:
            try:
                conn = self._connection()
                with conn:  # commits, or rolls back on an error
                    conn.execute("BEGIN")
                    conn.executemany("INSERT OR IGNORE INTO committed VALUES (?, ?, ?)", rows)
                    if settles is not None:
                        conn.execute("DELETE FROM pending WHERE request = ?", (settles.request,))
                if now >= self._next_prune:
                    self._prune(conn, now)
            except (sqlite3.Error, OSError) as error:
                self._failed("write", error)
                return
            self._recovered()

    def forget(self, pending: Pending) -> None:
        """The request did not land (the store refused it): drop it."""
        self.commit(pending.store, (), settles=pending)

    def orphans(self, store: str) -> list[Pending]:
        """The store's pending requests whose writer no longer runs (killed in flight); none when the ledger
        cannot be read."""
        with self._lock:
            try:
                rows = self._connection().execute(
                    "SELECT request, writer, from_s, to_s, sent_ms, uids FROM pending WHERE store = ? AND writer != ?",
                    (store, self.writer)).fetchall()
            except (sqlite3.Error, OSError) as error:
                self._failed("read", error)
                return []
            self._recovered()
        gone = {writer for writer in {row[1] for row in rows} if not is_running(writer)}
        return [Pending(request, store, tuple(orjson.loads(uids)), from_s, to_s, sent_ms / 1000)
                for request, writer, from_s, to_s, sent_ms, uids in rows if writer in gone]

    def size(self) -> int:
        """event_uids remembered (for /metrics); 0 while the ledger is not open (no SLS write yet)."""
        with self._lock:
            if self._conn is None:
                return 0
            return self._conn.execute("SELECT COUNT(*) FROM committed").fetchone()[0]

    def close(self) -> None:
        with self._lock:
            if self._conn is not None:
                self._conn.close()
                self._conn = None

    # -- internals ---------------------------------------------------------------------------------------

    def _connection(self) -> sqlite3.Connection:
        if self._conn is None:
            self._conn = _connect(self.path)
        return self._conn

    def _prune(self, conn: sqlite3.Connection, now: float) -> None:
        """Forget entries older than the window: a copy that late is sent again (a duplicate, not a loss)."""
        oldest_ms = int((now - self.days * 86400) * 1000)
        removed = conn.execute("DELETE FROM committed WHERE committed_ms < ?", (oldest_ms,)).rowcount
        self._next_prune = now + PRUNE_EVERY_SECONDS
        if removed:
            log.debug("ledger %s: forgot %d entries older than %g days", self.path, removed, self.days)

    def _failed(self, what: str, error: Exception) -> None:
        metrics.LEDGER_ERRORS.inc()
        if self._conn is not None:
            self._conn.close()
            self._conn = None
        if isinstance(error, sqlite3.Error) and _is_damaged(error):
            try:
                aside = move_aside(self.path)
                log.warning("ledger %s is damaged (%s): moved it to %s; a new one starts now (copies of events "
                            "already committed may be written once more)", self.path, error, aside.name)
                return
            except OSError as move_error:
                error = move_error
        if not self._failing:
            log.warning("ledger %s: cannot %s it (%s); writing without dedupe (copies may be written more "
                        "than once) until it works again: check the disk and the file", self.path, what, error)
        self._failing = True

    def _recovered(self) -> None:
        if self._failing:
            log.warning("ledger %s works again", self.path)
            self._failing = False
