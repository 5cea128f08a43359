"""The SLS emulator, driven through the official aliyun-log-python-sdk 0.9.52.

Expected values come from Alibaba Cloud's documented SLS API (reference/sls.md in the team's shared
notes; section numbers in the test names' docs).
"""
from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import time
import types
import zlib

import pytest
import requests
from aliyun.log import (
    IndexConfig,
    IndexKeyConfig,
    IndexLineConfig,
    LogClient,
    LogException,
    LogItem,
    PutLogsRequest,
)
from aliyun.log import logclient as sdk_logclient
from aliyun.log.proto import LogGroupRaw
from aliyun.log.resource_params import ResourceRecord

from tests.conftest import REPO
from tests.emulators.protobuf_wire import decode_log_group
from tests.emulators.sls import SlsEmulator, project_from_host, signature, string_to_sign

AK = "LTAIexampleKEY01"
SK = "exampleSecret0123456789"
PROJECT = "ecs-audit"
STORE = "ecs-events"
NOW = int(time.time())

SHORT_TOKENS = [",", " ", ";", '"', "'", "\n", "\t", "\r"]
LINE_TOKENS = [",", " ", "'", '"', ";", "=", "(", ")", "[", "]", "{", "}", "?", "@", "&", "<", ">", "/", ":",
               "\n", "\t", "\r"]
TEXT_KEYS = ("event_uid", "event_name", "state", "instance_id", "region_id", "event_status", "action")
INDEX = IndexConfig(
    line_config=IndexLineConfig(token_list=LINE_TOKENS),
    key_config_list={
        **{key: IndexKeyConfig(token_list=SHORT_TOKENS, doc_value=True) for key in TEXT_KEYS},
        "event_time_ms": IndexKeyConfig(index_type="long", doc_value=True),
        "detail": IndexKeyConfig(token_list=[",", " ", '"', ":", "{", "}", "[", "]"]),
    },
)


def make_client(sls: SlsEmulator, secret: str = SK, access_key_id: str = AK) -> LogClient:
    client = LogClient(sls.endpoint, access_key_id, secret, source="test")
    client._isRowIp = True  # section 1: keep 127.0.0.1:port in the URL, project in Host only
    return client


@pytest.fixture
def sls():
    with SlsEmulator(credentials={AK: SK}) as emulator:
        emulator.create_project(PROJECT)
        yield emulator


@pytest.fixture
def client(sls):
    client = make_client(sls)
    client.create_logstore(PROJECT, STORE, ttl=30, shard_count=2)
    client.create_index(PROJECT, STORE, INDEX)
    return client


@pytest.fixture
def no_sdk_sleep(monkeypatch):
    """The SDK sleeps 1 s between retries (section 5); record the sleeps instead of waiting."""
    sleeps = []
    monkeypatch.setattr(sdk_logclient, "time", types.SimpleNamespace(time=time.time, sleep=sleeps.append))
    return sleeps


def error_of(call, *args, **kwargs) -> LogException:
    with pytest.raises(LogException) as caught:
        call(*args, **kwargs)
    return caught.value


def item(seconds: int = NOW, **contents: str) -> LogItem:
    return LogItem(timestamp=seconds, contents=list(contents.items()), time_nano_part=250000000)


def put(client: LogClient, items, topic="lifecycle", source="shipper-host-1", store=STORE, **options):
    request = PutLogsRequest(PROJECT, store, topic, source, items, logtags=[("shipper_version", "0.1.0")], **options)
    return client.put_logs(request)


def search(client: LogClient, query: str | None = None, start: int = NOW - 60, end: int = NOW + 60, **options):
    return client.get_log(PROJECT, STORE, start, end, query=query, **options).get_logs()


# --------------------------------------------------------------------------------------------------
# Section 3: signatures; section 4.1: protobuf; section 1: project from Host

REFERENCE_DATE = "Thu, 05 Mar 2026 08:00:00 GMT"


def test_string_to_sign_and_signature_match_the_worked_put_logs_example():
    headers = {
        "content-md5": "E7AE832CBF7A75192DFD517996CEEE80", "content-type": "application/x-protobuf",
        "date": REFERENCE_DATE, "x-log-apiversion": "0.6.0", "x-log-bodyrawsize": "133",
        "x-log-compresstype": "lz4", "x-log-signaturemethod": "hmac-sha1",
        "x-log-date": REFERENCE_DATE, "host": "ecs-audit.127.0.0.1", "content-length": "132",
    }
    text = string_to_sign("POST", "/logstores/ecs-events/shards/lb", {}, headers)
    assert text == (
        "POST\nE7AE832CBF7A75192DFD517996CEEE80\napplication/x-protobuf\nThu, 05 Mar 2026 08:00:00 GMT\n"
        "x-log-apiversion:0.6.0\nx-log-bodyrawsize:133\nx-log-compresstype:lz4\nx-log-signaturemethod:hmac-sha1\n"
        "/logstores/ecs-events/shards/lb"
    )
    assert signature(SK, text) == "SngaaS/gyCrG4r62TPQR/gQEh+8="


def test_string_to_sign_and_signature_match_the_worked_get_logs_v1_example():
    headers = {"date": REFERENCE_DATE, "x-log-apiversion": "0.6.0", "x-log-bodyrawsize": "0",
               "x-log-signaturemethod": "hmac-sha1"}
    query = {"from": "1772697600", "line": "100", "offset": "0", "powerSql": "False",
             "query": "event_name: Instance* and state: Stopped", "reverse": "false", "to": "1772701200",
             "type": "log"}
    text = string_to_sign("GET", "/logstores/ecs-events", query, headers)
    assert text == (
        "GET\n\n\nThu, 05 Mar 2026 08:00:00 GMT\nx-log-apiversion:0.6.0\nx-log-bodyrawsize:0\n"
        "x-log-signaturemethod:hmac-sha1\n/logstores/ecs-events?from=1772697600&line=100&offset=0&powerSql=False"
        "&query=event_name: Instance* and state: Stopped&reverse=false&to=1772701200&type=log"
    )
    assert signature(SK, text) == "T+xtJoZMJHNl9BUOzzg3wFOFB1I="


def test_decoder_reads_the_reference_log_group():
    body = bytes.fromhex(
        "0a4e0880f0a4cd06120b0a06736368656d6112013112220a0a6576656e745f6e616d651214496e7374616e63653a537461"
        "74654368616e676512100a057374617465120753746f707065642580b2e60e1a096c6966656379636c65220e73686970706572"
        "2d686f73742d3132180a0f736869707065725f76657273696f6e1205302e312e30"
    )
    assert len(body) == 133
    group = decode_log_group(body)
    assert [(log.time, log.time_ns, log.contents) for log in group.logs] == [
        (1772697600, 250000000, [("schema", "1"), ("event_name", "Instance:StateChange"), ("state", "Stopped")])
    ]
    assert (group.topic, group.source, group.tags) == ("lifecycle", "shipper-host-1", [("shipper_version", "0.1.0")])


@pytest.mark.parametrize("host, project", [
    ("ecs-audit.127.0.0.1", "ecs-audit"),
    ("ecs-audit.127.0.0.1:8081", "ecs-audit"),
    ("ecs-audit.cn-hangzhou.log.aliyuncs.com", "ecs-audit"),
    ("127.0.0.1:8081", ""),
])
def test_project_comes_from_the_host_header(host, project):
    assert project_from_host(host, ("127.0.0.1", "localhost", "cn-hangzhou.log.aliyuncs.com")) == project


# --------------------------------------------------------------------------------------------------
# Section 4: PutLogs


def put_raw(client: LogClient, body: bytes, headers: dict, path=f"/logstores/{STORE}/shards/lb", params=None):
    """Send a hand-made PutLogs body through the SDK's own signing and transport."""
    headers = {"Content-Type": "application/x-protobuf", **headers}
    return client._send("POST", PROJECT, body, path, params or {}, headers)


def sdk_log_group(contents, seconds=NOW) -> bytes:
    group = LogGroupRaw()
    group.Topic, group.Source = "lifecycle", "shipper-host-1"
    log = group.Logs.add()
    log.Time, log.Time_ns = seconds, 250000000
    for key, value in contents:
        content = log.Contents.add()
        content.Key, content.Value = key, value if isinstance(value, bytes) else value.encode()
    tag = group.LogTags.add()
    tag.Key, tag.Value = "shipper_version", "0.1.0"
    return group.SerializeToString()


FIELDS = {"schema": "1", "event_uid": "uid-1", "event_name": "Instance:StateChange", "state": "Stopped",
          "instance_id": "i-bp1f3kq7z2m9w4x6c8v0", "detail": '{"a": "é ünïcode"}'}


def send_with(client: LogClient, compression: str) -> None:
    if compression in ("lz4", "zstd"):
        put(client, [item(**FIELDS)], compress_type=compression)
    elif compression == "none":
        put(client, [item(**FIELDS)], compress=False)
    else:  # deflate: documented for the API, never sent by the Python SDK (section 4.2)
        raw = sdk_log_group(FIELDS.items())
        put_raw(client, zlib.compress(raw), {"x-log-compresstype": "deflate", "x-log-bodyrawsize": str(len(raw))})


@pytest.mark.parametrize("compression", ["lz4", "none", "deflate", "zstd"])
def test_put_logs_then_get_logs_finds_every_field(sls, client, compression):
    if compression == "zstd":
        pytest.importorskip("zstd", reason="the SDK sends zstd only with the pip module `zstd`")
    send_with(client, compression)
    (found,) = search(client, "event_uid: uid-1")
    assert found.get_time() == NOW
    assert found.get_source() == "shipper-host-1"
    assert found.get_contents() == {
        **FIELDS, "__topic__": "lifecycle", "__tag__:shipper_version": "0.1.0",
    }
    (stored,) = sls.logs(PROJECT, STORE)
    assert (stored.time, stored.time_ns, stored.topic, stored.source) == (NOW, 250000000, "lifecycle", "shipper-host-1")
    assert stored.tags == {"shipper_version": "0.1.0"} and stored.contents == FIELDS
    assert sls.request_count("PutLogs", PROJECT, STORE) == 1


def test_route_path_stores_like_lb_and_needs_a_hash_key(sls, client):
    put(client, [item(event_uid="routed")], hashKey="0123456789abcdef0123456789ABCDEF")
    assert [log.contents for log in sls.logs(PROJECT, STORE)] == [{"event_uid": "routed"}]
    assert error_of(put, client, [item(event_uid="x")], hashKey="not-hex").get_error_code() == "ParameterInvalid"


def test_too_many_logs_is_post_body_too_large(sls, client):
    error = error_of(put, client, [item(n=str(i)) for i in range(4097)])
    assert (error.resp_status, error.get_error_code()) == (400, "PostBodyTooLarge")
    put(client, [item(n=str(i)) for i in range(4096)])
    assert len(sls.logs(PROJECT, STORE)) == 4096


def test_raw_body_over_3_mib_is_post_body_too_large(sls, client):
    values = {f"v{i}": "x" * 900_000 for i in range(4)}
    assert error_of(put, client, [item(**values)]).get_error_code() == "PostBodyTooLarge"
    sls.limits.max_raw_body_bytes = 10 * 1024 * 1024
    put(client, [item(**values)])
    assert len(sls.logs(PROJECT, STORE)) == 1


def test_value_over_1_mb_is_rejected(client):
    assert error_of(put, client, [item(big="x" * (1024 * 1024 + 1))]).get_error_code() == "PostBodyTooLarge"


@pytest.mark.parametrize("contents, code", [
    ([("1starts_with_digit", "v")], "InvalidKey"),
    ([("dotted.key", "v")], "InvalidKey"),
    ([("__topic__", "v")], "InvalidKey"),
    ([("k" * 129, "v")], "InvalidKey"),
    ([("same", "a"), ("same", "b")], "InvalidKey"),
    ([("bytes", b"\xff\xfe")], "InvalidEncoding"),
])
def test_data_rules_of_section_4_3(sls, client, contents, code):
    error = error_of(put, client, [LogItem(timestamp=NOW, contents=contents)])
    assert (error.resp_status, error.get_error_code()) == (400, code)
    assert sls.logs(PROJECT, STORE) == []


@pytest.mark.parametrize("seconds", [NOW - 8 * 86400, NOW + 3600])
def test_log_time_out_of_range_is_post_body_invalid(client, seconds):
    assert error_of(put, client, [item(seconds, k="v")]).get_error_code() == "PostBodyInvalid"


def test_old_logs_are_accepted_when_the_window_is_opened(sls, client):
    sls.limits.max_log_age_seconds = None
    put(client, [item(1772697600, k="v")])
    assert sls.logs(PROJECT, STORE)[0].time == 1772697600


@pytest.mark.parametrize("body, headers, code", [
    (b"\x0a\x05\x08", {}, "PostBodyInvalid"),
    (b"not lz4 at all", {"x-log-compresstype": "lz4", "x-log-bodyrawsize": "40"}, "PostBodyUncompressError"),
    (zlib.compress(b"\x0a\x00"), {"x-log-compresstype": "deflate", "x-log-bodyrawsize": "7"},
     "PostBodyUncompressError"),
    (b"\x0a\x00", {"x-log-compresstype": "lz4"}, "MissingBodyRawSize"),
    (b"\x0a\x00", {"x-log-compresstype": "gzip", "x-log-bodyrawsize": "2"}, "InvalidCompressType"),
])
def test_malformed_bodies_get_their_error_code(client, body, headers, code):
    error = error_of(put_raw, client, body, headers)
    assert (error.resp_status, error.get_error_code()) == (400, code)


def test_missing_project_and_logstore_are_404(sls, client):
    error = error_of(client.get_logstore, "no-such-project", STORE)
    assert (error.resp_status, error.get_error_code()) == (404, "ProjectNotExist")
    error = error_of(put, client, [item(k="v")], store="no-such-store")
    assert (error.resp_status, error.get_error_code()) == (404, "LogStoreNotExist")


# --------------------------------------------------------------------------------------------------
# Section 2/3: authentication


def test_wrong_secret_is_signature_not_match(sls, client):
    error = error_of(put, make_client(sls, secret="wrong"), [item(k="v")])
    assert (error.resp_status, error.get_error_code()) == (401, "SignatureNotMatch")
    assert "wrong" not in error.get_error_message()
    assert sls.logs(PROJECT, STORE) == []


def test_unknown_access_key_is_invalid_access_key_id(sls, client):
    error = error_of(make_client(sls, access_key_id="LTAIunknown").get_logstore, PROJECT, STORE)
    assert (error.resp_status, error.get_error_code()) == (401, "InvalidAccessKeyId")


def test_clock_more_than_15_minutes_off_is_request_time_too_skewed():
    with SlsEmulator(credentials={AK: SK}, clock=lambda: time.time() + 16 * 60) as sls:
        sls.create_project(PROJECT)
        error = error_of(make_client(sls).list_logstore, PROJECT)
    assert error.get_error_code() == "RequestTimeTooSkewed"


def test_content_md5_must_match_the_body(sls, client):
    body = zlib.compress(sdk_log_group([("k", "v")]))
    headers = {"content-md5": hashlib.md5(b"other").hexdigest().upper(), "content-type": "application/x-protobuf",
               "date": time.strftime("%a, %d %b %Y %H:%M:%S GMT", time.gmtime()), "x-log-apiversion": "0.6.0",
               "x-log-bodyrawsize": str(len(zlib.decompress(body))), "x-log-compresstype": "deflate",
               "x-log-signaturemethod": "hmac-sha1"}
    path = f"/logstores/{STORE}/shards/lb"
    headers["authorization"] = f"LOG {AK}:{signature(SK, string_to_sign('POST', path, {}, headers))}"
    headers["host"] = f"{PROJECT}.127.0.0.1"
    answer = requests.post(f"http://{sls.endpoint}{path}", data=body, headers=headers, timeout=10)
    assert (answer.status_code, answer.json()["errorCode"]) == (400, "InvalidContentMD5")
    assert answer.headers["x-log-requestid"]


# --------------------------------------------------------------------------------------------------
# Section 6/7: GetLogs


def test_time_range_line_offset_and_reverse(client):
    put(client, [item(NOW - 10 + n, n=str(n)) for n in range(5)])
    numbers = lambda logs: [log.get_contents()["n"] for log in logs]  # noqa: E731
    assert numbers(search(client, "*", start=NOW - 9, end=NOW - 7)) == ["1", "2"]
    assert numbers(search(client, "*", size=2, offset=1)) == ["1", "2"]
    assert numbers(search(client, "*", size=2, reverse=True)) == ["4", "3"]


def test_more_than_100_lines_are_paged_by_the_sdk(sls, client):
    put(client, [item(n=str(n)) for n in range(150)])
    response = client.get_log(PROJECT, STORE, NOW - 60, NOW + 60, query="*", size=150)
    assert sorted(int(log.get_contents()["n"]) for log in response.get_logs()) == list(range(150))
    assert sls.request_count("GetLogs") == 2


def test_get_logs_v1_shape_and_status_headers(client):
    put(client, [item(state="Stopped"), item(state="Running")])
    client._get_logs_v2_enabled = False
    response = client.get_log(PROJECT, STORE, NOW - 60, NOW + 60, query="state: Stopped")
    assert response.is_completed() and response.get_count() == 1
    assert response.get_logs()[0].get_contents()["state"] == "Stopped"
    assert response.get_processed_rows() == 2
    assert response.get_where_query() == "state: Stopped"


def test_get_logs_v2_reports_completion_in_meta_and_headers(client):
    put(client, [item(state="Stopped")])
    response = client.get_log(PROJECT, STORE, NOW - 60, NOW + 60, query="state: Stopped")
    assert response.is_completed() and response.get_count() == 1
    assert response.get_all_headers()["x-log-progress"] == "Complete"
    assert response.get_all_headers()["x-log-count"] == "1"


def test_get_logs_topic_filter(client):
    put(client, [item(k="a")], topic="lifecycle")
    put(client, [item(k="b")], topic="maintenance")
    logs = client.get_log(PROJECT, STORE, NOW - 60, NOW + 60, topic="maintenance").get_logs()
    assert [log.get_contents()["k"] for log in logs] == ["b"]


def test_sql_part_is_refused_with_a_clear_code(client):
    error = error_of(search, client, "* | select count(*) as n")
    assert (error.resp_status, error.get_error_code()) == (400, "EmulatorUnsupported")


def test_get_logs_needs_an_index_and_sees_only_data_written_after_it(sls):
    client = make_client(sls)
    client.create_logstore(PROJECT, STORE)
    put(client, [item(k="before")])
    assert error_of(search, client, "*").get_error_code() == "IndexConfigNotExist"
    client.create_index(PROJECT, STORE, INDEX)
    put(client, [item(k="after")])
    assert [log.get_contents()["k"] for log in search(client, "*")] == ["after"]


QUERY_LOGS = {
    "lifecycle": [
        {"event_uid": "A", "event_name": "Instance:StateChange", "state": "Stopped",
         "instance_id": "i-bp1f3kq7z2m9w4x6c8v0", "region_id": "cn-hangzhou", "event_time_ms": "1772697600000"},
        {"event_uid": "B", "event_name": "Instance:StateChange", "state": "Running",
         "instance_id": "i-bp1aaaaaaaaaaaaaaaaa", "region_id": "cn-beijing", "event_time_ms": "1772697700000"},
    ],
    "interruption": [
        {"event_uid": "C", "event_name": "Instance:PreemptibleInstanceInterruption", "state": "", "action": "delete",
         "instance_id": "i-bp1f3kq7z2m9w4x6c8v0", "region_id": "cn-hangzhou", "event_time_ms": "1772697800000"},
    ],
    "maintenance": [
        {"event_uid": "D", "event_name": "Instance:SystemMaintenance.Reboot", "event_status": "Scheduled",
         "region_id": "cn-shanghai", "event_time_ms": "1772697900000", "detail": '{"reason": "hardware failure"}'},
    ],
}


@pytest.fixture(scope="module")
def query_client():
    with SlsEmulator(credentials={AK: SK}) as emulator:
        emulator.create_project(PROJECT)
        client = make_client(emulator)
        client.create_logstore(PROJECT, STORE)
        client.create_index(PROJECT, STORE, INDEX)
        for topic, logs in QUERY_LOGS.items():
            put(client, [item(**log) for log in logs], topic=topic)
        yield client


@pytest.mark.parametrize("query, expected", [
    ("*", "ABCD"),
    ("", "ABCD"),
    ("instance_id: i-bp1f3kq7z2m9w4x6c8v0", "AC"),
    ("__topic__: lifecycle and (state: Stopped or state: Deleted) and region_id: cn-hangzhou", "A"),
    ("__topic__: maintenance and event_status: Scheduled", "D"),
    ("event_time_ms >= 1772697700000 and __topic__: interruption", "C"),
    ("event_time_ms in [1772697600000 1772697700000)", "A"),
    ("event_time_ms > 1772697700000", "CD"),
    ('event_name: "Instance:StateChange"', "AB"),
    ("event_name: Instance*", "ABCD"),
    ("event_name: Instance:Preemptible*", "C"),
    ("state: stopped", "A"),
    ("state:Stopped", "A"),
    ("not state: Stopped", "BCD"),
    ("__topic__: lifecycle not state: Running", "A"),
    ("__topic__: lifecycle and not state: Running", "A"),
    # and > not > or (section 7): `not` takes the whole and-chain after it
    ("__topic__: lifecycle not state: Running and region_id: cn-hangzhou", "AB"),
    ("__topic__: lifecycle and not state: Running and region_id: cn-hangzhou", "AB"),
    ("not state: Running region_id: cn-beijing", "ACD"),
    ("not state: Stopped or region_id: cn-hangzhou", "ABCD"),
    ("state: Stopped or not region_id: cn-hangzhou __topic__: interruption", "ABD"),
    ("(not state: Running) region_id: cn-beijing", ""),
    ("state: Stopped or action: delete", "AC"),
    ("state: Stopped OR action: delete", "AC"),
    ("not action: *", "ABD"),
    ('state: ""', "C"),
    ("hardware", "D"),
    ('"hardware failure"', "D"),
    ('"failure hardware"', "D"),  # a quoted value means each of its tokens (doc-detail/29060)
    ('#"hardware failure"', "D"),  # a phrase: the tokens consecutively (doc-detail/416724)
    ('#"failure hardware"', ""),
    ('detail: #"reason hardware"', "D"),
    ('detail: #"hardware reason"', ""),
    ('#"Stopped"', "A"),
    ('state:#"stopped"', "A"),
    ('"cn-hangzhou Stopped"', "A"),  # tokens in different fields
    ('#"cn-hangzhou Stopped"', ""),  # a phrase lies within one value
    ("failure hardware", "D"),
    ("detail: hardware", "D"),
    ("Stopped", "A"),
    ("__tag__:shipper_version: 0.1.0", "ABCD"),
    ("__source__: shipper-host-1", "ABCD"),
    ("unindexed_key: anything", ""),
])
def test_search_subset(query_client, query, expected):
    found = query_client.get_log(PROJECT, STORE, NOW - 60, NOW + 60, query=query).get_logs()
    assert "".join(sorted(log.get_contents()["event_uid"] for log in found)) == expected


@pytest.mark.parametrize("query", ["state: (", "event_name: *Change", "(state: Stopped", "event_time_ms > x",
                                   'not #"hardware failure"', '#"hardware" and not state: Stopped', '#"hard*"'])
def test_invalid_query_string(query_client, query):
    error = error_of(query_client.get_log, PROJECT, STORE, NOW - 60, NOW + 60, query=query)
    assert (error.resp_status, error.get_error_code()) == (400, "InvalidQueryString")


# --------------------------------------------------------------------------------------------------
# Section 8: logstores and indexes


def test_logstore_crud(sls):
    client = make_client(sls)
    client.create_logstore(PROJECT, STORE, ttl=365, shard_count=2)
    assert error_of(client.create_logstore, PROJECT, STORE).get_error_code() == "LogStoreAlreadyExist"
    got = client.get_logstore(PROJECT, STORE)
    assert (got.get_ttl(), got.get_shard_count(), got.logstore_name) == (365, 2, STORE)
    client.create_logstore(PROJECT, "shipper-actions")
    assert client.list_logstore(PROJECT).get_logstores() == [STORE, "shipper-actions"]
    client.update_logstore(PROJECT, STORE, ttl=90)
    assert client.get_logstore(PROJECT, STORE).get_ttl() == 90
    client.delete_logstore(PROJECT, STORE)
    error = error_of(client.get_logstore, PROJECT, STORE)
    assert (error.resp_status, error.get_error_code()) == (404, "LogStoreNotExist")
    assert list(sls.entities(PROJECT, "logstores")) == ["shipper-actions"]


def test_logstore_name_is_checked(sls):
    assert error_of(make_client(sls).create_logstore, PROJECT, "Bad_Name!").get_error_code() == "LogStoreInfoInvalid"


def test_index_crud(sls):
    client = make_client(sls)
    client.create_logstore(PROJECT, STORE)
    assert error_of(client.get_index_config, PROJECT, STORE).get_error_code() == "IndexConfigNotExist"
    client.create_index(PROJECT, STORE, INDEX)
    assert error_of(client.create_index, PROJECT, STORE, INDEX).get_error_code() == "IndexAlreadyExist"
    config = client.get_index_config(PROJECT, STORE).get_index_config()
    assert config.line_config.token_list == LINE_TOKENS
    assert config.key_config_list["event_time_ms"].index_type == "long"
    assert config.key_config_list["state"].token_list == SHORT_TOKENS
    smaller = IndexConfig(line_config=IndexLineConfig(token_list=[" "]))
    client.update_index(PROJECT, STORE, smaller)
    assert sls.entities(PROJECT, "indexes")[STORE]["line"]["token"] == [" "]
    client.delete_index(PROJECT, STORE)
    assert error_of(client.get_index_config, PROJECT, STORE).get_error_code() == "IndexConfigNotExist"


def test_index_without_line_or_keys_is_invalid(sls):
    client = make_client(sls)
    client.create_logstore(PROJECT, STORE)
    assert error_of(client.create_index, PROJECT, STORE, IndexConfig()).get_error_code() == "IndexInfoInvalid"


# --------------------------------------------------------------------------------------------------
# Section 9: dashboards, saved searches, alerts

DASHBOARD = {
    "dashboardName": "ecs-lifecycle", "displayName": "ECS lifecycle", "description": "", "attribute": {"type": "grid"},
    "charts": [{"title": "events-per-hour", "type": "line",
                "search": {"logstore": "ecs-events", "topic": "", "start": "-86400s", "end": "now",
                           "query": "* | select date_trunc('hour', __time__) as h, count(DISTINCT event_uid) as n "
                                    "group by h order by h"},
                "display": {"xAxis": ["h"], "yAxis": ["n"], "xPos": 0, "yPos": 0, "width": 10, "height": 6,
                            "displayName": "Events per hour"},
                "action": {}}],
}
SAVEDSEARCH = {"savedsearchName": "stopped-instances", "displayName": "Stopped instances",
               "searchQuery": "__topic__: lifecycle and state: Stopped", "logstore": "ecs-events", "topic": ""}
ALERT = {
    "name": "ecs-restart-loop", "displayName": "Instance stopped more than 3 times in 1 h", "type": "Alert",
    "state": "Enabled", "schedule": {"type": "FixedRate", "interval": "5m"},
    "configuration": {
        "version": "2.0", "type": "default", "dashboard": "internal-alert-analysis",
        "queryList": [{"storeType": "log", "region": "cn-hangzhou", "project": "ecs-audit", "store": "ecs-events",
                       "query": "__topic__: lifecycle and state: Stopped | select instance_id, "
                                "count(DISTINCT event_uid) as stops group by instance_id "
                                "having count(DISTINCT event_uid) > 3",
                       "timeSpanType": "Truncated", "start": "-1h", "end": "absolute", "powerSqlMode": "auto"}],
        "groupConfiguration": {"type": "labels_auto", "fields": []},
        "joinConfigurations": [],
        "severityConfigurations": [{"severity": 8, "evalCondition": {"condition": "stops > 3", "countCondition": ""}}],
        "labels": [{"key": "app", "value": "shipper"}],
        "annotations": [{"key": "title", "value": "Restart loop"}],
        "autoAnnotation": True, "sendResolved": False, "threshold": 1, "noDataFire": False, "noDataSeverity": 6,
        "policyConfiguration": {"alertPolicyId": "sls.builtin.dynamic", "actionPolicyId": "shipper-hooks",
                                "repeatInterval": "1h", "useDefault": False},
    },
}


@pytest.mark.parametrize("kind, body, name_field, missing, exists", [
    ("dashboard", DASHBOARD, "dashboardName", "DashboardNotExist", "DashboardAlreadyExist"),
    ("savedsearch", SAVEDSEARCH, "savedsearchName", "SavedSearchNotExist", "SavedSearchAlreadyExist"),
    ("alert", ALERT, "name", "JobNotExist", "JobAlreadyExist"),
])
def test_entity_crud_round_trip(sls, kind, body, name_field, missing, exists):
    client = make_client(sls)
    create, get, update, delete, listing = (
        getattr(client, f"{verb}_{kind}") for verb in ("create", "get", "update", "delete", "list"))
    name = body[name_field]
    error = error_of(get, PROJECT, name)
    assert (error.resp_status, error.get_error_code()) == (404, missing)
    create(PROJECT, body)
    assert error_of(create, PROJECT, body).get_error_code() == exists
    assert get(PROJECT, name).get_entity() == body
    changed = {**body, "displayName": "renamed"}
    update(PROJECT, json.dumps(changed))  # detail may be a JSON string (section 9)
    assert get(PROJECT, name).get_entity() == changed
    listed = listing(PROJECT)
    assert (listed.get_count(), listed.get_total()) == (1, 1)
    delete(PROJECT, name)
    assert error_of(get, PROJECT, name).get_error_code() == missing
    assert error_of(delete, PROJECT, name).get_error_code() == missing


def test_list_shapes(sls):
    client = make_client(sls)
    client.create_dashboard(PROJECT, DASHBOARD)
    client.create_savedsearch(PROJECT, SAVEDSEARCH)
    client.create_alert(PROJECT, ALERT)
    assert client.list_dashboard(PROJECT).get_entities() == ["ecs-lifecycle"]
    assert client.list_savedsearch(PROJECT).get_entities() == ["stopped-instances"]
    assert client.list_alert(PROJECT).get_entities() == [ALERT]


def test_alert_disable_and_enable_change_state(sls):
    client = make_client(sls)
    client.create_alert(PROJECT, ALERT)
    client.disable_alert(PROJECT, ALERT["name"])
    assert client.get_alert(PROJECT, ALERT["name"]).get_entity()["state"] == "Disabled"
    client.enable_alert(PROJECT, ALERT["name"])
    assert client.get_alert(PROJECT, ALERT["name"]).get_entity()["state"] == "Enabled"


@pytest.mark.parametrize("path, value", [
    (("configuration", "severityConfigurations", 0, "severity"), 7),
    (("schedule", "type"), "Sometimes"),
    (("configuration", "queryList", 0, "powerSqlMode"), "maybe"),
])
def test_alert_enumerations_are_checked(sls, path, value):
    body = json.loads(json.dumps(ALERT))
    target = body
    for step in path[:-1]:
        target = target[step]
    target[path[-1]] = value
    assert error_of(make_client(sls).create_alert, PROJECT, body).get_error_code() == "ParameterInvalid"


@pytest.mark.parametrize("change, code", [
    (lambda b: b["charts"][0].update(title="Events per hour"), "ParameterInvalid"),  # the title is the chart id
    (lambda b: b["charts"].append(dict(b["charts"][0])), "ParameterInvalid"),  # two charts, one id
    (lambda b: b.update(dashboardName="ECS lifecycle"), "ParameterInvalid"),
    (lambda b: b["charts"][0]["search"].update(query="* | select region_id || instance_type as r"), "ParameterInvalid"),
    (lambda b: b["charts"][0]["search"].update(query="* | select zone_of(region_id) as z"), "ParameterInvalid"),
])
def test_dashboard_content_rules(sls, change, code):
    body = json.loads(json.dumps(DASHBOARD))
    change(body)
    assert error_of(make_client(sls).create_dashboard, PROJECT, body).get_error_code() == code
    assert sls.entities(PROJECT, "dashboards") == {}


def test_quoted_text_is_not_sql(sls):
    body = json.loads(json.dumps(DASHBOARD))
    body["charts"][0]["search"]["query"] = ("event_name: \"a|b\" | select concat(region_id, ' || x(') as r, "
                                            "count(*) as n from (select * from log) where state in ('a') group by r")
    make_client(sls).create_dashboard(PROJECT, body)


@pytest.mark.parametrize("kind, body", [
    ("savedsearch", {**SAVEDSEARCH, "savedsearchName": "Stopped instances"}),
    ("savedsearch", {**SAVEDSEARCH, "searchQuery": "* | select a || b"}),
    ("alert", {**ALERT, "configuration": {**ALERT["configuration"], "queryList": [
        {**ALERT["configuration"]["queryList"][0], "query": "* | select strftime('%H', __time__) as h"}]}}),
])
def test_saved_search_and_alert_content_rules(sls, kind, body):
    assert error_of(getattr(make_client(sls), f"create_{kind}"), PROJECT, body).get_error_code() == "ParameterInvalid"


# --------------------------------------------------------------------------------------------------
# Section 9: alert resource records, account-level (/resources/<name>/records, no project in Host)

WEBHOOKS = "sls.alert.action_webhook"
HOOK = {"id": "shipper-hook", "name": "shipper hook", "type": "custom",
        "url": "https://shipper.example.com/hooks/restart?token=abc", "method": "POST",
        "headers": [{"key": "Content-Type", "value": "application/json"}]}
OPERATORS = {**HOOK, "id": "operators", "name": "operators", "url": "https://ops.example.com/hook"}


@pytest.fixture
def account():
    """An emulator without any project: resource records must not need one."""
    with SlsEmulator(credentials={AK: SK}) as emulator:
        yield emulator


def record_ids(response) -> list[str]:
    return [record.get_record_id() for record in response.get_records()]


def test_resource_record_crud_round_trip(account):
    client = make_client(account)
    client.create_resource_record(WEBHOOKS, ResourceRecord("shipper-hook", "shipper hook", HOOK))
    error = error_of(client.create_resource_record, WEBHOOKS, ResourceRecord("shipper-hook", "again", HOOK))
    assert (error.resp_status, error.get_error_code()) == (400, "ResourceRecordAlreadyExist")
    got = client.get_resource_record(WEBHOOKS, "shipper-hook").get_record()
    assert (got.get_record_id(), got.get_tag(), got.get_value()) == ("shipper-hook", "shipper hook", HOOK)
    stored = account.resource_records(WEBHOOKS)["shipper-hook"]
    assert json.loads(stored["value"]) == HOOK  # carried as a JSON string

    moved = {**HOOK, "url": "https://moved.example.com/hooks/restart?token=abc"}
    client.update_resource_record(WEBHOOKS, ResourceRecord("shipper-hook", value=moved))  # no tag: kept
    got = client.get_resource_record(WEBHOOKS, "shipper-hook").get_record()
    assert (got.get_tag(), got.get_value()) == ("shipper hook", moved)

    client.upsert_resource_record(WEBHOOKS, [ResourceRecord("shipper-hook", "renamed", HOOK),
                                             ResourceRecord("operators", "operators", OPERATORS)])
    listed = client.list_resource_records(WEBHOOKS)
    assert (listed.get_count(), listed.get_total(), record_ids(listed)) == (2, 2, ["operators", "shipper-hook"])
    assert [r.get_value() for r in listed.get_records()] == [OPERATORS, HOOK]
    assert record_ids(client.list_resource_records(WEBHOOKS, record_ids=["shipper-hook", "nowhere"])) == [
        "shipper-hook"]
    assert record_ids(client.list_resource_records(WEBHOOKS, tag="renamed")) == ["shipper-hook"]
    paged = client.list_resource_records(WEBHOOKS, offset=1, size=1)
    assert (paged.get_count(), paged.get_total(), record_ids(paged)) == (1, 2, ["shipper-hook"])
    assert record_ids(client.list_resource_records("sls.alert.action_policy")) == []  # per resource name

    client.delete_resource_record(WEBHOOKS, ["operators", "shipper-hook"])
    assert account.resource_records(WEBHOOKS) == {}
    assert account.request_count("CreateResourceRecord", project="") == 2  # the Host named no project


@pytest.mark.parametrize("call", [
    lambda client: client.get_resource_record(WEBHOOKS, "nowhere"),
    lambda client: client.update_resource_record(WEBHOOKS, ResourceRecord("nowhere", value=HOOK)),
    lambda client: client.delete_resource_record(WEBHOOKS, ["nowhere"]),
])
def test_a_missing_resource_record_is_resource_record_not_exist(account, call):
    error = error_of(call, make_client(account))
    assert (error.resp_status, error.get_error_code()) == (404, "ResourceRecordNotExist")
    assert account.resource_records(WEBHOOKS) == {}


def test_deleting_a_present_and_a_missing_record_deletes_neither(account):
    client = make_client(account)
    client.create_resource_record(WEBHOOKS, ResourceRecord("shipper-hook", "shipper hook", HOOK))
    assert error_of(client.delete_resource_record, WEBHOOKS, ["shipper-hook", "nowhere"]
                    ).get_error_code() == "ResourceRecordNotExist"
    assert list(account.resource_records(WEBHOOKS)) == ["shipper-hook"]


FIRE = ('fire(type="webhook_integration", integration_type="custom", webhook_id="shipper-hook", '
        'template_id="shipper-hook-json", period="any")')
POLICY = {"action_policy_id": "shipper-notify", "action_policy_name": "notify", "labels": {}, "is_default": False,
          "primary_policy_script": FIRE, "secondary_policy_script": FIRE,
          "escalation_start_enabled": False, "escalation_start_timeout": "10s",
          "escalation_inprogress_enabled": False, "escalation_inprogress_timeout": "10s",
          "escalation_enabled": False, "escalation_timeout": "4h0m0s"}
TEMPLATE = {"template_id": "shipper-hook-json", "template_name": "hook", "is_default": False,
            "templates": {"webhook": {"content": '{"s": {{ alert.status | quote }}, '
                                                 '"rows": {{ alert.fire_results | to_json }}}'}}}
POLICIES, TEMPLATES = "sls.alert.action_policy", "sls.alert.content_template"


def test_complete_action_policies_and_templates_are_stored(account):
    client = make_client(account)
    client.create_resource_record(POLICIES, ResourceRecord("shipper-notify", "notify", POLICY))
    client.create_resource_record(TEMPLATES, ResourceRecord("shipper-hook-json", "hook", TEMPLATE))
    assert set(account.resource_records(POLICIES)) == {"shipper-notify"}


@pytest.mark.parametrize("resource, value, code", [
    (POLICIES, {**POLICY, "primary_policy_script": FIRE.replace("webhook_integration", "webhook")}, "ParameterInvalid"),
    (POLICIES, {**POLICY, "primary_policy_script": FIRE.replace(', period="any"', "")}, "ParameterInvalid"),
    (POLICIES, {**POLICY, "primary_policy_script": FIRE.replace('"custom"', '"pager"')}, "ParameterInvalid"),
    (POLICIES, {**POLICY, "secondary_policy_script": ""}, "ActionPolicyEmpty"),
    (POLICIES, {k: v for k, v in POLICY.items() if k != "escalation_timeout"}, "ParameterInvalid"),
    (TEMPLATES, {**TEMPLATE, "templates": {"webhook": {"content": '{"rows": {{ alert.fire_results }}}'}}},
     "ParameterInvalid"),
    (TEMPLATES, {**TEMPLATE, "templates": {"webhook": {"content": "{{ alert.status | shout }}"}}}, "ParameterInvalid"),
    (WEBHOOKS, {**HOOK, "type": "webhook"}, "ParameterInvalid"),
])
def test_alert_resource_content_rules(account, resource, value, code):
    error = error_of(make_client(account).create_resource_record, resource, ResourceRecord("r1", "r1", value))
    assert (error.resp_status, error.get_error_code()) == (400, code)
    assert account.resource_records(resource) == {}


def test_resource_records_check_the_signature(account):
    error = error_of(make_client(account, secret="wrong").create_resource_record, WEBHOOKS,
                     ResourceRecord("shipper-hook", "shipper hook", HOOK))
    assert (error.resp_status, error.get_error_code()) == (401, "SignatureNotMatch")
    assert account.resource_records(WEBHOOKS) == {}


# --------------------------------------------------------------------------------------------------
# Section 11: fault knobs, seen through the SDK


@pytest.mark.parametrize("code", ["WriteQuotaExceed", "ShardWriteQuotaExceed"])
def test_quota_errors_are_403_and_not_retried_by_the_sdk(sls, client, code):
    sls.faults.fail_next(code)
    error = error_of(put, client, [item(k="v")])
    assert (error.resp_status, error.get_error_code()) == (403, code)
    assert sls.request_count("PutLogs") == 1
    put(client, [item(k="v")])
    assert len(sls.logs(PROJECT, STORE)) == 1


@pytest.mark.parametrize("code, status", [("InternalServerError", 500), ("ServerBusy", 503)])
def test_server_errors_are_retried_by_the_sdk_ten_times(sls, client, no_sdk_sleep, code, status):
    sls.faults.fail_next(code, count=10)
    error = error_of(put, client, [item(k="v")])
    assert (error.resp_status, error.get_error_code()) == (status, code)
    assert sls.request_count("PutLogs") == 10 and no_sdk_sleep == [1] * 10
    sls.faults.fail_next(code, count=1)
    put(client, [item(k="v")])
    assert sls.request_count("PutLogs") == 12 and len(sls.logs(PROJECT, STORE)) == 1


def test_error_rate_is_random_per_request_and_can_be_removed(sls, client):
    sls.faults.set_error_rate("WriteQuotaExceed", 0.5)
    outcomes = []
    for _ in range(40):
        try:
            put(client, [item(k="v")])
            outcomes.append("ok")
        except LogException as error:
            outcomes.append(error.get_error_code())
    assert set(outcomes) == {"ok", "WriteQuotaExceed"}
    assert len(sls.logs(PROJECT, STORE)) == outcomes.count("ok")
    sls.faults.set_error_rate("WriteQuotaExceed", 0)
    put(client, [item(k="v")])


def test_faults_target_one_operation(sls, client):
    sls.faults.set_error_rate("ServerBusy", 1.0, operation="PutLogs")
    assert search(client, "*") == []  # GetLogs unaffected
    sls.faults.clear()
    sls.faults.set_error_rate("InternalServerError", 1.0, operation=None)
    sls.faults.fail_next("ExceedQuota", operation="GetLogs")
    assert error_of(search, client, "*").get_error_code() == "ExceedQuota"


def test_latency_delays_every_answer(sls, client):
    sls.faults.latency = 0.3
    started = time.monotonic()
    client.get_logstore(PROJECT, STORE)
    assert time.monotonic() - started >= 0.3


def test_outage_drops_connections_until_lifted(sls, client):
    sls.faults.outage = True
    assert error_of(put, client, [item(k="v")]).get_error_code() == "LogRequestError"
    assert sls.logs(PROJECT, STORE) == []
    sls.faults.outage = False
    put(client, [item(k="v")])
    assert len(sls.logs(PROJECT, STORE)) == 1


def test_a_lost_answer_is_a_network_error_for_a_request_that_was_stored(sls, client):
    sls.faults.lose_answers(count=1)
    assert error_of(put, client, [item(k="lost")]).get_error_code() == "LogRequestError"
    put(client, [item(k="answered")])
    assert [log.contents["k"] for log in sls.logs(PROJECT, STORE)] == ["lost", "answered"]
    assert sls.request_count("PutLogs") == 2


def test_unknown_fault_code_is_refused(sls):
    with pytest.raises(ValueError):
        sls.faults.fail_next("NoSuchCode")


# --------------------------------------------------------------------------------------------------
# Standalone


def test_runs_as_a_module_with_the_secret_from_the_environment():
    env = {**os.environ, "ALIBABA_CLOUD_ACCESS_KEY_ID": AK, "ALIBABA_CLOUD_ACCESS_KEY_SECRET": SK,
           "PYTHONPATH": str(REPO)}
    process = subprocess.Popen([sys.executable, "-m", "tests.emulators.sls", "--port", "0", "--project", PROJECT],
                               env=env, stdout=subprocess.PIPE, text=True)
    try:
        line = process.stdout.readline()
        endpoint = line.rsplit(" ", 1)[-1].strip()
        client = LogClient(endpoint, AK, SK, source="test")
        client._isRowIp = True
        client.create_logstore(PROJECT, STORE)
        assert client.list_logstore(PROJECT).get_logstores() == [STORE]
        assert SK not in line
    finally:
        process.terminate()
        process.wait(timeout=10)
