"""`shipper backfill` as an operator runs it, against the OpenAPI emulator's ActionTrail: an emulated 90-day
history becomes the creation and release list of every instance; a second run adds nothing; a run cut short
resumes where it stopped."""
import os
import random
import signal
import sqlite3
import subprocess
import sys
import time
import uuid

import orjson
import pytest

from shipper.cloud.actiontrail import windows
from shipper.times import format_rfc3339_seconds
from tests.emulators.openapi import OpenApiEmulator

KEY_ID, SECRET = "LTAIbackfillKEY0042", "backfill-secret-Mn8Bv6Cx4Z"
REGIONS = ("cn-hangzhou", "cn-shanghai")
DAY = 86400
ALICE = {"type": "ram-user", "userName": "alice", "principalId": "203456789012345678", "accountId": "1827364554637281"}
ROOT = {"type": "root-account", "userName": "root", "principalId": "1827364554637281", "accountId": "1827364554637281",
        "accessKeyId": "LTAI5tRootKeyExample01"}
SYSTEM = {"type": "system", "userName": "ecs.aliyuncs.com"}


def call(name, instance_id, at_s, region, actor, user_agent, error=""):
    """One ActionTrail ECS event as LookupEvents returns it (reference/actiontrail.md §1.5, §1.7)."""
    created = name == "RunInstances"
    event = {
        "eventId": str(uuid.UUID(int=random.getrandbits(128))).upper(), "eventVersion": 1, "eventName": name,
        "eventType": "ApiCall", "eventRW": "Write", "eventSource": f"ecs-{region}-share.aliyuncs.com",
        "eventTime": format_rfc3339_seconds(at_s), "acsRegion": region, "serviceName": "Ecs",
        "apiVersion": "2014-05-26", "requestId": str(uuid.UUID(int=random.getrandbits(128))).upper(),
        "sourceIpAddress": "ecs.aliyuncs.com" if actor is SYSTEM else "203.0.113.7", "userAgent": user_agent,
        "userIdentity": actor, "isGlobal": False,
        "requestParameters": {"InstanceType": "ecs.g7.large", "Amount": 1} if created else {"InstanceId": instance_id},
        "referencedResources": {"ACS::ECS::Instance": [instance_id]},
    }
    if created:
        event["responseElements"] = {"InstanceIdSets": {"InstanceIdSet": [instance_id]}}
    if error:
        event |= {"errorCode": error, "errorMessage": "The specified instance is in use."}
    return event


@pytest.fixture(scope="module")
def history():
    """40 instances over 90 days in two regions: created (console), some stopped, some released (CLI, or the
    system); one failed release that must not count. Returns (events, expected {id: (creator, releaser)}, alive)."""
    random.seed(7)
    now = int(time.time())
    events, expected, alive = [], {}, []
    for n in range(40):
        region = REGIONS[n % 2]
        instance_id = f"i-{'bp1' if region == 'cn-hangzhou' else 'uf6'}{n:017d}"
        created = now - random.randint(2 * DAY, 88 * DAY)
        events.append(call("RunInstances", instance_id, created, region, ALICE, "ecs.console.aliyun.com"))
        releaser = ""
        if n % 5 == 1:
            events.append(call("StopInstance", instance_id, created + 3600, region, ROOT, "Aliyun-CLI/3.0.200"))
        if n % 3 == 0:
            actor, name = (SYSTEM, "Release") if n % 2 else (ROOT, "DeleteInstance")
            if n == 3:
                events.append(call("DeleteInstance", instance_id, created + 60, region, ROOT, "Aliyun-CLI/3.0.200",
                                   error="IncorrectInstanceStatus"))
            events.append(call(name, instance_id, created + DAY, region, actor,
                               "ecs.aliyuncs.com" if actor is SYSTEM else "Aliyun-CLI/3.0.200"))
            releaser = actor["userName"]
        else:
            alive.append((instance_id, region))
        expected[instance_id] = ("alice", releaser)
    old = call("RunInstances", "i-bp1ancient0000000001", now - 100 * DAY, "cn-hangzhou", ALICE, "AliyunConsole")
    return events + [old], expected, alive


@pytest.fixture
def cloud(history):
    events, _, alive = history
    with OpenApiEmulator(credentials={KEY_ID: SECRET}) as api:
        for instance_id, region in alive:
            api.add_instance(instance_id, region_id=region)
        api.add_trail(events)
        yield api


def configure(tmp_path, api):
    (tmp_path / "config.toml").write_text(f'''
[shipper]
data_dir = "./data"
[[sinks]]
type = "sqlite"
[openapi]
regions = ["{REGIONS[0]}", "{REGIONS[1]}"]
ecs_endpoint = "{api.endpoint}"
actiontrail_endpoint = "{api.endpoint}"
''')


def backfill(tmp_path, *args):
    env = dict(os.environ, ALIBABA_CLOUD_ACCESS_KEY_ID=KEY_ID, ALIBABA_CLOUD_ACCESS_KEY_SECRET=SECRET)
    return subprocess.Popen([sys.executable, "-m", "shipper", "backfill", "--since", "90d", *args], cwd=tmp_path,
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def finished(process):
    out, err = process.communicate(timeout=60)
    assert process.returncode == 0, err
    return err


def calls_by_instance(tmp_path):
    conn = sqlite3.connect(tmp_path / "data" / "events.db")
    rows = conn.execute('SELECT instance_id, event_name, actor_name, error_code, envelope, category, detail '
                        'FROM "ecs-events"').fetchall()
    conn.close()
    return rows


def lists(rows):
    """instance -> (who created it, who released it), from the stored api-call records."""
    found = {}
    for instance_id, name, actor, error, *_ in rows:
        creator, releaser = found.get(instance_id, ("", ""))
        if name == "ActionTrail:RunInstances" and not error:
            creator = actor
        if name in ("ActionTrail:DeleteInstance", "ActionTrail:Release") and not error:
            releaser = actor
        found[instance_id] = (creator, releaser)
    return found


def test_backfill_reproduces_every_creation_and_release_and_a_second_run_adds_nothing(tmp_path, cloud, history):
    _, expected, _ = history
    configure(tmp_path, cloud)
    err = finished(backfill(tmp_path))
    assert "2 region(s)" in err and "40 instances" not in err
    rows = calls_by_instance(tmp_path)
    assert lists(rows) == expected                                  # the 100-day-old call is outside the window
    assert all((envelope, category) == ("actiontrail", "api-call") and orjson.loads(detail)["source"] == "backfill"
               for *_, envelope, category, detail in rows)
    assert not (tmp_path / "data" / "backfill.json").exists()
    finished(backfill(tmp_path))
    assert sorted(calls_by_instance(tmp_path)) == sorted(rows)


def test_a_backfill_cut_short_resumes_where_it_stopped(tmp_path, cloud, history):
    _, expected, _ = history
    configure(tmp_path, cloud)
    cloud.set_latency(1.0, "LookupEvents")                          # the second region comes seconds later
    process = backfill(tmp_path)
    checkpoint = tmp_path / "data" / "backfill.json"
    deadline = time.monotonic() + 30
    while not checkpoint.exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    process.send_signal(signal.SIGKILL)                             # no flush, no goodbye
    process.wait(timeout=10)
    done = orjson.loads(checkpoint.read_bytes())["done"]
    assert REGIONS[0] in done and REGIONS[1] not in done
    cloud.set_latency(0.0, "LookupEvents")
    asked = cloud.request_counts()["LookupEvents"]
    per_region = len(windows(int(time.time()) - 90 * DAY, int(time.time()) + 1))   # one call per 30-day window
    err = finished(backfill(tmp_path))
    assert "resumed" in err
    assert lists(calls_by_instance(tmp_path)) == expected
    assert cloud.request_counts()["LookupEvents"] - asked <= per_region  # the second region only
