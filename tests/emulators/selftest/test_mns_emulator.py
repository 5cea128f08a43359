"""The MNS emulator, exercised through the official aliyun-mns-sdk 1.3.0 (expected values: mns.md)."""

import base64
import os
import subprocess
import sys
import threading
import time

import pytest
from mns.account import Account
from mns.mns_exception import MNSClientNetworkException, MNSServerException
from mns.queue import Message, QueueMeta

from tests.conftest import REPO
from tests.emulators.mns import MnsEmulator, MnsError, authenticate, sdk_content_md5, signature, string_to_sign

KEY_ID = "LTAIexampleKEY01"
SECRET = "exampleSecret0123456789"
EXAMPLE_DATE = "Thu, 05 Mar 2026 08:00:00 GMT"
EXAMPLE_NOW = 1772697600.0  # EXAMPLE_DATE as epoch seconds
DELETE_BODY = (
    b'<?xml version="1.0" encoding="utf-8"?><ReceiptHandles xmlns="http://mns.aliyuncs.com/doc/v1/">'
    b"<ReceiptHandle>1-MTk5OTk5OTk5OS0xNzcwMDAwMDAwLTEtOA==</ReceiptHandle></ReceiptHandles>"
)
RECEIVE_TARGET = "/queues/ecs-cms-event/messages?numOfMessages=16&waitseconds=20"


@pytest.fixture
def mns():
    with MnsEmulator(credentials={KEY_ID: SECRET}) as emulator:
        emulator.create_queue("events", visibility_timeout=30)
        yield emulator


def queue_of(mns, name="events", encoding=False, secret=SECRET, key_id=KEY_ID, token=""):
    queue = Account(mns.endpoint, key_id, secret, security_token=token).get_queue(name)
    queue.set_encoding(encoding)
    return queue


def server_error(call, *args, **kwargs) -> MNSServerException:
    with pytest.raises(MNSServerException) as caught:
        call(*args, **kwargs)
    return caught.value


# --- signature (mns.md §3 worked examples) ----------------------------------------------------


def test_receive_example_string_to_sign_and_signature():
    headers = {"date": EXAMPLE_DATE, "x-mns-version": "2015-06-06"}
    text = string_to_sign("GET", RECEIVE_TARGET, headers)
    assert text == f"GET\n\n\n{EXAMPLE_DATE}\nx-mns-version:2015-06-06\n{RECEIVE_TARGET}"
    assert signature(SECRET, text) == "GubhHV1dPknNt4OTTzleKW2hxGY="


def test_batch_delete_example_uses_the_sdk_content_md5_form():
    assert sdk_content_md5(DELETE_BODY) == "MDMyMGJjZDY4MDJjZGRkY2FmZGNkNDcyOGRjODk4Nzg="
    headers = {
        "content-md5": sdk_content_md5(DELETE_BODY),
        "content-type": "text/xml;charset=UTF-8",
        "date": EXAMPLE_DATE,
        "x-mns-version": "2015-06-06",
    }
    text = string_to_sign("DELETE", "/queues/ecs-cms-event/messages", headers)
    assert text == (
        "DELETE\nMDMyMGJjZDY4MDJjZGRkY2FmZGNkNDcyOGRjODk4Nzg=\ntext/xml;charset=UTF-8\n"
        f"{EXAMPLE_DATE}\nx-mns-version:2015-06-06\n/queues/ecs-cms-event/messages"
    )
    assert signature(SECRET, text) == "6sdhqIeybb2AssMjgPuqK7fyVZA="


def example_headers(authorization):
    return [
        ("host", "127.0.0.1"),
        ("x-mns-version", "2015-06-06"),
        ("date", EXAMPLE_DATE),
        ("Authorization", authorization),
        ("security-token", "any-sts-token"),  # not signed
    ]


def test_verifier_accepts_the_worked_example():
    headers = example_headers(f"MNS {KEY_ID}:GubhHV1dPknNt4OTTzleKW2hxGY=")
    assert authenticate("GET", RECEIVE_TARGET, headers, b"", {KEY_ID: SECRET}, EXAMPLE_NOW) == KEY_ID


@pytest.mark.parametrize(
    ("target", "authorization", "now", "code"),
    [
        # the request-target is signed exactly as sent: re-ordering the query breaks it
        ("/queues/ecs-cms-event/messages?waitseconds=20&numOfMessages=16",
         f"MNS {KEY_ID}:GubhHV1dPknNt4OTTzleKW2hxGY=", EXAMPLE_NOW, "SignatureDoesNotMatch"),
        (RECEIVE_TARGET, "MNS LTAIotherKEY:GubhHV1dPknNt4OTTzleKW2hxGY=", EXAMPLE_NOW, "InvalidAccessKeyId"),
        (RECEIVE_TARGET, f"OSS {KEY_ID}:GubhHV1dPknNt4OTTzleKW2hxGY=", EXAMPLE_NOW, "InvalidAuthorizationHeader"),
        (RECEIVE_TARGET, f"MNS {KEY_ID}:GubhHV1dPknNt4OTTzleKW2hxGY=", EXAMPLE_NOW + 16 * 60, "TimeExpired"),
    ],
)
def test_verifier_rejections(target, authorization, now, code):
    with pytest.raises(MnsError) as caught:
        authenticate("GET", target, example_headers(authorization), b"", {KEY_ID: SECRET}, now)
    assert caught.value.code == code


def test_wrong_secret_and_unknown_key_through_the_sdk(mns):
    assert server_error(queue_of(mns, secret="wrong").send_message, Message("x")).type == "SignatureDoesNotMatch"
    assert server_error(queue_of(mns, key_id="LTAIunknown").send_message, Message("x")).type == "InvalidAccessKeyId"
    assert mns.messages("events") == []


def test_sts_security_token_is_accepted(mns):
    queue_of(mns, token="sts-token-value").send_message(Message("x"))
    assert len(mns.messages("events")) == 1


# --- queues -----------------------------------------------------------------------------------


def test_create_queue_returns_location_and_is_idempotent(mns):
    queue = queue_of(mns, "fresh")
    url = f"{mns.endpoint}/queues/fresh"
    assert queue.create(QueueMeta(vis_timeout=60, max_msg_size=2048)) == url  # 201
    assert queue.create(QueueMeta(vis_timeout=60)) == url  # 204, same attributes
    assert server_error(queue.create, QueueMeta(vis_timeout=61)).type == "QueueAlreadyExist"
    meta = queue.get_attributes()
    assert (meta.queue_name, meta.visibility_timeout, meta.maximum_message_size) == ("fresh", 60, 2048)
    assert (meta.message_retention_period, meta.delay_seconds, meta.polling_wait_seconds) == (345600, 0, 0)
    assert meta.logging_enabled is False


def test_set_attributes_and_delete_queue(mns):
    queue = queue_of(mns)
    queue.set_attributes(QueueMeta(vis_timeout=45, polling_wait_sec=2))
    meta = queue.get_attributes()
    assert (meta.visibility_timeout, meta.polling_wait_seconds) == (45, 2)
    queue.delete()
    assert server_error(queue.get_attributes).type == "QueueNotExist"


def test_unknown_queue(mns):
    queue = queue_of(mns, "missing")
    assert server_error(queue.receive_message, 0).type == "QueueNotExist"
    assert server_error(queue.send_message, Message("x")).type == "QueueNotExist"


def test_invalid_queue_name(mns):
    assert server_error(queue_of(mns, "9lives").create, QueueMeta()).type == "InvalidQueueName"


# --- messages ---------------------------------------------------------------------------------


def test_body_md5_is_of_the_transmitted_text(mns):
    sent = queue_of(mns, encoding=True).send_message(Message('{"hello":"shipper"}'))
    assert sent.message_body_md5 == "DB0B56C578ADEFCF3B9CA9491B071634"
    assert [m.body for m in mns.messages("events")] == ["eyJoZWxsbyI6InNoaXBwZXIifQ=="]


@pytest.mark.parametrize("encoding", [False, True])
def test_batch_round_trip(mns, encoding):
    queue = queue_of(mns, encoding=encoding)
    bodies = ['{"n":1,"s":"<a & b>"}', '{"n":2,"s":"é"}', '{"n":3}']
    sent = queue.batch_send_message([Message(b) for b in bodies])
    before = int(time.time() * 1000)

    received = queue.batch_receive_message(16, wait_seconds=1)

    expected = [b.encode() for b in bodies] if encoding else bodies
    assert sorted(m.message_body for m in received) == sorted(expected)
    assert sorted(m.message_id for m in received) == sorted(s.message_id for s in sent)
    stored = {m.message_id: m.body for m in mns.messages("events")}
    for message in received:
        raw = base64.b64encode(message.message_body).decode() if encoding else message.message_body
        assert stored[message.message_id] == raw  # kept verbatim
        assert message.dequeue_count == 1
        assert message.priority == 8
        assert message.enqueue_time <= message.first_dequeue_time
        assert message.next_visible_time >= before + 29_000  # visibility timeout 30 s
    assert {m.state for m in mns.messages("events")} == {"Inactive"}

    queue.batch_delete_message([m.receipt_handle for m in received])
    assert mns.messages("events") == []
    assert sorted(mns.deleted_message_ids("events")) == sorted(s.message_id for s in sent)


def test_priority_then_fifo(mns):
    queue = queue_of(mns)
    for body, priority in [("low-1", 16), ("mid-1", 8), ("high", 1), ("mid-2", 8)]:
        queue.send_message(Message(body, priority=priority))
    received = queue.batch_receive_message(16, wait_seconds=0)
    assert [m.message_body for m in received] == ["high", "mid-1", "mid-2", "low-1"]


def test_visibility_expiry_redelivers_with_new_handle(mns):
    mns.create_queue("short", visibility_timeout=1)
    queue = queue_of(mns, "short")
    queue.send_message(Message("again"))
    first = queue.receive_message(wait_seconds=0)
    assert server_error(queue.receive_message, 0).type == "MessageNotExist"  # inactive now

    second = queue.receive_message(wait_seconds=5)  # the long poll wakes when it turns visible

    assert second.message_id == first.message_id
    assert second.dequeue_count == 2
    assert second.first_dequeue_time == first.first_dequeue_time
    assert second.receipt_handle != first.receipt_handle
    assert server_error(queue.delete_message, first.receipt_handle).type == "MessageNotExist"
    queue.delete_message(second.receipt_handle)
    assert mns.messages("short") == []


def test_expired_handle_is_stale(mns):
    mns.create_queue("short", visibility_timeout=1)
    queue = queue_of(mns, "short")
    queue.send_message(Message("x"))
    handle = queue.receive_message(wait_seconds=0).receipt_handle
    time.sleep(1.05)
    assert server_error(queue.delete_message, handle).type == "MessageNotExist"
    assert [m.state for m in mns.messages("short")] == ["Active"]


def test_malformed_handle(mns):
    queue = queue_of(mns)
    error = server_error(queue.delete_message, "not-a-handle")
    assert error.type == "ReceiptHandleError"
    assert server_error(queue.change_message_visibility, "1-%%%", 10).type == "ReceiptHandleError"


def test_long_poll_returns_early_when_a_message_arrives(mns):
    queue = queue_of(mns)
    sender = threading.Timer(0.2, mns.send_message, ("events", "late"))
    started = time.monotonic()
    sender.start()
    received = queue.batch_receive_message(16, wait_seconds=10)
    assert [m.message_body for m in received] == ["late"]
    assert time.monotonic() - started < 5


def test_long_poll_ends_with_message_not_exist(mns):
    queue = queue_of(mns)
    started = time.monotonic()
    error = server_error(queue.batch_receive_message, 16, wait_seconds=1)
    assert error.type == "MessageNotExist"
    assert error.message == "Message not exist."
    assert error.req_id and error.host_id == mns.endpoint
    assert time.monotonic() - started >= 0.95


def test_delayed_message(mns):
    queue = queue_of(mns)
    queue.send_message(Message("later", delay_seconds=1))
    assert [m.state for m in mns.messages("events")] == ["Delayed"]
    assert server_error(queue.receive_message, 0).type == "MessageNotExist"
    assert queue.receive_message(wait_seconds=5).message_body == "later"


def test_change_visibility_returns_a_new_handle(mns):
    queue = queue_of(mns)
    mns.send_message("events", "slow work")
    received = queue.receive_message(wait_seconds=0)
    before = int(time.time() * 1000)

    changed = queue.change_message_visibility(received.receipt_handle, 120)

    assert changed.receipt_handle != received.receipt_handle
    assert int(changed.next_visible_time) >= before + 119_000
    assert server_error(queue.delete_message, received.receipt_handle).type == "MessageNotExist"
    queue.delete_message(changed.receipt_handle)
    assert mns.deleted_message_ids("events") == [received.message_id]


def test_change_visibility_range(mns):
    queue = queue_of(mns)
    mns.send_message("events", "x")
    handle = queue.receive_message(wait_seconds=0).receipt_handle
    assert server_error(queue.change_message_visibility, handle, 0).type == "InvalidArgument"  # docs: 1-43200


def test_partial_batch_delete_surfaces_sub_errors(mns):
    queue = queue_of(mns)
    for body in ("a", "b"):
        mns.send_message("events", body)
    first, second = queue.batch_receive_message(16, wait_seconds=0)
    stale = "1-MTk5OTk5OTk5OS0xNzcwMDAwMDAwLTEtOA=="

    error = server_error(queue.batch_delete_message, [first.receipt_handle, "garbage", stale])

    assert error.type == "ReceiptHandleError"
    assert error.req_id  # read from the lower-case x-mns-request-id header
    assert [(e["ErrorCode"], e["ReceiptHandle"]) for e in error.sub_errors] == [
        ("ReceiptHandleError", "garbage"),
        ("MessageNotExist", stale),
    ]
    assert [m.message_id for m in mns.messages("events")] == [second.message_id]


def test_message_size_limit(mns):
    mns.create_queue("small", maximum_message_size=1024)
    queue = queue_of(mns, "small")
    queue.send_message(Message("x" * 1024))
    error = server_error(queue.send_message, Message("x" * 1025))
    assert error.type == "InvalidArgument"
    assert server_error(queue_of(mns).send_message, Message("x" * 65537)).type == "InvalidArgument"
    assert len(mns.messages("small")) == 1


def test_batch_send_partial_failure(mns):
    mns.create_queue("small", maximum_message_size=1024)
    queue = queue_of(mns, "small")
    error = server_error(queue.batch_send_message, [Message("ok"), Message("x" * 1025)])
    assert error.type == "InvalidArgument"
    assert [sorted(e) for e in error.sub_errors] == [["MessageBodyMD5", "MessageId"], ["ErrorCode", "ErrorMessage"]]
    assert [m.body for m in mns.messages("small")] == ["ok"]


def test_batch_limits(mns):
    queue = queue_of(mns)
    assert server_error(queue.batch_receive_message, 17, wait_seconds=0).type == "InvalidArgument"
    assert server_error(queue.receive_message, 31).type == "InvalidArgument"
    assert server_error(queue.batch_send_message, [Message(str(i)) for i in range(17)]).type == "InvalidArgument"


def test_peek_does_not_change_state(mns):
    queue = queue_of(mns)
    mns.send_message("events", "look")
    peeked = queue.peek_message()
    assert (peeked.message_body, peeked.dequeue_count) == ("look", 0)
    assert [m.state for m in mns.messages("events")] == ["Active"]


# --- faults -----------------------------------------------------------------------------------


def test_latency_per_operation(mns):
    queue = queue_of(mns)
    mns.set_latency(0.3, "SendMessage")
    started = time.monotonic()
    queue.send_message(Message("x"))
    assert time.monotonic() - started >= 0.3


@pytest.mark.parametrize("code", ["InternalError", "QpsLimitExceeded"])
def test_injected_error_codes(mns, code):
    queue = queue_of(mns)
    mns.set_error_rates({code: 1.0}, "SendMessage")
    assert server_error(queue.send_message, Message("x")).type == code
    queue.get_attributes()  # other operations unaffected
    assert mns.fault_counts() == {code: 1}
    assert mns.messages("events") == []


def test_error_rate_is_a_fraction(mns):
    queue = queue_of(mns)
    mns.set_error_rates({"InternalError": 0.5})
    failures = 0
    for _ in range(40):
        try:
            queue.get_attributes()
        except MNSServerException as error:
            assert error.type == "InternalError"
            failures += 1
    assert 0 < failures < 40
    assert mns.fault_counts() == {"InternalError": failures}
    mns.clear_faults()
    queue.get_attributes()


def test_dropped_connection_is_resent_once_by_the_sdk(mns):
    queue = queue_of(mns)
    mns.set_drop_rate(1.0, "SendMessage")
    with pytest.raises(MNSClientNetworkException):
        queue.send_message(Message("x"))
    assert mns.request_counts()["SendMessage"] == 2  # the SDK reconnects and re-sends once
    assert mns.fault_counts() == {"dropped": 2}
    assert mns.messages("events") == []
    mns.set_drop_rate(0.0, "SendMessage")
    queue.send_message(Message("x"))
    assert len(mns.messages("events")) == 1


def test_outage_until_cleared(mns):
    queue = queue_of(mns)
    queue.get_attributes()  # an open keep-alive connection
    mns.set_outage(True)
    with pytest.raises(MNSClientNetworkException):
        queue.get_attributes()
    with pytest.raises(MNSClientNetworkException):
        queue_of(mns).get_attributes()  # new connections too
    mns.set_outage(False)
    queue.get_attributes()


# --- command line -----------------------------------------------------------------------------


def test_command_line(tmp_path):
    env = {**os.environ, "ALIBABA_CLOUD_ACCESS_KEY_SECRET": SECRET}
    process = subprocess.Popen(
        [sys.executable, "-m", "tests.emulators.mns", "--port", "0", "--queue", "cli", "--access-key-id", KEY_ID],
        cwd=REPO, env=env, stdout=subprocess.PIPE, text=True,
    )
    try:
        endpoint = process.stdout.readline().strip()
        assert endpoint.startswith("http://127.0.0.1:")
        queue = Account(endpoint, KEY_ID, SECRET).get_queue("cli")
        queue.set_encoding(False)
        queue.send_message(Message("hi"))
        assert queue.receive_message(wait_seconds=0).message_body == "hi"
    finally:
        process.terminate()
        process.wait(timeout=10)
