"""Message bytes -> JSON objects: raw JSON, JSON arrays, NDJSON, base64 JSON, form bodies.

The order of the checks is reference/events.md section 10; each failure carries a dead-letter
reason code (section 13). Classifying the objects as events is normalize's job.
"""
from __future__ import annotations

import base64
import binascii
import collections
import re
import urllib.parse

import orjson

NOT_JSON, BAD_ENCODING, NOT_AN_EVENT, TOO_LARGE = "not-json", "bad-encoding", "not-an-event", "too-large"
DEFAULT_MAX_BYTES = 1 << 20

FORM_CONTENT_TYPE = "application/x-www-form-urlencoded"
_BASE64_TEXT = re.compile(r"[A-Za-z0-9+/=\r\n]+")
# k=v&k=v with no whitespace: a form body that arrived without a content type (e.g. from a file).
_FORM_TEXT = re.compile(r"[^=&\s]+=[^&\s]*(?:&[^=&\s]+=[^&\s]*)*")
_SNIPPET_CHARS = 40
# The charsets a form push may declare, by every name it is sent under: UTF-8 (what CloudMonitor sends),
# GBK and GB18030 (Chinese-locale senders; GB2312 text is GBK text) and Latin-1. Only these: any other name
# would hand the body to an arbitrary Python codec (unicode_escape and utf-7 make lone surrogates, which no
# store can encode; punycode raises errors of its own).
_FORM_CHARSETS = {
    "utf-8": "utf-8", "utf8": "utf-8",
    "gbk": "gbk", "gb2312": "gbk", "cp936": "gbk",
    "gb18030": "gb18030",
    "latin-1": "latin-1", "latin1": "latin-1", "iso-8859-1": "latin-1", "iso8859-1": "latin-1",
}


class Rejected(Exception):
    """Input that is not an event; carries the dead-letter reason code."""

    def __init__(self, reason: str, error: str):
        super().__init__(f"{reason}: {error}")
        self.reason = reason
        self.error = error


def decode(data: bytes, *, content_type: str | None = None, max_bytes: int = DEFAULT_MAX_BYTES) -> tuple[str, list[dict]]:
    """bytes -> (text as received, decoded to str; list of JSON objects). Raises Rejected.

    The text is the UTF-8 text without a BOM and surrounding whitespace (for base64 bodies, the
    base64 text itself). Nested JSON held in strings is parsed in place (events.md section 3).
    """
    if len(data) > max_bytes:
        raise Rejected(TOO_LARGE, f"{len(data)} bytes, limit {max_bytes}")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise Rejected(BAD_ENCODING, f"not UTF-8 at byte {exc.start}") from None
    text = text.removeprefix("\ufeff").strip()
    if not text:
        raise Rejected(NOT_JSON, "empty message")

    charset = _form_charset(content_type)
    if charset and not text.startswith(("{", "[")):
        value = _parse_form(text, charset)
    elif text.startswith(("{", "[")):
        value = _parse_json(text, NOT_JSON)
    elif _BASE64_TEXT.fullmatch(text):
        value = _parse_base64(text)
    elif _FORM_TEXT.fullmatch(text):
        value = _parse_form(text, "utf-8")
    else:
        raise Rejected(NOT_JSON, f"neither JSON, base64 nor form: {_snippet(text)}")

    objects = _objects(value)
    for obj in objects:
        _unstringify(obj)
        alert = obj.get("alert")
        if isinstance(alert, dict):
            _unstringify(alert)
    return text, objects


def _form_charset(content_type: str | None) -> str | None:
    """The charset name a declared form body says (UTF-8 unless named), None when not a form."""
    if not content_type:
        return None
    media_type, *params = content_type.split(";")
    if media_type.strip().lower() != FORM_CONTENT_TYPE:
        return None
    for param in params:
        key, _, value = param.partition("=")
        if key.strip().lower() == "charset" and value.strip():
            return value.strip().strip('"')
    return "utf-8"


def _parse_json(text: str, reason: str):
    """One JSON document, or NDJSON (one document per line) as a list of the documents."""
    try:
        return orjson.loads(text)
    except orjson.JSONDecodeError as whole_error:
        if "\n" in text:
            try:
                return [orjson.loads(line) for line in text.split("\n") if line.strip()]
            except orjson.JSONDecodeError:
                pass
        raise Rejected(reason, f"invalid JSON: {whole_error}") from None


def _parse_base64(text: str):
    """Strict base64 of UTF-8 JSON (MNS bodies written by base64-encoding producers)."""
    try:
        inner = base64.b64decode(text.replace("\r", "").replace("\n", ""), validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError):
        raise Rejected(BAD_ENCODING, f"not JSON and not base64 of UTF-8 text: {_snippet(text)}") from None
    inner = inner.removeprefix("\ufeff").strip()
    if not inner.startswith(("{", "[")):
        raise Rejected(BAD_ENCODING, "base64 of something that is not JSON")
    return _parse_json(inner, BAD_ENCODING)


def _form_codec(charset: str) -> str:
    """The Python codec for a declared charset; Rejected(bad-encoding) unless it is one of _FORM_CHARSETS."""
    codec = _FORM_CHARSETS.get(charset.lower())
    if codec is None:
        raise Rejected(BAD_ENCODING, f"charset {_snippet(charset)} is not accepted; send utf-8, gbk, gb18030 or latin-1")
    return codec


def _parse_form(text: str, charset: str) -> dict:
    """Form fields as a dict of strings; a lone `data`/`body` field holding a JSON object is that object."""
    codec = _form_codec(charset)
    try:
        pairs = urllib.parse.parse_qsl(text, keep_blank_values=True, encoding=codec, errors="strict")
    except UnicodeDecodeError:
        raise Rejected(BAD_ENCODING, f"form field not valid {codec}") from None
    repeated = [name for name, n in collections.Counter(name for name, _ in pairs).items() if n > 1]
    if repeated:  # last-wins would silently pick one of two events
        raise Rejected(NOT_AN_EVENT, f"form field {_snippet(repeated[0])} sent twice; which one is meant is ambiguous")
    fields = dict(pairs)
    wrapped = fields.get("data", fields.get("body")) if len(fields) == 1 else None
    if wrapped is not None:
        try:
            inner = orjson.loads(wrapped)
        except orjson.JSONDecodeError:
            return fields
        if isinstance(inner, dict):
            return inner
    return fields


def _objects(value) -> list[dict]:
    if isinstance(value, dict):
        return [value]
    if isinstance(value, list) and value and all(isinstance(item, dict) for item in value):
        return value
    if isinstance(value, list):
        raise Rejected(NOT_AN_EVENT, "a JSON array that is not a non-empty list of objects")
    raise Rejected(NOT_AN_EVENT, f"top level is a JSON {type(value).__name__}, not an object")


def _unstringify(obj: dict) -> None:
    """Parse, in place, values that are JSON text (form-style pushes, API-style `content`)."""
    for key, value in obj.items():
        if isinstance(value, str) and value.startswith(("{", "[")):
            try:
                obj[key] = orjson.loads(value)
            except orjson.JSONDecodeError:
                pass


def _snippet(text: str) -> str:
    if len(text) <= _SNIPPET_CHARS:
        return repr(text)
    return repr(text[:_SNIPPET_CHARS]) + "…"
