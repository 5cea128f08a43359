"""ActionTrail LookupEvents (2020-07-06): the ECS write calls of a region, through the OpenAPI client.

The request is signed RPC like every other OpenAPI call, so it goes through `OpenApi._call` (the same
client, regional endpoint or `[openapi] actiontrail_endpoint`, error mapping and retries of throttling,
busy and 5xx answers with backoff). What is particular to LookupEvents (reference/actiontrail.md §1):
- the filter is two LookupAttribute pairs, ServiceName=Ecs and EventRW=Write (an allowed pair, §1.3);
- MaxResults is at most 50; NextToken pages, with every other parameter unchanged (§1.2);
- a window spans at most 30 days (the safe reading of a 30-vs-90-day contradiction, §1.2), so longer ones are
  asked in chunks; an event at the second where two chunks meet is yielded once;
- at most 2 calls a second per account (§1.11): one client paces its own calls.
"""
from __future__ import annotations

import threading
import time
from typing import Callable, Iterator

from shipper.cloud.openapi import ACTIONTRAIL, OpenApi
from shipper.times import format_rfc3339_seconds, parse_time_ms

MAX_RESULTS = 50                    # LookupEvents MaxResults: 1-50
MAX_WINDOW_SECONDS = 30 * 86400     # one request's StartTime..EndTime
CALLS_PER_SECOND = 2.0              # the documented LookupEvents limit
PACE_MARGIN = 1.1                   # calls 10% further apart than the limit: a request late on the wire stays in
FILTER = {"LookupAttribute.1.Key": "ServiceName", "LookupAttribute.1.Value": "Ecs",
          "LookupAttribute.2.Key": "EventRW", "LookupAttribute.2.Value": "Write"}


class ActionTrail:
    def __init__(self, openapi: OpenApi, *, calls_per_second: float = CALLS_PER_SECOND,
                 clock: Callable[[], float] = time.monotonic, sleep: Callable[[float], None] = time.sleep):
        self._openapi = openapi
        self._interval = PACE_MARGIN / calls_per_second
        self._clock = clock
        self._sleep = sleep
        self._lock = threading.Lock()
        self._next_call = 0.0

    def lookup_events(self, region_id: str, start_ms: int, end_ms: int) -> Iterator[dict]:
        """Every ECS write event of the region whose eventTime is within [start_ms, end_ms] (whole seconds,
        widened outwards), oldest first (Direction FORWARD), all pages. Raises CloudError when a call fails
        after its retries; what was yielded before stays valid."""
        carried: set[str] = set()   # ids already yielded at the second where the previous chunk ended
        for start_s, end_s in windows(start_ms // 1000, -(-end_ms // 1000)):
            at_end: set[str] = set()
            for event in self._pages(region_id, start_s, end_s):
                event_id = event.get("eventId")
                if event_id in carried:
                    continue
                if (parse_time_ms(event.get("eventTime")) or 0) >= end_s * 1000:
                    at_end.add(event_id)
                yield event
            carried = at_end

    def _pages(self, region_id: str, start_s: int, end_s: int) -> Iterator[dict]:
        params = {"StartTime": format_rfc3339_seconds(start_s), "EndTime": format_rfc3339_seconds(end_s),
                  "Direction": "FORWARD", "MaxResults": str(MAX_RESULTS), **FILTER}
        token = ""
        while True:
            self._pace()
            body = self._openapi._call(ACTIONTRAIL, "LookupEvents", params | ({"NextToken": token} if token else {}),
                                       region_id)
            yield from (event for event in body.get("Events") or [] if isinstance(event, dict))
            token = body.get("NextToken") or ""
            if not token:
                return

    def _pace(self) -> None:
        """Wait until this client's next call keeps within `calls_per_second`."""
        with self._lock:
            wait = self._next_call - self._clock()
            if wait > 0:
                self._sleep(wait)
            self._next_call = self._clock() + self._interval


def windows(start_s: int, end_s: int) -> list[tuple[int, int]]:
    """[start, end] as consecutive windows of at most MAX_WINDOW_SECONDS; none when end is before start."""
    bounds = list(range(start_s, end_s, MAX_WINDOW_SECONDS)) + [end_s]
    return list(zip(bounds, bounds[1:])) if end_s > start_s else []
