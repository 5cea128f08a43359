"""Hand-written decoder for the SLS LogGroup protobuf (reference/sls.md section 4.1).

The SLS emulator decodes PutLogs bodies with this instead of the SDK's generated classes, so a
mistake in what the client puts on the wire cannot cancel out against the same mistake on the
server side. Only proto2 wire rules are used: unknown fields are skipped, required fields are
checked, strings must be UTF-8.
"""
from __future__ import annotations

from typing import NamedTuple


class WireError(ValueError):
    """The bytes are not a valid LogGroup."""


class EncodingError(WireError):
    """A string field is not valid UTF-8."""


class Log(NamedTuple):
    time: int
    time_ns: int | None
    contents: list[tuple[str, str]]


class LogGroup(NamedTuple):
    logs: list[Log]
    topic: str
    source: str
    machine_uuid: str
    tags: list[tuple[str, str]]


_VARINT, _FIXED64, _LENGTH, _FIXED32 = 0, 1, 2, 5
_UINT32_MAX = 0xFFFFFFFF


def decode_log_group(buf: bytes) -> LogGroup:
    """Decode one serialized LogGroup; raise WireError (or EncodingError) when it is malformed."""
    try:
        return _log_group(buf)
    except IndexError:
        raise WireError("truncated message") from None


def _varint(buf: bytes, pos: int) -> tuple[int, int]:
    byte = buf[pos]
    if byte < 0x80:
        return byte, pos + 1
    result = byte & 0x7F
    shift = 7
    pos += 1
    while True:
        byte = buf[pos]
        pos += 1
        result |= (byte & 0x7F) << shift
        if byte < 0x80:
            return result, pos
        shift += 7
        if shift >= 64:
            raise WireError("varint longer than 10 bytes")


def _length_delimited(buf: bytes, pos: int, end: int) -> tuple[int, int]:
    """Return (start, stop) of the payload that begins at pos."""
    length, pos = _varint(buf, pos)
    stop = pos + length
    if stop > end:
        raise WireError("length-delimited field runs past its message")
    return pos, stop


def _text(buf: bytes, start: int, stop: int) -> str:
    try:
        return buf[start:stop].decode()
    except UnicodeDecodeError:
        raise EncodingError("string field is not valid UTF-8") from None


def _skip(buf: bytes, pos: int, end: int, wire_type: int) -> int:
    if wire_type == _VARINT:
        return _varint(buf, pos)[1]
    if wire_type == _LENGTH:
        return _length_delimited(buf, pos, end)[1]
    if wire_type == _FIXED32:
        pos += 4
    elif wire_type == _FIXED64:
        pos += 8
    else:
        raise WireError(f"unsupported wire type {wire_type}")
    if pos > end:
        raise WireError("fixed-width field runs past its message")
    return pos


def _log_group(buf: bytes) -> LogGroup:
    logs: list[Log] = []
    tags: list[tuple[str, str]] = []
    strings = {3: "", 4: "", 5: ""}
    end = len(buf)
    pos = 0
    while pos < end:
        tag, pos = _varint(buf, pos)
        field, wire_type = tag >> 3, tag & 7
        if wire_type == _LENGTH and field in (1, 3, 4, 5, 6):
            start, pos = _length_delimited(buf, pos, end)
            if field == 1:
                logs.append(_log(buf, start, pos))
            elif field == 6:
                tags.append(_pair(buf, start, pos))
            else:
                strings[field] = _text(buf, start, pos)
        elif field in (1, 3, 4, 5, 6):
            raise WireError(f"LogGroup field {field} has wire type {wire_type}")
        else:
            pos = _skip(buf, pos, end, wire_type)
    return LogGroup(logs, strings[3], strings[4], strings[5], tags)


def _log(buf: bytes, pos: int, end: int) -> Log:
    time = None
    time_ns = None
    contents: list[tuple[str, str]] = []
    append = contents.append
    while pos < end:
        if buf[pos] == 0x12:  # Contents: the hot path, nearly all of a PutLogs body
            pos += 1
            length = buf[pos]
            if length < 0x80:
                pos += 1
            else:
                length, pos = _varint(buf, pos)
            stop = pos + length
            if stop > end:
                raise WireError("Log.Contents runs past its message")
            append(_content(buf, pos, stop))
            pos = stop
            continue
        tag, pos = _varint(buf, pos)
        if tag == 0x08:  # Time, varint
            time, pos = _varint(buf, pos)
            if time > _UINT32_MAX:
                raise WireError("Log.Time does not fit uint32")
        elif tag == 0x25:  # Time_ns, fixed32
            if pos + 4 > end:
                raise WireError("Log.Time_ns runs past its message")
            time_ns = int.from_bytes(buf[pos:pos + 4], "little")
            pos += 4
        elif tag >> 3 in (1, 2, 4):
            raise WireError(f"Log field {tag >> 3} has wire type {tag & 7}")
        else:
            pos = _skip(buf, pos, end, tag & 7)
    if time is None:
        raise WireError("Log.Time is required")
    return Log(time, time_ns, contents)


def _content(buf: bytes, pos: int, end: int) -> tuple[str, str]:
    """Decode the usual layout `0a <len> key 12 <len> value` directly; anything else goes to _pair."""
    if buf[pos] == 0x0A:
        key_len = buf[pos + 1]
        if key_len < 0x80:
            key_stop = pos + 2 + key_len
            if key_stop < end and buf[key_stop] == 0x12:
                value_start = key_stop + 2
                value_len = buf[key_stop + 1]
                if value_len >= 0x80:
                    value_len = (value_len & 0x7F) | (buf[value_start] << 7)
                    value_start += 1
                    if value_len >= 0x4000:
                        return _pair(buf, pos, end)
                if value_start + value_len == end:
                    try:
                        return buf[pos + 2:key_stop].decode(), buf[value_start:end].decode()
                    except UnicodeDecodeError:
                        raise EncodingError("string field is not valid UTF-8") from None
    return _pair(buf, pos, end)


def _pair(buf: bytes, pos: int, end: int) -> tuple[str, str]:
    """Decode a Content or LogTag message: Key = 1, Value = 2, both required strings."""
    key = value = None
    while pos < end:
        tag, pos = _varint(buf, pos)
        if tag == 0x0A:
            start, pos = _length_delimited(buf, pos, end)
            key = _text(buf, start, pos)
        elif tag == 0x12:
            start, pos = _length_delimited(buf, pos, end)
            value = _text(buf, start, pos)
        elif tag >> 3 in (1, 2):
            raise WireError(f"key/value field {tag >> 3} has wire type {tag & 7}")
        else:
            pos = _skip(buf, pos, end, tag & 7)
    if key is None or value is None:
        raise WireError("Key and Value are required")
    return key, value
