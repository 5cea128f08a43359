"""normalize(): the rules of reference/events.md sections 1-8, one small table per rule."""
import datetime as dt
import hashlib
import json
import random

import orjson
import pytest

from shipper.decode import BAD_ENCODING, NOT_AN_EVENT, NOT_JSON, TOO_LARGE, Rejected
from shipper.events import EVENT_FIELDS
from shipper.normalize import events_from_bytes, normalize
from shipper.times import format_time_ms, parse_time_ms

DROP = object()  # marks a field to delete from a template
ARN = "acs:ecs:cn-hangzhou:1827364554637281:instance/i-arn"


def utc_ms(year, month, day, hour=0, minute=0, second=0, ms=0) -> int:
    moment = dt.datetime(year, month, day, hour, minute, second, tzinfo=dt.timezone.utc)
    return (moment - dt.datetime(1970, 1, 1, tzinfo=dt.timezone.utc)) // dt.timedelta(milliseconds=1) + ms


RECEIVED_MS = utc_ms(2026, 1, 1, 12, 0, 0, 5)
RECEIVED_TIME = "2026-01-01T12:00:00.005Z"


def _apply(base: dict, fields: dict) -> dict:
    base.update(fields)
    return {key: value for key, value in base.items() if value is not DROP}


def a_doc(**fields) -> dict:
    """Envelope A: a CloudMonitor event notification."""
    return _apply({
        "ver": "1.0",
        "id": "EVENT-A",
        "product": "ECS",
        "resourceId": ARN,
        "level": "INFO",
        "name": "Instance:StateChange",
        "userId": "1827364554637281",
        "eventTime": "20250614T091502.114+0800",
        "regionId": "cn-hangzhou",
        "content": {"resourceId": "i-content", "state": "Running"},
    }, fields)


def b_doc(alert: dict | None = None, sys_meta: dict | None = None, **outer) -> dict:
    """Envelope B: a CloudMonitor event-subscription push."""
    meta = _apply({
        "id": "META-ID",
        "level": "WARN",
        "eventTime": "20251208T094505.482+0800",
        "regionId": "cn-beijing",
        "resourceId": ARN,
        "product": "ECS",
        "instanceName": "meta-name",
    }, sys_meta or {})
    alert_doc = _apply({
        "alertStatus": "TRIGGERED",
        "eventName": "Instance:StateChange",
        "arn": ARN,
        "timestamp": 1765158305000,
        "dedupId": "DEDUP",
        "traceId": "TRACE",
        "severity": "CRITICAL",
        "product": "ECS",
        "userId": "1827364554637281",
        "eventContentMap": {"resourceId": "i-content", "state": "Stopped"},
        "meta": {"sysEventMeta": meta},
    }, alert or {})
    return _apply({"alert": alert_doc, "severity": "INFO", "userId": "1827364554637281", "time": 1765158305000}, outer)


def c_doc(**fields) -> dict:
    """Envelope C: an EventBridge CloudEvent."""
    return _apply({
        "id": "EVENT-C",
        "source": "acs.ecs",
        "specversion": "1.0",
        "type": "ecs:Instance:StateChange",
        "time": "2025-12-10T07:30:18+08:00",
        "aliyunaccountid": "1827364554637281",
        "aliyunpublishtime": "2025-12-09T23:30:19.204Z",
        "aliyunregionid": "cn-zhangjiakou",
        "data": {"resourceId": "i-content", "state": "Stopped"},
    }, fields)


def norm(doc, raw: str = "raw text") -> dict:
    return normalize(doc, raw=raw, received_ms=RECEIVED_MS)


# --- section 1: envelopes ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "doc, envelope",
    [
        pytest.param(a_doc(), "cms", id="A"),
        pytest.param(a_doc(content=DROP), "cms", id="A-product-without-content"),
        pytest.param(a_doc(product=DROP), "cms", id="A-content-without-product"),
        pytest.param(b_doc(), "cms-subscription", id="B"),
        pytest.param(b_doc(name="Instance:StateChange", content={}), "cms-subscription", id="B-before-A"),
        pytest.param(c_doc(), "eventbridge", id="C"),
        pytest.param(c_doc(alert={"eventName": "x"}, name="x", content={}), "eventbridge", id="C-before-B-and-A"),
    ],
)
def test_envelope_classification(doc, envelope):
    assert norm(doc)["envelope"] == envelope


@pytest.mark.parametrize(
    "doc",
    [
        pytest.param({"ruleId": "r", "curLevel": "WARN", "eventName": "AlertOk", "time": 1}, id="metric-alert"),
        pytest.param({}, id="empty-object"),
        pytest.param({"name": "Instance:StateChange"}, id="name-only"),
        pytest.param({"content": {"state": "Running"}, "product": "ECS"}, id="no-name"),
        pytest.param({"specversion": "1.0", "type": "ecs:x", "data": {}}, id="cloudevent-without-source"),
        pytest.param([a_doc()], id="list"),
        pytest.param("text", id="string"),
        pytest.param(None, id="null"),
        pytest.param(a_doc(name=123), id="A-name-number"),
        pytest.param(a_doc(name=None), id="A-name-null"),
        pytest.param(a_doc(content=["state", "Stopped"]), id="A-content-list"),
        pytest.param(a_doc(content='{"state":"Running"}'), id="A-content-unparsed-string"),
        pytest.param(a_doc(content=None), id="A-content-null"),
        pytest.param(a_doc(eventTime=True), id="A-eventTime-bool"),
        pytest.param(a_doc(eventTime=1765158305000), id="A-eventTime-number"),
        pytest.param(b_doc() | {"alert": '{"eventName":'}, id="B-alert-string"),
        pytest.param(b_doc() | {"alert": [{"eventName": "x"}]}, id="B-alert-list"),
        pytest.param(b_doc() | {"alert": None}, id="B-alert-null"),
        pytest.param(b_doc({"eventName": DROP}), id="B-no-eventName"),
        pytest.param(b_doc({"eventName": 7}), id="B-eventName-number"),
        pytest.param(c_doc(type=7), id="C-type-number"),
        pytest.param(c_doc(source=None), id="C-source-null"),
        pytest.param(c_doc(data=[1]), id="C-data-list"),
        pytest.param(c_doc(data="x"), id="C-data-string"),
    ],
)
def test_not_an_event(doc):
    with pytest.raises(Rejected) as caught:
        norm(doc)
    assert caught.value.reason == NOT_AN_EVENT


# --- section 7: rules 1-4 ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "doc, event_name, event_status",
    [
        pytest.param(a_doc(name="Disk:Stalled:Executing", content={}), "Disk:Stalled", "Executing", id="A-suffix"),
        *[
            pytest.param(a_doc(name=f"Instance:SystemMaintenance.Reboot:{status}", content={}),
                         "Instance:SystemMaintenance.Reboot", status, id=f"A-{status}")
            for status in ("Inquiring", "Scheduled", "Executing", "Executed", "Avoided", "Canceled", "Failed")
        ],
        pytest.param(a_doc(name="Instance:Foo:Started", content={}), "Instance:Foo:Started", "", id="A-not-a-status"),
        pytest.param(a_doc(name="a:b:c:Executed", content={}), "a:b:c:Executed", "", id="A-four-parts"),
        pytest.param(a_doc(name="Instance:StateChange"), "Instance:StateChange", "", id="A-no-suffix"),
        pytest.param(
            a_doc(name="Instance:SystemMaintenance.Reboot:Scheduled", content={"eventStatus": "Avoided"}),
            "Instance:SystemMaintenance.Reboot", "Avoided", id="A-content-status-wins",
        ),
        pytest.param(a_doc(status="Normal", content={}), "Instance:StateChange", "", id="A-envelope-status-ignored"),
        pytest.param(b_doc({"eventName": "Instance:SystemFailure.Reboot:Executed"}),
                     "Instance:SystemFailure.Reboot", "Executed", id="B-suffix"),
        pytest.param(c_doc(type="ecs:Instance:SystemMaintenance.Reboot", data={"eventStatus": "Scheduled"}),
                     "Instance:SystemMaintenance.Reboot", "Scheduled", id="C-status-from-data"),
        pytest.param(c_doc(type="ecs:Disk:Stalled", data={}), "Disk:Stalled", "", id="C-no-status"),
        pytest.param(c_doc(source="acs.other", type="other:Thing", data={}), "other:Thing", "", id="C-not-ecs"),
    ],
)
def test_name_and_status(doc, event_name, event_status):
    record = norm(doc)
    assert (record["event_name"], record["event_status"]) == (event_name, event_status)


@pytest.mark.parametrize(
    "name, category",
    [
        ("Instance:StateChange", "lifecycle"),
        ("Instance:InstanceExpiration.Stop", "lifecycle"),
        ("Instance:AccountUnbalanced.Delete:Scheduled", "lifecycle"),
        ("Instance:PreemptibleInstanceInterruption", "interruption"),
        ("Instance:SystemMaintenance.Reboot:Scheduled", "maintenance"),
        ("Instance:SystemMaintenance.RebootAndIsolateErrorDisk:Inquiring", "maintenance"),
        ("Instance:LiveMigrationAcrossDDH", "maintenance"),
        ("Instance:SystemFailure.Redeploy:Canceled", "failure"),
        ("Instance:InstanceFailure.Reboot:Executed", "failure"),
        ("Instance:Security.TpmAlert:Executing", "failure"),
        ("Instance:PerformanceModeChange", "performance"),
        ("Instance:BurstablePerformanceRestricted", "performance"),
        ("Instance:SurplusCreditIncurCharge", "performance"),
        ("Disk:Stalled:Executing", "disk"),
        ("Disk:DiskOperationCompleted", "disk"),
        ("Snapshot:CreateSnapshotCompleted", "snapshot"),
        ("NetworkInterface:NetworkInterfaceOperateCompleted", "network"),
        ("Instance:VSwitchChanged", "network"),
        ("Instance:AutoReactivateCompleted", "other"),
        ("CloudAssistant:FirstHeartbeat", "other"),
        ("Instance:StateChangeX", "other"),
        ("Instance:SystemMaintenance", "other"),
        ("", "other"),
    ],
)
def test_category(name, category):
    assert norm(a_doc(name=name, content={}))["category"] == category


def test_category_for_eventbridge_type():
    assert norm(c_doc(type="ecs:Instance:PreemptibleInstanceInterruption", data={}))["category"] == "interruption"


@pytest.mark.parametrize(
    "state_raw, state",
    [
        ("Pending", "Pending"),
        ("Created", "Pending"),
        ("Starting", "Starting"),
        ("Running", "Running"),
        ("Stopping", "Stopping"),
        ("Stopped", "Stopped"),
        ("Deleted", "Deleted"),
        ("Ru***ng", ""),
        ("running", ""),
        ("", ""),
    ],
)
def test_state(state_raw, state):
    record = norm(a_doc(content={"resourceId": "i-1", "state": state_raw}))
    assert (record["state"], record["state_raw"]) == (state, state_raw)


@pytest.mark.parametrize("content", [{"resourceId": "i-1"}, {"state": None}, {"state": ["Running"]}])
def test_state_missing_or_not_text(content):
    record = norm(a_doc(content=content))
    assert (record["state"], record["state_raw"]) == ("", "")


def test_state_is_for_instance_state_change_only():
    record = norm(a_doc(name="Disk:StateChange", content={"state": "Running"}))
    assert (record["state"], record["state_raw"]) == ("", "")


# --- section 7: rules 5-6, account, region, names ----------------------------------------------------


@pytest.mark.parametrize(
    "content, arn, instance_id",
    [
        ({"instanceId": "i-a", "ecsInstanceId": "i-b", "resourceId": "i-c"}, ARN, "i-a"),
        ({"ecsInstanceId": "i-b", "resourceId": "i-c"}, ARN, "i-b"),
        ({"resourceId": "i-c"}, ARN, "i-c"),
        ({"resourceId": "d-disk"}, ARN, "i-arn"),
        ({}, ARN, "i-arn"),
        ({}, "acs:ecs:cn-hangzhou:1827364554637281:disk/d-1", ""),
        ({"instanceId": "i-v"}, "acs:ecs:cn-hangzhou:1827364554637281:eni/eni-1", "i-v"),
        ({"instanceId": "", "resourceId": "i-c"}, ARN, "i-c"),
        ({"instanceId": None}, ARN, "i-arn"),
        ({}, "not an arn", ""),
        ({}, DROP, ""),
    ],
)
def test_instance_id(content, arn, instance_id):
    assert norm(a_doc(content=content, resourceId=arn))["instance_id"] == instance_id


@pytest.mark.parametrize(
    "arn, resource_type, resource_id",
    [
        (ARN, "instance", "i-arn"),
        ("acs:ecs:cn-hangzhou:1827364554637281:disk/d-1", "disk", "d-1"),
        ("acs:ecs:cn-hangzhou:1827364554637281:snapshot/s-1", "snapshot", "s-1"),
        ("acs:ecs:cn-hangzhou:1827364554637281:eni/eni-1", "network-interface", "eni-1"),
        ("acs:ecs:cn-hangzhou:1827364554637281:image/m-1", "other", "m-1"),
        ("acs:ecs:cn-hangzhou:1827****7281:instance/<resource-id>", "instance", "<resource-id>"),
    ],
)
def test_resource_from_arn(arn, resource_type, resource_id):
    record = norm(a_doc(resourceId=arn, content={}))
    assert (record["resource_type"], record["resource_id"], record["resource_arn"]) == (resource_type, resource_id, arn)


@pytest.mark.parametrize(
    "event_type, data, resource_type, resource_id",
    [
        ("ecs:Instance:StateChange", {"resourceId": "i-1"}, "instance", "i-1"),
        ("ecs:Instance:PreemptibleInstanceInterruption", {"instanceId": "i-2"}, "instance", "i-2"),
        ("ecs:Disk:Stalled", {"diskId": "d-1", "ecsInstanceId": "i-3"}, "disk", "d-1"),
        ("ecs:Snapshot:CreateSnapshotCompleted", {"snapshotId": "s-1", "diskId": "d-1"}, "snapshot", "s-1"),
        ("ecs:NetworkInterface:NetworkInterfaceOperateCompleted", {"eniId": "eni-1", "instanceId": "i-4"},
         "network-interface", "eni-1"),
        ("ecs:CloudAssistant:FirstHeartbeat", {"instanceId": "i-5"}, "other", ""),
        ("ecs:Disk:Stalled", {}, "disk", ""),
    ],
)
def test_resource_without_arn_from_name_and_content(event_type, data, resource_type, resource_id):
    record = norm(c_doc(type=event_type, data=data))
    assert (record["resource_type"], record["resource_id"], record["resource_arn"]) == (resource_type, resource_id, "")


@pytest.mark.parametrize(
    "doc, account_id, region_id",
    [
        pytest.param(a_doc(), "1827364554637281", "cn-hangzhou", id="A-envelope"),
        pytest.param(a_doc(userId="111", regionId="eu-west-1"), "111", "eu-west-1", id="A-envelope-wins"),
        pytest.param(a_doc(userId=DROP, regionId=DROP), "1827364554637281", "cn-hangzhou", id="A-from-arn"),
        pytest.param(a_doc(userId=DROP, regionId=DROP, resourceId=DROP), "", "", id="A-nothing"),
        pytest.param(b_doc(), "1827364554637281", "cn-beijing", id="B-alert-userId-sysEventMeta-region"),
        pytest.param(b_doc({"userId": DROP}, {"regionId": DROP}), "1827364554637281", "cn-hangzhou", id="B-from-arn"),
        pytest.param(c_doc(), "1827364554637281", "cn-zhangjiakou", id="C"),
    ],
)
def test_account_and_region(doc, account_id, region_id):
    record = norm(doc)
    assert (record["account_id"], record["region_id"]) == (account_id, region_id)


def test_b_arn_falls_back_to_sys_event_meta():
    record = norm(b_doc({"arn": DROP}, {"resourceId": "acs:ecs:cn-beijing:1:disk/d-9"}))
    assert (record["resource_arn"], record["resource_type"], record["resource_id"]) == (
        "acs:ecs:cn-beijing:1:disk/d-9", "disk", "d-9")


@pytest.mark.parametrize(
    "doc, product",
    [
        pytest.param(a_doc(), "ECS", id="A"),
        pytest.param(b_doc(), "ECS", id="B-alert"),
        pytest.param(b_doc({"product": DROP}, {"product": "EBS"}), "EBS", id="B-sysEventMeta"),
        pytest.param(c_doc(), "ECS", id="C-from-source"),
    ],
)
def test_product(doc, product):
    assert norm(doc)["product"] == product


@pytest.mark.parametrize(
    "doc, instance_name",
    [
        pytest.param(a_doc(instanceName="envelope", content={"instanceName": "own"}), "own", id="content-wins"),
        pytest.param(a_doc(instanceName="envelope", content={}), "envelope", id="A-envelope-for-instance"),
        pytest.param(
            a_doc(name="Disk:Stalled:Executing", resourceId="acs:ecs:r:1:disk/d-1", instanceName="disk-name",
                  content={"diskId": "d-1", "ecsInstanceId": "i-1", "ecsInstanceName": "attached"}),
            "attached", id="disk-ecsInstanceName",
        ),
        pytest.param(
            a_doc(name="Disk:DiskOperationCompleted", resourceId="acs:ecs:r:1:disk/d-1", instanceName="disk-name",
                  content={"diskId": "d-1"}),
            "", id="disk-envelope-name-is-not-an-instance-name",
        ),
        pytest.param(b_doc(), "meta-name", id="B-sysEventMeta"),
        pytest.param(b_doc({"eventContentMap": {"instanceName": "own"}}), "own", id="B-content-wins"),
        pytest.param(c_doc(data={"instanceName": "own"}), "own", id="C-content"),
    ],
)
def test_instance_name(doc, instance_name):
    assert norm(doc)["instance_name"] == instance_name


def test_instance_details_from_content():
    content = {"resourceId": "i-1", "state": "Running", "instanceType": "ecs.g7.xlarge",
               "privateIpAddress": "10.0.0.1", "publicIpAddress": "198.51.100.1"}
    record = norm(a_doc(content=content))
    assert (record["instance_type"], record["private_ip"], record["public_ip"]) == (
        "ecs.g7.xlarge", "10.0.0.1", "198.51.100.1")


@pytest.mark.parametrize(
    "doc, level",
    [
        pytest.param(a_doc(level="CRITICAL"), "CRITICAL", id="A"),
        pytest.param(b_doc(), "WARN", id="B-sysEventMeta"),
        pytest.param(b_doc(sys_meta={"level": DROP}), "CRITICAL", id="B-alert-severity"),
        pytest.param(c_doc(), "", id="C-none"),
        pytest.param(c_doc(data={"level": "WARN", "eventLevel": "INFO"}), "WARN", id="C-data-level"),
        pytest.param(c_doc(data={"eventLevel": "INFO"}), "INFO", id="C-data-eventLevel"),
    ],
)
def test_level(doc, level):
    assert norm(doc)["level"] == level


def test_action_from_content():
    doc = a_doc(name="Instance:PreemptibleInstanceInterruption", content={"instanceId": "i-1", "action": "delete"})
    assert norm(doc)["action"] == "delete"
    assert norm(a_doc())["action"] == ""


# --- section 7: rules 7-9 ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "doc, event_time",
    [
        pytest.param(a_doc(), "2025-06-14T01:15:02.114Z", id="A-eventTime"),
        pytest.param(a_doc(eventTime=DROP, time="1765158305000"), "2025-12-08T01:45:05.000Z", id="A-api-time"),
        pytest.param(a_doc(eventTime=DROP), RECEIVED_TIME, id="A-none"),
        pytest.param(b_doc(), "2025-12-08T01:45:05.482Z", id="B-sysEventMeta"),
        pytest.param(b_doc({"timestamp": 1765158306000}, {"eventTime": DROP}), "2025-12-08T01:45:06.000Z",
                     id="B-alert-timestamp"),
        pytest.param(b_doc({"timestamp": DROP}, {"eventTime": DROP}, time="1765158307000"),
                     "2025-12-08T01:45:07.000Z", id="B-outer-time-digit-string"),
        pytest.param(b_doc({"timestamp": DROP, "meta": DROP}, time=DROP), RECEIVED_TIME, id="B-none"),
        pytest.param(c_doc(), "2025-12-09T23:30:18.000Z", id="C-time"),
        pytest.param(c_doc(time=DROP), RECEIVED_TIME, id="C-never-aliyunpublishtime"),
        pytest.param(
            a_doc(eventTime=DROP, content={"publishTime": "2025-09-01T06:00:00Z",
                                           "executeStartTime": "2025-09-03T18:00:04Z"}),
            RECEIVED_TIME, id="A-never-publishTime-or-executeStartTime",
        ),
    ],
)
def test_event_time(doc, event_time):
    record = norm(doc)
    assert record["event_time"] == event_time
    assert format_time_ms(int(record["event_time_ms"])) == event_time


def test_unparseable_time_uses_received_time_and_keeps_the_value_in_detail():
    doc = c_doc(time="half past nine", data={"resourceId": "i-1", "startTime": "not a time"})
    record = norm(doc)
    assert (record["event_time"], record["event_time_ms"]) == (RECEIVED_TIME, str(RECEIVED_MS))
    assert orjson.loads(record["detail"])["startTime"] == "not a time"
    a_record = norm(a_doc(eventTime="2025-13-45T99:99:99Z"))
    assert a_record["event_time"] == RECEIVED_TIME


@pytest.mark.parametrize(
    "doc, not_before",
    [
        pytest.param(a_doc(name="Instance:SystemMaintenance.Reboot:Scheduled",
                           content={"notBefore": "2025-09-03T18:00:00Z"}), "2025-09-03T18:00:00.000Z", id="notBefore"),
        pytest.param(a_doc(name="Instance:PreemptibleInstanceInterruption", content={"instanceId": "i-1"}),
                     "2025-06-14T01:20:02.114Z", id="interruption-plus-5-min"),
        pytest.param(a_doc(name="Instance:PreemptibleInstanceInterruption", eventTime=DROP, content={}),
                     "2026-01-01T12:05:00.005Z", id="interruption-without-time-from-received"),
        pytest.param(c_doc(type="ecs:Instance:PreemptibleInstanceInterruption", time="2025-08-03T02:51:07.412Z",
                           data={}), "2025-08-03T02:56:07.412Z", id="C-interruption"),
        pytest.param(a_doc(name="Instance:SystemMaintenance.Reboot:Scheduled", content={"notBefore": "soon"}),
                     "", id="unparseable-notBefore"),
        pytest.param(a_doc(), "", id="none"),
    ],
)
def test_not_before(doc, not_before):
    assert norm(doc)["not_before"] == not_before


def canonical_uid(content: dict) -> str:
    """events.md section 7 rule 9, written out independently of the code under test."""
    text = json.dumps(content, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:32]


# DESIGN "The event schema": the envelope's id, always lower-cased (event ids are case-insensitive).
@pytest.mark.parametrize(
    "doc, event_uid",
    [
        pytest.param(a_doc(), "event-a", id="A-id"),
        pytest.param(a_doc(id=42), "42", id="A-numeric-id"),
        pytest.param(b_doc(), "dedup", id="B-dedupId"),
        pytest.param(b_doc({"dedupId": DROP}), "trace", id="B-traceId"),
        pytest.param(b_doc({"dedupId": DROP, "traceId": ""}), "meta-id", id="B-sysEventMeta-id"),
        pytest.param(c_doc(), "acs.ecs:event-c", id="C-source-and-id"),
        pytest.param(c_doc(source="ACS.ECS", id="Event-C"), "acs.ecs:event-c", id="C-mixed-case"),
        pytest.param(a_doc(id=DROP), canonical_uid({"resourceId": "i-content", "state": "Running"}), id="A-hash"),
        pytest.param(b_doc({"dedupId": DROP, "traceId": DROP}, {"id": DROP}),
                     canonical_uid({"resourceId": "i-content", "state": "Stopped"}), id="B-hash"),
        pytest.param(c_doc(id=DROP), canonical_uid({"resourceId": "i-content", "state": "Stopped"}), id="C-hash"),
        pytest.param(a_doc(id=DROP, content={"name": "数据盘", "z": 1, "a": [1.5, None]}),
                     canonical_uid({"name": "数据盘", "z": 1, "a": [1.5, None]}), id="hash-non-ascii"),
    ],
)
def test_event_uid(doc, event_uid):
    assert norm(doc)["event_uid"] == event_uid


@pytest.mark.parametrize("make", [lambda uid: a_doc(id=uid), lambda uid: b_doc({"dedupId": uid}),
                                  lambda uid: c_doc(id=uid)], ids=["A", "B", "C"])
def test_event_uid_is_case_insensitive(make):
    """Two deliveries of one event whose id differs only in case are one event (one uid)."""
    assert norm(make("7C9E6679-7425-40DE"))["event_uid"] == norm(make("7c9e6679-7425-40De"))["event_uid"]


def test_hash_uid_ignores_formatting_and_received_time():
    first = b'{"name":"Instance:StateChange","product":"ECS","content":{"resourceId":"i-1","state":"Ru***ng"}}'
    second = b'{\n  "content": {"state": "Ru***ng",  "resourceId": "i-1"},\n  "product": "ECS",\n  "name": "Instance:StateChange"\n}'
    uid_first = events_from_bytes(first, received_ms=1)[0]["event_uid"]
    uid_second = events_from_bytes(second, received_ms=2)[0]["event_uid"]
    assert uid_first == uid_second == canonical_uid({"resourceId": "i-1", "state": "Ru***ng"})
    other = events_from_bytes(first.replace(b"i-1", b"i-2"), received_ms=1)[0]["event_uid"]
    assert other != uid_first


# --- record shape, detail, raw -----------------------------------------------------------------------


@pytest.mark.parametrize("doc", [a_doc(), b_doc(), c_doc(), a_doc(id=DROP, eventTime=DROP, content=DROP)])
def test_record_has_every_field_as_text(doc):
    record = norm(doc, raw="the raw text")
    assert list(record) == list(EVENT_FIELDS)
    assert all(isinstance(value, str) for value in record.values())
    assert record["schema"] == "1"
    assert record["received_time"] == RECEIVED_TIME
    assert record["raw"] == "the raw text"


@pytest.mark.parametrize(
    "doc, content",
    [
        pytest.param(a_doc(content={"b": 1, "a": "数据"}), {"b": 1, "a": "数据"}, id="A"),
        pytest.param(a_doc(content=DROP), {}, id="A-without-content"),
        pytest.param(b_doc(), {"resourceId": "i-content", "state": "Stopped"}, id="B-eventContentMap"),
        pytest.param(b_doc({"eventContentMap": DROP, "eventRawContent": {"x": 1}}), {"x": 1}, id="B-raw-content"),
        pytest.param(b_doc({"eventContentMap": {}, "eventRawContent": {"x": 1}}), {"x": 1}, id="B-empty-map"),
        pytest.param(b_doc({"eventRawContent": {}}), {"resourceId": "i-content", "state": "Stopped"},
                     id="B-empty-raw-content"),
        pytest.param(b_doc({"eventContentMap": DROP, "eventRawContent": "{broken"}), {}, id="B-no-content"),
        pytest.param(c_doc(data={"instanceId": "i-1"}), {"instanceId": "i-1"}, id="C-data"),
    ],
)
def test_detail_is_the_compact_content(doc, content):
    detail = norm(doc)["detail"]
    assert orjson.loads(detail) == content
    assert detail == json.dumps(content, separators=(",", ":"), ensure_ascii=False)


def test_b_raw_content_string_is_used_after_decoding():
    message = orjson.dumps(b_doc({"eventContentMap": DROP, "eventRawContent": '{"instanceId":"i-9"}'}))
    record = events_from_bytes(message, received_ms=RECEIVED_MS)[0]
    assert (record["instance_id"], record["detail"]) == ("i-9", '{"instanceId":"i-9"}')


def test_a_content_as_json_string_is_used_after_decoding():
    message = orjson.dumps(a_doc(content='{"resourceId":"i-7","state":"Stopped"}'))
    record = events_from_bytes(message, received_ms=RECEIVED_MS)[0]
    assert (record["instance_id"], record["state"]) == ("i-7", "Stopped")


def test_single_event_raw_is_the_message_text():
    message = b'\xef\xbb\xbf{"name": "Instance:StateChange", "content": {"state": "Running"}}\n'
    [record] = events_from_bytes(message, received_ms=RECEIVED_MS)
    assert record["raw"] == '{"name": "Instance:StateChange", "content": {"state": "Running"}}'


@pytest.mark.parametrize(
    "message",
    [
        b'[{"name": "x:A", "content": {"k": 1}},\n {"name": "x:B", "content": {"k": 2}}]',
        b'{"name": "x:A", "content": {"k": 1}}\n{"name": "x:B", "content": {"k": 2}}\n',
    ],
    ids=["array", "ndjson"],
)
def test_several_events_each_get_their_own_compact_raw(message):
    records = events_from_bytes(message, received_ms=RECEIVED_MS)
    assert [r["raw"] for r in records] == ['{"name":"x:A","content":{"k":1}}', '{"name":"x:B","content":{"k":2}}']
    assert [r["event_name"] for r in records] == ["x:A", "x:B"]


def test_one_non_event_rejects_the_whole_message():
    message = b'[{"name": "x:A", "content": {}}, {"ruleId": "metric"}]'
    with pytest.raises(Rejected) as caught:
        events_from_bytes(message, received_ms=RECEIVED_MS)
    assert caught.value.reason == NOT_AN_EVENT


def test_events_from_bytes_passes_content_type_and_limit():
    form = b"alert=%7B%22eventName%22%3A%22Instance%3AStateChange%22%7D"
    [record] = events_from_bytes(form, received_ms=RECEIVED_MS, content_type="application/x-www-form-urlencoded")
    assert (record["envelope"], record["event_name"]) == ("cms-subscription", "Instance:StateChange")
    with pytest.raises(Rejected) as caught:
        events_from_bytes(form, received_ms=RECEIVED_MS, max_bytes=10)
    assert caught.value.reason == TOO_LARGE


# --- section 8: time formats -------------------------------------------------------------------------


@pytest.mark.parametrize(
    "value, expected",
    [
        pytest.param("20250614T091502.114+0800", utc_ms(2025, 6, 14, 1, 15, 2, 114), id="basic-fraction"),
        pytest.param("20250614T091502+0800", utc_ms(2025, 6, 14, 1, 15, 2), id="basic-no-fraction"),
        pytest.param("20250614T091502.114", utc_ms(2025, 6, 14, 9, 15, 2, 114), id="basic-no-zone-utc"),
        pytest.param("20250614T091502.114Z", utc_ms(2025, 6, 14, 9, 15, 2, 114), id="basic-z"),
        pytest.param("2025-09-03T18:00:00Z", utc_ms(2025, 9, 3, 18), id="rfc3339-z"),
        pytest.param("2025-12-10T07:30:18+08:00", utc_ms(2025, 12, 9, 23, 30, 18), id="rfc3339-offset"),
        pytest.param("2025-12-11T09:00:00+01:00", utc_ms(2025, 12, 11, 8), id="rfc3339-offset-plus-one"),
        pytest.param("2025-12-10T20:00:00-05:30", utc_ms(2025, 12, 11, 1, 30), id="rfc3339-negative-offset"),
        pytest.param("2025-08-03T02:51:07.412Z", utc_ms(2025, 8, 3, 2, 51, 7, 412), id="rfc3339-fraction"),
        pytest.param("2025-08-03T02:51:07.4Z", utc_ms(2025, 8, 3, 2, 51, 7, 400), id="one-digit-fraction"),
        pytest.param("2025-08-03T02:51:07.412999999Z", utc_ms(2025, 8, 3, 2, 51, 7, 412), id="truncate-sub-ms"),
        pytest.param("2025-11-06T06:00Z", utc_ms(2025, 11, 6, 6), id="minute-precision"),
        pytest.param("2025-11-06T06:00", utc_ms(2025, 11, 6, 6), id="minute-precision-no-zone"),
        pytest.param("2025-11-06T06:00:01", utc_ms(2025, 11, 6, 6, 0, 1), id="no-zone-utc"),
        pytest.param("2020-11-19T21:04:42.179PRC", utc_ms(2020, 11, 19, 13, 4, 42, 179), id="prc"),
        pytest.param(" 2025-09-03T18:00:00Z ", utc_ms(2025, 9, 3, 18), id="surrounding-space"),
        pytest.param(1765158305000, 1765158305000, id="epoch-ms-number"),
        pytest.param("1765158305000", 1765158305000, id="epoch-ms-string"),
        pytest.param(1765158305000.9, 1765158305000, id="epoch-ms-float-truncated"),
        pytest.param(1765158305, 1765158305000, id="epoch-seconds-number"),
        pytest.param("1765158305", 1765158305000, id="epoch-seconds-string"),
        pytest.param(1765158305.936, 1765158305936, id="epoch-seconds-float"),
        pytest.param(99_999_999_999, 99_999_999_999_000, id="just-below-1e11-is-seconds"),
        pytest.param(100_000_000_000, 100_000_000_000, id="1e11-is-ms"),
        pytest.param(0, 0, id="epoch-zero"),
    ],
)
def test_parse_time_ms(value, expected):
    assert parse_time_ms(value) == expected


@pytest.mark.parametrize(
    "value",
    [
        "", "yesterday", "2025-06-14", "2025-13-01T00:00:00Z", "2025-02-30T00:00:00Z", "2025-06-14T25:00:00Z",
        "2025-06-14T09:15:02+25:00", "2025-06-14T09:15:02+08:75", "2025-06-14T09:15:02 UTC",
        "2025-06-14T09:15:02.Z", "１７６５１５８３０５０００", "-1765158305000", "1e12", "9" * 5000,
        None, True, False, [], {}, float("nan"), float("inf"), -1, 10**30, 1e300,
    ],
)
def test_parse_time_ms_garbage_is_none(value):
    assert parse_time_ms(value) is None


# --- robustness: no input raises anything but Rejected -----------------------------------------------

REASONS = {NOT_JSON, BAD_ENCODING, NOT_AN_EVENT, TOO_LARGE}
SAMPLES = [orjson.dumps(doc) for doc in (a_doc(), b_doc(), c_doc())] + [
    orjson.dumps(b_doc() | {"alert": orjson.dumps(b_doc()["alert"]).decode()}),
]


def assert_events_or_rejected(data: bytes) -> None:
    try:
        records = events_from_bytes(data, received_ms=RECEIVED_MS)
    except Rejected as exc:
        assert exc.reason in REASONS
        return
    for record in records:
        assert list(record) == list(EVENT_FIELDS)
        assert all(isinstance(value, str) for value in record.values())


def _random_inputs() -> list[bytes]:
    rng = random.Random(20250614)
    inputs = [rng.randbytes(rng.randrange(0, 200)) for _ in range(150)]
    for alphabet in (b'{}[]":,0123456789 abcdeflnrstu\n', b"ABCDEFabcdef0123456789+/=\n"):
        inputs += [bytes(rng.choice(alphabet) for _ in range(rng.randrange(1, 80))) for _ in range(100)]
    for sample in SAMPLES:
        for _ in range(60):
            mutated = bytearray(sample)
            for _ in range(rng.randrange(1, 4)):
                mutated[rng.randrange(len(mutated))] = rng.randrange(256)
            inputs.append(bytes(mutated[: rng.randrange(1, len(mutated) + 1)]))
    return inputs


@pytest.mark.parametrize("data", _random_inputs())
def test_random_and_mutated_bytes(data):
    assert_events_or_rejected(data)


def _nested(depth: int) -> dict:
    value: object = "leaf"
    for _ in range(depth):
        value = {"k": value}
    return value


@pytest.mark.parametrize(
    "data",
    [
        pytest.param(b"[" * 5000 + b"]" * 5000, id="deep-array"),
        pytest.param(b'{"a":' * 2000 + b"1" + b"}" * 2000, id="deep-object"),
        pytest.param(orjson.dumps(a_doc(content=_nested(200))), id="deep-content-within-limits"),
        pytest.param(b'{"name":"x","content":' + b'{"k":' * 600 + b"1" + b"}" * 601, id="content-too-deep-to-write"),
        pytest.param(b'[{"name":"x","content":{},"deep":' + b"[" * 600 + b"]" * 600 + b"}, {}]", id="deep-element"),
        pytest.param(b'{"name":"x","content":{"notBefore":1e308},"eventTime":"1e400"}', id="huge-float-in-content"),
        pytest.param(b'{"name":"x","content":{},"eventTime":' + b"1" * 400 + b"}", id="huge-integer-literal"),
        pytest.param(b'{"name":"x","content":{"a":1e400}}', id="float-overflow"),
        pytest.param(orjson.dumps(c_doc(time=1e300, id=10**18)), id="huge-numbers-as-fields"),
        pytest.param(orjson.dumps(b_doc({"timestamp": "9" * 5000}, {"eventTime": 10**18}, time=-5)),
                     id="huge-and-negative-times"),
        pytest.param(orjson.dumps({key: None for key in a_doc()}), id="A-all-null"),
        pytest.param(orjson.dumps(a_doc(content={k: None for k in ("instanceId", "state", "notBefore", "action")},
                                        id=None, level=None, userId=None, regionId=None, resourceId=None, product=None)),
                     id="A-null-fields"),
        pytest.param(orjson.dumps({"alert": {k: None for k in b_doc()["alert"]} | {"eventName": "x"}}),
                     id="B-all-null"),
        pytest.param(orjson.dumps({k: None for k in c_doc()} | {"type": "t", "source": "s", "data": {}}),
                     id="C-all-null"),
        pytest.param(orjson.dumps(b_doc({"meta": [], "eventContentMap": [], "eventRawContent": [1]})),
                     id="B-lists-for-objects"),
        pytest.param(orjson.dumps(b_doc({"meta": {"sysEventMeta": "x"}})), id="B-string-sysEventMeta"),
        pytest.param(orjson.dumps(a_doc(content={"instanceId": ["i-1"], "state": {"x": 1}, "notBefore": [1]})),
                     id="A-lists-in-content"),
        pytest.param(orjson.dumps([a_doc(), [a_doc()]]), id="array-with-a-list"),
        pytest.param(orjson.dumps(a_doc(name="", content={})), id="empty-name"),
        pytest.param(orjson.dumps(a_doc(resourceId="acs:::/")), id="empty-arn-parts"),
        pytest.param("{\"name\":\"\u0000\U0001f600\",\"content\":{\"\\u0000\":\"\\ud83d\\ude00\"}}".encode(),
                     id="nul-and-astral"),
    ],
)
def test_hostile_inputs(data):
    assert_events_or_rejected(data)


def test_content_too_deep_to_serialize_is_rejected_as_not_an_event():
    with pytest.raises(Rejected) as caught:
        norm(a_doc(content=_nested(600)))
    assert caught.value.reason == NOT_AN_EVENT


@pytest.mark.parametrize("doc", [{"name": "x", "content": {1: "int key"}}, {"name": "x", "content": {"s": {1, 2}}}])
def test_objects_that_are_not_json_are_rejected(doc):
    with pytest.raises(Rejected) as caught:
        norm(doc)
    assert caught.value.reason == NOT_AN_EVENT


def test_a_dict_with_a_lone_surrogate_is_rejected_as_bad_encoding_not_stored():
    # A dict built in Python (not from bytes decode() accepted) can hold text no store can encode.
    base = {"name": "Instance:StateChange", "regionId": "cn-hangzhou", "content": {"state": "Running"}}
    for doc in (dict(base, regionId="cn-\ud800"), dict(base, content={"instanceId": "i-\udc00"}),
                dict(base, content={"\ud800": 1})):
        with pytest.raises(Rejected) as e:
            normalize(doc, raw="{}", received_ms=1_700_000_000_000)
        assert e.value.reason == "bad-encoding", doc
    with pytest.raises(Rejected) as e:
        normalize(base, raw="\ud800", received_ms=1_700_000_000_000)
    assert e.value.reason == "bad-encoding" and "`raw`" in e.value.error


def test_an_integer_over_4300_digits_is_rejected_not_a_value_error():
    doc = {"name": "Instance:StateChange", "id": 10**5000, "content": {"state": "Running"}}
    with pytest.raises(Rejected) as e:
        normalize(doc, raw="{}", received_ms=1_700_000_000_000)
    assert e.value.reason == "not-an-event"
    doc = {"name": "Instance:StateChange", "content": {"instanceId": 10**5000}}
    with pytest.raises(Rejected):
        normalize(doc, raw="{}", received_ms=1_700_000_000_000)
