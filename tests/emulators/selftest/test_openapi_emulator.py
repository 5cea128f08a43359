"""The OpenAPI emulator, exercised through the real aliyun-python-sdk-core 2.16.1 (expected values: openapi.md)."""

import base64
import http.client
import json
import logging
import os
import subprocess
import sys
import time

import pytest
from aliyunsdkcore.acs_exception.exceptions import ClientException, ServerException
from aliyunsdkcore.client import AcsClient
from aliyunsdkcore.request import CommonRequest, RpcRequest

from shipper.normalize import events_from_bytes
from shipper.simulate import FleetSimulator
from tests.conftest import FIXTURES, REPO
from tests.emulators.mns import MnsEmulator
from tests.emulators.openapi import OpenApiEmulator, percent_encode, signature, string_to_sign
from tests.waiting import wait_until

KEY_ID = "LTAIexampleKEY01"
SECRET = "exampleSecret0123456789"
REGION = "cn-hangzhou"
ECS, SLB, ALB, NLB = "2014-05-26", "2014-05-15", "2020-06-16", "2022-04-30"
EXAMPLE_ID = "i-bp1shipper0example01"
EXAMPLE_NOW = 1772697600.0  # 2026-03-05T08:00:00Z, the Timestamp of the §1 example
# The request of openapi.md §1, byte for byte.
EXAMPLE_TARGET = (
    "/?InstanceId=i-bp1shipper0example01&Version=2014-05-26&Action=StartInstance&Format=JSON&RegionId=cn-hangzhou"
    "&Timestamp=2026-03-05T08%3A00%3A00Z&SignatureMethod=HMAC-SHA1&SignatureType=&SignatureVersion=1.0"
    "&SignatureNonce=6f1e2d3c4b5a69788796a5b4c3d2e1f0&AccessKeyId=LTAIexampleKEY01"
    "&Signature=%2B0R7WTcmEeckmmGDMvF2Db%2FoHNA%3D"
)
SIGNATURE_MISMATCH_PREFIX = "Specified signature is not matched with our calculation. server string to sign is:"


@pytest.fixture(autouse=True)
def quiet_sdk():
    """The SDK logs every server error at ERROR (§5)."""
    logger = logging.getLogger("aliyunsdkcore")
    level = logger.level
    logger.setLevel(logging.CRITICAL)
    yield
    logger.setLevel(level)


@pytest.fixture
def api():
    with OpenApiEmulator(credentials={KEY_ID: SECRET}, start_delay=0.05, job_delay=0.05) as emulator:
        yield emulator


def make_client(secret=SECRET, key_id=KEY_ID, **kwargs):
    # §4: an explicit proxy dict keeps HTTP(S)_PROXY from routing 127.0.0.1 through a proxy.
    return AcsClient(key_id, secret, REGION, proxy={"http": None, "https": None}, **kwargs)


def request(api, version, action, params=None, *, product=None, method="POST", body=None):
    req = CommonRequest(domain=api.endpoint, version=version, action_name=action, product=product)
    req.set_method(method)
    for name, value in (params or {}).items():
        req.add_query_param(name, value)
    for name, value in (body or {}).items():
        req.add_body_params(name, value)
    return req


def call(api, version, action, params=None, *, client=None, **kwargs):
    req = request(api, version, action, params, **kwargs)
    return json.loads((client or make_client()).do_action_with_exception(req))


def server_error(api, version, action, params=None, *, client=None, **kwargs) -> ServerException:
    with pytest.raises(ServerException) as caught:
        call(api, version, action, params, client=client, **kwargs)
    return caught.value


def raw_post(api, target):
    connection = http.client.HTTPConnection(api.endpoint, timeout=5)
    try:
        connection.request("POST", target, headers={"Content-Length": "0"})
        response = connection.getresponse()
        return response.status, response.getheader("Content-Type"), json.loads(response.read())
    finally:
        connection.close()


# --- signature (§2) ---------------------------------------------------------------------------


def test_worked_example_string_to_sign_and_signature():
    params = {
        "InstanceId": EXAMPLE_ID, "Version": ECS, "Action": "StartInstance", "Format": "JSON", "RegionId": REGION,
        "Timestamp": "2026-03-05T08:00:00Z", "SignatureMethod": "HMAC-SHA1", "SignatureType": "",
        "SignatureVersion": "1.0", "SignatureNonce": "6f1e2d3c4b5a69788796a5b4c3d2e1f0", "AccessKeyId": KEY_ID,
    }
    text = string_to_sign("POST", params)
    assert text == (
        "POST&%2F&AccessKeyId%3DLTAIexampleKEY01%26Action%3DStartInstance%26Format%3DJSON%26InstanceId%3D"
        "i-bp1shipper0example01%26RegionId%3Dcn-hangzhou%26SignatureMethod%3DHMAC-SHA1%26SignatureNonce%3D"
        "6f1e2d3c4b5a69788796a5b4c3d2e1f0%26SignatureType%3D%26SignatureVersion%3D1.0%26Timestamp%3D"
        "2026-03-05T08%253A00%253A00Z%26Version%3D2014-05-26"
    )
    assert signature(SECRET, text) == "+0R7WTcmEeckmmGDMvF2Db/oHNA="


def test_percent_encoding_rules():
    assert percent_encode("a b*c~d/é-_.") == "a%20b%2Ac~d%2F%C3%A9-_."


def test_worked_example_request_is_accepted_once():
    with OpenApiEmulator(credentials={KEY_ID: SECRET}, clock=lambda: EXAMPLE_NOW, start_delay=60) as api:
        api.add_instance(EXAMPLE_ID, status="Stopped")
        status, content_type, body = raw_post(api, EXAMPLE_TARGET)
        assert (status, content_type) == (200, "application/json;charset=utf-8")
        assert set(body) == {"RequestId"}
        assert api.instance(EXAMPLE_ID).status == "Starting"
        status, _, body = raw_post(api, EXAMPLE_TARGET)  # same SignatureNonce
        assert (status, body["Code"]) == (400, "SignatureNonceUsed")


def test_signature_covers_escaped_values_and_form_body(api):
    api.add_instance("i-a", tags={"owner": "Zoë O'Neil *ops* ~x"})
    found = call(api, ECS, "DescribeInstances", {"Tag.1.Key": "owner", "Tag.1.Value": "Zoë O'Neil *ops* ~x"})
    assert [i["InstanceId"] for i in found["Instances"]["Instance"]] == ["i-a"]
    api.add_server_group("alb", "sgp-a", servers=[{"ServerId": "i-a", "Port": 80}])
    listed = call(api, ALB, "ListServerGroupServers", body={"ServerGroupId": "sgp-a", "ServerIds.1": "i-a"})
    assert [s["ServerId"] for s in listed["Servers"]] == ["i-a"]


def test_wrong_secret_is_signature_does_not_match_in_the_real_format(api):
    # CommonRequest keeps its own string_to_sign empty, so the SDK leaves the code as sent.
    error = server_error(api, ECS, "DescribeInstances", client=make_client(secret="wrong"))
    assert (error.get_error_code(), error.get_http_status()) == ("SignatureDoesNotMatch", 400)
    assert error.get_error_msg().startswith(SIGNATURE_MISMATCH_PREFIX)
    assert error.get_request_id()
    # A per-product request compares Message.split(':')[1] with its own string to sign: equal here,
    # so the SDK rewrites the code (§5).
    rpc = RpcRequest("Ecs", ECS, "DescribeInstances")
    rpc.set_endpoint(api.endpoint)
    with pytest.raises(ServerException) as caught:
        make_client(secret="wrong").do_action_with_exception(rpc)
    assert caught.value.get_error_code() == "InvalidAccessKeySecret"
    assert SECRET not in caught.value.get_error_msg()


def test_error_body_shape(api):
    status, content_type, body = raw_post(api, "/?Action=DescribeInstances&Version=2014-05-26&RegionId=cn-hangzhou")
    assert (status, content_type) == (400, "application/json;charset=utf-8")
    assert set(body) == {"RequestId", "HostId", "Code", "Message", "Recommend"}
    assert body["Code"] == "MissingParameter"
    assert body["HostId"] == "ecs.aliyuncs.com"
    assert body["Recommend"] == "https://api.aliyun.com/troubleshoot?q=MissingParameter&product=Ecs"


def test_unknown_access_key(api):
    error = server_error(api, ECS, "DescribeInstances", client=make_client(key_id="LTAIunknownKEY99"))
    assert (error.get_error_code(), error.get_http_status()) == ("InvalidAccessKeyId.NotFound", 404)


def test_timestamp_outside_fifteen_minutes_is_rejected():
    with OpenApiEmulator(credentials={KEY_ID: SECRET}, clock=lambda: time.time() + 16 * 60) as api:
        error = server_error(api, SLB, "DescribeLoadBalancers")
        assert (error.get_error_code(), error.get_http_status()) == ("InvalidTimeStamp.Expired", 400)


def test_get_is_accepted_and_unknown_actions_are_not_found(api):
    assert call(api, SLB, "DescribeLoadBalancers", method="GET")["TotalCount"] == 0
    error = server_error(api, ECS, "RebootInstance")
    assert (error.get_error_code(), error.get_http_status()) == ("InvalidAction.NotFound", 404)


# --- ECS (§8) ---------------------------------------------------------------------------------


def seed_ecs(api):
    api.add_instance("i-web1", name="web-1", status="Running", zone_id="cn-hangzhou-h", instance_type="ecs.g7.large",
                     private_ip="10.0.3.7", public_ip="203.0.113.7", tags={"shipper:auto-restart": "true"})
    api.add_instance("i-web2", name="web-2", status="Stopped", charge_type="PrePaid", zone_id="cn-hangzhou-i",
                     stopped_mode="KeepCharging", tags={"shipper:auto-restart": "false"})
    api.add_instance("i-spot", name="spot-1", status="Running", spot_strategy="SpotAsPriceGo", locks=["Recycling"])
    api.add_instance("i-sh", region_id="cn-shanghai", status="Stopped")


def ids(response):
    return [i["InstanceId"] for i in response["Instances"]["Instance"]]


def test_describe_instances_by_json_id_list(api):
    seed_ecs(api)
    found = call(api, ECS, "DescribeInstances", {"InstanceIds": json.dumps(["i-web1", "i-missing"])}, product="Ecs")
    assert (found["TotalCount"], ids(found)) == (1, ["i-web1"])
    instance = found["Instances"]["Instance"][0]
    assert instance["InstanceName"] == "web-1"
    assert (instance["Status"], instance["ZoneId"]) == ("Running", "cn-hangzhou-h")
    assert instance["InstanceType"] == "ecs.g7.large"
    assert (instance["InstanceChargeType"], instance["SpotStrategy"]) == ("PostPaid", "NoSpot")
    assert instance["OperationLocks"] == {"LockReason": []}
    assert instance["Tags"] == {"Tag": [{"TagKey": "shipper:auto-restart", "TagValue": "true"}]}
    assert instance["VpcAttributes"]["PrivateIpAddress"] == {"IpAddress": ["10.0.3.7"]}
    assert instance["PublicIpAddress"] == {"IpAddress": ["203.0.113.7"]}
    assert (instance["RegionId"], instance["ExpiredTime"]) == ("cn-hangzhou", "2099-12-31T15:59Z")


def test_describe_instances_shows_locks_spot_and_missing_tags(api):
    seed_ecs(api)
    spot = call(api, ECS, "DescribeInstances", {"InstanceIds": '["i-spot"]'})["Instances"]["Instance"][0]
    assert spot["SpotStrategy"] == "SpotAsPriceGo"
    assert spot["OperationLocks"] == {"LockReason": [{"LockReason": "Recycling", "LockMsg": ""}]}
    assert "Tags" not in spot


def test_describe_instances_filters_by_tag_status_and_region(api):
    seed_ecs(api)
    tagged = call(api, ECS, "DescribeInstances", {"Tag.1.Key": "shipper:auto-restart", "Tag.1.Value": "true"})
    assert ids(tagged) == ["i-web1"]
    any_value = call(api, ECS, "DescribeInstances", {"Tag.1.Key": "shipper:auto-restart"})
    assert ids(any_value) == ["i-web1", "i-web2"]
    assert ids(call(api, ECS, "DescribeInstances", {"Status": "Stopped"})) == ["i-web2"]
    assert ids(call(api, ECS, "DescribeInstances", {"RegionId": "cn-shanghai"})) == ["i-sh"]


def test_describe_instances_pages(api):
    for n in range(5):
        api.add_instance(f"i-{n}")
    first = call(api, ECS, "DescribeInstances", {"PageNumber": "2", "PageSize": "2"})
    assert (first["TotalCount"], first["PageNumber"], first["PageSize"], ids(first)) == (5, 2, 2, ["i-2", "i-3"])
    seen, token = [], None
    while token != "":
        params = {"MaxResults": "2"} | ({"NextToken": token} if token else {})
        page = call(api, ECS, "DescribeInstances", params)
        seen += ids(page)
        token = page["NextToken"]
    assert seen == [f"i-{n}" for n in range(5)]
    error = server_error(api, ECS, "DescribeInstances", {"PageSize": "101"})
    assert error.get_error_code() == "InvalidParameter"
    error = server_error(api, ECS, "DescribeInstances", {"InstanceIds": "i-0,i-1"})
    assert error.get_error_code() == "InvalidInstanceIds.Malformed"


def test_describe_instances_max_results_is_clamped_to_10_to_100(api):
    """actiontrail.md §2.2: "<10 or unset => 10; >100 => 100"; NextToken paging ends on an empty token."""
    for n in range(120):
        api.add_instance(f"i-{n:03d}")
    for asked, size in (("5", 10), ("10", 10), ("37", 37), ("500", 100)):
        page = call(api, ECS, "DescribeInstances", {"MaxResults": asked})
        assert len(ids(page)) == size and page["NextToken"]
    last = call(api, ECS, "DescribeInstances", {"MaxResults": "100", "NextToken": "100"})
    assert ids(last) == [f"i-{n}" for n in range(100, 120)] and last["NextToken"] == ""
    assert server_error(api, ECS, "DescribeInstances", {"MaxResults": "ten"}).get_error_code() == "InvalidParameter"


def test_another_regions_instance_is_absent_and_an_unknown_region_is_refused(api):
    seed_ecs(api)
    in_hangzhou = {"RegionId": "cn-hangzhou"}
    assert ids(call(api, ECS, "DescribeInstances", in_hangzhou | {"InstanceIds": '["i-sh"]'})) == []
    status = call(api, ECS, "DescribeInstanceStatus", in_hangzhou | {"InstanceId.1": "i-sh"})
    assert status["InstanceStatuses"]["InstanceStatus"] == []
    found = call(api, ECS, "DescribeInstances", {"RegionId": "cn-shanghai", "InstanceIds": '["i-sh"]'})
    assert found["Instances"]["Instance"][0]["RegionId"] == "cn-shanghai"
    for action in ("DescribeInstances", "StartInstance"):
        error = server_error(api, ECS, action, {"RegionId": "cn-hangzou", "InstanceId": "i-web2"})
        assert (error.get_error_code(), error.get_http_status()) == ("InvalidRegionId.NotFound", 404)
    with pytest.raises(ValueError):
        api.add_instance("i-nowhere", region_id="cn-hangzou")


def test_describe_regions_lists_every_region_in_the_documented_shape(api):
    regions = call(api, ECS, "DescribeRegions")["Regions"]["Region"]
    assert {r["RegionId"] for r in regions} >= {"cn-hangzhou", "cn-shanghai", "cn-beijing", "ap-southeast-1"}
    hangzhou = next(r for r in regions if r["RegionId"] == "cn-hangzhou")
    assert hangzhou == {"RegionId": "cn-hangzhou", "RegionEndpoint": "ecs.cn-hangzhou.aliyuncs.com",
                        "LocalName": "华东1（杭州）", "Status": "available"}
    english = call(api, ECS, "DescribeRegions", {"AcceptLanguage": "en-US"})["Regions"]["Region"]
    assert next(r for r in english if r["RegionId"] == "cn-hangzhou")["LocalName"] == "China (Hangzhou)"
    for params, code in (({"AcceptLanguage": "fr-FR"}, "InvalidAcceptLanguage.NotFound"),
                         ({"ResourceType": "bucket"}, "InvalidResourceType.NotFound")):
        error = server_error(api, ECS, "DescribeRegions", params)
        assert (error.get_error_code(), error.get_http_status()) == (code, 404)


def test_describe_regions_has_the_fault_knobs(api):
    api.fail_next("Throttling", operation="DescribeRegions")     # in the SDK's ECS RetryableAPIs (§4)
    assert call(api, ECS, "DescribeRegions", product="Ecs")["Regions"]["Region"]
    assert api.request_counts()["DescribeRegions"] == 2
    api.fail_next("Unauthorized.EmptyRegion", operation="DescribeRegions")
    error = server_error(api, ECS, "DescribeRegions")
    assert (error.get_error_code(), error.get_http_status()) == ("Unauthorized.EmptyRegion", 403)


def test_describe_instance_status(api):
    seed_ecs(api)
    found = call(api, ECS, "DescribeInstanceStatus", {"InstanceId.1": "i-web2", "InstanceId.2": "i-web1"})
    assert found["TotalCount"] == 2
    assert sorted(found["InstanceStatuses"]["InstanceStatus"], key=lambda s: s["InstanceId"]) == [
        {"InstanceId": "i-web1", "Status": "Running"},
        {"InstanceId": "i-web2", "Status": "Stopped"},
    ]
    too_many = {f"InstanceId.{n}": f"i-{n}" for n in range(1, 102)}
    error = server_error(api, ECS, "DescribeInstanceStatus", too_many)
    assert (error.get_error_code(), error.get_http_status()) == ("InvalidParameter.TooManyInstanceIds", 403)


def test_fleet_simulator_seeds_the_emulator(api):
    fleet = FleetSimulator(instances=6, seed=3, start_ms=0, spot_ratio=0.5).fleet
    api.add_sim_fleet(fleet)
    for sim in fleet:
        params = {"RegionId": sim.region_id, "InstanceIds": json.dumps([sim.instance_id])}
        found = call(api, ECS, "DescribeInstances", params)
        instance = found["Instances"]["Instance"][0]
        assert (instance["InstanceName"], instance["ZoneId"]) == (sim.name, sim.zone_id)
        assert (instance["SpotStrategy"] != "NoSpot") == sim.spot
        assert instance["InstanceChargeType"] == sim.charge_type


# --- StartInstance --------------------------------------------------------------------------


@pytest.fixture
def mns():
    with MnsEmulator(credentials={KEY_ID: SECRET}) as emulator:
        emulator.create_queue("ecs-events")
        yield emulator


def test_start_goes_stopped_starting_running_and_emits_events(mns):
    with OpenApiEmulator(credentials={KEY_ID: SECRET}, start_delay=0.5, emit_to=(mns, "ecs-events")) as api:
        api.add_instance(EXAMPLE_ID, name="web-7", status="Stopped", private_ip="10.0.3.7")
        assert call(api, ECS, "StartInstance", {"InstanceId": EXAMPLE_ID}, product="Ecs").keys() == {"RequestId"}
        status = call(api, ECS, "DescribeInstanceStatus", {"InstanceId.1": EXAMPLE_ID})
        assert status["InstanceStatuses"]["InstanceStatus"] == [{"InstanceId": EXAMPLE_ID, "Status": "Starting"}]
        wait_until(lambda: ids(call(api, ECS, "DescribeInstances", {"Status": "Running"})) == [EXAMPLE_ID])
    bodies = [base64.b64decode(m.body) for m in mns.messages("ecs-events")]
    events = [json.loads(body) for body in bodies]
    assert [e["content"]["state"] for e in events] == ["Starting", "Running"]
    fixture = json.loads((FIXTURES / "a_statechange_running.json").read_text())
    for event in events:
        assert event.keys() == fixture.keys()
        assert fixture["content"].keys() <= event["content"].keys()
        assert event["resourceId"] == f"acs:ecs:cn-hangzhou:1827364554637281:instance/{EXAMPLE_ID}"
    records = [events_from_bytes(body, received_ms=0)[0] for body in bodies]
    assert [(r["event_name"], r["state"], r["instance_id"]) for r in records] == [
        ("Instance:StateChange", "Starting", EXAMPLE_ID), ("Instance:StateChange", "Running", EXAMPLE_ID)]


@pytest.mark.parametrize("status, locks, code, http_status", [
    ("Running", [], "IncorrectInstanceStatus", 403),
    ("Starting", [], "IncorrectInstanceStatus", 403),
    ("Stopped", ["security"], "InstanceLockedForSecurity", 403),
    ("Stopped", ["financial"], "InstanceExpiredOrInArrears", 403),
    ("Stopped", ["Recycling"], "IncorrectInstanceStatus", 403),
])
def test_start_refusals(api, status, locks, code, http_status):
    api.add_instance("i-a", status=status, locks=locks)
    error = server_error(api, ECS, "StartInstance", {"InstanceId": "i-a"}, product="Ecs")
    assert (error.get_error_code(), error.get_http_status()) == (code, http_status)
    assert api.instance("i-a").status == status


def test_start_unknown_other_region_and_dry_run(api):
    seed_ecs(api)
    for instance_id in ("i-missing", "i-sh"):  # i-sh lives in cn-shanghai
        error = server_error(api, ECS, "StartInstance", {"InstanceId": instance_id})
        assert (error.get_error_code(), error.get_http_status()) == ("InvalidInstanceId.NotFound", 404)
    error = server_error(api, ECS, "StartInstance", {"InstanceId": "i-web2", "DryRun": "true"})
    assert error.get_error_code() == "DryRunOperation"
    assert api.instance("i-web2").status == "Stopped"
    error = server_error(api, ECS, "StartInstance", {})
    assert error.get_error_code() == "MissingParameter"


def test_set_status_and_locks_are_visible(api):
    api.add_instance("i-a", status="Running")
    api.set_lock("i-a", "security", "locked by test")
    api.set_status("i-a", "Stopped")
    instance = call(api, ECS, "DescribeInstances", {"InstanceIds": '["i-a"]'})["Instances"]["Instance"][0]
    assert instance["Status"] == "Stopped"
    assert instance["OperationLocks"]["LockReason"] == [{"LockReason": "security", "LockMsg": "locked by test"}]
    api.clear_locks("i-a")
    call(api, ECS, "StartInstance", {"InstanceId": "i-a"})
    wait_until(lambda: api.instance("i-a").status == "Running")


# --- throttling, faults and the SDK's own retries (§6) ----------------------------------------


def test_throttled_describe_instances_is_retried_by_the_sdk(api):
    api.add_instance("i-a")
    api.fail_next("Throttling", operation="DescribeInstances")
    assert ids(call(api, ECS, "DescribeInstances", product="Ecs")) == ["i-a"]
    assert api.request_counts()["DescribeInstances"] == 2


def test_unavailable_describe_instance_status_is_retried_by_the_sdk(api):
    api.fail_next("ServiceUnavailable", operation="DescribeInstanceStatus")
    assert call(api, ECS, "DescribeInstanceStatus", product="Ecs")["TotalCount"] == 0
    assert api.request_counts()["DescribeInstanceStatus"] == 2


@pytest.mark.parametrize("version, action, code, http_status, product", [
    (ECS, "StartInstance", "Throttling", 400, "Ecs"),  # not in the SDK's retryable list
    (ECS, "DescribeInstances", "Throttling.User", 400, "Ecs"),  # not a retryable code
    (ECS, "DescribeInstances", "Throttling", 400, None),  # no product: no retry config applies
    (SLB, "DescribeLoadBalancers", "Throttling", 400, "Slb"),
    (SLB, "DescribeLoadBalancers", "ServiceUnavailable", 503, "Slb"),
    (ALB, "ListServerGroupServers", "InternalError", 500, "Alb"),
])
def test_errors_the_sdk_does_not_retry(api, version, action, code, http_status, product):
    api.add_instance("i-a", status="Stopped")
    api.fail_next(code, operation=action)
    error = server_error(api, version, action, {"InstanceId": "i-a"}, product=product)
    assert (error.get_error_code(), error.get_http_status()) == (code, http_status)
    assert api.request_counts()[action] == 1
    assert api.instance("i-a").status == "Stopped"


def outcomes(seed):
    with OpenApiEmulator(credentials={KEY_ID: SECRET}, seed=seed) as api:
        api.set_error_rates({"Throttling": 0.3, "SystemBusy": 0.2}, operation="DescribeLoadBalancers")
        results = []
        for _ in range(12):
            try:
                call(api, SLB, "DescribeLoadBalancers")
                results.append("ok")
            except ServerException as error:
                results.append(error.get_error_code())
        return results


def test_error_rates_use_a_seeded_rng():
    first = outcomes(seed=7)
    assert first == outcomes(seed=7)
    assert {"ok", "Throttling"} <= set(first)


def test_dropped_connection_and_slow_response_are_http_errors(api):
    api.set_drop_rate(1.0, operation="DescribeLoadBalancers")
    with pytest.raises(ClientException) as caught:
        call(api, SLB, "DescribeLoadBalancers")
    assert caught.value.get_error_code() == "SDK.HttpError"
    api.clear_faults()
    api.set_latency(0.5, operation="DescribeLoadBalancers")
    slow = request(api, SLB, "DescribeLoadBalancers")
    slow.set_read_timeout(0.1)
    with pytest.raises(ClientException) as caught:
        make_client().do_action_with_exception(slow)
    assert caught.value.get_error_code() == "SDK.HttpError"


# --- SLB / CLB (§9) ---------------------------------------------------------------------------


@pytest.fixture
def clb(api):
    api.add_load_balancer("lb-a", name="web-lb", listeners=[(80, "http"), (443, "https")], backends=[
        {"ServerId": "i-a", "Weight": 100}, {"ServerId": "i-b", "Weight": 50}, {"ServerId": "eni-c", "Type": "eni"},
    ])
    api.add_load_balancer("lb-b")
    api.add_load_balancer("lb-locked", status="locked", backends=[{"ServerId": "i-a"}])
    api.add_vserver_group("lb-a", "rsp-a", name="web", listeners=[(80, "http")], backends=[
        {"ServerId": "i-a", "Port": 80, "Weight": 100, "Description": "web"},
        {"ServerId": "i-a", "Port": 8080, "Weight": 100},
        {"ServerId": "i-b", "Port": 80, "Weight": 100},
    ])
    api.add_vserver_group("lb-b", "rsp-b", backends=[{"ServerId": "i-a", "Port": 80}])
    return api


def backends(response):
    return [(b["ServerId"], b.get("Port"), b["Weight"], b["Type"]) for b in response["BackendServers"]["BackendServer"]]


def test_describe_load_balancers_and_attribute(clb):
    every = call(clb, SLB, "DescribeLoadBalancers")
    assert every["TotalCount"] == 3
    assert set(every["LoadBalancers"]["LoadBalancer"][0]) >= {
        "LoadBalancerId", "LoadBalancerName", "LoadBalancerStatus", "Address", "AddressType", "NetworkType",
        "VpcId", "VSwitchId", "RegionId", "CreateTime"}
    holding = call(clb, SLB, "DescribeLoadBalancers", {"ServerId": "i-b"})  # default group only
    assert [lb["LoadBalancerId"] for lb in holding["LoadBalancers"]["LoadBalancer"]] == ["lb-a"]
    attribute = call(clb, SLB, "DescribeLoadBalancerAttribute", {"LoadBalancerId": "lb-a"})
    assert (attribute["LoadBalancerName"], attribute["LoadBalancerStatus"]) == ("web-lb", "active")
    assert attribute["ListenerPorts"] == {"ListenerPort": [80, 443]}
    assert attribute["ListenerPortsAndProtocol"]["ListenerPortAndProtocol"][1] == {
        "ListenerPort": 443, "ListenerProtocol": "https"}
    assert backends(attribute) == [("i-a", None, 100, "ecs"), ("i-b", None, 50, "ecs"), ("eni-c", None, 100, "eni")]
    error = server_error(clb, SLB, "DescribeLoadBalancerAttribute", {"LoadBalancerId": "lb-missing"})
    assert error.get_error_code() == "InvalidLoadBalancerId.NotFound"


def test_describe_vserver_groups_and_attribute(clb):
    groups = call(clb, SLB, "DescribeVServerGroups", {"LoadBalancerId": "lb-a", "IncludeListener": "true"})
    group = groups["VServerGroups"]["VServerGroup"][0]
    assert (group["VServerGroupId"], group["VServerGroupName"]) == ("rsp-a", "web")
    assert group["AssociatedObjects"]["Listeners"]["Listener"] == [{"Protocol": "http", "Port": 80}]
    attribute = call(clb, SLB, "DescribeVServerGroupAttribute", {"VServerGroupId": "rsp-a"})
    assert (attribute["VServerGroupId"], attribute["LoadBalancerId"]) == ("rsp-a", "lb-a")
    assert attribute["BackendServers"]["BackendServer"][0] == {
        "ServerId": "i-a", "Port": 80, "Weight": 100, "Type": "ecs", "ServerIp": "", "Description": "web"}
    error = server_error(clb, SLB, "DescribeVServerGroupAttribute", {"VServerGroupId": "rsp-missing"})
    assert (error.get_error_code(), error.get_error_msg()) == (
        "InvalidParameter", "The specified VServerGroupId does not exist.")


def servers_json(*servers):
    return json.dumps(list(servers))


def test_vserver_group_removal_needs_the_exact_membership(clb):
    wrong_port = servers_json({"ServerId": "i-a", "Port": 81, "Weight": 100, "Type": "ecs"})
    wrong_type = servers_json({"ServerId": "i-a", "Port": 80, "Type": "eni"})
    for wrong in (wrong_port, wrong_type):  # non-members are silently ignored
        kept = call(clb, SLB, "RemoveVServerGroupBackendServers", {"VServerGroupId": "rsp-a", "BackendServers": wrong})
        assert len(kept["BackendServers"]["BackendServer"]) == 3
    exact = servers_json({"ServerId": "i-a", "Port": "80", "Weight": "100", "Type": "ecs"})
    left = call(clb, SLB, "RemoveVServerGroupBackendServers", {"VServerGroupId": "rsp-a", "BackendServers": exact})
    assert left["VServerGroupId"] == "rsp-a"
    assert backends(left) == [("i-a", 8080, 100, "ecs"), ("i-b", 80, 100, "ecs")]
    assert [b["Port"] for b in clb.vserver_group_backends("rsp-a")] == [8080, 80]
    assert clb.vserver_group_backends("rsp-b") == [
        {"ServerId": "i-a", "Port": 80, "Weight": 100, "Type": "ecs", "ServerIp": "", "Description": ""}]


@pytest.mark.parametrize("servers", [
    "not json",
    "[]",
    servers_json({"ServerId": "i-a"}),  # no Port
    servers_json({"Port": 80}),  # no ServerId
    servers_json({"ServerId": "i-a", "Port": 0}),
    servers_json({"ServerId": "i-a", "Port": 80, "Weight": 101}),
    servers_json({"ServerId": "i-a", "Port": 80, "Type": "ECS"}),
    servers_json(*[{"ServerId": f"i-{n}", "Port": 80} for n in range(21)]),
])
def test_vserver_group_removal_validates_backend_servers(clb, servers):
    params = {"VServerGroupId": "rsp-a", "BackendServers": servers}
    error = server_error(clb, SLB, "RemoveVServerGroupBackendServers", params)
    assert (error.get_error_code(), error.get_http_status()) == ("InvalidParameter", 400)
    assert len(clb.vserver_group_backends("rsp-a")) == 3


def test_set_vserver_group_attribute_changes_only_weights(clb):
    changes = servers_json({"ServerId": "i-a", "Port": 8080, "Weight": 0}, {"ServerId": "i-z", "Port": 80, "Weight": 0})
    result = call(clb, SLB, "SetVServerGroupAttribute", {"VServerGroupId": "rsp-a", "BackendServers": changes})
    assert backends(result) == [("i-a", 80, 100, "ecs"), ("i-a", 8080, 0, "ecs"), ("i-b", 80, 100, "ecs")]
    assert result["VServerGroupName"] == "web"


def test_default_group_weights_and_removal(clb):
    drained = call(clb, SLB, "SetBackendServers", {
        "LoadBalancerId": "lb-a", "BackendServers": servers_json({"ServerId": "i-a", "Weight": "0", "Type": "ecs"})})
    assert drained["LoadBalancerId"] == "lb-a"
    assert backends(drained)[0] == ("i-a", None, 0, "ecs")
    ignored = call(clb, SLB, "RemoveBackendServers", {
        "LoadBalancerId": "lb-a", "BackendServers": servers_json({"ServerId": "eni-c", "Type": "ecs"})})
    assert len(backends(ignored)) == 3
    left = call(clb, SLB, "RemoveBackendServers", {
        "LoadBalancerId": "lb-a", "BackendServers": servers_json({"ServerId": "i-a", "Type": "ecs", "Weight": "100"})})
    assert [b[0] for b in backends(left)] == ["i-b", "eni-c"]
    left = call(clb, SLB, "RemoveBackendServers", {"LoadBalancerId": "lb-a", "BackendServers": '["i-b"]'})
    assert [b[0] for b in backends(left)] == ["eni-c"]


def test_locked_load_balancer_refuses_changes(clb):
    error = server_error(clb, SLB, "RemoveBackendServers", {
        "LoadBalancerId": "lb-locked", "BackendServers": servers_json({"ServerId": "i-a"})})
    assert (error.get_error_code(), error.get_http_status()) == ("LbStatusNotSupport", 400)
    assert clb.backend_servers("lb-locked")[0]["ServerId"] == "i-a"


# --- ALB / NLB (§10) --------------------------------------------------------------------------


@pytest.fixture
def groups(api):
    api.add_server_group("alb", "sgp-alb", servers=[
        {"ServerId": "i-a", "Port": 80, "Weight": 100},
        {"ServerId": "i-a", "Port": 8080},
        {"ServerId": "i-b", "Port": 80},
    ])
    api.add_server_group("nlb", "sgp-nlb", servers=[{"ServerId": "i-a", "Port": 443, "ServerIp": "10.0.0.1"}])
    return api


def removal(group_id, server_id, port, server_type="Ecs"):
    return {"ServerGroupId": group_id, "Servers.1.ServerId": server_id, "Servers.1.ServerType": server_type,
            "Servers.1.Port": str(port)}


def test_list_server_group_servers_is_a_plain_array(groups):
    listed = call(groups, ALB, "ListServerGroupServers", {"ServerGroupId": "sgp-alb", "MaxResults": "2"})
    assert (listed["TotalCount"], listed["MaxResults"]) == (3, 2)
    assert listed["Servers"][0] == {"ServerGroupId": "sgp-alb", "ServerId": "i-a", "ServerIp": "", "ServerType": "Ecs",
                                    "Port": 80, "Weight": 100, "Status": "Available", "Description": ""}
    rest = call(groups, ALB, "ListServerGroupServers", {"ServerGroupId": "sgp-alb", "NextToken": listed["NextToken"]})
    assert [s["ServerId"] for s in rest["Servers"]] == ["i-b"]
    assert rest["NextToken"] == ""
    only_b = call(groups, ALB, "ListServerGroupServers", {"ServerGroupId": "sgp-alb", "ServerIds.1": "i-b"})
    assert [(s["ServerId"], s["Port"]) for s in only_b["Servers"]] == [("i-b", 80)]


def test_alb_removal_is_an_async_job(groups):
    response = call(groups, ALB, "RemoveServersFromServerGroup", removal("sgp-alb", "i-a", 8080))
    assert response.keys() == {"RequestId", "JobId"}
    status, servers = groups.server_group("sgp-alb")
    assert status == "Configuring"
    statuses = [(s["Port"], s["Status"]) for s in servers if s["ServerId"] == "i-a"]
    assert statuses == [(80, "Available"), (8080, "Removing")]
    error = server_error(groups, ALB, "RemoveServersFromServerGroup", removal("sgp-alb", "i-b", 80))
    assert (error.get_error_code(), error.get_http_status()) == ("IncorrectStatus.ServerGroup", 400)
    wait_until(lambda: groups.server_group("sgp-alb")[0] == "Available")
    listed = call(groups, ALB, "ListServerGroupServers", {"ServerGroupId": "sgp-alb"})
    assert [(s["ServerId"], s["Port"]) for s in listed["Servers"]] == [("i-a", 80), ("i-b", 80)]


def test_alb_removal_of_a_non_member_is_an_error(groups):
    for params in (removal("sgp-alb", "i-a", 81), removal("sgp-alb", "i-a", 80, server_type="Eni")):
        error = server_error(groups, ALB, "RemoveServersFromServerGroup", params)
        assert (error.get_error_code(), error.get_http_status()) == ("ResourceNotFound.BackendServer", 404)
    error = server_error(groups, ALB, "RemoveServersFromServerGroup", removal("sgp-alb", "i-a", 80, server_type="ecs"))
    assert error.get_error_code() == "IllegalParam.ServerType"
    error = server_error(groups, ALB, "RemoveServersFromServerGroup", removal("sgp-nlb", "i-a", 443))
    assert (error.get_error_code(), error.get_http_status()) == ("ResourceNotFound.ServerGroup", 404)
    assert groups.server_group("sgp-alb")[0] == "Available"


def test_nlb_removal_echoes_the_group_and_spells_its_codes(groups):
    response = call(groups, NLB, "RemoveServersFromServerGroup", body=removal("sgp-nlb", "i-a", 443))
    assert response.keys() == {"RequestId", "ServerGroupId", "JobId"}
    assert response["ServerGroupId"] == "sgp-nlb"
    error = server_error(groups, NLB, "ListServerGroupServers", {"ServerGroupId": "sgp-alb"})
    assert (error.get_error_code(), error.get_http_status()) == ("ResourceNotFound.serverGroup", 404)
    wait_until(lambda: groups.server_group("sgp-nlb") == ("Available", []))


def test_update_weight_then_dry_run_removal(groups):
    params = removal("sgp-alb", "i-b", 80) | {"Servers.1.Weight": "0"}
    assert call(groups, ALB, "UpdateServerGroupServersAttribute", params).keys() == {"RequestId", "JobId"}
    wait_until(lambda: groups.server_group("sgp-alb")[0] == "Available")
    assert [s["Weight"] for s in groups.server_group("sgp-alb")[1] if s["ServerId"] == "i-b"] == [0]
    dry_run = removal("sgp-alb", "i-b", 80) | {"DryRun": "true"}
    error = server_error(groups, ALB, "RemoveServersFromServerGroup", dry_run)
    assert error.get_error_code() == "DryRunOperation"
    assert len(groups.server_group("sgp-alb")[1]) == 3


# --- recording mutating calls ---------------------------------------------------------------


def test_only_mutating_calls_are_recorded_with_their_outcome(clb):
    clb.add_instance("i-a", status="Running")
    call(clb, ECS, "DescribeInstances")
    call(clb, SLB, "DescribeVServerGroupAttribute", {"VServerGroupId": "rsp-a"})
    assert clb.calls() == []
    before = time.time()
    server_error(clb, ECS, "StartInstance", {"InstanceId": "i-a"})
    call(clb, SLB, "RemoveVServerGroupBackendServers", {
        "VServerGroupId": "rsp-a", "BackendServers": servers_json({"ServerId": "i-b", "Port": 80})})
    recorded = clb.calls()
    assert [(c.action, c.status, c.code) for c in recorded] == [
        ("StartInstance", 403, "IncorrectInstanceStatus"), ("RemoveVServerGroupBackendServers", 200, "")]
    assert recorded[1].params["BackendServers"] == servers_json({"ServerId": "i-b", "Port": 80})
    assert recorded[1].version == SLB
    assert "Signature" not in recorded[1].params
    assert all(c.time >= before for c in recorded)
    assert [c.action for c in clb.calls("StartInstance")] == ["StartInstance"]


# --- command line -----------------------------------------------------------------------------


def test_command_line_serves_a_seeded_fleet():
    env = dict(os.environ, ALIBABA_CLOUD_ACCESS_KEY_SECRET=SECRET)
    process = subprocess.Popen(
        [sys.executable, "-m", "tests.emulators.openapi", "--port", "0", "--access-key-id", KEY_ID,
         "--fleet", "4", "--seed", "2"],
        cwd=REPO, env=env, stdout=subprocess.PIPE, text=True,
    )
    try:
        endpoint = process.stdout.readline().strip()
        assert endpoint.startswith("127.0.0.1:")
        fleet = FleetSimulator(instances=4, seed=2, start_ms=0).fleet
        req = CommonRequest(domain=endpoint, version=ECS, action_name="DescribeInstances", product="Ecs")
        req.add_query_param("RegionId", fleet[0].region_id)
        req.add_query_param("InstanceIds", json.dumps([fleet[0].instance_id]))
        found = json.loads(make_client().do_action_with_exception(req))
        assert ids(found) == [fleet[0].instance_id]
    finally:
        process.terminate()
        process.wait(timeout=10)


# --- ActionTrail LookupEvents (actiontrail.md §1) ----------------------------------------------

TRAIL = "2020-07-06"
ECS_WRITES = {"LookupAttribute.1.Key": "ServiceName", "LookupAttribute.1.Value": "Ecs",
              "LookupAttribute.2.Key": "EventRW", "LookupAttribute.2.Value": "Write"}
HOUR = 3600
BASE = int(time.time()) // HOUR * HOUR - 2 * HOUR  # an hour boundary in the recent past: times below are BASE+n


def iso(seconds):
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(seconds))


def trail_event(n, *, name="StopInstance", region=REGION, at=BASE, service="Ecs", rw="Write"):
    return {"eventId": f"evt-{n:04d}", "eventName": name, "eventTime": iso(at), "acsRegion": region,
            "serviceName": service, "eventRW": rw, "eventType": "ApiCall",
            "requestParameters": {"InstanceId": f"i-{n:04d}"},
            "referencedResources": {"ACS::ECS::Instance": [f"i-{n:04d}"]},
            "userIdentity": {"type": "ram-user", "userName": "alice"}}


def lookup(api, params=None):
    return call(api, TRAIL, "LookupEvents", params, product="Actiontrail")


def lookup_error(api, params=None):
    return server_error(api, TRAIL, "LookupEvents", params, product="Actiontrail")


@pytest.fixture
def trail_api():
    """`api.later`: seconds the emulator's clock runs ahead (ActionTrail's now, moved instead of waiting;
    within the 15-minute Timestamp window the SDK's own real-time Timestamp still passes)."""
    offset = [0.0]
    # lookup_calls_per_second: not the subject of most tests below (its own test sets it)
    with OpenApiEmulator(credentials={KEY_ID: SECRET}, clock=lambda: time.time() + offset[0], start_delay=0.05,
                         lookup_calls_per_second=1000) as emulator:
        emulator.later = offset
        yield emulator


def test_lookup_events_answers_the_documented_shape_and_filters(trail_api):
    trail_api.add_trail([trail_event(1, at=BASE + 3), trail_event(2, service="Slb", at=BASE + 2),
                         trail_event(3, rw="Read", at=BASE + 1), trail_event(4, region="cn-beijing"),
                         trail_event(5, at=BASE - 2 * HOUR)])
    window = {"StartTime": iso(BASE - HOUR), "EndTime": iso(BASE + HOUR)}
    body = lookup(trail_api, window | ECS_WRITES)
    assert body.keys() == {"RequestId", "StartTime", "EndTime", "Events", "NextToken"}
    assert (body["StartTime"], body["EndTime"], body["NextToken"]) == (window["StartTime"], window["EndTime"], "")
    assert [e["eventId"] for e in body["Events"]] == ["evt-0001"]
    everything = lookup(trail_api, window)["Events"]   # newest first by default (Direction BACKWARD)
    assert [e["eventId"] for e in everything] == ["evt-0001", "evt-0002", "evt-0003"]
    assert everything[0] == trail_event(1, at=BASE + 3)


def test_lookup_events_pages_in_both_directions_and_checks_the_token(trail_api):
    trail_api.add_trail([trail_event(n, at=BASE + n * 60) for n in range(1, 8)])
    query = {"StartTime": iso(BASE), "EndTime": iso(BASE + HOUR), "MaxResults": "3"}
    for direction, order in (("FORWARD", list(range(1, 8))), ("BACKWARD", list(range(7, 0, -1)))):
        seen, token = [], ""
        while True:
            body = lookup(trail_api, query | {"Direction": direction} | ({"NextToken": token} if token else {}))
            assert len(body["Events"]) <= 3
            seen += [int(e["eventId"][4:]) for e in body["Events"]]
            token = body["NextToken"]
            if not token:
                break
        assert seen == order
    first = lookup(trail_api, query | {"Direction": "FORWARD"})
    changed = lookup_error(trail_api, query | {"Direction": "BACKWARD", "NextToken": first["NextToken"]})
    assert changed.get_error_code() == "InvalidParameterValue"
    assert lookup_error(trail_api, query | {"MaxResults": "51"}).get_http_status() == 400


def test_a_page_token_keeps_the_view_of_the_first_page(trail_api):
    """Events delivered while a caller pages never shift its pages (none skipped, none twice)."""
    trail_api.add_trail([trail_event(n, at=BASE + n) for n in range(10, 14)])
    query = {"StartTime": iso(BASE), "EndTime": iso(BASE + HOUR), "MaxResults": "2", "Direction": "FORWARD"}
    first = lookup(trail_api, query)
    trail_api.add_trail([trail_event(1, at=BASE + 1)])          # older than everything on the first page
    second = lookup(trail_api, query | {"NextToken": first["NextToken"]})
    assert [e["eventId"] for e in first["Events"] + second["Events"]] == [f"evt-00{n}" for n in range(10, 14)]


def test_lookup_events_validates_the_time_range(trail_api):
    backwards = lookup_error(trail_api, {"StartTime": iso(BASE + 60), "EndTime": iso(BASE)})
    assert (backwards.get_error_code(), backwards.get_http_status()) == ("InvalidTimeRangeException", 400)
    assert lookup_error(trail_api, {"StartTime": iso(BASE)}).get_error_code() == "InvalidParameterValue"
    malformed = lookup_error(trail_api, {"StartTime": "2026-03-05 07:00", "EndTime": iso(BASE)})
    assert malformed.get_error_code() == "InvalidParameterValue"


def test_an_event_is_visible_only_after_the_delivery_delay(trail_api):
    trail_api.delivery_delay = 600
    now = int(time.time())
    trail_api.add_trail([trail_event(1, at=now - 300)])
    window = {"StartTime": iso(now - HOUR), "EndTime": iso(now + HOUR)}
    assert lookup(trail_api, window)["Events"] == []       # 5 minutes after the call
    trail_api.later[0] = 301
    assert [e["eventId"] for e in lookup(trail_api, window)["Events"]] == ["evt-0001"]


def test_lookup_events_past_two_a_second_is_throttled(trail_api):
    trail_api.lookup_calls_per_second = 2
    codes = []
    for _ in range(3):
        try:
            lookup(trail_api)
            codes.append("")
        except ServerException as e:
            codes.append((e.get_error_code(), e.get_http_status()))
    assert codes == ["", "", ("Throttling.User", 400)]
    time.sleep(1.0)
    assert lookup(trail_api)["Events"] == []


def test_every_mutating_call_joins_the_trail_with_the_signing_keys_identity():
    identity = {"type": "assumed-role", "userName": "ShipperRole:shipper", "principalId": "3001:shipper",
                "accountId": "1827364554637281"}
    with OpenApiEmulator(credentials={KEY_ID: SECRET}, identities={KEY_ID: identity}, start_delay=0.05) as api:
        api.add_instance("i-a", status="Stopped")
        api.add_instance("i-b", status="Running")
        api.add_load_balancer("lb-1", backends=[{"ServerId": "i-a"}])
        call(api, ECS, "DescribeInstances")                                    # a read: not in the trail
        call(api, ECS, "StartInstance", {"InstanceId": "i-a"})
        server_error(api, ECS, "StartInstance", {"InstanceId": "i-b"})        # refused: in the trail, failed
        call(api, SLB, "SetBackendServers", {"LoadBalancerId": "lb-1",
                                             "BackendServers": servers_json({"ServerId": "i-a", "Weight": "0"})})
        api.fail_next("Throttling", "StartInstance")                           # never reached the action
        server_error(api, ECS, "StartInstance", {"InstanceId": "i-a"}, client=make_client(auto_retry=False))
        trail = api.trail()
        ecs_writes = lookup(api, ECS_WRITES | {"Direction": "FORWARD"})["Events"]
    assert [(e["eventName"], e["serviceName"], e.get("errorCode", "")) for e in trail] == [
        ("StartInstance", "Ecs", ""), ("StartInstance", "Ecs", "IncorrectInstanceStatus"),
        ("SetBackendServers", "Slb", "")]
    assert [e["eventId"] for e in ecs_writes] == [e["eventId"] for e in trail[:2]]
    started = trail[0]
    assert started["userIdentity"] == identity | {"accessKeyId": KEY_ID}
    assert started["requestParameters"] == {"InstanceId": "i-a", "RegionId": REGION}
    assert started["referencedResources"] == {"ACS::ECS::Instance": ["i-a"]}
    assert started["sourceIpAddress"] == "127.0.0.1" and "Core/" in started["userAgent"]
    assert (started["eventType"], started["eventRW"], started["acsRegion"]) == ("ApiCall", "Write", REGION)
    assert trail[1]["errorMessage"]


def test_a_key_without_a_configured_identity_is_a_ram_user_named_shipper(api):
    assert api.identity(KEY_ID)["type"] == "ram-user" and api.identity(KEY_ID)["userName"] == "shipper"
