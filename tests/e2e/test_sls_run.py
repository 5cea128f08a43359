"""SLS as the store, end to end with the CLI: import the content, run, search and lifecycle through GetLogs."""
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time

import pytest

from tests.conftest import REPO
from tests.emulators.sls import SlsEmulator

AK, SK = "LTAIslsrunKEY0004", "sls-run-secret-Qw2Er4Ty6"
PROJECT = "ecs-audit"


@pytest.fixture
def sls():
    with SlsEmulator(credentials={AK: SK}) as emulator:
        emulator.create_project(PROJECT)
        yield emulator


def env():
    return dict(os.environ, ALIBABA_CLOUD_ACCESS_KEY_ID=AK, ALIBABA_CLOUD_ACCESS_KEY_SECRET=SK,
                SHIPPER_HOST="shipper.example.com", SHIPPER_WEBHOOK_TOKEN="hook-token-xyz",
                OPERATOR_WEBHOOK_URL="https://ops.example.com/hook")


def shipper(*args, cwd, timeout=120):
    return subprocess.run([sys.executable, "-m", "shipper", *args], cwd=cwd, env=env(), capture_output=True,
                          timeout=timeout)


def test_import_run_search_and_lifecycle_against_sls(sls, tmp_path):
    (tmp_path / "config.toml").write_text(f'''
[shipper]
data_dir = "./data"
[[sources]]
type = "simulate"
instances = 10
seed = 4
[[sinks]]
type = "sls"
endpoint = "{sls.endpoint}"
project = "{PROJECT}"
[batch]
linger_ms = 100
''')
    dry = shipper("dashboards", "import", "--project", PROJECT, "--dir", str(REPO / "dashboards"), "--dry-run", cwd=tmp_path)
    assert dry.returncode == 0, dry.stderr
    assert sls.entities(PROJECT, "logstores") == {} or not sls.entities(PROJECT, "logstores")
    first = shipper("dashboards", "import", "--project", PROJECT, "--dir", str(REPO / "dashboards"), cwd=tmp_path)
    assert first.returncode == 0, first.stderr
    second = shipper("dashboards", "import", "--project", PROJECT, "--dir", str(REPO / "dashboards"), cwd=tmp_path)
    assert second.returncode == 0 and b"changed 0 of" in second.stderr
    assert b"hook-token-xyz" not in first.stdout + first.stderr + second.stdout + second.stderr
    assert set(sls.entities(PROJECT, "logstores")) >= {"ecs-events", "shipper-actions", "shipper-deadletter"}

    check = shipper("check", cwd=tmp_path)
    assert b"ok   sls sink: ecs-audit/ecs-events" in check.stdout, check.stdout

    proc = subprocess.Popen([sys.executable, "-m", "shipper", "run"], cwd=tmp_path, env=env(),
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 60
        while len(sls.logs(PROJECT, "ecs-events")) < 40:
            assert time.monotonic() < deadline and proc.poll() is None
            time.sleep(0.1)
        proc.send_signal(signal.SIGTERM)
        output = proc.communicate(timeout=30)[0].decode()
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, output
    stored = sls.logs(PROJECT, "ecs-events")
    assert {log.topic for log in stored} >= {"lifecycle"}

    found = shipper("search", "state: Running", "--json", "--since", "2h", cwd=tmp_path)
    assert found.returncode == 0, found.stderr
    rows = [json.loads(line) for line in found.stdout.decode().splitlines()]
    assert rows and all(r["state"] == "Running" for r in rows)
    instance = rows[0]["instance_id"]
    life = shipper("lifecycle", instance, "--json", cwd=tmp_path)
    assert life.returncode == 0, life.stderr
    timeline = [json.loads(line) for line in life.stdout.decode().splitlines()[1:]]  # after the summary
    assert [e["event_time_ms"] for e in timeline] == sorted(e["event_time_ms"] for e in timeline)
    assert {e["instance_id"] for e in timeline} == {instance} and len({e["event_uid"] for e in timeline}) == len(timeline)


def test_validate_names_the_file_and_the_reason(tmp_path):
    content = tmp_path / "dashboards"
    shutil.copytree(REPO / "dashboards", content)
    search = next((content / "savedsearches").glob("*.json"))
    body = json.loads(search.read_text())
    text = json.dumps(body).replace("instance_id", "instance_idd", 1)
    search.write_text(text)
    result = subprocess.run([sys.executable, "-m", "shipper", "dashboards", "validate", "--dir", str(content)],
                            capture_output=True, timeout=60)
    assert result.returncode == 1
    assert re.search(rf"{re.escape(search.name)}.*instance_idd", result.stdout.decode()), result.stdout
