"""Time parsing and formatting, in one place: pure, standard library only.

- The schema's event times (reference/events.md §8): parse_time_ms() reads every form an envelope may carry,
  format_time_ms() writes the schema's UTC text `YYYY-MM-DDTHH:MM:SS.mmmZ`. Both run for every event.
  format_cms_time_ms() and format_rfc3339_seconds() write two of the envelopes' forms (the simulator).
- The CLI's windows: parse_duration_ms() (`30m`, `7d`), parse_instant_ms() and window() (--since/--from/--to),
  and format_duration() for a lifetime.
- What other parts of shipper read: the schema's text back as epoch seconds (parse_schema_seconds), ECS's
  minute times (parse_minute_seconds), ISO 8601 text as stored in action and dead-letter records
  (parse_iso_ms), and the SQL time functions' values (datetime_from_seconds, to_utc_datetime,
  format_sql_timestamp).
"""
from __future__ import annotations

import datetime as _dt
import functools
import math
import re
import time
from decimal import Decimal

EPOCH_SECONDS_BELOW = 10**11  # smaller epoch numbers are seconds, not milliseconds
MAX_MS = 253402300800000  # 10000-01-01T00:00:00Z, beyond what format_time_ms can print
PRC_OFFSET_MINUTES = 8 * 60
CHINA_STANDARD_TIME = _dt.timezone(_dt.timedelta(minutes=PRC_OFFSET_MINUTES))
# Basic (20250614T091502.114+0800) and extended (2025-06-14T09:15:02.114+08:00) ISO 8601; seconds optional.
_TIME_TEXT = re.compile(
    r"(\d{4})-?(\d{2})-?(\d{2})T(\d{2}):?(\d{2})(?::?(\d{2})(?:\.(\d+))?)?(Z|PRC|([+-])(\d{2}):?(\d{2}))?",
    re.ASCII,
)
SCHEMA_TIME_FORMAT = "%Y-%m-%dT%H:%M:%S.%fZ"
MINUTE_TIME_FORMATS = ("%Y-%m-%dT%H:%MZ", "%Y-%m-%dT%H:%M:%SZ")
_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(s|m|h|d|w)\s*$")
_UNIT_MS = {"s": 1000, "m": 60_000, "h": 3_600_000, "d": 86_400_000, "w": 604_800_000}
_DATE = re.compile(r"\d{4}-\d{2}-\d{2}", re.ASCII)
_DATE_SPACE_TIME = re.compile(r"^(\d{4}-\d{2}-\d{2}) +(\d)", re.ASCII)


# ---------------------------------------------------------------------------------------------------
# The schema's event times (hot path: every event)

def format_time_ms(ms: int) -> str:
    """Epoch milliseconds -> the schema's UTC text `YYYY-MM-DDTHH:MM:SS.mmmZ`."""
    return _second_text(ms // 1000) + f"{ms % 1000:03d}Z"


@functools.lru_cache(maxsize=4096)
def _second_text(seconds: int) -> str:
    """Cached: every event formats two times, and they cluster (strftime was 8% of the MNS path's CPU)."""
    return _dt.datetime.fromtimestamp(seconds, tz=_dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.")


def format_cms_time_ms(ms: int) -> str:
    """Epoch milliseconds -> CloudMonitor's basic ISO 8601 in China time: `20250614T091502.114+0800`."""
    local = _dt.datetime.fromtimestamp(ms // 1000, tz=CHINA_STANDARD_TIME)
    return local.strftime("%Y%m%dT%H%M%S") + f".{ms % 1000:03d}+0800"


def format_rfc3339_seconds(seconds: int) -> str:
    """Epoch seconds -> RFC 3339, UTC, whole seconds (system-event content times): `2025-06-14T01:15:02Z`."""
    return _dt.datetime.fromtimestamp(seconds, tz=_dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_time_ms(value) -> int | None:
    """Every time format of events.md §8 -> epoch ms (UTC), None when unparseable; truncate sub-ms digits."""
    if isinstance(value, str):
        text = value.strip()
        if not (text.isascii() and text.isdigit()):
            return _parse_time_text(text)
        try:
            value = int(text)
        except ValueError:  # longer than Python's int-from-text limit
            return None
    if isinstance(value, bool):
        return None
    if isinstance(value, float):
        if not math.isfinite(value):
            return None
        value = Decimal(repr(value))  # exact decimal digits, so truncation matches what was written
    elif not isinstance(value, int):
        return None
    ms = int(value * 1000) if value < EPOCH_SECONDS_BELOW else int(value)
    return ms if 0 <= ms < MAX_MS else None


def _parse_time_text(text: str) -> int | None:
    match = _TIME_TEXT.fullmatch(text)
    if not match:
        return None
    year, month, day, hour, minute, second, fraction, zone, sign, zone_hours, zone_minutes = match.groups()
    try:
        moment = _dt.datetime(int(year), int(month), int(day), int(hour), int(minute), int(second or 0),
                              tzinfo=_dt.timezone.utc)
    except ValueError:
        return None
    if sign:
        if int(zone_hours) > 23 or int(zone_minutes) > 59:
            return None
        offset_minutes = (1 if sign == "+" else -1) * (int(zone_hours) * 60 + int(zone_minutes))
    else:
        offset_minutes = PRC_OFFSET_MINUTES if zone == "PRC" else 0
    ms = int(moment.timestamp()) * 1000 + int((fraction or "")[:3].ljust(3, "0")) - offset_minutes * 60_000
    return ms if 0 <= ms < MAX_MS else None


# ---------------------------------------------------------------------------------------------------
# The CLI's windows and durations

def parse_duration_ms(text: str) -> int:
    """`90s`, `30m`, `24h`, `7d`, `2w` -> milliseconds; ValueError names the accepted forms."""
    match = _DURATION.match(text)
    if not match:
        raise ValueError(f"{text!r} is not a duration; use a number and a unit: 90s, 30m, 24h, 7d, 2w")
    return int(float(match.group(1)) * _UNIT_MS[match.group(2)])


def parse_instant_ms(text: str, *, day_end: bool = False) -> int:
    """An ISO 8601 / RFC 3339 time (`T` or a space between date and time; no zone means UTC), a UTC date, or
    epoch seconds/ms -> epoch ms; ValueError names the forms. A date is the start of its day, or with `day_end`
    the start of the next (a window's end is exclusive, so `--to 2025-06-14` takes in that whole day)."""
    text = text.strip()
    if _DATE.fullmatch(text):
        ms = parse_time_ms(text + "T00:00Z")
        if ms is not None:
            return ms + _UNIT_MS["d"] if day_end else ms
    ms = parse_time_ms(_DATE_SPACE_TIME.sub(r"\1T\2", text))
    if ms is None:
        raise ValueError(f"{text!r} is not a time; use 2025-06-14T01:15:02Z, 2025-06-14 01:15:02, 2025-06-14 "
                         "or epoch seconds")
    return ms


def window(since: str | None, start: str | None, end: str | None, now_ms: int | None = None) -> tuple[int | None, int | None]:
    """[from_ms, to_ms) for --since or --from/--to; None means unbounded. A date as --to includes its day."""
    now_ms = int(time.time() * 1000) if now_ms is None else now_ms
    if since and (start or end):
        raise ValueError("use --since, or --from/--to, not both")
    if since:
        return now_ms - parse_duration_ms(since), None
    from_ms = parse_instant_ms(start) if start else None
    to_ms = parse_instant_ms(end, day_end=True) if end else None
    if from_ms is not None and to_ms is not None and from_ms > to_ms:
        raise ValueError("--from is later than --to")
    return from_ms, to_ms


def format_duration(ms: int) -> str:
    """Milliseconds -> `HH:MM:SS`, with `Nd ` in front past a day; negative is zero."""
    seconds = max(ms, 0) // 1000
    days, rest = divmod(seconds, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, seconds = divmod(rest, 60)
    parts = [f"{days}d"] if days else []
    parts.append(f"{hours:02d}:{minutes:02d}:{seconds:02d}")
    return " ".join(parts)


# ---------------------------------------------------------------------------------------------------
# Other texts shipper reads back

def parse_schema_seconds(text: str) -> float:
    """The schema's `YYYY-MM-DDTHH:MM:SS.mmmZ` (what format_time_ms writes) -> epoch seconds; ValueError otherwise."""
    return _dt.datetime.strptime(text, SCHEMA_TIME_FORMAT).replace(tzinfo=_dt.timezone.utc).timestamp()


def parse_minute_seconds(text: str) -> float | None:
    """ECS times: `2025-06-14T01:15Z` (minutes), sometimes with seconds -> epoch seconds; None otherwise."""
    for fmt in MINUTE_TIME_FORMATS:
        try:
            return _dt.datetime.strptime(text, fmt).replace(tzinfo=_dt.timezone.utc).timestamp()
        except ValueError:
            continue
    return None


def parse_iso_ms(text: str) -> int:
    """ISO 8601 text (datetime.fromisoformat's forms; without an offset, local time) -> epoch ms; ValueError otherwise."""
    return int(_dt.datetime.fromisoformat(text).timestamp() * 1000)


def datetime_from_seconds(seconds: float) -> _dt.datetime | None:
    """Unix seconds as a UTC datetime; None when out of datetime's range."""
    try:
        return _dt.datetime.fromtimestamp(seconds, tz=_dt.timezone.utc)
    except (OverflowError, OSError, ValueError):
        return None


def to_utc_datetime(value) -> _dt.datetime | None:
    """Unix seconds, or timestamp text (`YYYY-MM-DD HH:MM:SS[.fff]`, ISO 8601; no offset means UTC), as a
    UTC datetime; None for anything else."""
    if value is None:
        return None
    if isinstance(value, (int, float)):
        return datetime_from_seconds(value)
    try:
        parsed = _dt.datetime.fromisoformat(str(value))
    except ValueError:
        return None
    return parsed.replace(tzinfo=_dt.timezone.utc) if parsed.tzinfo is None else parsed.astimezone(_dt.timezone.utc)


def format_sql_timestamp(t: _dt.datetime) -> str:
    """SLS's timestamp display, `YYYY-MM-DD HH:MM:SS.mmm`."""
    return t.strftime("%Y-%m-%d %H:%M:%S.") + f"{t.microsecond // 1000:03d}"
