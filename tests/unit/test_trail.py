"""ActionTrail events -> api-call records (shipper/trail.py), from the samples of reference/actiontrail.md §1.7."""
import json
import time

import pytest

from shipper import events, trail

RECEIVED_MS = 1_767_225_600_000  # 2026-01-01T00:00:00Z

# §1.7 [A13], verbatim: StopInstance by the root account through an SDK
STOP_INSTANCE = {
    "eventId": "239EB588-CD24-522E-B0B5-174A1A588BE0", "eventVersion": 1,
    "eventSource": "ecs-cn-hangzhou-share.aliyuncs.com",
    "requestParameters": {"charset": "UTF-8", "AcsHost": "ecs-cn-hangzhou-share.aliyuncs.com", "AcsProduct": "Ecs",
                          "RequestId": "239EB588-CD24-522E-B0B5-174A1A588BE0", "InstanceId": "i-2zeip56clb391fpf****",
                          "ForceStop": False, "AcceptLanguage": "zh-CN"},
    "sourceIpAddress": "192.168.XX.XX", "userAgent": "Apache-HttpClient/4.5.7 (Java/1.8.0_275)", "eventType": "ApiCall",
    "referencedResources": {"ACS::ECS::Instance": ["i-2zeip56clb391fpf****"]},
    "userIdentity": {"sessionContext": {"attributes": {"mfaAuthenticated": "false",
                                                       "creationDate": "2021-08-04T06:11:36Z"}},
                     "accountId": "154735325685****", "principalId": "154735325685****", "type": "root-account",
                     "userName": "root"},
    "serviceName": "Ecs", "additionalEventData": {"Scheme": "http", "CallerBid": "26842"}, "apiVersion": "2014-05-26",
    "requestId": "239EB588-CD24-522E-B0B5-174A1A588BE0", "eventTime": "2021-08-04T06:11:36Z", "isGlobal": False,
    "acsRegion": "cn-beijing", "eventName": "StopInstance",
}


def call(name, params=None, **fields):
    """A minimal ECS ApiCall by a RAM user through the CLI, in the §1.5 field names."""
    return {"eventId": "E-1", "eventName": name, "eventTime": "2026-01-01T00:00:00Z", "acsRegion": "cn-hangzhou",
            "serviceName": "Ecs", "eventType": "ApiCall", "eventRW": "Write", "requestParameters": params or {},
            "userIdentity": {"type": "ram-user", "userName": "alice", "principalId": "2015537513401574",
                             "accountId": "1827364554637281", "accessKeyId": "LTAI5tAbCdEfGhIjKlMn"},
            "sourceIpAddress": "203.0.113.7", "userAgent": "Aliyun-CLI/3.0.200", "requestId": "R-1", **fields}


def ids(event):
    return [r["instance_id"] for r in trail.records(event, RECEIVED_MS)]


def test_the_documented_stop_instance_is_one_complete_record():
    [record] = trail.records(STOP_INSTANCE, RECEIVED_MS)
    assert record.keys() == set(events.EVENT_FIELDS)
    assert record | {"detail": "", "raw": ""} == dict.fromkeys(events.EVENT_FIELDS, "") | {
        "schema": "1", "event_uid": "actiontrail:239eb588-cd24-522e-b0b5-174a1a588be0:i-2zeip56clb391fpf****",
        "envelope": "actiontrail", "category": "api-call", "product": "ECS", "event_name": "ActionTrail:StopInstance",
        "event_time": "2021-08-04T06:11:36.000Z", "event_time_ms": "1628057496000",
        "received_time": "2026-01-01T00:00:00.000Z", "account_id": "154735325685****", "region_id": "cn-beijing",
        "resource_type": "instance", "resource_id": "i-2zeip56clb391fpf****", "instance_id": "i-2zeip56clb391fpf****",
        "level": "INFO", "actor_type": "root-account", "actor_name": "root", "actor_principal_id": "154735325685****",
        "source_ip": "192.168.XX.XX", "user_agent": "Apache-HttpClient/4.5.7 (Java/1.8.0_275)",
        "request_id": "239EB588-CD24-522E-B0B5-174A1A588BE0"}
    assert json.loads(record["raw"]) == STOP_INSTANCE
    detail = json.loads(record["detail"])
    assert detail == {"eventType": "ApiCall", "requestParameters": STOP_INSTANCE["requestParameters"],
                      "referencedResources": STOP_INSTANCE["referencedResources"], "source": "poller"}


@pytest.mark.parametrize("event, expected", [
    pytest.param(call("StopInstances", {"InstanceId.2": "i-b", "InstanceId.1": "i-a", "InstanceId.10": "i-j"}),
                 ["i-a", "i-b", "i-j"], id="batch InstanceId.N in N order"),
    pytest.param(call("ModifyInstanceChargeType", {"InstanceIds": '["i-a","i-b"]', "InstanceChargeType": "PrePaid"}),
                 ["i-a", "i-b"], id="InstanceIds as a JSON string"),
    pytest.param(call("Create", eventType="ConsoleOperation", userAgent="AliyunConsole",
                      referencedResources={"ACS::ECS::Instance": ["i-bp67acfmxazb4p01"]}),
                 ["i-bp67acfmxazb4p01"], id="buy-page Create: referencedResources only"),
    pytest.param(call("RunInstances", {"MinAmount": 2, "MaxAmount": 2},
                      responseElements={"InstanceIdSets": {"InstanceIdSet": ["i-new1", "i-new2"]}}),
                 ["i-new1", "i-new2"], id="RunInstances: the ids from the response"),
    pytest.param(call("StartInstance", {"InstanceId": "i-a"}, referencedResources={"ACS::ECS::Instance": ["i-a"]}),
                 ["i-a"], id="an id named twice is one record"),
    pytest.param(call("StopInstance", {"InstanceId": "i-a"}, responseElements={"InstanceIdSets": {"InstanceIdSet": ["i-x"]}}),
                 ["i-a"], id="only a creation's response names instances"),
    pytest.param(call("DeleteDisk", {"DiskId": "d-1"}, referencedResources={"ACS::ECS::Instance": ["i-a"]}),
                 [], id="a call not on the list"),
    pytest.param(call("StopInstance", {"InstanceId": "i-a"}, serviceName="Rds"), [], id="another product"),
    pytest.param(call("RunInstances", errorCode="OperationDenied.NoStock"), [], id="a creation that made nothing"),
    pytest.param(call("RebootInstances", {"InstanceId.1": "i-a", "InstanceId.x": "i-zzz"}), ["i-a"],
                 id="InstanceId.<not a number> is no instance"),
])
def test_the_instances_of_a_call(event, expected):
    assert ids(event) == expected


def test_every_listed_call_kind_is_mapped():
    assert set(trail.CALL_KINDS.values()) == {"create", "start", "stop", "reboot", "delete", "charge-type"}
    for name in ("RunInstances", "CreateInstance", "Create", "StartInstance", "StartInstances", "StopInstance",
                 "StopInstances", "RebootInstance", "RebootInstances", "DeleteInstance", "DeleteInstances", "Release",
                 "ModifyInstanceChargeType"):
        assert ids(call(name, {"InstanceId": "i-a"})) == ["i-a"], name


def test_a_failed_call_keeps_its_error_and_warns():
    [record] = trail.records(call("StopInstance", {"InstanceId": "i-a"}, errorCode="IncorrectInstanceStatus",
                                  errorMessage="The current status of the resource does not support this operation."),
                             RECEIVED_MS)
    assert (record["error_code"], record["level"]) == ("IncorrectInstanceStatus", "WARN")
    assert json.loads(record["detail"])["errorMessage"].startswith("The current status")


def test_the_access_key_id_is_masked_everywhere():
    event = call("StopInstance", {"InstanceId": "i-a", "AccessKeyId": "LTAI5tAbCdEfGhIjKlMn", "SecurityToken": "tok"})
    [record] = trail.records(event, RECEIVED_MS)
    assert record["actor_access_key_id"] == "LTAI****KlMn"
    stored = json.dumps(record)
    assert "LTAI5tAbCdEfGhIjKlMn" not in stored and "tok" not in stored
    assert json.loads(record["raw"])["userIdentity"]["accessKeyId"] == "LTAI****KlMn"
    assert trail.mask_access_key_id("STS.NUxyz0123456789abcdef") == "STS.****cdef"
    assert trail.mask_access_key_id("short") == "****"
    assert trail.mask_access_key_id("") == ""


def test_system_actors():
    service_event = call("Release", {"InstanceId": "i-a"}, eventType="AliyunServiceEvent",
                         userIdentity={"type": "root-account", "userName": "root"})
    system_call = call("DeleteInstance", {"InstanceId": "i-a"}, userIdentity={"type": "system", "userName": "ecs.aliyuncs.com"},
                       userAgent="ecs.aliyuncs.com", sourceIpAddress="ecs.aliyuncs.com")
    assert [trail.records(e, RECEIVED_MS)[0]["actor_type"] for e in (service_event, system_call)] == ["system", "system"]
    record = trail.records(system_call, RECEIVED_MS)[0]
    assert (record["actor_name"], record["actor_access_key_id"], record["account_id"]) == ("ecs.aliyuncs.com", "", "")


def test_the_uid_is_lower_case_and_the_source_is_said():
    [record] = trail.records(call("StartInstance", {"InstanceId": "i-BP1ABC"}, eventId="AbC-DEF"), RECEIVED_MS,
                             source="backfill")
    assert record["event_uid"] == "actiontrail:abc-def:i-bp1abc"
    assert record["instance_id"] == "i-BP1ABC"
    assert json.loads(record["detail"])["source"] == "backfill"
    assert record["envelope"] == "actiontrail"


def test_an_event_without_a_time_takes_the_receipt_time():
    [record] = trail.records(call("StartInstance", {"InstanceId": "i-a"}, eventTime="yesterday"), RECEIVED_MS)
    assert record["event_time_ms"] == str(RECEIVED_MS)


@pytest.mark.parametrize("user_agent, actor_type, actor_name, expected", [
    ("AliyunConsole", "ram-user", "alice", "console"),
    ("ecs.console.aliyun.com", "root-account", "root", "console"),
    ("Aliyun-CLI/3.0.200", "ram-user", "alice", "cli"),
    ("AlibabaCloud (Linux; x86_64) Python/3.11.9 Core/2.16.1 python-requests/2.32.3", "ram-user", "shipper", "sdk"),
    ("Apache-HttpClient/4.5.7 (Java/1.8.0_275)", "root-account", "root", "sdk"),
    ("ecs.aliyuncs.com", "system", "ecs.aliyuncs.com", "service"),
    ("", "system", "", "service"),
    ("ess.aliyuncs.com", "assumed-role", "AliyunServiceRoleForAutoScaling:ess", "service"),
    ("AlibabaCloud Python SDK", "assumed-role", "AliyunServiceRoleForAutoScaling:ess", "service"),
    ("AlibabaCloud Python SDK", "assumed-role", "DeployRole:ci", "sdk"),
])
def test_via(user_agent, actor_type, actor_name, expected):
    assert trail.via(user_agent, actor_type, actor_name) == expected


def test_via_takes_two_arguments_too():
    assert trail.via("AliyunConsole", "ram-user") == "console"


def test_a_simulated_fleets_callers_are_its_trail():
    """FleetSimulator.trail(): each API-caused state change names the event of its call, which maps to one
    api-call record of that instance; reclaims and system or billing stops name none."""
    from shipper.simulate import FleetSimulator

    def simulator():
        return FleetSimulator(instances=120, seed=7, start_ms=RECEIVED_MS, duration_s=6 * 3600)

    trail_events = list(simulator().trail())
    assert trail_events == list(simulator().trail())                       # the same seed, the same calls
    by_id = {e["eventId"]: e for e in trail_events}
    calls = {e["eventId"]: trail.records(e, RECEIVED_MS) for e in trail_events}
    assert all(len(records) == 1 for records in calls.values())
    sim_events = [e for e in simulator().events() if e.state]
    for event in sim_events:
        if event.stop_cause in ("spot-reclaim", "system", "billing-lock"):
            assert event.caller == "", event
        if event.caller:
            assert calls[event.caller][0]["instance_id"] == event.instance_id
            assert by_id[event.caller]["eventTime"] <= event_time(event)
    caused = {e.caller for e in sim_events if e.caller}
    assert caused == set(by_id)                                            # every call caused something
    vias = {trail.via(r["user_agent"], r["actor_type"], r["actor_name"]) for [r] in calls.values()}
    assert vias == {"console", "cli", "service"}
    names = {by_id[e.caller]["eventName"] for e in sim_events if e.caller and e.state == "Stopped"}
    assert names == {"StopInstance"}


def event_time(sim_event) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(sim_event.time_ms // 1000))


def test_actiontrail_settings_are_off_by_default_and_validated():
    from shipper.config import ConfigError, from_dict

    sinks = {"sinks": [{"type": "sqlite"}]}
    assert from_dict(sinks).actiontrail.enabled is False
    on = from_dict(sinks | {"actiontrail": {"enabled": True, "interval_seconds": 30}}).actiontrail
    assert (on.enabled, on.interval_seconds, on.overlap_seconds, on.start_days) == (True, 30.0, 900.0, 1.0)
    for bad, key in (({"start_days": 91}, "start_days"), ({"overlap_seconds": -1}, "overlap_seconds"),
                     ({"interval": 5}, "interval_seconds")):
        with pytest.raises(ConfigError, match=f"\\[actiontrail\\].*`{key}`"):
            from_dict(sinks | {"actiontrail": bad})
