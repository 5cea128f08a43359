"""A local SLS (Simple Log Service) that aliyun-log-python-sdk 0.9.52 talks to unchanged.

Everything it answers follows Alibaba Cloud's documented SLS API (reference/sls.md in the team's
shared notes; section numbers below refer to it):
project from the Host header (section 1), V1 signatures and Content-MD5 checked (section 3), PutLogs
bodies decompressed and decoded by an independent protobuf reader (section 4), GetLogs v2 and v1
over what was stored with a subset of the search language (sections 6 and 7; the SQL part is
refused with EmulatorUnsupported), logstore/index/dashboard/saved search/alert CRUD (sections 8, 9),
the account-level alert resource records of section 9 (`/resources/<name>/records`, no project in Host)
and runtime fault knobs (section 11).

In-process:
    with SlsEmulator(credentials={ak: secret}) as sls:
        sls.create_project("ecs-audit")
        client = LogClient(sls.endpoint, ak, secret, source="test"); client._isRowIp = True
Standalone: ALIBABA_CLOUD_ACCESS_KEY_ID=… ALIBABA_CLOUD_ACCESS_KEY_SECRET=… \
            python -m tests.emulators.sls --port 8081 --project ecs-audit
"""
from __future__ import annotations

import argparse
import base64
import copy
import email.utils
import fnmatch
import functools
import hashlib
import hmac
import itertools
import json
import os
import random
import re
import threading
import time
import traceback
import uuid
import zlib
from collections import Counter
from dataclasses import dataclass, field
from typing import Callable, Mapping, NamedTuple
from urllib.parse import parse_qsl, unquote, urlsplit

import lz4.block

from ._common import EmulatorHandler, EmulatorServer, ServiceLifecycle, serve_until_interrupted
from .protobuf_wire import EncodingError, WireError, decode_log_group

# --------------------------------------------------------------------------------------------------
# Errors


class SlsError(Exception):
    """An error answer: HTTP status plus the JSON {"errorCode", "errorMessage"} of section 2."""

    def __init__(self, status: int, code: str, message: str):
        super().__init__(f"{status} {code}: {message}")
        self.status = status
        self.code = code
        self.message = message


# Error codes follow sections 2, 5, 6 and 8. Not in the reference, so inferred from the naming of the
# documented ones: InvalidContentMD5, DashboardAlreadyExist, SavedSearchAlreadyExist, JobAlreadyExist,
# ParameterInvalid (bad entity bodies), InvalidHost. Alert resource records: ResourceRecordNotExist is the
# code the official Python and Java SDKs' own tests expect; ResourceRecordAlreadyExist and both statuses
# (404, 400) are inferred. EmulatorUnsupported (SQL, unimplemented APIs) and EmulatorError (a bug here) are
# this emulator's own and never come from the real service.

# Codes the fault knobs can inject, with the status and a message shaped like the service's.
FAULT_ERRORS = {
    "InternalServerError": (500, "Internal server error."),
    "ServerBusy": (503, "The server is busy, please try again later."),
    "WriteQuotaExceed": (403, "Project write quota exceed: inflow: 104857600, qps: 600000"),
    "ShardWriteQuotaExceed": (403, "Shard write quota exceed: Write QPS Exceed"),
    "ExceedQuota": (403, "Inflow Quota Exceed"),
    "SignatureNotMatch": (401, "Signature not match (injected fault)"),
    "Unauthorized": (401, "The security token you provided has expired (injected fault)"),
}

# --------------------------------------------------------------------------------------------------
# Signature V1 (section 3)


def canonical_resource(path: str, query: Mapping[str, str]) -> str:
    """Path plus the decoded query pairs sorted by key, values not percent-encoded."""
    if not query:
        return path
    return path + "?" + "&".join(f"{key}={value}" for key, value in sorted(query.items()))


def _is_signed_header(name: str) -> bool:
    return name.startswith("x-acs-") or (
        name.startswith("x-log-") and name != "x-log-date" and not name.startswith("x-log-meta-")
    )


def string_to_sign(method: str, path: str, query: Mapping[str, str], headers: Mapping[str, str]) -> str:
    """The V1 StringToSign; header names in `headers` must be lower-case."""
    log_headers = "".join(
        f"{name}:{value}\n" for name, value in sorted(headers.items()) if _is_signed_header(name)
    )
    return (
        f"{method}\n{headers.get('content-md5', '')}\n{headers.get('content-type', '')}\n"
        f"{headers.get('date', '')}\n{log_headers}{canonical_resource(path, query)}"
    )


def signature(secret: str, text: str) -> str:
    digest = hmac.new(secret.encode("utf-8"), text.encode("utf-8"), hashlib.sha1).digest()
    return base64.b64encode(digest).decode("ascii")


# --------------------------------------------------------------------------------------------------
# Configuration, stored data, fault knobs


@dataclass
class Limits:
    """Request limits of section 4.3 (the conservative documented ones) and the clock rules.

    Set a time window to None to accept any log time (e.g. to replay old fixtures).
    """

    max_raw_body_bytes: int = 3 * 1024 * 1024
    max_logs_per_request: int = 4096
    max_key_bytes: int = 128
    max_value_bytes: int = 1024 * 1024
    max_topic_bytes: int = 128
    max_log_age_seconds: int | None = 7 * 86400
    max_log_future_seconds: int | None = 15 * 60
    max_clock_skew_seconds: int = 15 * 60


@dataclass(frozen=True, slots=True)
class StoredLog:
    time: int
    time_ns: int | None
    contents: dict[str, str]
    topic: str
    source: str
    tags: dict[str, str]


class Faults:
    """Runtime fault knobs. Thread-safe; every random draw comes from one seeded RNG.

    Errors are injected after authentication. `operation` names the API hit ("PutLogs", "GetLogs",
    "CreateLogStore", …); None means every request.
    """

    def __init__(self, seed: int = 0):
        self._lock = threading.Lock()
        self._rng = random.Random(seed)
        self._latency = 0.0
        self._outage = False
        self._rates: dict[tuple[str, str | None], float] = {}
        self._queued: list[list] = []  # [code, remaining, operation, requests still to let through first]
        self._lost: list[list] = []  # [operation, remaining]: answers to drop after the request took effect

    @property
    def latency(self) -> float:
        """Seconds slept before answering each request."""
        return self._latency

    @latency.setter
    def latency(self, seconds: float) -> None:
        with self._lock:
            self._latency = float(seconds)

    @property
    def outage(self) -> bool:
        """While true, every request is read and its connection closed without an answer."""
        return self._outage

    @outage.setter
    def outage(self, down: bool) -> None:
        with self._lock:
            self._outage = bool(down)

    def set_error_rate(self, code: str, rate: float, operation: str | None = "PutLogs") -> None:
        """Fail this fraction of matching requests with `code` (a key of FAULT_ERRORS); 0 removes."""
        _check_fault_code(code)
        with self._lock:
            if rate > 0:
                self._rates[(code, operation)] = float(rate)
            else:
                self._rates.pop((code, operation), None)

    def fail_next(self, code: str, count: int = 1, operation: str | None = "PutLogs", *, after: int = 0) -> None:
        """Fail the next `count` matching requests with `code`, before any rate applies; with `after`, only
        once that many matching requests have passed (a batch that fails on its third request: after=2)."""
        _check_fault_code(code)
        with self._lock:
            self._queued.append([code, count, operation, after])

    def lose_answers(self, count: int = 1, operation: str = "PutLogs") -> None:
        """Carry out the next `count` matching requests (PutLogs: store the logs), then close each connection
        without answering (section 11: dropped connections). The client sees a network error
        (LogRequestError, section 5) for a request that took effect: what a reset by a NAT or load
        balancer, or a client timeout that fires while the service is still writing, does to a real request."""
        with self._lock:
            self._lost.append([operation, count])

    def clear(self) -> None:
        with self._lock:
            self._latency = 0.0
            self._outage = False
            self._rates.clear()
            self._queued.clear()
            self._lost.clear()

    def _draw(self, operation: str) -> str | None:
        with self._lock:
            for entry in self._queued:
                code, remaining, wanted, passing = entry
                if remaining > 0 and wanted in (None, operation):
                    if passing:
                        entry[3] -= 1
                        continue
                    entry[1] -= 1
                    return code
            for (code, wanted), rate in self._rates.items():
                if wanted in (None, operation) and self._rng.random() < rate:
                    return code
        return None

    def _answer_lost(self, operation: str) -> bool:
        with self._lock:
            for entry in self._lost:
                if entry[1] > 0 and entry[0] == operation:
                    entry[1] -= 1
                    return True
        return False


def _check_fault_code(code: str) -> None:
    if code not in FAULT_ERRORS:
        raise ValueError(f"unknown fault code {code!r}; choose from {sorted(FAULT_ERRORS)}")


@dataclass
class _Logstore:
    config: dict
    index: dict | None = None
    index_from: int = 0  # logs stored before the index was created are not searchable (section 8)
    logs: list[StoredLog] = field(default_factory=list)


@dataclass
class _Project:
    name: str
    description: str
    created: int
    logstores: dict[str, _Logstore] = field(default_factory=dict)
    dashboards: dict[str, dict] = field(default_factory=dict)
    savedsearches: dict[str, dict] = field(default_factory=dict)
    jobs: dict[str, dict] = field(default_factory=dict)


class _Request(NamedTuple):
    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]  # lower-case names
    body: bytes
    project: str


class _Response(NamedTuple):
    status: int
    body: bytes
    headers: dict[str, str]


def _json_response(value, headers: dict[str, str] | None = None) -> _Response:
    return _Response(200, json.dumps(value).encode("utf-8"), {"Content-Type": "application/json", **(headers or {})})


def _error_response(error: SlsError) -> _Response:
    payload = json.dumps({"errorCode": error.code, "errorMessage": error.message}).encode("utf-8")
    return _Response(error.status, payload, {"Content-Type": "application/json"})


def _empty() -> _Response:
    return _Response(200, b"", {})

# --------------------------------------------------------------------------------------------------
# PutLogs body: decompression (section 4.2), decoding and data rules (section 4.3)

_RESERVED_KEYS = frozenset(
    {"__time__", "__source__", "__topic__", "__partition_time__", "_extract_others_", "__extract_others__"}
)
_KEY_PATTERN = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


def _zstd_decoder() -> Callable[[bytes], bytes] | None:
    """The pip module `zstd`, which the SDK itself needs to send zstd (section 4.2); None when absent."""
    try:
        import zstd
    except ImportError:
        return None
    return zstd.decompress


_ZSTD_DECODE = _zstd_decoder()


def _inflate(body: bytes, size: int) -> bytes:
    for wbits in (zlib.MAX_WBITS, -zlib.MAX_WBITS):  # zlib stream per the docs, raw deflate tolerated
        try:
            inflater = zlib.decompressobj(wbits)
            return inflater.decompress(body, size + 1)
        except zlib.error:
            continue
    raise ValueError("not a deflate stream")


def _uncompressed_body(request: _Request, limits: Limits) -> bytes:
    compress_type = request.headers.get("x-log-compresstype", "")
    if not compress_type:
        if len(request.body) > limits.max_raw_body_bytes:
            raise SlsError(400, "PostBodyTooLarge",
                           f"body size {len(request.body)} is larger than {limits.max_raw_body_bytes}")
        return request.body
    raw_size_text = request.headers.get("x-log-bodyrawsize")
    if raw_size_text is None:
        raise SlsError(400, "MissingBodyRawSize", "x-log-bodyrawsize does not exist in header when it is necessary.")
    if not raw_size_text.isdigit():
        raise SlsError(400, "InvalidBodyRawSize", f"x-log-bodyrawsize {raw_size_text} is invalid.")
    raw_size = int(raw_size_text)
    if raw_size > limits.max_raw_body_bytes:
        raise SlsError(400, "PostBodyTooLarge", f"body raw size {raw_size} is larger than {limits.max_raw_body_bytes}")
    try:
        if compress_type == "lz4":
            raw = lz4.block.decompress(request.body, uncompressed_size=raw_size)
        elif compress_type == "deflate":
            raw = _inflate(request.body, raw_size)
        elif compress_type == "zstd" and _ZSTD_DECODE is not None:
            raw = _ZSTD_DECODE(request.body)
        elif compress_type == "zstd":
            raise SlsError(400, "InvalidCompressType", "x-log-compresstype zstd: the zstd module is not "
                           "installed beside the emulator")
        else:
            raise SlsError(400, "InvalidCompressType", f"x-log-compresstype {compress_type} is unsupported.")
    except SlsError:
        raise
    except Exception as error:  # each library raises its own error type
        raise SlsError(400, "PostBodyUncompressError", f"{compress_type} decompression failed: {error}") from None
    if len(raw) != raw_size:
        raise SlsError(400, "PostBodyUncompressError",
                       f"uncompressed size {len(raw)} does not match x-log-bodyrawsize {raw_size}")
    return raw


def _bytes_over(text: str, limit: int) -> bool:
    """len(text.encode()) > limit, without encoding the usual short strings."""
    return len(text) * 4 > limit and len(text.encode("utf-8")) > limit


class _LogDecoder:
    """Turns a PutLogs body into StoredLogs, enforcing the data rules of section 4.3."""

    def __init__(self) -> None:
        self._good_keys: dict[int, set[str]] = {}  # max_key_bytes -> keys already found valid

    def decode(self, raw: bytes, limits: Limits, now: float) -> list[StoredLog]:
        try:
            group = decode_log_group(raw)
        except EncodingError as error:
            raise SlsError(400, "InvalidEncoding", f"log group is not UTF-8: {error}") from None
        except WireError as error:
            raise SlsError(400, "PostBodyInvalid", f"the post body is not a valid LogGroup: {error}") from None
        if len(group.logs) > limits.max_logs_per_request:
            raise SlsError(400, "PostBodyTooLarge",
                           f"log count {len(group.logs)} is larger than {limits.max_logs_per_request}")
        for name, value in (("topic", group.topic), ("source", group.source)):
            if _bytes_over(value, limits.max_topic_bytes):
                raise SlsError(400, "PostBodyInvalid", f"{name} is longer than {limits.max_topic_bytes} bytes")
        oldest = None if limits.max_log_age_seconds is None else now - limits.max_log_age_seconds
        newest = None if limits.max_log_future_seconds is None else now + limits.max_log_future_seconds
        tags = dict(group.tags)
        stored = []
        for log in group.logs:
            if (oldest is not None and log.time < oldest) or (newest is not None and log.time > newest):
                raise SlsError(400, "PostBodyInvalid", f"The post data time is out of range: {log.time}")
            contents = dict(log.contents)
            if len(contents) != len(log.contents):
                raise SlsError(400, "InvalidKey", "a key appears twice in one log")
            self._check_keys(contents, limits)
            if contents and max(map(len, contents.values())) * 4 > limits.max_value_bytes:
                for key, value in contents.items():
                    if _bytes_over(value, limits.max_value_bytes):
                        raise SlsError(400, "PostBodyTooLarge",
                                       f"value of key {key} is larger than {limits.max_value_bytes} bytes")
            stored.append(StoredLog(log.time, log.time_ns, contents, group.topic, group.source, tags))
        return stored

    def _check_keys(self, contents: dict[str, str], limits: Limits) -> None:
        good = self._good_keys.setdefault(limits.max_key_bytes, set())
        for key in contents:
            if key in good:
                continue
            if key in _RESERVED_KEYS or not _KEY_PATTERN.fullmatch(key):
                raise SlsError(400, "InvalidKey", f"key {key!r} is invalid")
            if len(key.encode("utf-8")) > limits.max_key_bytes:
                raise SlsError(400, "InvalidKey", f"key {key[:32]}… is longer than {limits.max_key_bytes} bytes")
            good.add(key)


# --------------------------------------------------------------------------------------------------
# Search (section 7): the part before `|`, against the logstore's index config


class _FieldIndex(NamedTuple):
    kind: str  # text | long | double | json
    splitter: re.Pattern | None  # None: the whole value is one token
    case_sensitive: bool


@functools.lru_cache(maxsize=64)
def _splitter(delimiters: tuple[str, ...]) -> re.Pattern | None:
    delimiters = tuple(d for d in delimiters if d)
    if not delimiters:
        return None
    return re.compile("|".join(re.escape(d) for d in sorted(delimiters, key=len, reverse=True)))


def _field_index(config: dict) -> _FieldIndex:
    kind = config.get("type", "text")
    return _FieldIndex(kind, _splitter(tuple(config.get("token") or ())), bool(config.get("caseSensitive", False)))


_WHOLE_VALUE = _FieldIndex("text", None, False)
_TIME_FIELD = _FieldIndex("long", None, True)


def _tokens(value: str, index: _FieldIndex) -> list[str]:
    if not index.case_sensitive:
        value = value.lower()
    if index.splitter is None:
        return [value] if value else []
    return [token for token in index.splitter.split(value) if token]


def _field_value(log: StoredLog, key: str) -> str | None:
    if key == "__topic__":
        return log.topic
    if key == "__source__":
        return log.source
    if key == "__time__":
        return str(log.time)
    if key.startswith("__tag__:"):
        return log.tags.get(key[8:])
    return log.contents.get(key)


def _as_number(text: str | None) -> float | None:
    try:
        return float(text)
    except (TypeError, ValueError):
        return None


Predicate = Callable[[StoredLog], bool]


def _query_error(message: str) -> SlsError:
    return SlsError(400, "InvalidQueryString", message)


def _token_matcher(token: str, wildcards: bool) -> Callable[[str], bool]:
    if wildcards and ("*" in token or "?" in token):
        if token[0] in "*?":
            raise _query_error(f"wildcard at the start of {token!r} is not allowed")
        pattern = re.compile(fnmatch.translate(token), re.DOTALL)
        return lambda candidate: pattern.match(candidate) is not None
    return token.__eq__


def _token_matchers(text: str, index: _FieldIndex, wildcards: bool) -> list[Callable[[str], bool]]:
    """A test of one stored value per token of the query text: `"a b"` means a and b, each anywhere
    (Alibaba Cloud "Search syntax", doc-detail/29060: msg:"http error" = msg:http and msg:error)."""
    tests = []
    for token in _tokens(text, index):
        match = _token_matcher(token, wildcards)
        tests.append(lambda value, match=match: any(match(t) for t in _tokens(value, index)))
    return tests


def _phrase_matcher(text: str, index: _FieldIndex) -> Callable[[str], bool] | None:
    """A test of one stored value: the phrase's tokens appear consecutively among the value's tokens
    (Alibaba Cloud "Phrase search", doc-detail/416724: `#"abc def"`)."""
    matchers = [_token_matcher(token, False) for token in _tokens(text, index)]
    if not matchers:
        return None

    def phrase(value: str) -> bool:
        tokens = _tokens(value, index)
        width = len(matchers)
        return any(
            all(match(token) for match, token in zip(matchers, tokens[start:start + width]))
            for start in range(len(tokens) - width + 1)
        )

    return phrase


_COMPARE = {
    ">": float.__gt__, ">=": float.__ge__, "<": float.__lt__, "<=": float.__le__, "=": float.__eq__,
}
_LEXER = re.compile(r'\s+|(?P<quoted>"(?:[^"\\]|\\.)*")|#(?P<phrase>"(?:[^"\\]|\\.)*")|(?P<op>>=|<=|[()\[\]<>=])'
                    r'|(?P<word>(?:[^\s()\[\]<>="#]|#(?!"))+)')


class _SearchCompiler:
    """Recursive descent over `key: value`, numbers, `in` ranges, bare words, phrases, and/or/not, parentheses.

    Precedence per section 7: and > not > or; juxtaposition is and. So `not` takes the whole and-chain after
    it: `a not b and c` is a and not (b and c), `not a b` is not (a and b), and `and not` reads as `not`.
    """

    def __init__(self, text: str, index: dict):
        self.keys = {key: _field_index(config) for key, config in (index.get("keys") or {}).items()}
        line = index.get("line")
        self.line = _field_index(line) if line is not None else None
        self.tokens = self._lex(text)
        self.pos = 0

    @staticmethod
    def _lex(text: str) -> list[tuple[str, str]]:
        tokens = []
        pos = 0
        while pos < len(text):
            match = _LEXER.match(text, pos)
            if match is None:
                raise _query_error(f"cannot read the query at offset {pos}: {text[pos:pos + 20]!r}")
            pos = match.end()
            if match.lastgroup in ("quoted", "phrase"):
                tokens.append((match.lastgroup, re.sub(r"\\(.)", r"\1", match.group(match.lastgroup)[1:-1])))
            elif match.lastgroup is not None:
                tokens.append((match.lastgroup, match.group(match.lastgroup)))
        return tokens

    def compile(self) -> Predicate:
        if not self.tokens:
            return lambda log: True
        # "Phrase search" (doc-detail/416724): the NOT operator is not supported in phrase search statements.
        if any(kind == "phrase" for kind, _ in self.tokens) and any(
                kind == "word" and text.lower() == "not" for kind, text in self.tokens):
            raise _query_error("the NOT operator is not supported in phrase search statements")
        predicate = self._or()
        if self.pos != len(self.tokens):
            raise _query_error(f"unexpected {self.tokens[self.pos][1]!r}")
        return predicate

    def _peek(self, offset: int = 0) -> tuple[str, str] | None:
        index = self.pos + offset
        return self.tokens[index] if index < len(self.tokens) else None

    def _next(self) -> tuple[str, str]:
        token = self._peek()
        if token is None:
            raise _query_error("the query ends too early")
        self.pos += 1
        return token

    def _is_keyword(self, word: str, offset: int = 0) -> bool:
        token = self._peek(offset)
        return token is not None and token[0] == "word" and token[1].lower() == word

    def _or(self) -> Predicate:
        left = self._not()
        while self._is_keyword("or"):
            self.pos += 1
            right = self._not()
            left = (lambda a, b: lambda log: a(log) or b(log))(left, right)
        return left

    def _at_not(self) -> bool:
        return self._is_keyword("not") or (self._is_keyword("and") and self._is_keyword("not", 1))

    def _not(self) -> Predicate:
        left = self._negated()
        while self._at_not():
            self.pos += 2 if self._is_keyword("and") else 1
            right = self._negated()
            left = (lambda a, b: lambda log: a(log) and not b(log))(left, right)
        return left

    def _negated(self) -> Predicate:
        if self._is_keyword("not"):
            self.pos += 1
            operand = self._negated()
            return lambda log: not operand(log)
        return self._and()

    def _and(self) -> Predicate:
        left = self._primary()
        while True:
            token = self._peek()
            if token is None or token == ("op", ")") or self._is_keyword("or") or self._at_not():
                return left
            if self._is_keyword("and"):
                self.pos += 1
            right = self._primary()
            left = (lambda a, b: lambda log: a(log) and b(log))(left, right)

    def _primary(self) -> Predicate:
        kind, text = self._next()
        if (kind, text) == ("op", "("):
            inner = self._or()
            if self._next() != ("op", ")"):
                raise _query_error("missing )")
            return inner
        if kind in ("quoted", "phrase"):
            return self._full_text(text, wildcards=False, phrase=kind == "phrase")
        if kind != "word":
            raise _query_error(f"unexpected {text!r}")
        if text == "*":
            return lambda log: True
        key, colon, rest = self._split_key(text)
        if not colon:
            following = self._peek()
            if following is not None and following[0] == "op" and following[1] in _COMPARE:
                self.pos += 1
                return self._compare(key, following[1], self._next()[1])
            if self._is_keyword("in") and self._peek(1) in (("op", "["), ("op", "(")):
                self.pos += 1
                return self._range(key)
            if following is not None and following[0] == "word" and following[1].startswith(":"):
                self.pos += 1
                colon, rest = ":", following[1][1:]
            else:
                return self._full_text(text, wildcards=True)
        if rest:
            return self._field(key, rest, quoted=False)
        value_kind, value = self._next()
        if value_kind == "op":
            raise _query_error(f"missing value after {key}:")
        return self._field(key, value, quoted=value_kind != "word", phrase=value_kind == "phrase")

    @staticmethod
    def _split_key(word: str) -> tuple[str, str, str]:
        start = 8 if word.startswith("__tag__:") else 0
        colon = word.find(":", start)
        if colon < 0:
            return word, "", ""
        return word[:colon], ":", word[colon + 1:]

    def _index_of(self, key: str) -> _FieldIndex | None:
        if key in ("__topic__", "__source__") or key.startswith("__tag__:"):
            return _WHOLE_VALUE
        if key == "__time__":
            return _TIME_FIELD
        return self.keys.get(key)

    def _field(self, key: str, value: str, quoted: bool, phrase: bool = False) -> Predicate:
        index = self._index_of(key)
        if index is None:  # no field index: key: value finds nothing
            return lambda log: False
        if value == "*" and not quoted:
            return lambda log: _field_value(log, key) is not None
        if value == "" and not phrase:
            return lambda log: _field_value(log, key) == ""
        if index.kind in ("long", "double"):
            return self._compare(key, "=", value)
        matchers = self._matchers(value, index, quoted, phrase)

        def field_matches(log: StoredLog) -> bool:
            stored = _field_value(log, key)
            return stored is not None and all(match(stored) for match in matchers)

        return field_matches

    def _full_text(self, text: str, wildcards: bool, phrase: bool = False) -> Predicate:
        """Each token anywhere in the log (`"a b"` = a and b); a phrase within one value."""
        if self.line is None:  # no full-text index: bare words find nothing
            return lambda log: False
        matchers = self._matchers(text, self.line, not wildcards, phrase)
        return lambda log: all(any(match(value) for value in log.contents.values()) for match in matchers)

    @staticmethod
    def _matchers(text: str, index: _FieldIndex, quoted: bool, phrase: bool) -> list[Callable[[str], bool]]:
        """Tests of one stored value that must all pass; a text with no token finds nothing."""
        if phrase:
            if "*" in text or "?" in text:  # doc-detail/416724: fuzzy match is not supported in phrase searches
                raise _query_error(f"fuzzy match is not supported in phrase searches: #\"{text}\"")
            matcher = _phrase_matcher(text, index)
            return [matcher] if matcher is not None else [lambda value: False]
        return _token_matchers(text, index, wildcards=not quoted) or [lambda value: False]

    def _number(self, text: str) -> float:
        number = _as_number(text)
        if number is None:
            raise _query_error(f"{text!r} is not a number")
        return number

    def _compare(self, key: str, operator: str, text: str) -> Predicate:
        bound = self._number(text)
        index = self._index_of(key)
        if index is None or index.kind not in ("long", "double"):  # comparisons need a numeric index
            return lambda log: False
        compare = _COMPARE[operator]

        def compares(log: StoredLog) -> bool:
            number = _as_number(_field_value(log, key))
            return number is not None and compare(number, bound)

        return compares

    def _range(self, key: str) -> Predicate:
        low_inclusive = self._next()[1] == "["
        low = self._number(self._next()[1])
        high = self._number(self._next()[1])
        closing = self._next()
        if closing not in (("op", "]"), ("op", ")")):
            raise _query_error("an in range ends with ] or )")
        high_inclusive = closing[1] == "]"
        above = float.__ge__ if low_inclusive else float.__gt__
        below = float.__le__ if high_inclusive else float.__lt__
        index = self._index_of(key)
        if index is None or index.kind not in ("long", "double"):
            return lambda log: False

        def in_range(log: StoredLog) -> bool:
            number = _as_number(_field_value(log, key))
            return number is not None and above(number, low) and below(number, high)

        return in_range


def split_query(query: str) -> tuple[str, str]:
    """Split `search | sql` at the first `|` outside double quotes."""
    quoted = False
    for position, char in enumerate(query):
        if char == '"':
            quoted = not quoted
        elif char == "|" and not quoted:
            return query[:position].strip(), query[position + 1:].strip()
    return query.strip(), ""


def compile_search(search: str, index: dict) -> Predicate:
    """A predicate over StoredLog for the search part of a query; raises SlsError InvalidQueryString."""
    return _SearchCompiler(search, index).compile()


def _row(log: StoredLog) -> dict[str, str]:
    """A log as GetLogs returns it: reserved fields, tags, contents; all values strings."""
    row = {"__time__": str(log.time), "__source__": log.source, "__topic__": log.topic}
    for key, value in log.tags.items():
        row["__tag__:" + key] = value
    row.update(log.contents)
    return row


# --------------------------------------------------------------------------------------------------
# Entity bodies (sections 8 and 9)

_LOGSTORE_NAME = re.compile(r"[a-z0-9][a-z0-9_-]{1,61}[a-z0-9]")
_LOGSTORE_DEFAULTS = {
    "enable_tracking": False, "autoSplit": True, "maxSplitShard": 64, "appendMeta": False, "telemetryType": "",
}
_INDEX_TYPES = ("text", "long", "double", "json")
_ALERT_ENUMS = {
    "schedule.type": {"FixedRate", "Hourly", "Daily", "Weekly", "Cron", "DryRun", "Resident"},
    "severity": {2, 4, 6, 8, 10},
    "groupConfiguration.type": {"no_group", "labels_auto", "custom"},
    "powerSqlMode": {"auto", "enable", "disable"},
    "storeType": {"log", "metric", "meta"},
}


def _invalid(message: str) -> SlsError:
    return SlsError(400, "ParameterInvalid", message)


def _json_object(body: bytes, code: str = "ParameterInvalid") -> dict:
    try:
        value = json.loads(body.decode("utf-8"))
    except (UnicodeDecodeError, ValueError):
        raise SlsError(400, code, "the request body is not valid JSON") from None
    if not isinstance(value, dict):
        raise SlsError(400, code, "the request body must be a JSON object")
    return value


# --------------------------------------------------------------------------------------------------
# Content rules: what SLS refuses in dashboards, saved searches, alert queries and alert resource records.
# shipper's validator (shipper/dashboards/rules.py) checks the same rules with its own code, so an import
# test against this emulator fails on content real SLS would refuse even if the validator had a gap; only
# the values below repeat the validator's. Sources: dashboards/README.md, "What validate checks".

# A chart's title is its id: the Go SDK (client_dashboard.go) and the Java SDK send it in the URL
# /dashboards/{dashboard}/charts/{title}; the documented chart naming rule is this pattern. The dashboard name is
# such an id too (inferred: same URL form, no separate rule documented).
_CHART_ID = re.compile(r"[0-9a-z][0-9a-z_-]{0,98}[0-9a-z]")
# 3 to 63 characters (reference/sls.md section 9), SLS's character set for project-level names.
_SAVEDSEARCH_NAME = re.compile(r"[0-9a-z][0-9a-z_-]{1,61}[0-9a-z]")
# The SQL functions SLS documents (Alibaba Cloud "SQL functions" overview); a call to anything else is
# refused here. SLS would run some undocumented Presto functions, but content must not depend on them.
_SQL_FUNCTIONS = frozenset("""
    arbitrary avg bitwise_and_agg bitwise_or_agg bool_and bool_or checksum count count_if every
    geometric_mean max max_by min min_by sum approx_distinct approx_percentile histogram map_agg
    array_agg stddev stddev_samp stddev_pop variance var_samp var_pop
    chr codepoint concat from_utf8 length levenshtein_distance lower lpad ltrim normalize position replace
    reverse rpad rtrim split split_part split_to_map strpos substr to_utf8 trim upper
    current_date current_time current_timestamp current_timezone date date_add date_diff date_format
    date_parse date_trunc day day_of_month day_of_week day_of_year extract from_iso8601_date
    from_iso8601_timestamp from_unixtime hour minute month now quarter second time_series to_iso8601
    to_unixtime week year
    abs cbrt ceil ceiling cos degrees exp floor ln log10 log2 mod pi pow power radians rand random round
    sign sin sqrt tan truncate greatest least
    coalesce if nullif try cast try_cast typeof
    json_array_contains json_array_get json_array_length json_extract json_extract_scalar json_format
    json_parse json_size
    regexp_extract regexp_extract_all regexp_like regexp_replace regexp_split
    url_extract_fragment url_extract_host url_extract_parameter url_extract_path url_extract_port
    url_extract_protocol url_extract_query url_encode url_decode
    rank dense_rank row_number percent_rank cume_dist ntile lag lead first_value last_value nth_value
""".split())
# Words that may stand before "(" without being a function call.
_SQL_NOT_CALLS = frozenset("""
    select from where group by having order limit as and or not in is like between case when then else end
    distinct all on join using over partition exists with union intersect except values filter
""".split())
_SQL_QUOTED = re.compile(r"'(?:[^']|'')*'|\"(?:[^\"]|\"\")*\"")
_SQL_CALL = re.compile(r"\b([A-Za-z_][A-Za-z0-9_]*)\s*\(")
# Action policy DSL: a sls.alert.action_webhook record is fired with type="webhook_integration" and these
# arguments; type="webhook" is the legacy form with the URL inline. The Go SDK's ResourceActionPolicy always
# sends every field below; an empty primary or secondary script is ActionPolicyEmpty.
_FIRE_LINE = re.compile(r"\s*fire\((?P<arguments>.*)\)\s*")
_FIRE_ARGUMENT = re.compile(
    r'\s*(?P<name>[a-z_]+)\s*=\s*(?P<value>"(?:[^"\\]|\\.)*"|\[[^\]]*\]|\{[^}]*\}|[^,]+)\s*(?:,|$)')
_WEBHOOK_INTEGRATION_ARGUMENTS = ("integration_type", "webhook_id", "template_id", "period")
_INTEGRATION_TYPES = {"custom", "dingtalk", "wechat", "lark", "slack"}
_FIRE_PERIODS = {"any", "workday", "non_workday", "worktime", "non_worktime"}
_ACTION_POLICY_FIELDS = {
    "action_policy_id": str, "action_policy_name": str, "is_default": bool, "labels": dict,
    "primary_policy_script": str, "secondary_policy_script": str,
    "escalation_start_enabled": bool, "escalation_start_timeout": str,
    "escalation_inprogress_enabled": bool, "escalation_inprogress_timeout": str,
    "escalation_enabled": bool, "escalation_timeout": str,
}
# Content templates ("Variables in new alert templates", "Alert notification content FAQ"): the list and map
# variables are rendered with | to_json; the filters SLS documents ("Built-in functions in alert templates").
# SLS stores a template without this check; refusing here is how a test sees a body the hook cannot parse.
_TEMPLATE_EXPRESSION = re.compile(r"\{\{(.*?)\}\}", re.DOTALL)
_TEMPLATE_STRUCTURED = {"labels", "annotations", "results", "fire_results", "policy"}
_TEMPLATE_FILTERS = frozenset("""
    to_json quote default format_date format_status format_severity to_list annotations_to_list
    escape_markdown escape_html length string int float abs round upper lower base64_encode base64_decode
    md5 url_encode url_decode
""".split())


def _check_query_text(where: str, query) -> None:
    """The SQL part of a query (after the first | outside double quotes): no `||`, documented functions only."""
    if not isinstance(query, str):
        raise _invalid(f"{where} must be a string")
    in_quotes, cut = False, None
    for i, ch in enumerate(query):
        if ch == '"':
            in_quotes = not in_quotes
        elif ch == "|" and not in_quotes:
            cut = i
            break
    if cut is None:
        return
    sql = _SQL_QUOTED.sub("''", query[cut + 1:])
    if "||" in sql:
        raise _invalid(f"{where}: || is not an SLS SQL operator (use concat)")
    for match in _SQL_CALL.finditer(sql):
        name = match.group(1).lower()
        if name not in _SQL_NOT_CALLS and name not in _SQL_FUNCTIONS:
            raise _invalid(f"{where}: unknown function {match.group(1)}")


def _check_fire_script(field_name: str, script: str) -> None:
    if not script.strip():
        raise SlsError(400, "ActionPolicyEmpty", f"{field_name} is empty")
    for line in filter(str.strip, script.splitlines()):
        match = _FIRE_LINE.fullmatch(line)
        if match is None:
            raise _invalid(f"{field_name}: not a fire(...) statement: {line}")
        arguments = {}
        for argument in _FIRE_ARGUMENT.finditer(match.group("arguments")):
            value = argument.group("value").strip()
            arguments[argument.group("name")] = json.loads(value) if value.startswith('"') else value
        kind = arguments.get("type")
        if kind == "webhook":
            raise _invalid(f'{field_name}: fire(type="webhook") is the inline-URL form; a webhook record is fired '
                           'with type="webhook_integration"')
        if kind != "webhook_integration":
            raise SlsError(400, "EmulatorUnsupported", f"{field_name}: fire(type={kind!r}) is not emulated")
        missing = [name for name in _WEBHOOK_INTEGRATION_ARGUMENTS if name not in arguments]
        if missing:
            raise _invalid(f"{field_name}: fire(type=\"webhook_integration\") needs {', '.join(missing)}")
        if arguments["integration_type"] not in _INTEGRATION_TYPES or arguments["period"] not in _FIRE_PERIODS:
            raise _invalid(f"{field_name}: bad integration_type or period in {line.strip()}")


def _check_action_policy(value: dict) -> None:
    for name, kind in _ACTION_POLICY_FIELDS.items():
        if not isinstance(value.get(name), kind):
            raise _invalid(f"action policy {name} is required ({kind.__name__})")
    for name in ("primary_policy_script", "secondary_policy_script"):
        _check_fire_script(name, value[name])


def _check_content_template(value: dict) -> None:
    templates = value.get("templates")
    if not isinstance(templates, dict):
        raise _invalid("content template templates must be an object")
    for channel, template in templates.items():
        content = template.get("content", "") if isinstance(template, dict) else ""
        for expression in _TEMPLATE_EXPRESSION.findall(content if isinstance(content, str) else ""):
            variable, *filters = (part.strip() for part in expression.split("|"))
            filter_names = [f.split("(", 1)[0].strip() for f in filters]
            unknown = [name for name in filter_names if name not in _TEMPLATE_FILTERS]
            if unknown:
                raise _invalid(f"templates.{channel}: unknown filter {unknown[0]}")
            parts = variable.split(".")
            if len(parts) == 2 and parts[0] == "alert" and parts[1] in _TEMPLATE_STRUCTURED \
                    and "to_json" not in filter_names:
                raise _invalid(f"templates.{channel}: {variable} must be rendered with | to_json")


def _check_webhook(value: dict) -> None:
    if value.get("type") not in _INTEGRATION_TYPES:
        raise _invalid(f"webhook type must be one of {sorted(_INTEGRATION_TYPES)}")
    if not isinstance(value.get("url"), str) or not value["url"].startswith(("https://", "http://")):
        raise _invalid("webhook url must be an http(s) URL")


_RECORD_CHECKS = {"sls.alert.action_policy": _check_action_policy,
                  "sls.alert.content_template": _check_content_template,
                  "sls.alert.action_webhook": _check_webhook}


def _check_index(index: dict) -> None:
    def invalid(message: str) -> SlsError:
        return SlsError(400, "IndexInfoInvalid", message)

    if "line" not in index and not index.get("keys"):
        raise invalid("an index needs a line config or key configs")
    line = index.get("line")
    if line is not None and not (isinstance(line, dict) and isinstance(line.get("token"), list)):
        raise invalid("line.token must be a list of delimiters")
    keys = index.get("keys") or {}
    if not isinstance(keys, dict):
        raise invalid("keys must be an object")
    for key, config in keys.items():
        if not isinstance(config, dict) or config.get("type", "text") not in _INDEX_TYPES:
            raise invalid(f"key {key}: type must be one of {', '.join(_INDEX_TYPES)}")
        if config.get("type", "text") in ("text", "json") and not isinstance(config.get("token"), list):
            raise invalid(f"key {key}: a text key needs a token list")


def _check_dashboard(body: dict) -> None:
    if not _CHART_ID.fullmatch(body["dashboardName"]):
        raise _invalid(f"dashboardName {body['dashboardName']!r} is not a valid id")
    if not isinstance(body.get("charts"), list) or not all(isinstance(chart, dict) for chart in body["charts"]):
        raise _invalid("charts must be a list of chart objects")
    titles = [chart.get("title") for chart in body["charts"]]
    for title in titles:
        if not isinstance(title, str) or not _CHART_ID.fullmatch(title):
            raise _invalid(f"chart title {title!r} is not a valid chart id")
    if len(set(titles)) != len(titles):
        raise _invalid("chart titles must be unique within a dashboard")
    for chart in body["charts"]:
        search = chart.get("search")
        _check_query_text(f"chart {chart['title']} query", search.get("query") if isinstance(search, dict) else None)


def _check_savedsearch(body: dict) -> None:
    if not _SAVEDSEARCH_NAME.fullmatch(body["savedsearchName"]):
        raise _invalid("savedsearchName must be 3 to 63 lower-case letters, digits, - or _")
    for name in ("searchQuery", "logstore"):
        if not isinstance(body.get(name), str) or not body[name]:
            raise _invalid(f"{name} is required")
    _check_query_text("searchQuery", body["searchQuery"])


def _check_enum(name: str, value) -> None:
    if not isinstance(value, (str, int)) or value not in _ALERT_ENUMS[name]:
        raise _invalid(f"{name} {value!r} is not one of {sorted(_ALERT_ENUMS[name], key=str)}")


def _check_alert(body: dict) -> None:
    schedule, configuration = body.get("schedule"), body.get("configuration")
    if not isinstance(body.get("type"), str) or not isinstance(schedule, dict) or not isinstance(configuration, dict):
        raise _invalid("a job needs type, schedule and configuration")
    _check_enum("schedule.type", schedule.get("type"))
    if not isinstance(configuration.get("queryList"), list) or not configuration["queryList"]:
        raise _invalid("configuration.queryList must be a non-empty list")
    if configuration.get("version") != "2.0":
        return
    if not all(isinstance(query, dict) for query in configuration["queryList"]):
        raise _invalid("configuration.queryList must hold objects")
    for query in configuration["queryList"]:
        _check_query_text("queryList query", query.get("query"))
        if "storeType" in query:
            _check_enum("storeType", query["storeType"])
        if "powerSqlMode" in query:
            _check_enum("powerSqlMode", query["powerSqlMode"])
    for severity in configuration.get("severityConfigurations") or []:
        _check_enum("severity", severity.get("severity") if isinstance(severity, dict) else severity)
    if "groupConfiguration" in configuration:
        group = configuration["groupConfiguration"]
        _check_enum("groupConfiguration.type", group.get("type") if isinstance(group, dict) else group)


class _EntityKind(NamedTuple):
    """How one project-level JSON entity is named, checked, listed and reported missing."""

    store: str  # attribute of _Project
    name_field: str
    label: str
    not_exist: str
    already_exist: str
    check: Callable[[dict], None]
    list_body: Callable[[list[dict]], dict]


_DASHBOARD = _EntityKind(
    "dashboards", "dashboardName", "dashboard", "DashboardNotExist", "DashboardAlreadyExist", _check_dashboard,
    lambda items: {"dashboards": [item["dashboardName"] for item in items],
                   "dashboardItems": [{"dashboardName": item["dashboardName"],
                                       "displayName": item.get("displayName", "")} for item in items]},
)
_SAVEDSEARCH = _EntityKind(
    "savedsearches", "savedsearchName", "savedsearch", "SavedSearchNotExist", "SavedSearchAlreadyExist",
    _check_savedsearch,
    lambda items: {"savedsearches": [item["savedsearchName"] for item in items],
                   "savedsearchItems": [{"savedsearchName": item["savedsearchName"],
                                         "displayName": item.get("displayName", ""),
                                         "logstore": item.get("logstore", "")} for item in items]},
)
_JOB = _EntityKind("jobs", "name", "job", "JobNotExist", "JobAlreadyExist", _check_alert,
                   lambda items: {"results": items})


def _check_record(resource: str, fields) -> None:
    """One record as the SDK sends it: `value` a JSON string holding an object, `id` and `tag` strings; the
    value of a webhook, content template or action policy as the content rules above require."""
    if not isinstance(fields, dict):
        raise _invalid("a record must be a JSON object")
    value = fields.get("value")
    try:
        parsed = json.loads(value) if isinstance(value, str) else None
    except ValueError:
        parsed = None
    if not isinstance(parsed, dict):
        raise _invalid("value must be a JSON string holding an object")
    for name in ("id", "tag"):
        if name in fields and not isinstance(fields[name], str):
            raise _invalid(f"{name} must be a string")
    if resource in _RECORD_CHECKS:
        _RECORD_CHECKS[resource](parsed)


# --------------------------------------------------------------------------------------------------
# Routing

_NAME = r"(?P<name>[^/]+)"
_STORE = r"(?P<logstore>[^/]+)"
_RESOURCE = r"(?P<resource>[^/]+)"
_RECORD = r"(?P<record_id>[^/]+)"
_ROUTES = [
    (method, re.compile(pattern), operation)
    for method, pattern, operation in [
        ("GET", r"/", "GetProject"),
        ("POST", r"/", "CreateProject"),
        ("DELETE", r"/", "DeleteProject"),
        ("POST", rf"/logstores/{_STORE}/shards/(?P<mode>lb|route)", "PutLogs"),
        ("POST", rf"/logstores/{_STORE}/logs", "GetLogs"),
        ("GET", r"/logstores", "ListLogStores"),
        ("POST", r"/logstores", "CreateLogStore"),
        ("GET", rf"/logstores/{_STORE}", "GetLogStore"),  # GetLogs v1 when ?type=log
        ("PUT", rf"/logstores/{_STORE}", "UpdateLogStore"),
        ("DELETE", rf"/logstores/{_STORE}", "DeleteLogStore"),
        ("POST", rf"/logstores/{_STORE}/index", "CreateIndex"),
        ("PUT", rf"/logstores/{_STORE}/index", "UpdateIndex"),
        ("GET", rf"/logstores/{_STORE}/index", "GetIndex"),
        ("DELETE", rf"/logstores/{_STORE}/index", "DeleteIndex"),
        ("GET", r"/dashboards", "ListDashboard"),
        ("POST", r"/dashboards", "CreateDashboard"),
        ("GET", rf"/dashboards/{_NAME}", "GetDashboard"),
        ("PUT", rf"/dashboards/{_NAME}", "UpdateDashboard"),
        ("DELETE", rf"/dashboards/{_NAME}", "DeleteDashboard"),
        ("GET", r"/savedsearches", "ListSavedSearch"),
        ("POST", r"/savedsearches", "CreateSavedSearch"),
        ("GET", rf"/savedsearches/{_NAME}", "GetSavedSearch"),
        ("PUT", rf"/savedsearches/{_NAME}", "UpdateSavedSearch"),
        ("DELETE", rf"/savedsearches/{_NAME}", "DeleteSavedSearch"),
        ("GET", r"/jobs", "ListAlerts"),
        ("POST", r"/jobs", "CreateAlert"),
        ("GET", rf"/jobs/{_NAME}", "GetAlert"),
        ("PUT", rf"/jobs/{_NAME}", "UpdateAlert"),  # EnableAlert / DisableAlert with ?action=
        ("DELETE", rf"/jobs/{_NAME}", "DeleteAlert"),
        ("GET", rf"/resources/{_RESOURCE}/records", "ListResourceRecords"),
        ("POST", rf"/resources/{_RESOURCE}/records", "CreateResourceRecord"),
        ("PUT", rf"/resources/{_RESOURCE}/records", "UpsertResourceRecord"),
        ("DELETE", rf"/resources/{_RESOURCE}/records", "DeleteResourceRecord"),  # ?ids=a,b
        ("GET", rf"/resources/{_RESOURCE}/records/{_RECORD}", "GetResourceRecord"),
        ("PUT", rf"/resources/{_RESOURCE}/records/{_RECORD}", "UpdateResourceRecord"),
    ]
]
# Alert resources belong to the account: the SDK sends them with the bare endpoint as Host.
_ACCOUNT_OPERATIONS = frozenset(operation for _, _, operation in _ROUTES if "ResourceRecord" in operation)


def _route(method: str, path: str, query: Mapping[str, str]) -> tuple[str, dict[str, str]]:
    for route_method, pattern, operation in _ROUTES:
        match = pattern.fullmatch(path)
        if match and route_method == method:
            if operation == "GetLogStore" and query.get("type") == "log":
                operation = "GetLogs"
            elif operation == "UpdateAlert" and query.get("action") in ("enable", "disable"):
                operation = query["action"].capitalize() + "Alert"
            return operation, match.groupdict()
    raise SlsError(400, "EmulatorUnsupported", f"the SLS emulator does not implement {method} {path}")


def project_from_host(host: str, endpoint_hosts: tuple[str, ...]) -> str:
    """The project named by a Host header (section 1); "" for a bare endpoint host."""
    name = host.lower()
    if ":" in name:
        name = name.rsplit(":", 1)[0]
    for endpoint in endpoint_hosts:
        if name == endpoint:
            return ""
        if name.endswith("." + endpoint):
            return name[: -len(endpoint) - 1]
    raise SlsError(400, "InvalidHost", f"Host {host} does not end with an endpoint this emulator serves")


# --------------------------------------------------------------------------------------------------
# The service


class SlsEmulator(ServiceLifecycle):
    """Threaded HTTP/1.1 SLS endpoint bound to 127.0.0.1; see the module docstring."""

    def __init__(
        self,
        credentials: Mapping[str, str],
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        seed: int = 0,
        limits: Limits | None = None,
        clock: Callable[[], float] = time.time,
        region: str = "cn-hangzhou",
        endpoint_hosts: tuple[str, ...] = (),
    ):
        self._credentials = dict(credentials)
        self._bind = (host, port)
        self._clock = clock
        self._region = region
        self._endpoint_hosts = tuple(dict.fromkeys((host, "127.0.0.1", "localhost", *endpoint_hosts)))
        self.limits = limits or Limits()
        self.faults = Faults(seed)
        self._lock = threading.Lock()
        self._projects: dict[str, _Project] = {}
        self._resource_records: dict[str, dict[str, dict]] = {}  # resource name -> record id -> record
        self._requests: Counter = Counter()
        self._request_ids = itertools.count(1)
        self._decoder = _LogDecoder()
        self._server: EmulatorServer | None = None

    # lifecycle ------------------------------------------------------------------------------------

    def start(self) -> SlsEmulator:
        handler = type("SlsHandler", (_Handler,), {"emulator": self})
        self._server = EmulatorServer(handler, *self._bind)
        self._server.start()
        return self

    def stop(self) -> None:
        """Stop listening and close kept-alive connections, so no handler thread outlives the test."""
        if self._server is not None:
            self._server.stop()
            self._server = None

    @property
    def port(self) -> int:
        return self._server.server_address[1]

    @property
    def endpoint(self) -> str:
        """`host:port` for LogClient (set `client._isRowIp = True`, section 1)."""
        return f"{self._server.server_address[0]}:{self.port}"

    # set-up and observation for tests -------------------------------------------------------------

    def create_project(self, name: str, description: str = "") -> None:
        with self._lock:
            if name not in self._projects:
                self._projects[name] = _Project(name, description, int(self._clock()))

    def create_logstore(self, project: str, name: str, *, index: dict | None = None, ttl: int = 30,
                        shard_count: int = 2) -> None:
        """Shortcut for CreateLogStore (+ CreateIndex) without going through HTTP."""
        config = {"logstoreName": name, "ttl": ttl, "shardCount": shard_count, **_LOGSTORE_DEFAULTS}
        if index is not None:
            _check_index(index)
        with self._lock:
            target = self._project(project)
            if name in target.logstores:
                raise SlsError(400, "LogStoreAlreadyExist", f"logstore {name} already exists")
            store = target.logstores[name] = _Logstore(self._stamped(config, created=True))
            if index is not None:
                store.index = self._stamped(copy.deepcopy(index))

    def logs(self, project: str, logstore: str) -> list[StoredLog]:
        """Every log stored in the logstore, in arrival order."""
        with self._lock:
            return list(self._logstore(project, logstore).logs)

    def request_count(self, operation: str | None = None, project: str | None = None,
                      logstore: str | None = None) -> int:
        """Requests received (answered with an error or not), filtered by API name/project/logstore."""
        with self._lock:
            return sum(
                count for (op, proj, store), count in self._requests.items()
                if operation in (None, op) and project in (None, proj) and logstore in (None, store)
            )

    def entities(self, project: str, kind: str) -> dict[str, dict]:
        """Stored JSON by name; kind: logstores, indexes, dashboards, savedsearches or jobs."""
        if kind not in ("logstores", "indexes", "dashboards", "savedsearches", "jobs"):
            raise ValueError(f"unknown entity kind {kind!r}")
        with self._lock:
            target = self._project(project)
            if kind == "logstores":
                found = {name: store.config for name, store in target.logstores.items()}
            elif kind == "indexes":
                found = {name: store.index for name, store in target.logstores.items() if store.index is not None}
            else:
                found = getattr(target, kind)
            return copy.deepcopy(found)

    def resource_records(self, resource: str) -> dict[str, dict]:
        """Records of an account-level alert resource (e.g. sls.alert.action_webhook) by id, as GetResourceRecord
        returns them: {"id", "tag", "value" (the JSON string as sent), "createTime", "lastModifyTime"}."""
        with self._lock:
            return copy.deepcopy(self._resource_records.get(resource, {}))

    # request handling -----------------------------------------------------------------------------

    def _handle(self, method: str, raw_path: str, raw_headers, body: bytes) -> _Response | None:
        """Answer one request; None means: close the connection without answering."""
        request_id = f"{os.getpid():08X}{next(self._request_ids):016X}"
        if self.faults.outage:
            return None
        if self.faults.latency:
            time.sleep(self.faults.latency)
        try:
            response = self._answer(method, raw_path, raw_headers, body)
            if response is None:
                return None
        except SlsError as error:
            response = _error_response(error)
        except Exception as error:  # an emulator bug: say so loudly instead of dropping the connection
            traceback.print_exc()
            response = _error_response(SlsError(500, "EmulatorError", f"{type(error).__name__}: {error}"))
        response.headers["x-log-requestid"] = request_id
        return response

    def _answer(self, method: str, raw_path: str, raw_headers, body: bytes) -> _Response | None:
        url = urlsplit(raw_path)
        headers = {name.lower(): value for name, value in raw_headers.items()}
        request = _Request(method, unquote(url.path) or "/", dict(parse_qsl(url.query, keep_blank_values=True)),
                           headers, body, project_from_host(headers.get("host", ""), self._endpoint_hosts))
        operation, params = _route(method, request.path, request.query)
        with self._lock:
            self._requests[(operation, request.project, params.get("logstore"))] += 1
        self._authenticate(request)
        injected = self.faults._draw(operation)
        if injected is not None:
            status, message = FAULT_ERRORS[injected]
            raise SlsError(status, injected, message)
        if operation != "CreateProject" and operation not in _ACCOUNT_OPERATIONS:
            with self._lock:
                self._project(request.project)
        response = getattr(self, "_op_" + operation)(request, **params)
        return None if self.faults._answer_lost(operation) else response

    def _authenticate(self, request: _Request) -> None:
        headers = request.headers
        if "x-log-apiversion" not in headers:
            raise SlsError(400, "MissingAPIVersion", "x-log-apiversion does not exist in http header.")
        if "date" not in headers:
            raise SlsError(400, "MissingDate", "Date does not exist in http header.")
        try:
            sent = email.utils.parsedate_to_datetime(headers["date"]).timestamp()
        except (TypeError, ValueError):
            raise SlsError(400, "InvalidDateFormat", f"Date {headers['date']} must follow RFC822.") from None
        if abs(sent - self._clock()) > self.limits.max_clock_skew_seconds:
            raise SlsError(400, "RequestTimeTooSkewed", "Request time is too skewed from the server time.")
        authorization = headers.get("authorization", "")
        access_key_id, _, given = authorization.removeprefix("LOG ").partition(":")
        if not authorization.startswith("LOG ") or not access_key_id:
            raise SlsError(400, "MissAccessKeyId", "the Authorization header carries no AccessKeyId.")
        if "x-log-signaturemethod" not in headers:
            raise SlsError(400, "MissingSignatureMethod", "x-log-signaturemethod does not exist in http header.")
        secret = self._credentials.get(access_key_id)
        if secret is None:
            raise SlsError(401, "InvalidAccessKeyId", f"AccessKeyId {access_key_id} is not found.")
        if request.body and "content-md5" in headers:
            actual = hashlib.md5(request.body).hexdigest().upper()
            if headers["content-md5"].upper() != actual:
                raise SlsError(400, "InvalidContentMD5", "Content-MD5 does not match the body as received.")
        expected = signature(secret, string_to_sign(request.method, request.path, request.query, headers))
        if not hmac.compare_digest(expected.encode(), given.encode()):
            raise SlsError(401, "SignatureNotMatch", f"signature {given} not match")

    # state helpers (call with self._lock held) ------------------------------------------------------

    def _project(self, name: str) -> _Project:
        project = self._projects.get(name)
        if project is None:
            raise SlsError(404, "ProjectNotExist", f"The Project does not exist : {name or '(none in Host)'}")
        return project

    def _logstore(self, project: str, name: str) -> _Logstore:
        store = self._project(project).logstores.get(name)
        if store is None:
            raise SlsError(404, "LogStoreNotExist", f"logstore {name} does not exist")
        return store

    def _stamped(self, config: dict, created: bool = False) -> dict:
        now = int(self._clock())
        if created:
            config["createTime"] = now
        config["lastModifyTime"] = now
        return config

    # project ----------------------------------------------------------------------------------------

    def _op_CreateProject(self, request: _Request) -> _Response:
        body = _json_object(request.body)
        name = request.project
        if not name or body.get("projectName", name) != name:
            raise _invalid("projectName must match the project of the Host header")
        with self._lock:
            if name in self._projects:
                raise SlsError(400, "ProjectAlreadyExist", f"Project {name} already exist")
            self._projects[name] = _Project(name, str(body.get("description", "")), int(self._clock()))
        return _empty()

    def _op_GetProject(self, request: _Request) -> _Response:
        with self._lock:
            project = self._project(request.project)
        created = time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(project.created))
        return _json_response({
            "projectName": project.name, "description": project.description, "status": "Normal",
            "region": self._region, "owner": "", "createTime": created, "lastModifyTime": created,
            "resourceGroupId": "",
        })

    def _op_DeleteProject(self, request: _Request) -> _Response:
        with self._lock:
            self._project(request.project)
            del self._projects[request.project]
        return _empty()

    # logs -------------------------------------------------------------------------------------------

    def _op_PutLogs(self, request: _Request, logstore: str, mode: str) -> _Response:
        with self._lock:
            self._logstore(request.project, logstore)
        if mode == "route" and not re.fullmatch(r"[0-9a-fA-F]{32}", request.query.get("key", "")):
            raise _invalid("route needs key=<32 hex digits>")
        content_type = request.headers.get("content-type")
        if content_type is None:
            raise SlsError(400, "MissingContentType",
                           "Content-Type does not exist in http header when body is not empty.")
        if content_type != "application/x-protobuf":
            raise SlsError(415, "InvalidContentType", f"Content-Type {content_type} is unsupported.")
        raw = _uncompressed_body(request, self.limits)
        stored = self._decoder.decode(raw, self.limits, self._clock())
        with self._lock:
            self._logstore(request.project, logstore).logs.extend(stored)
        return _empty()

    def _op_GetLogs(self, request: _Request, logstore: str) -> _Response:
        v2 = request.method == "POST"
        params = _json_object(request.body) if v2 else request.query
        start, end = _int_param(params, "from", "InvalidTimeRange"), _int_param(params, "to", "InvalidTimeRange")
        if start > end:
            raise SlsError(400, "InvalidTimeRange", f"from {start} is after to {end}")
        line = _int_param(params, "line", "InvalidLine", default=100)
        offset = _int_param(params, "offset", "InvalidOffset", default=0)
        if not 0 <= line <= 100:
            raise SlsError(400, "InvalidLine", f"line {line} must be 0 to 100")
        if offset < 0:
            raise SlsError(400, "InvalidOffset", f"offset {offset} must not be negative")
        reverse = params.get("reverse", False if v2 else "false")
        if (v2 and not isinstance(reverse, bool)) or (not v2 and reverse not in ("true", "false")):
            raise SlsError(400, "InvalidReverse", f"reverse {reverse!r} must be true or false")
        reverse = reverse in (True, "true")
        query = str(params.get("query") or "")
        topic = str(params.get("topic") or "")
        search, sql = split_query(query)
        if sql:
            raise SlsError(400, "EmulatorUnsupported", "the SLS emulator does not evaluate the SQL part (| …)")
        with self._lock:
            store = self._logstore(request.project, logstore)
            if store.index is None:
                raise SlsError(400, "IndexConfigNotExist", "logstore without index config")
            index, candidates = store.index, store.logs[store.index_from:]
        predicate = compile_search(search, index)
        started = time.monotonic()
        in_range = [
            (log.time, log.time_ns or 0, position, log)
            for position, log in enumerate(candidates)
            if start <= log.time < end and (not topic or log.topic == topic)
        ]
        matched = sorted((entry for entry in in_range if predicate(entry[3])), reverse=reverse)
        rows = [_row(entry[3]) for entry in matched[offset:offset + line]]
        meta = {
            "progress": "Complete", "count": len(rows), "processedRows": len(in_range),
            "elapsedMillisecond": int((time.monotonic() - started) * 1000), "hasSQL": False,
            "whereQuery": search, "aggQuery": "", "keys": sorted({key for row in rows for key in row}),
            "isAccurate": True, "powerSql": False,
        }
        headers = {
            "x-log-progress": "Complete", "x-log-count": str(len(rows)), "x-log-processed-rows": str(len(in_range)),
            "x-log-elapsed-millisecond": str(meta["elapsedMillisecond"]), "x-log-has-sql": "false",
            "x-log-agg-query": "",
        }
        if search.isascii() and search.isprintable():
            headers["x-log-where-query"] = search
        if not v2:
            return _json_response(rows, headers)
        payload = json.dumps({"meta": meta, "data": rows}).encode("utf-8")
        headers["Content-Type"] = "application/json"
        if "lz4" in request.headers.get("accept-encoding", ""):
            headers["x-log-compresstype"] = "lz4"
            headers["x-log-bodyrawsize"] = str(len(payload))
            payload = lz4.block.compress(payload, store_size=False)
        return _Response(200, payload, headers)

    # logstores and indexes --------------------------------------------------------------------------

    def _op_CreateLogStore(self, request: _Request) -> _Response:
        body = _json_object(request.body, "LogStoreInfoInvalid")
        name = body.get("logstoreName")
        if not isinstance(name, str) or not _LOGSTORE_NAME.fullmatch(name):
            raise SlsError(400, "LogStoreInfoInvalid", f"logstoreName {name!r} is invalid")
        _check_logstore_numbers(body)
        with self._lock:
            project = self._project(request.project)
            if name in project.logstores:
                raise SlsError(400, "LogStoreAlreadyExist", f"logstore {name} already exists")
            project.logstores[name] = _Logstore(self._stamped({**_LOGSTORE_DEFAULTS, **body}, created=True))
        return _empty()

    def _op_GetLogStore(self, request: _Request, logstore: str) -> _Response:
        with self._lock:
            return _json_response(self._logstore(request.project, logstore).config)

    def _op_UpdateLogStore(self, request: _Request, logstore: str) -> _Response:
        body = _json_object(request.body, "LogStoreInfoInvalid")
        if body.get("logstoreName", logstore) != logstore:
            raise SlsError(400, "LogStoreInfoInvalid", "logstoreName does not match the path")
        _check_logstore_numbers(body)
        with self._lock:
            store = self._logstore(request.project, logstore)
            store.config.update(body)
            self._stamped(store.config)
        return _empty()

    def _op_DeleteLogStore(self, request: _Request, logstore: str) -> _Response:
        with self._lock:
            self._logstore(request.project, logstore)
            del self._projects[request.project].logstores[logstore]
        return _empty()

    def _op_ListLogStores(self, request: _Request) -> _Response:
        pattern = request.query.get("logstoreName", "")
        with self._lock:
            names = sorted(name for name in self._project(request.project).logstores if pattern in name)
        page = _page(names, request.query)
        return _json_response({"count": len(page), "total": len(names), "logstores": page})

    def _op_CreateIndex(self, request: _Request, logstore: str) -> _Response:
        index = _json_object(request.body, "IndexInfoInvalid")
        _check_index(index)
        with self._lock:
            store = self._logstore(request.project, logstore)
            if store.index is not None:
                raise SlsError(400, "IndexAlreadyExist", f"index of logstore {logstore} already exists")
            store.index = self._stamped(index)
            store.index_from = len(store.logs)
        return _empty()

    def _op_UpdateIndex(self, request: _Request, logstore: str) -> _Response:
        index = _json_object(request.body, "IndexInfoInvalid")
        _check_index(index)
        with self._lock:
            store = self._logstore(request.project, logstore)
            if store.index is None:
                raise SlsError(400, "IndexConfigNotExist", f"index of logstore {logstore} does not exist")
            store.index = self._stamped(index)
        return _empty()

    def _op_GetIndex(self, request: _Request, logstore: str) -> _Response:
        with self._lock:
            store = self._logstore(request.project, logstore)
            if store.index is None:
                raise SlsError(400, "IndexConfigNotExist", f"index of logstore {logstore} does not exist")
            return _json_response({**store.index, "ttl": store.config.get("ttl", 30)})

    def _op_DeleteIndex(self, request: _Request, logstore: str) -> _Response:
        with self._lock:
            store = self._logstore(request.project, logstore)
            if store.index is None:
                raise SlsError(400, "IndexConfigNotExist", f"index of logstore {logstore} does not exist")
            store.index = None
        return _empty()

    # dashboards, saved searches, alerts -------------------------------------------------------------

    def _entity_body(self, kind: _EntityKind, request: _Request, path_name: str | None = None) -> dict:
        body = _json_object(request.body)
        name = body.get(kind.name_field)
        if not isinstance(name, str) or not name:
            raise _invalid(f"{kind.name_field} is required")
        if path_name is not None and name != path_name:
            raise _invalid(f"{kind.name_field} {name} does not match the path ({path_name})")
        kind.check(body)
        return body

    def _entity_missing(self, kind: _EntityKind, name: str) -> SlsError:
        return SlsError(404, kind.not_exist, f"specified {kind.label} does not exist: {name}")

    def _create_entity(self, kind: _EntityKind, request: _Request) -> _Response:
        body = self._entity_body(kind, request)
        with self._lock:
            store = getattr(self._project(request.project), kind.store)
            if body[kind.name_field] in store:
                raise SlsError(400, kind.already_exist,
                               f"specified {kind.label} already exists: {body[kind.name_field]}")
            store[body[kind.name_field]] = body
        return _empty()

    def _get_entity(self, kind: _EntityKind, request: _Request, name: str) -> _Response:
        with self._lock:
            body = getattr(self._project(request.project), kind.store).get(name)
            if body is None:
                raise self._entity_missing(kind, name)
            return _json_response(body)

    def _update_entity(self, kind: _EntityKind, request: _Request, name: str) -> _Response:
        body = self._entity_body(kind, request, name)
        with self._lock:
            store = getattr(self._project(request.project), kind.store)
            if name not in store:
                raise self._entity_missing(kind, name)
            store[name] = body
        return _empty()

    def _delete_entity(self, kind: _EntityKind, request: _Request, name: str) -> _Response:
        with self._lock:
            store = getattr(self._project(request.project), kind.store)
            if store.pop(name, None) is None:
                raise self._entity_missing(kind, name)
        return _empty()

    def _list_entities(self, kind: _EntityKind, request: _Request, keep: Callable[[dict], bool]) -> _Response:
        with self._lock:
            store = getattr(self._project(request.project), kind.store)
            items = [copy.deepcopy(store[name]) for name in sorted(store) if keep(store[name])]
        page = _page(items, request.query)
        return _json_response({"count": len(page), "total": len(items), **kind.list_body(page)})

    def _op_CreateDashboard(self, request):
        return self._create_entity(_DASHBOARD, request)

    def _op_GetDashboard(self, request, name):
        return self._get_entity(_DASHBOARD, request, name)

    def _op_UpdateDashboard(self, request, name):
        return self._update_entity(_DASHBOARD, request, name)

    def _op_DeleteDashboard(self, request, name):
        return self._delete_entity(_DASHBOARD, request, name)

    def _op_ListDashboard(self, request):
        return self._list_entities(_DASHBOARD, request, lambda body: True)

    def _op_CreateSavedSearch(self, request):
        return self._create_entity(_SAVEDSEARCH, request)

    def _op_GetSavedSearch(self, request, name):
        return self._get_entity(_SAVEDSEARCH, request, name)

    def _op_UpdateSavedSearch(self, request, name):
        return self._update_entity(_SAVEDSEARCH, request, name)

    def _op_DeleteSavedSearch(self, request, name):
        return self._delete_entity(_SAVEDSEARCH, request, name)

    def _op_ListSavedSearch(self, request):
        return self._list_entities(_SAVEDSEARCH, request, lambda body: True)

    def _op_CreateAlert(self, request):
        return self._create_entity(_JOB, request)

    def _op_GetAlert(self, request, name):
        return self._get_entity(_JOB, request, name)

    def _op_UpdateAlert(self, request, name):
        return self._update_entity(_JOB, request, name)

    def _op_DeleteAlert(self, request, name):
        return self._delete_entity(_JOB, request, name)

    def _op_ListAlerts(self, request):
        job_type = request.query.get("jobType")
        return self._list_entities(_JOB, request, lambda body: job_type in (None, body.get("type")))

    def _op_EnableAlert(self, request, name):
        return self._set_alert_state(request, name, "Enabled")

    def _op_DisableAlert(self, request, name):
        return self._set_alert_state(request, name, "Disabled")

    def _set_alert_state(self, request: _Request, name: str, state: str) -> _Response:
        with self._lock:
            body = self._project(request.project).jobs.get(name)
            if body is None:
                raise self._entity_missing(_JOB, name)
            body["state"] = state
        return _empty()

    # alert resource records (account level) -----------------------------------------------------------

    def _record_missing(self, resource: str, record_id: str) -> SlsError:
        return SlsError(404, "ResourceRecordNotExist", f"record {record_id} of resource {resource} does not exist")

    def _write_record(self, resource: str, record_id: str, fields: dict, exists: bool | None) -> None:
        """Store one checked record; `exists`: it must (update), must not (create) or may (upsert) exist already.
        A tag left out keeps the stored one. Call with self._lock held."""
        records = self._resource_records.setdefault(resource, {})
        previous = records.get(record_id)
        if exists is False and previous is not None:
            raise SlsError(400, "ResourceRecordAlreadyExist",
                           f"record {record_id} of resource {resource} already exists")
        if exists and previous is None:
            raise self._record_missing(resource, record_id)
        record = dict(previous or {"id": record_id, "tag": ""})
        record.update({key: fields[key] for key in ("tag", "value") if key in fields})
        records[record_id] = self._stamped(record, created=previous is None)

    def _op_CreateResourceRecord(self, request: _Request, resource: str) -> _Response:
        fields = _json_object(request.body)
        _check_record(resource, fields)
        record_id = fields.get("id") or uuid.uuid4().hex  # the id is optional; the service answers the one it chose
        with self._lock:
            self._write_record(resource, record_id, fields, exists=False)
        return _json_response({"id": record_id})

    def _op_UpdateResourceRecord(self, request: _Request, resource: str, record_id: str) -> _Response:
        fields = _json_object(request.body)
        _check_record(resource, fields)
        if fields.get("id", record_id) != record_id:
            raise _invalid(f"id {fields['id']} does not match the path ({record_id})")
        with self._lock:
            self._write_record(resource, record_id, fields, exists=True)
        return _empty()

    def _op_UpsertResourceRecord(self, request: _Request, resource: str) -> _Response:
        records = _json_object(request.body).get("records")
        if not isinstance(records, list) or not records:
            raise _invalid("records must be a non-empty list")
        for fields in records:
            _check_record(resource, fields)
            if not fields.get("id"):
                raise _invalid("every upserted record needs an id")
        with self._lock:
            for fields in records:
                self._write_record(resource, fields["id"], fields, exists=None)
        return _empty()

    def _op_GetResourceRecord(self, request: _Request, resource: str, record_id: str) -> _Response:
        with self._lock:
            record = self._resource_records.get(resource, {}).get(record_id)
            if record is None:
                raise self._record_missing(resource, record_id)
            return _json_response(record)

    def _op_ListResourceRecords(self, request: _Request, resource: str) -> _Response:
        ids = request.query["ids"].split(",") if request.query.get("ids") else None
        tag = request.query.get("tag")
        with self._lock:
            records = self._resource_records.get(resource, {})
            items = [copy.deepcopy(record) for record_id, record in sorted(records.items())
                     if (ids is None or record_id in ids) and tag in (None, record["tag"])]
        page = _page(items, request.query)
        return _json_response({"count": len(page), "total": len(items), "items": page})

    def _op_DeleteResourceRecord(self, request: _Request, resource: str) -> _Response:
        ids = [record_id for record_id in request.query.get("ids", "").split(",") if record_id]
        if not ids:
            raise _invalid("ids names the records to delete")
        with self._lock:
            records = self._resource_records.get(resource, {})
            missing = [record_id for record_id in ids if record_id not in records]
            if missing:  # nothing is deleted when one is missing
                raise self._record_missing(resource, missing[0])
            for record_id in ids:
                del records[record_id]
        return _empty()


def _int_param(params: Mapping, name: str, code: str, default: int | None = None) -> int:
    value = params.get(name, default)
    if isinstance(value, bool) or value is None:
        raise SlsError(400, code, f"{name} is required and must be an integer")
    try:
        return int(value)
    except (TypeError, ValueError):
        raise SlsError(400, code, f"{name} {value!r} is not an integer") from None


def _check_logstore_numbers(body: dict) -> None:
    ttl, shards = body.get("ttl", 30), body.get("shardCount", 2)
    if isinstance(ttl, bool) or not isinstance(ttl, int) or not 1 <= ttl <= 3650:
        raise SlsError(400, "LogStoreInfoInvalid", f"ttl {ttl!r} must be 1 to 3650 days")
    if isinstance(shards, bool) or not isinstance(shards, int) or shards < 1:
        raise SlsError(400, "LogStoreInfoInvalid", f"shardCount {shards!r} must be a positive integer")


def _page(items: list, query: Mapping[str, str]) -> list:
    offset = _int_param(query, "offset", "ParameterInvalid", default=0)
    size = _int_param(query, "size", "ParameterInvalid", default=100)
    return items[offset:offset + size]


class _Handler(EmulatorHandler):
    server_version = "sls-emulator"
    emulator: SlsEmulator

    def do_GET(self) -> None:
        response = self.emulator._handle(self.command, self.path, self.headers, self.read_body())
        if response is None:
            self.drop_connection()
        else:
            self.send(response.status, response.headers, response.body)

    do_POST = do_PUT = do_DELETE = do_GET


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Local SLS emulator for aliyun-log-python-sdk 0.9.52")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--project", action="append", default=[], help="create this project (repeatable)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the fault RNG")
    args = parser.parse_args(argv)
    access_key_id = os.environ.get("ALIBABA_CLOUD_ACCESS_KEY_ID")
    secret = os.environ.get("ALIBABA_CLOUD_ACCESS_KEY_SECRET")
    if not access_key_id or not secret:
        parser.error("set ALIBABA_CLOUD_ACCESS_KEY_ID and ALIBABA_CLOUD_ACCESS_KEY_SECRET")
    with SlsEmulator({access_key_id: secret}, host=args.host, port=args.port, seed=args.seed) as sls:
        for project in args.project:
            sls.create_project(project)
        print(f"SLS emulator listening on {sls.endpoint}", flush=True)
        serve_until_interrupted()


if __name__ == "__main__":
    main()
