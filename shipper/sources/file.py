"""File source (`shipper replay`): a JSON file, an NDJSON file, or a folder of them.

Each NDJSON line is its own message, so one bad line is dead-lettered alone; any other file is one
message (a JSON object, a JSON array of events, a base64 MNS body or a form body).
"""
from __future__ import annotations

import collections
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterator

from shipper.pipeline import Message, Pipeline, Result, Status
from shipper.telemetry import metrics


class ReplayError(Exception):
    """PATH cannot be read; the message names it."""


def list_files(path: Path) -> list[Path]:
    if path.is_dir():
        return sorted(p for p in path.rglob("*") if p.is_file() and not any(part.startswith(".") for part in p.relative_to(path).parts))
    if path.is_file():
        return [path]
    raise ReplayError(f"{path}: no such file or folder")


def _is_ndjson(lines: list[bytes]) -> bool:
    filled = [line.strip() for line in lines if line.strip()]
    return len(filled) > 1 and filled[0].startswith(b"{") and filled[0].endswith(b"}")


def split_messages(data: bytes, name: str) -> Iterator[tuple[str, bytes]]:
    """NDJSON -> one message per non-blank line (id `name:line`); anything else -> one message."""
    lines = data.splitlines()
    if _is_ndjson(lines):
        for number, line in enumerate(lines, 1):
            if line.strip():
                yield f"{name}:{number}", line
    else:
        yield name, data


def iter_messages(path: Path) -> Iterator[tuple[str, bytes]]:
    """(message id, body) for every message under `path`, in a stable order."""
    for file in list_files(path):
        try:
            data = file.read_bytes()
        except OSError as e:
            raise ReplayError(f"{file}: cannot read: {e.strerror or e}") from None
        yield from split_messages(data, str(file))


@dataclass
class ReplaySummary:
    messages: int = 0
    events: int = 0
    dead_lettered: int = 0
    failed: int = 0
    reasons: collections.Counter = field(default_factory=collections.Counter)
    new_events: dict[str, int] = field(default_factory=dict)  # per sink: events it did not hold before


def total_bytes(path: Path) -> int:
    return sum(f.stat().st_size for f in list_files(path))


def replay(path: Path, pipeline: Pipeline, on_progress: Callable[[int], None], timeout: float) -> ReplaySummary:
    """Feed every message under `path` through `pipeline`, flush, and count the outcomes."""
    summary = ReplaySummary()
    stored_before = {sink.name: _stored(sink.name) for sink in pipeline.sinks}
    lock = threading.Lock()

    settled = 0

    def on_done(result: Result) -> None:
        nonlocal settled
        with lock:
            settled += 1
            if result.status is Status.COMMITTED:
                summary.events += result.events
            elif result.status is Status.DEAD_LETTERED:
                summary.dead_lettered += 1
                summary.reasons[result.reason] += 1
            else:
                summary.failed += 1

    for message_id, body in iter_messages(path):
        pipeline.submit(Message(body=body, source="file", message_id=message_id, on_done=on_done))
        summary.messages += 1
        on_progress(len(body) + 1)
    pipeline.close(timeout)
    with lock:
        summary.failed += summary.messages - settled  # never answered: the flush ran out of time
    summary.new_events = {name: _stored(name) - before for name, before in stored_before.items()}
    return summary


def _stored(sink: str) -> int:
    """Event rows new to `sink` so far in this process (each sink counts its own, pipeline.py)."""
    return int(metrics.EVENTS_STORED.value({"sink": sink}))
