"""shipper's OpenAPI client through the real aliyunsdkcore against the local emulator (reference/openapi.md)."""
import logging
import socket
import time
from urllib.parse import quote

import pytest

from shipper.cloud import CloudError, Credentials, NotFound
from shipper.cloud.openapi import MAX_ATTEMPTS, ALB, NLB, Backend, OpenApi
from shipper.config import OpenApiSettings
from shipper.simulate import FleetSimulator
from tests.emulators.openapi import REGIONS, OpenApiEmulator
from tests.fakes import FakeClock

KEY_ID = "LTAIexampleKEY01"
SECRET = "exampleSecret0123456789"
TOKEN = "STS.NTokenExample+/=secretPart0123"
INSTANCE = "i-bp1client000000001"
REGION = "cn-hangzhou"


@pytest.fixture
def emulator():
    with OpenApiEmulator(credentials={KEY_ID: SECRET}, start_delay=0.05, job_delay=0.05) as api:
        yield api


def settings_for(endpoint: str, **overrides) -> OpenApiSettings:
    return OpenApiSettings(**({"ecs_endpoint": endpoint, "slb_endpoint": endpoint, "alb_endpoint": endpoint,
                               "nlb_endpoint": endpoint, "timeout_seconds": 5.0} | overrides))


def client(endpoint: str, sleep=None, credentials=Credentials(KEY_ID, SECRET), **overrides) -> OpenApi:
    return OpenApi(settings_for(endpoint, **overrides), credentials,
                   sleep=FakeClock().sleep if sleep is None else sleep)


def test_describe_instance_reads_the_fields_the_guards_need(emulator):
    emulator.add_instance(INSTANCE, name="web-7", status="Stopped", charge_type="PrePaid",
                          spot_strategy="SpotAsPriceGo", zone_id="cn-hangzhou-h", instance_type="ecs.g7.large",
                          private_ip="10.0.3.7", public_ip="47.1.2.3", tags={"shipper:auto-restart": "true"},
                          locks=["financial"])
    found = client(emulator.endpoint).describe_instance(INSTANCE, REGION)
    assert found.status == "Stopped"
    assert found.tags == {"shipper:auto-restart": "true"}
    assert found.lock_reasons == ("financial",)
    assert found.is_spot and found.spot_strategy == "SpotAsPriceGo"
    assert found.charge_type == "PrePaid"
    assert (found.zone_id, found.instance_type, found.instance_name) == ("cn-hangzhou-h", "ecs.g7.large", "web-7")
    assert found.private_ips == ("10.0.3.7",) and found.public_ips == ("47.1.2.3",)


def test_an_instance_without_tags_or_locks(emulator):
    emulator.add_instance(INSTANCE)               # the Tags key is absent then
    found = client(emulator.endpoint).describe_instance(INSTANCE, REGION)
    assert found.tags == {} and found.lock_reasons == () and not found.is_spot


def test_unknown_instances_are_not_found(emulator):
    api = client(emulator.endpoint)
    assert api.describe_instances(["i-bp1nosuch0000000001"], REGION) == {}
    with pytest.raises(NotFound):
        api.describe_instance("i-bp1nosuch0000000001", REGION)
    with pytest.raises(NotFound) as caught:
        api.start_instance("i-bp1nosuch0000000001", REGION)
    assert caught.value.code == "InvalidInstanceId.NotFound" and caught.value.request_id


# ---- regions ------------------------------------------------------------------------------------------------

THREE = ("cn-hangzhou", "cn-shanghai", "cn-beijing")


def test_a_fleet_over_three_regions_is_listed_completely_page_by_page(emulator):
    fleet = FleetSimulator(instances=320, seed=12, start_ms=0).fleet     # seven regions, weighted to Hangzhou
    emulator.add_sim_fleet(fleet)
    expected = {region: {sim.instance_id: sim for sim in fleet if sim.region_id == region} for region in THREE}
    assert len(expected["cn-hangzhou"]) > 100 and all(expected.values())   # several pages in one region
    seen = []
    api = OpenApi(settings_for(emulator.endpoint, regions=THREE), Credentials(KEY_ID, SECRET), on_instance=seen.append)
    listed = {region: {i.instance_id: i for i in api.list_instances(region)} for region in api.regions()}
    assert {region: set(found) for region, found in listed.items()} == {r: set(ids) for r, ids in expected.items()}
    assert len(seen) == sum(map(len, expected.values()))
    pages = sum(-(-len(ids) // 100) for ids in expected.values())                # MaxResults=100
    assert emulator.request_counts()["DescribeInstances"] == pages
    for region, found in listed.items():
        for instance_id, instance in found.items():
            sim = expected[region][instance_id]
            assert (instance.region_id, instance.zone_id, instance.instance_name, instance.instance_type) == (
                region, sim.zone_id, sim.name, sim.instance_type)
            assert (instance.charge_type, instance.is_spot, instance.tags) == (sim.charge_type, sim.spot, sim.tags)
            assert instance.private_ips == (sim.private_ip,) and instance.status == "Running"
            assert instance.expired_time == "2099-12-31T15:59Z" and instance.lock_reasons == ()


def test_each_call_carries_the_region_of_its_instance(emulator):
    emulator.add_instance(INSTANCE, region_id="cn-shanghai", status="Stopped")
    api = client(emulator.endpoint, regions=("cn-hangzhou", "cn-shanghai"))
    assert api.describe_instance(INSTANCE, "cn-shanghai").region_id == "cn-shanghai"
    assert api.describe_instances([INSTANCE], "cn-hangzhou") == {}           # absent from another region
    with pytest.raises(NotFound):
        api.start_instance(INSTANCE, "")                                      # no region: the first configured one
    api.start_instance(INSTANCE, "cn-shanghai")
    assert [c.params["RegionId"] for c in emulator.calls("StartInstance")] == ["cn-hangzhou", "cn-shanghai"]
    assert api.instance_status(INSTANCE, "cn-shanghai") in ("Starting", "Running")


def test_all_regions_come_from_one_describe_regions_call(emulator):
    emulator.add_instance(INSTANCE, region_id="ap-southeast-1")
    api = client(emulator.endpoint, regions=("all",))
    assert api.regions() == api.regions() == list(REGIONS)
    assert emulator.request_counts() == {"DescribeRegions": 1}
    assert [i.instance_id for i in api.list_instances("ap-southeast-1")] == [INSTANCE]
    assert api.describe_regions() == list(REGIONS)


def test_a_failed_describe_regions_is_asked_again_next_time(emulator):
    emulator.fail_next("Forbidden.RAM", operation="DescribeRegions")
    api = client(emulator.endpoint, regions=("all",))
    with pytest.raises(CloudError) as caught:
        api.regions()
    assert caught.value.code == "Forbidden.RAM" and caught.value.fatal
    assert api.regions() == list(REGIONS)


def test_start_instance_then_status_goes_running(emulator):
    emulator.add_instance(INSTANCE, status="Stopped")
    api = client(emulator.endpoint)
    api.start_instance(INSTANCE, REGION)
    assert api.instance_status(INSTANCE, REGION) in ("Starting", "Running")
    deadline = time.monotonic() + 5
    while api.instance_status(INSTANCE, REGION) != "Running":
        assert time.monotonic() < deadline
        time.sleep(0.02)


def test_error_is_typed_and_not_retried_when_it_cannot_help(emulator):
    emulator.add_instance(INSTANCE, status="Running")
    clock = FakeClock()
    with pytest.raises(CloudError) as caught:
        client(emulator.endpoint, clock.sleep).start_instance(INSTANCE, REGION)
    error = caught.value
    assert (error.code, error.retryable, error.http_status) == ("IncorrectInstanceStatus", False, 403)
    assert error.request_id
    assert emulator.request_counts()["StartInstance"] == 1 and clock.delays == []


def test_throttling_is_retried_with_growing_jittered_backoff(emulator):
    emulator.add_instance(INSTANCE, status="Stopped")
    emulator.fail_next("Throttling", operation="StartInstance", times=2)   # the SDK itself never retries this action
    clock = FakeClock()
    client(emulator.endpoint, clock.sleep).start_instance(INSTANCE, REGION)
    assert emulator.request_counts()["StartInstance"] == 3
    assert len(emulator.calls("StartInstance")) == 3
    assert emulator.instance(INSTANCE).status in ("Starting", "Running")
    assert len(clock.delays) == 2
    assert 0.25 <= clock.delays[0] <= 0.5 and 0.5 <= clock.delays[1] <= 1.0        # 0.5 s * 2^n, jittered down to half


@pytest.mark.parametrize("code", ["ServiceUnavailable", "InternalError", "SystemBusy", "Throttling.User"])
def test_transient_errors_are_retried_on_every_product(emulator, code):
    emulator.add_load_balancer("lb-client1", backends=[{"ServerId": INSTANCE}])
    emulator.fail_next(code, operation="RemoveBackendServers")
    client(emulator.endpoint).remove_default_backends("lb-client1", [Backend(INSTANCE, 0, 100, "ecs")], REGION)
    assert emulator.backend_servers("lb-client1") == []


def test_retries_are_bounded(emulator):
    emulator.add_instance(INSTANCE, status="Stopped")
    emulator.fail_next("Throttling", operation="DescribeInstances", times=50)
    clock = FakeClock()
    with pytest.raises(CloudError) as caught:
        client(emulator.endpoint, clock.sleep).describe_instance(INSTANCE, REGION)
    assert caught.value.code == "Throttling" and caught.value.retryable
    assert emulator.request_counts()["DescribeInstances"] == MAX_ATTEMPTS   # the SDK's auto_retry is off
    assert len(clock.delays) == MAX_ATTEMPTS - 1 and max(clock.delays) <= 8.0


def test_every_call_builds_a_fresh_request(emulator):
    """The article reused one CommonRequest and its query parameters piled up (openapi.md §7)."""
    emulator.add_load_balancer("lb-client1", backends=[{"ServerId": INSTANCE}])
    emulator.add_vserver_group("lb-client1", "rsp-client1", backends=[{"ServerId": INSTANCE, "Port": 80}])
    api = client(emulator.endpoint)
    api.remove_vserver_group_backends("rsp-client1", [Backend(INSTANCE, 80, 100, "ecs")], REGION)
    api.remove_default_backends("lb-client1", [Backend(INSTANCE, 0, 100, "ecs")], REGION)
    second = emulator.calls("RemoveBackendServers")[0].params
    assert "VServerGroupId" not in second and second["LoadBalancerId"] == "lb-client1"


def test_environment_proxy_is_not_used_for_the_endpoint(emulator, monkeypatch):
    with socket.socket() as dead:
        dead.bind(("127.0.0.1", 0))
        proxy = f"http://127.0.0.1:{dead.getsockname()[1]}"
    for name in ("HTTP_PROXY", "HTTPS_PROXY", "http_proxy", "https_proxy"):
        monkeypatch.setenv(name, proxy)
    emulator.add_instance(INSTANCE)
    assert client(emulator.endpoint).describe_instance(INSTANCE, REGION).status == "Running"


def test_endpoint_may_be_a_url(emulator):
    emulator.add_instance(INSTANCE)
    assert client(f"http://{emulator.endpoint}").describe_instance(INSTANCE, REGION).instance_id == INSTANCE


def test_clb_listing_and_exact_removal(emulator):
    emulator.add_load_balancer("lb-client1", backends=[{"ServerId": INSTANCE, "Weight": 50}])
    emulator.add_vserver_group("lb-client1", "rsp-client1", backends=[
        {"ServerId": INSTANCE, "Port": 8080, "Weight": 30}, {"ServerId": "i-bp1client000000002", "Port": 8080}])
    api = client(emulator.endpoint)
    assert api.load_balancers(REGION) == ["lb-client1"]
    assert api.default_backends("lb-client1", REGION) == [Backend(INSTANCE, 0, 50, "ecs")]
    assert api.vserver_groups("lb-client1", REGION) == ["rsp-client1"]
    members = api.vserver_group_backends("rsp-client1", REGION)
    assert members == [Backend(INSTANCE, 8080, 30, "ecs"), Backend("i-bp1client000000002", 8080, 100, "ecs")]
    api.set_vserver_group_weights("rsp-client1", [Backend(INSTANCE, 8080, 0, "ecs")], REGION)
    assert emulator.vserver_group_backends("rsp-client1")[0]["Weight"] == 0
    api.remove_vserver_group_backends("rsp-client1", [members[0]], REGION)
    assert [b["ServerId"] for b in emulator.vserver_group_backends("rsp-client1")] == ["i-bp1client000000002"]


def test_clb_pages_through_many_load_balancers(emulator):
    for n in range(105):
        emulator.add_load_balancer(f"lb-many{n:03d}")
    assert len(client(emulator.endpoint).load_balancers(REGION)) == 105


@pytest.mark.parametrize("product, kind", [(ALB, "alb"), (NLB, "nlb")])
def test_server_groups_holding_a_server(emulator, product, kind):
    emulator.add_server_group(kind, f"sgp-{kind}1", servers=[
        {"ServerId": INSTANCE, "Port": 443, "Weight": 80}, {"ServerId": "i-bp1client000000002", "Port": 443}])
    emulator.add_server_group(kind, f"sgp-{kind}2", servers=[{"ServerId": INSTANCE, "Port": 8443}])
    api = client(emulator.endpoint)
    held = api.server_group_servers(product, REGION, INSTANCE)
    assert sorted(held) == [(f"sgp-{kind}1", Backend(INSTANCE, 443, 80, "Ecs")),
                            (f"sgp-{kind}2", Backend(INSTANCE, 8443, 100, "Ecs"))]
    assert len(api.server_group_servers(product, REGION)) == 3
    api.remove_server_group_servers(product, f"sgp-{kind}2", [Backend(INSTANCE, 8443, 100, "Ecs")], REGION)
    call = emulator.calls("RemoveServersFromServerGroup")[0].params
    sent = (call["Servers.1.ServerId"], call["Servers.1.Port"], call["Servers.1.ServerType"])
    assert sent == (INSTANCE, "8443", "Ecs")


def test_busy_server_group_is_retried_until_the_job_ends(emulator):
    emulator.add_server_group("alb", "sgp-busy", servers=[{"ServerId": INSTANCE, "Port": 80},
                                                          {"ServerId": "i-bp1client000000002", "Port": 80}])
    api = OpenApi(settings_for(emulator.endpoint), Credentials(KEY_ID, SECRET))     # real sleep: the job takes 50 ms
    api.set_server_group_weights(ALB, "sgp-busy", [Backend(INSTANCE, 80, 0, "Ecs")], REGION)
    api.remove_server_group_servers(ALB, "sgp-busy", [Backend(INSTANCE, 80, 0, "Ecs")], REGION)
    codes = [c.code for c in emulator.calls("RemoveServersFromServerGroup")]
    assert codes[0] == "IncorrectStatus.ServerGroup" and codes[-1] == ""


def encodings(text: str) -> list[str]:
    return [text, quote(text, safe=""), quote(quote(text, safe=""), safe="")]


def assert_no_secret(text: str) -> None:
    for secret in (SECRET, TOKEN):
        for form in encodings(secret):
            assert form not in text


def test_secret_and_token_never_reach_errors_or_logs(emulator, caplog):
    caplog.set_level(logging.DEBUG)          # the SDK logs request parameters, SecurityToken included, at DEBUG
    emulator.add_instance(INSTANCE, status="Running")
    errors = []
    with pytest.raises(CloudError) as caught:
        client(emulator.endpoint, credentials=Credentials(KEY_ID, SECRET, TOKEN)).start_instance(INSTANCE, REGION)
    assert caught.value.code == "IncorrectInstanceStatus"
    errors.append(caught.value)
    with pytest.raises(CloudError) as caught:  # wrong secret: the answer quotes the string to sign, token included
        wrong = Credentials(KEY_ID, "wrong" + SECRET, TOKEN)
        client(emulator.endpoint, credentials=wrong).start_instance(INSTANCE, REGION)
    assert caught.value.code in ("SignatureDoesNotMatch", "InvalidAccessKeySecret")
    errors.append(caught.value)
    with socket.socket() as closed:
        closed.bind(("127.0.0.1", 0))
        dead = f"127.0.0.1:{closed.getsockname()[1]}"
    with pytest.raises(CloudError) as caught:  # the connection error quotes the signed URL
        client(dead, credentials=Credentials(KEY_ID, SECRET, TOKEN)).start_instance(INSTANCE, REGION)
    assert caught.value.code == "SDK.HttpError" and caught.value.retryable
    errors.append(caught.value)
    for error in errors:
        assert_no_secret(str(error))
        assert_no_secret(error.message)
        assert error.__context__ is None and error.__cause__ is None     # the SDK's exception is not chained
    assert any(r.name == "shipper.cloud.openapi" for r in caplog.records), "failures are logged"
    assert_no_secret(caplog.text)
