"""decode(): every branch of reference/events.md section 10 and its reason codes (section 13)."""
import base64
import urllib.parse

import orjson
import pytest

from shipper.decode import (
    BAD_ENCODING,
    DEFAULT_MAX_BYTES,
    NOT_AN_EVENT,
    NOT_JSON,
    TOO_LARGE,
    Rejected,
    decode,
)

A_EVENT = b'{"name":"Instance:StateChange","content":{"state":"Running"}}'
A_OBJECT = {"name": "Instance:StateChange", "content": {"state": "Running"}}
FORM = "application/x-www-form-urlencoded"


def b64(data: bytes) -> bytes:
    return base64.b64encode(data)


@pytest.mark.parametrize(
    "data, content_type, expected",
    [
        pytest.param(A_EVENT, None, [A_OBJECT], id="raw-object"),
        pytest.param(b"\xef\xbb\xbf \r\n" + A_EVENT + b"\n\t ", None, [A_OBJECT], id="bom-and-whitespace"),
        pytest.param(b'[{"a":1},{"b":2}]', None, [{"a": 1}, {"b": 2}], id="array-of-objects"),
        pytest.param(b'{"a":1}\n{"b":2}\n', None, [{"a": 1}, {"b": 2}], id="ndjson"),
        pytest.param(b'{"a":1}\r\n\r\n  \n{"b":2}', None, [{"a": 1}, {"b": 2}], id="ndjson-crlf-blank-lines"),
        pytest.param(b'{"a":"x\xe2\x80\xa8y"}\n{"b":2}', None, [{"a": "x\u2028y"}, {"b": 2}], id="ndjson-u2028-in-string"),
        pytest.param(b'{\n  "a": 1,  \n  "b": [1, 2]  \n}', None, [{"a": 1, "b": [1, 2]}], id="pretty-json-trailing-spaces"),
        pytest.param(b64(A_EVENT), None, [A_OBJECT], id="base64"),
        pytest.param(b64(A_EVENT)[:20] + b"\r\n" + b64(A_EVENT)[20:] + b"\n", None, [A_OBJECT], id="base64-line-breaks"),
        pytest.param(b64(b'[{"a":1},{"b":2}]'), None, [{"a": 1}, {"b": 2}], id="base64-array"),
        pytest.param(b"severity=WARN&userId=1827", FORM, [{"severity": "WARN", "userId": "1827"}], id="form-declared"),
        pytest.param(b"severity=WARN", FORM + "; charset=UTF-8", [{"severity": "WARN"}], id="form-declared-charset"),
        pytest.param(b"a=%C4%E3", FORM + '; charset="gbk"', [{"a": "\u4f60"}], id="form-declared-gbk"),
        pytest.param(b"a=1&empty=&b=x+y", None, [{"a": "1", "empty": "", "b": "x y"}], id="form-shaped-text"),
        pytest.param(
            b"data=" + urllib.parse.quote(A_EVENT).encode(), None, [A_OBJECT], id="form-data-field-holds-json"
        ),
        pytest.param(
            b"body=" + urllib.parse.quote(A_EVENT).encode(), FORM, [A_OBJECT], id="form-body-field-holds-json"
        ),
        pytest.param(b"data=%5B1%5D", FORM, [{"data": [1]}], id="form-data-field-holds-array"),
        pytest.param(b"data=hello", FORM, [{"data": "hello"}], id="form-data-field-not-json"),
        pytest.param(
            b"data=" + urllib.parse.quote(A_EVENT).encode() + b"&x=1",
            FORM,
            [{"data": A_OBJECT, "x": "1"}],
            id="form-data-with-other-fields-is-not-unwrapped",
        ),
        pytest.param(A_EVENT, FORM, [A_OBJECT], id="json-body-declared-as-form"),
        pytest.param(A_EVENT, "application/json; charset=utf-8", [A_OBJECT], id="json-content-type"),
    ],
)
def test_decode_accepts(data, content_type, expected):
    _, objects = decode(data, content_type=content_type)
    assert objects == expected


@pytest.mark.parametrize(
    "doc, expected",
    [
        pytest.param(
            {"alert": '{"eventName":"X","meta":"{\\"k\\":1}"}'},
            {"alert": {"eventName": "X", "meta": {"k": 1}}},
            id="alert-string-and-its-values",
        ),
        pytest.param({"content": '{"state":"Running"}'}, {"content": {"state": "Running"}}, id="content-string"),
        pytest.param({"data": '{"instanceId":"i-1"}'}, {"data": {"instanceId": "i-1"}}, id="data-string"),
        pytest.param({"ids": '["a","b"]'}, {"ids": ["a", "b"]}, id="array-string"),
        pytest.param({"bad": "{not json", "n": "42"}, {"bad": "{not json", "n": "42"}, id="unparseable-kept"),
        pytest.param({"s": " {\"a\":1}"}, {"s": " {\"a\":1}"}, id="leading-space-kept"),
        pytest.param(
            {"outer": {"inner": '{"a":1}'}}, {"outer": {"inner": '{"a":1}'}}, id="only-top-level-and-alert"
        ),
        pytest.param(
            {"alert": {"eventRawContent": '{"a":1}', "eventContentMap": {}}},
            {"alert": {"eventRawContent": {"a": 1}, "eventContentMap": {}}},
            id="alert-object-values",
        ),
    ],
)
def test_nested_json_strings_are_parsed(doc, expected):
    _, objects = decode(orjson.dumps(doc))
    assert objects == [expected]


def test_form_values_are_unstringified_like_json_values():
    alert = '{"eventName":"Instance:StateChange","eventContentMap":{"state":"Stopped"}}'
    body = urllib.parse.urlencode({"alert": alert, "time": "1765158305000"}).encode()
    _, objects = decode(body, content_type=FORM)
    assert objects == [{"alert": {"eventName": "Instance:StateChange", "eventContentMap": {"state": "Stopped"}},
                        "time": "1765158305000"}]


@pytest.mark.parametrize(
    "data, content_type, reason",
    [
        pytest.param(b"", None, NOT_JSON, id="empty"),
        pytest.param(b" \r\n\t", None, NOT_JSON, id="whitespace-only"),
        pytest.param(b"\xef\xbb\xbf\n", None, NOT_JSON, id="bom-only"),
        pytest.param(b'{"a":1,}', None, NOT_JSON, id="trailing-comma"),
        pytest.param(b'[{"a":1},]', None, NOT_JSON, id="trailing-comma-array"),
        pytest.param(b'{"a":', None, NOT_JSON, id="truncated"),
        pytest.param(b"{'a': 1}", None, NOT_JSON, id="single-quotes"),
        pytest.param(b'{"a":NaN}', None, NOT_JSON, id="nan"),
        pytest.param(b'{"a":1}\n{"b":', None, NOT_JSON, id="ndjson-bad-line"),
        pytest.param(b'{"a":1} {"b":2}', None, NOT_JSON, id="two-objects-one-line"),
        pytest.param(b"<html><body>502 Bad Gateway</body></html>", None, NOT_JSON, id="html"),
        pytest.param(b"hello world", None, NOT_JSON, id="plain-text"),
        pytest.param(b"\xff\xfe{}", None, BAD_ENCODING, id="not-utf8"),
        pytest.param(b'{"a":"\xed\xa0\x80"}', None, BAD_ENCODING, id="utf8-encoded-surrogate"),
        pytest.param(b"abc", None, BAD_ENCODING, id="base64-alphabet-bad-padding"),
        pytest.param(b64(b"\xff\xfe\xfd"), None, BAD_ENCODING, id="base64-not-utf8"),
        pytest.param(b64(b"plain text"), None, BAD_ENCODING, id="base64-not-json"),
        pytest.param(b64(b'{"a":1,}'), None, BAD_ENCODING, id="base64-invalid-json"),
        pytest.param(b"a=%FF", FORM, BAD_ENCODING, id="form-not-utf8"),
        pytest.param(b"a=%FF", None, BAD_ENCODING, id="form-shaped-not-utf8"),
        pytest.param(b"a=%41", FORM + "; charset=no-such-charset", BAD_ENCODING, id="form-unknown-charset"),
        pytest.param(b"[]", None, NOT_AN_EVENT, id="empty-array"),
        pytest.param(b"[1,2]", None, NOT_AN_EVENT, id="array-of-numbers"),
        pytest.param(b'[{"a":1},"x"]', None, NOT_AN_EVENT, id="array-with-a-non-object"),
        pytest.param(b'[[{"a":1}]]', None, NOT_AN_EVENT, id="nested-array"),
        pytest.param(b'{"a":1}\n[1]', None, NOT_AN_EVENT, id="ndjson-line-not-object"),
        pytest.param(b64(b'"just a string"'), None, BAD_ENCODING, id="base64-json-scalar"),
        pytest.param(b64(b"[1]"), None, NOT_AN_EVENT, id="base64-array-of-numbers"),
    ],
)
def test_decode_rejects(data, content_type, reason):
    with pytest.raises(Rejected) as caught:
        decode(data, content_type=content_type)
    assert caught.value.reason == reason
    assert caught.value.error and "\n" not in caught.value.error


@pytest.mark.parametrize("scalar", [b"42", b"true", b"null", b'"text"', b"1.5"])
def test_json_scalars_never_decode_to_events(scalar):
    # Bare scalars look like base64 or plain text; none of them may come out as an object.
    with pytest.raises(Rejected) as caught:
        decode(scalar)
    assert caught.value.reason in (NOT_JSON, BAD_ENCODING, NOT_AN_EVENT)


def test_too_large_is_checked_before_anything_else():
    with pytest.raises(Rejected) as caught:
        decode(b"\xff" * 11, max_bytes=10)
    assert caught.value.reason == TOO_LARGE
    assert decode(A_EVENT, max_bytes=len(A_EVENT))[1] == [A_OBJECT]


def test_default_limit_is_one_mebibyte():
    assert DEFAULT_MAX_BYTES == 1024 * 1024
    padding = b" " * (DEFAULT_MAX_BYTES - len(A_EVENT))
    assert decode(A_EVENT + padding)[1] == [A_OBJECT]
    with pytest.raises(Rejected) as caught:
        decode(A_EVENT + padding + b" ")
    assert caught.value.reason == TOO_LARGE


def test_text_is_the_message_without_bom_and_outer_whitespace():
    text, _ = decode(b"\xef\xbb\xbf\n" + A_EVENT + b"\n")
    assert text == A_EVENT.decode()
    encoded = b64(A_EVENT)
    assert decode(encoded)[0] == encoded.decode()
    assert decode(b"a=%7B%7D", content_type=FORM)[0] == "a=%7B%7D"


@pytest.mark.parametrize(
    "data",
    [
        b"<html>" + b"x" * 5000 + b"</html>",
        b'{"secret":"' + b"s" * 5000 + b'",}',
        b"A" * 5001,
        b"[" + b"1," * 3000 + b"1]",
    ],
)
def test_error_message_is_short_and_does_not_echo_the_body(data):
    with pytest.raises(Rejected) as caught:
        decode(data)
    assert len(caught.value.error) <= 120
    assert "x" * 50 not in caught.value.error and "s" * 50 not in caught.value.error


def test_rejected_carries_reason_and_error():
    error = Rejected(NOT_JSON, "invalid JSON")
    assert (error.reason, error.error) == (NOT_JSON, "invalid JSON")
    assert isinstance(error, Exception)


@pytest.mark.parametrize("charset", ["unicode_escape", "utf-7", "punycode", "rot13", "utf-16", "zlib"])
def test_a_declared_charset_outside_the_accepted_few_is_bad_encoding(charset):
    # unicode_escape and utf-7 made a lone surrogate of this id (then every store failed on it); punycode
    # raised a bare UnicodeError (an internal-error dead letter).
    body = b"name=Instance%3AStateChange&product=ECS&resourceId=acs%3Aecs%3Acn-hangzhou%3A1%3Ainstance%2F%5Cud800"
    with pytest.raises(Rejected) as e:
        decode(body, content_type=f"{FORM}; charset={charset}")
    assert e.value.reason == BAD_ENCODING
    assert charset in e.value.error and "utf-8, gbk, gb18030 or latin-1" in e.value.error


@pytest.mark.parametrize("charset, body, expected", [
    ("GB18030", b"a=%81%30%81%30", "\x80"),
    ("gb2312", b"a=%C4%E3", "\u4f60"),
    ("ISO-8859-1", b"a=%E9", "\xe9"),
    ("utf8", b"a=%5Cud800", "\\ud800"),  # the escape stays text: six characters, valid Unicode
])
def test_the_accepted_charsets_by_their_usual_names(charset, body, expected):
    assert decode(body, content_type=f"{FORM}; charset={charset}")[1] == [{"a": expected}]
