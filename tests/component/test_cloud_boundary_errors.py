"""shipper.cloud: the one error type and the one backoff, through the real SDKs against the emulators.

What the older tests do not pin down: the backoff's bounds and its equality with each caller's former
formula, CloudError's `fatal` / `retryable` / `http_status` as the MNS consumer and the sinks rely on them,
and that no secret or STS token reaches an error. Expected codes: reference/mns.md §5, sls.md §5, openapi.md §5.
"""
import random
import socket
from urllib.parse import quote

import pytest

from shipper.cloud import Backoff, CloudError, Credentials, MissingCredentials, NotFound, credentials_for, redact
from shipper.cloud.mns import open_queue
from shipper.cloud.openapi import OpenApi, backoff_seconds
from shipper.cloud.sls import make_client, put_log_group
from shipper.config import OpenApiSettings
from shipper.sinks.sls import BACKOFF as SLS_BACKOFF
from shipper.sources.mns import DELETE_BACKOFF, RECEIVE_BACKOFF
from tests.emulators.mns import MnsEmulator
from tests.emulators.openapi import OpenApiEmulator
from tests.emulators.sls import SlsEmulator

KEY_ID = "LTAIexampleKEY01"
SECRET = "exampleSecret0123456789"
TOKEN = "STS.NTokenExample+/=secretPart0123"
QUEUE = "ecs-events"
PROJECT = "ecs-audit"


def dead_endpoint() -> str:
    with socket.socket() as closed:
        closed.bind(("127.0.0.1", 0))
        return f"127.0.0.1:{closed.getsockname()[1]}"


# -- backoff -------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("policy", [Backoff(0.2, 30.0), Backoff(0.1, 10.0), Backoff(0.5, 8.0, floor=0.5)])
def test_every_wait_lies_between_the_floor_and_the_capped_step(policy):
    rng = random.Random(7)
    for attempt in range(0, 40):
        step = min(policy.cap, policy.base * 2 ** attempt)
        for _ in range(50):
            wait = policy.seconds(attempt, rng)
            assert policy.floor * step <= wait <= step <= policy.cap


def test_full_jitter_spreads_down_to_zero_and_the_floor_keeps_half():
    rng = random.Random(11)
    full = [Backoff(1.0, 1.0).seconds(0, rng) for _ in range(2000)]
    half = [Backoff(1.0, 1.0, floor=0.5).seconds(0, rng) for _ in range(2000)]
    assert min(full) < 0.05 and max(full) > 0.95
    assert min(half) >= 0.5 and min(half) < 0.55 and max(half) > 0.95


def test_a_huge_attempt_number_still_gives_the_cap():
    assert Backoff(0.2, 30.0).step(10_000) == 30.0


def test_callers_keep_their_former_formulas_exactly():
    """Same seed, same draws: the waits before the shared helper and after it are the same numbers."""
    for attempt in range(1, 30):
        a, b = random.Random(attempt), random.Random(attempt)
        assert RECEIVE_BACKOFF.seconds(attempt, a) == b.uniform(0, min(30.0, 0.2 * 2 ** min(attempt, 20)))
        assert DELETE_BACKOFF.seconds(attempt, a) == b.uniform(0, min(5.0, 0.2 * 2 ** min(attempt, 20)))
        assert SLS_BACKOFF.seconds(attempt - 1, a) == b.uniform(0, min(10.0, 0.1 * 2 ** (attempt - 1)))
        assert backoff_seconds(attempt, a) == min(8.0, 0.5 * 2 ** (attempt - 1)) * b.uniform(0.5, 1.0)


# -- credentials and redaction -------------------------------------------------------------------------------

def test_missing_credentials_name_the_component_and_the_variables():
    with pytest.raises(MissingCredentials) as caught:
        credentials_for("sls sink", environ={})
    error = caught.value
    assert str(error).startswith("sls sink: set ALIBABA_CLOUD_ACCESS_KEY_ID and ALIBABA_CLOUD_ACCESS_KEY_SECRET")
    assert isinstance(error, CloudError) and error.fatal and not error.retryable
    assert error.__cause__ is None and error.__suppress_context__

    class StoreError(Exception):
        pass

    with pytest.raises(StoreError, match="^hooks: set ALIBABA_CLOUD_ACCESS_KEY_ID"):
        credentials_for("hooks", StoreError, environ={"ALIBABA_CLOUD_ACCESS_KEY_ID": KEY_ID})
    found = credentials_for("hooks", environ={"ALIBABA_CLOUD_ACCESS_KEY_ID": KEY_ID,
                                              "ALIBABA_CLOUD_ACCESS_KEY_SECRET": SECRET,
                                              "ALIBABA_CLOUD_SECURITY_TOKEN": TOKEN})
    assert found == Credentials(KEY_ID, SECRET, TOKEN) and SECRET not in repr(found) and TOKEN not in repr(found)


def test_redact_removes_raw_and_percent_encoded_forms():
    text = f"to sign: {TOKEN} {quote(TOKEN, safe='')} {quote(quote(TOKEN, safe=''), safe='')} {SECRET}"
    cleaned = redact(text, (SECRET, TOKEN, ""))
    assert TOKEN not in cleaned and quote(TOKEN, safe="") not in cleaned and SECRET not in cleaned
    assert cleaned.count("***") == 4


# -- MNS -----------------------------------------------------------------------------------------------------

@pytest.fixture
def mns():
    with MnsEmulator(credentials={KEY_ID: SECRET}) as emulator:
        emulator.create_queue(QUEUE, visibility_timeout=30)
        yield emulator


def test_mns_empty_queue_and_stale_handles_are_not_found(mns):
    q = open_queue(mns.endpoint, QUEUE, Credentials(KEY_ID, SECRET))
    with pytest.raises(NotFound) as caught:
        q.receive(16, 0)
    assert caught.value.code == "MessageNotExist" and not caught.value.fatal
    mns.send_message(QUEUE, "{}")
    mns.send_message(QUEUE, "{}")
    first, second = q.receive(16, 0)
    newer = q.change_visibility(first.receipt_handle, 60)
    assert newer != first.receipt_handle
    with pytest.raises(NotFound):
        q.change_visibility(first.receipt_handle, 60)           # the old handle stopped working
    refused = q.delete([newer, first.receipt_handle, second.receipt_handle])
    assert list(refused) == [first.receipt_handle] and isinstance(refused[first.receipt_handle], NotFound)
    assert mns.messages(QUEUE) == []


def test_mns_whole_call_failures_say_whether_the_service_answered(mns):
    """The consumer puts a batch back for a retry only when the service answered (nothing was deleted)."""
    q = open_queue(mns.endpoint, QUEUE, Credentials(KEY_ID, SECRET))
    mns.send_message(QUEUE, "{}")
    (message,) = q.receive(16, 0)
    mns.fail_next("InternalError", operation="BatchDeleteMessage")
    with pytest.raises(CloudError) as caught:
        q.delete([message.receipt_handle])
    assert (caught.value.code, caught.value.http_status, caught.value.retryable, caught.value.fatal) == (
        "InternalError", 500, True, False)
    mns.delete_queue(QUEUE)
    with pytest.raises(CloudError) as caught:
        q.delete([message.receipt_handle])
    assert (caught.value.code, caught.value.http_status, caught.value.fatal) == ("QueueNotExist", 404, True)
    assert not isinstance(caught.value, NotFound)                  # a missing queue is configuration, not an answer
    with pytest.raises(CloudError) as caught:
        open_queue(f"http://{dead_endpoint()}", QUEUE, Credentials(KEY_ID, SECRET)).delete(["1-abc"])
    assert caught.value.http_status is None and caught.value.retryable and not caught.value.fatal


def test_mns_refused_key_is_fatal_and_no_secret_or_token_in_errors(mns):
    q = open_queue(mns.endpoint, QUEUE, Credentials(KEY_ID, "wrong" + SECRET, TOKEN))
    with pytest.raises(CloudError) as caught:
        q.attributes()
    error = caught.value
    assert error.fatal and not error.retryable and error.service == "mns"
    assert error.__cause__ is None and error.__context__ is None
    for text in (str(error), repr(error), error.message):
        assert SECRET not in text and TOKEN not in text
    with pytest.raises(CloudError) as caught:
        open_queue("ftp://127.0.0.1:1", QUEUE, Credentials(KEY_ID, SECRET))
    assert (caught.value.code, caught.value.fatal) == ("InvalidHost", True)


# -- SLS -----------------------------------------------------------------------------------------------------

@pytest.fixture
def sls():
    with SlsEmulator(credentials={KEY_ID: SECRET}) as emulator:
        emulator.create_project(PROJECT)
        emulator.create_logstore(PROJECT, "ecs-events")
        yield emulator


def test_sls_put_raises_cloud_errors_classified_by_the_reference(sls):
    good = make_client(sls.endpoint, Credentials(KEY_ID, SECRET))
    with pytest.raises(CloudError) as caught:
        put_log_group(good, PROJECT, "no-such-store", b"")
    assert (caught.value.code, caught.value.fatal, caught.value.retryable, caught.value.http_status) == (
        "LogStoreNotExist", True, False, 404)
    sls.faults.fail_next("ServerBusy", 1)
    with pytest.raises(CloudError) as caught:
        put_log_group(good, PROJECT, "ecs-events", b"")
    assert (caught.value.code, caught.value.retryable, caught.value.fatal) == ("ServerBusy", True, False)
    refused = make_client(sls.endpoint, Credentials(KEY_ID, "wrong" + SECRET, TOKEN))
    with pytest.raises(CloudError) as caught:
        put_log_group(refused, PROJECT, "ecs-events", b"")
    error = caught.value
    assert (error.code, error.fatal, error.retryable, error.service) == ("SignatureNotMatch", True, False, "sls")
    assert error.__cause__ is None and error.__context__ is None
    for text in (str(error), error.message):
        assert SECRET not in text and TOKEN not in text
    with pytest.raises(CloudError) as caught:
        put_log_group(make_client(dead_endpoint(), Credentials(KEY_ID, SECRET), timeout=2), PROJECT, "ecs-events", b"")
    assert (caught.value.code, caught.value.retryable, caught.value.http_status) == ("LogRequestError", True, None)


# -- OpenAPI -------------------------------------------------------------------------------------------------

def test_openapi_refused_key_is_fatal_busy_is_retryable_missing_is_not_found():
    with OpenApiEmulator(credentials={KEY_ID: SECRET}) as api:
        settings = OpenApiSettings(ecs_endpoint=api.endpoint, slb_endpoint=api.endpoint, alb_endpoint=api.endpoint,
                                   nlb_endpoint=api.endpoint, timeout_seconds=5.0)
        with pytest.raises(CloudError) as caught:
            refused = OpenApi(settings, Credentials(KEY_ID, "wrong" + SECRET), sleep=lambda s: None)
            refused.count_instances("cn-hangzhou")
        assert caught.value.fatal and not caught.value.retryable and caught.value.service == "ecs"
        client = OpenApi(settings, Credentials(KEY_ID, SECRET), sleep=lambda s: None)
        api.fail_next("Throttling", operation="DescribeInstances", times=50)
        with pytest.raises(CloudError) as caught:
            client.count_instances("cn-hangzhou")
        assert caught.value.retryable and not caught.value.fatal
        with pytest.raises(NotFound) as caught:
            client.start_instance("i-bp1nosuch0000000001", "cn-hangzhou")
        assert not caught.value.fatal and caught.value.http_status == 404
