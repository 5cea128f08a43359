"""The write-side CLI as an SRE meets it (issue 14): simulate --to (http refusals, MNS), --end, check's warn
and --json, dashboards import --dry-run without the placeholders, replay's new counts and dead letters, run
without sources, and the README's emulator commands run as written."""
import json
import os
import re
import shlex
import signal
import socket
import sqlite3
import subprocess
import sys
import time

import pytest

from shipper import events
from shipper.cloud import Credentials
from shipper.cloud.mns import check_queue
from shipper.config import BatchSettings
from shipper.pipeline import Pipeline
from shipper.sinks.sqlite import SqliteSink
from shipper.sources.http import HttpServer, HttpSourceSettings
from tests.conftest import REPO
from tests.emulators.mns import MnsEmulator
from tests.emulators.sls import SlsEmulator

KEY_ID, SECRET = "ops-key", "ops-secret-123"


def shipper(*args, cwd, env=None, timeout=60):
    return subprocess.run([sys.executable, "-m", "shipper", *args], cwd=cwd, capture_output=True, text=True,
                          timeout=timeout, env=env)


def clean_env(**extra):
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("ALIBABA_CLOUD_", "SHIPPER_")) and k != "OPERATOR_WEBHOOK_URL"}
    return {**env, **extra}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# --- simulate --to -------------------------------------------------------------------------------------

@pytest.fixture
def push_server(tmp_path, monkeypatch):
    monkeypatch.setenv("SHIPPER_WEBHOOK_TOKEN", "the-right-token")
    pipeline = Pipeline([SqliteSink(tmp_path / "e.db")], BatchSettings(linger_ms=20)).start()
    srv = HttpServer(HttpSourceSettings(listen="127.0.0.1:0"), pipeline).start()
    yield srv
    srv.stop()
    pipeline.close(5)
    srv.close()


def test_simulate_to_a_server_that_refuses_the_token_says_so(push_server, tmp_path):
    result = shipper("simulate", "--instances", "3", "--to", f"http://{push_server.address}/", cwd=tmp_path,
                     env=clean_env(SHIPPER_WEBHOOK_TOKEN="a-wrong-token"))
    assert result.returncode == 1
    assert "401: the token was refused; set SHIPPER_WEBHOOK_TOKEN to the server's token" in result.stderr
    assert "Broken pipe" not in result.stderr and "Traceback" not in result.stderr


def test_simulate_to_nothing_listening_says_so(tmp_path):
    result = shipper("simulate", "--instances", "1", "--to", f"http://127.0.0.1:{free_port()}/", cwd=tmp_path,
                     env=clean_env(SHIPPER_WEBHOOK_TOKEN="t"))
    assert result.returncode == 1 and "is `shipper run` listening there?" in result.stderr
    assert "Traceback" not in result.stderr


def test_simulate_to_mns_fills_the_queue_and_names_a_missing_one(tmp_path):
    with MnsEmulator(credentials={KEY_ID: SECRET}) as mns:
        mns.create_queue("ecs-cms-event")
        host = mns.endpoint.removeprefix("http://")
        env = clean_env(ALIBABA_CLOUD_ACCESS_KEY_ID=KEY_ID, ALIBABA_CLOUD_ACCESS_KEY_SECRET=SECRET)
        expected = shipper("simulate", "--instances", "4", "--end", "2026-06-14T12:00:00Z", cwd=tmp_path)
        bodies = expected.stdout.splitlines()
        sent = shipper("simulate", "--instances", "4", "--end", "2026-06-14T12:00:00Z",
                       "--to", f"mns+http://{host}/ecs-cms-event", cwd=tmp_path, env=env)
        assert sent.returncode == 0, sent.stderr
        assert f"published {len(bodies)} messages to queue ecs-cms-event" in sent.stderr
        assert [m.body for m in mns.messages("ecs-cms-event")] == bodies  # in order, as simulate prints them
        missing = shipper("simulate", "--instances", "1", "--to", f"mns+http://{host}/no-such-queue",
                          cwd=tmp_path, env=env)
        assert missing.returncode == 1 and "QueueNotExist" in missing.stderr
        assert "Traceback" not in missing.stderr and SECRET not in missing.stderr
    nokey = shipper("simulate", "--to", "mns://example.invalid/q", cwd=tmp_path, env=clean_env())
    assert nokey.returncode == 1 and "set ALIBABA_CLOUD_ACCESS_KEY_ID" in nokey.stderr


def test_simulate_with_seed_and_end_gives_the_same_bytes(tmp_path):
    args = ("simulate", "--instances", "5", "--seed", "3", "--end", "2026-06-14T12:00:00Z")
    first = shipper(*args, cwd=tmp_path)
    time.sleep(1.1)  # a window ending "now" would have moved
    second = shipper(*args, cwd=tmp_path)
    assert first.returncode == 0 and first.stdout and first.stdout == second.stdout
    bad = shipper("simulate", "--end", "tomorrow-ish", cwd=tmp_path)
    assert bad.returncode == 2 and "--end" in bad.stderr and "is not a time" in bad.stderr


# --- check ---------------------------------------------------------------------------------------------

def quick_start_config(tmp_path):
    """The shipped config.toml, on a free port so a running shipper does not matter."""
    text = (REPO / "config.toml").read_text().replace('listen = "127.0.0.1:8787"', f'listen = "127.0.0.1:{free_port()}"')
    (tmp_path / "config.toml").write_text(text)


def test_check_warns_like_run_when_the_token_is_unset_and_speaks_json(tmp_path):
    quick_start_config(tmp_path)
    result = shipper("check", cwd=tmp_path, env=clean_env())
    assert result.returncode == 0, result.stdout + result.stderr
    assert "warn http source: SHIPPER_WEBHOOK_TOKEN is not set" in result.stdout
    as_json = shipper("check", "--json", cwd=tmp_path, env=clean_env())
    findings = [json.loads(line) for line in as_json.stdout.splitlines()]
    assert as_json.returncode == 0 and len(findings) == len(result.stdout.splitlines())
    assert {"level": "warn", "text": next(f["text"] for f in findings if "SHIPPER_WEBHOOK_TOKEN" in f["text"])} in findings
    assert {f["level"] for f in findings} <= {"ok", "warn"}


# --- dashboards import --dry-run -------------------------------------------------------------------------

def test_dashboards_dry_run_plans_without_the_placeholders_and_names_them(tmp_path):
    with SlsEmulator(credentials={KEY_ID: SECRET}) as sls:
        sls.create_project("ops-demo")
        env = clean_env(ALIBABA_CLOUD_ACCESS_KEY_ID=KEY_ID, ALIBABA_CLOUD_ACCESS_KEY_SECRET=SECRET)
        args = ("dashboards", "import", "--project", "ops-demo", "--endpoint", sls.endpoint,
                "--dir", str(REPO / "dashboards"))
        dry = shipper(*args, "--dry-run", cwd=tmp_path, env=env)
        assert dry.returncode == 0, dry.stderr
        assert "create    index shipper-deadletter" in dry.stdout
        assert ("a real import needs OPERATOR_WEBHOOK_URL, SHIPPER_HOST, SHIPPER_WEBHOOK_TOKEN set "
                "(not set now: OPERATOR_WEBHOOK_URL, SHIPPER_HOST, SHIPPER_WEBHOOK_TOKEN") in dry.stderr
        real = shipper(*args, cwd=tmp_path, env=env)  # a real import still refuses, naming the variable
        assert real.returncode == 1 and "is not set" in real.stderr
        assert sls.entities("ops-demo", "logstores") == {}  # neither run wrote anything


# --- replay ----------------------------------------------------------------------------------------------

def test_replay_twice_says_what_was_new_and_stores_each_dead_letter_once(fixtures_dir, tmp_path):
    (tmp_path / "config.toml").write_text('[[sinks]]\ntype = "sqlite"\npath = "./data/events.db"\n')
    first = shipper("replay", str(fixtures_dir), cwd=tmp_path)
    assert first.returncode == 0, first.stderr
    conn = sqlite3.connect(tmp_path / "data" / "events.db")
    (stored,) = conn.execute(f'SELECT count(*) FROM "{events.EVENTS_TABLE}"').fetchone()
    assert stored == 28  # 29 events, one of them twice (the same event_uid)
    assert "29 events committed, 7 dead-lettered" in first.stderr and "new events: 28 in sqlite" in first.stderr
    again = shipper("replay", str(fixtures_dir), cwd=tmp_path)
    assert again.returncode == 0 and "new events: 0 in sqlite" in again.stderr
    uids = [row[0] for row in conn.execute(f'SELECT deadletter_uid FROM "{events.DEADLETTER_TABLE}"')]
    assert len(uids) == 7 and len(set(uids)) == 7 and all(uids)


# --- run without sources ------------------------------------------------------------------------------------

def test_run_without_sources_warns_at_start(tmp_path):
    (tmp_path / "config.toml").write_text('[api]\nlisten = "off"\n[[sinks]]\ntype = "sqlite"\npath = "./e.db"\n')
    log = tmp_path / "run.log"
    with open(log, "w") as stderr:
        process = subprocess.Popen([sys.executable, "-m", "shipper", "run"], cwd=tmp_path, stderr=stderr,
                                   env=clean_env())
    try:
        deadline = time.monotonic() + 30
        while "running:" not in log.read_text() and time.monotonic() < deadline:
            time.sleep(0.1)
    finally:
        process.send_signal(signal.SIGTERM)
        assert process.wait(30) == 0
    warnings = [line for line in log.read_text().splitlines() if "WARNING" in line]
    assert any("no [[sources]] in the config: no events will arrive" in line and 'type "mns" or "http"' in line
               for line in warnings), log.read_text()


# --- the README's emulator commands ---------------------------------------------------------------------------

def readme_emulator_commands() -> list[str]:
    """The Development section's command lines that start an emulator or fill one, as written."""
    development = (REPO / "README.md").read_text().split("## Development", 1)[1]
    blocks = [b.split("\n", 1)[1] for b in development.split("```")[1::2] if b.startswith("sh")]
    return [line for block in blocks for line in block.splitlines()
            if "tests.emulators." in line or "shipper simulate" in line]


def as_run_here(line: str, ports: dict[str, str]) -> tuple[dict, list[str]]:
    """A README line -> (env, argv) for this interpreter: `.venv/bin/` is the README's venv, which is this one;
    the ports are moved to free ones so that a running emulator on this machine does not matter."""
    for written, free in ports.items():
        line = line.replace(written, free)
    words = shlex.split(line)
    env = clean_env()
    while "=" in words[0]:
        name, value = words.pop(0).split("=", 1)
        env[name] = value
    program = words.pop(0)
    prefix = {".venv/bin/python": [sys.executable], ".venv/bin/shipper": [sys.executable, "-m", "shipper"]}[program]
    return env, prefix + words


def test_the_readme_emulator_commands_work_as_written():
    lines = readme_emulator_commands()
    servers = [line for line in lines if "tests.emulators." in line]
    assert [re.search(r"tests\.emulators\.(\w+)", s).group(1) for s in servers] == ["mns", "sls", "openapi"]
    ports = {port: str(free_port()) for port in re.findall(r"--port (\d+)", " ".join(servers))}
    started = []
    try:
        for line in servers:
            env, argv = as_run_here(line, ports)
            process = subprocess.Popen(argv, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                       text=True)
            started.append(process)
            first = process.stdout.readline()
            assert "127.0.0.1" in first, (line, first, process.stderr.read() if process.poll() is not None else "")
        (fill,) = [line for line in lines if "shipper simulate" in line]
        env, argv = as_run_here(fill, ports)
        result = subprocess.run(argv, cwd=REPO, env=env, capture_output=True, text=True, timeout=60)
        assert result.returncode == 0, result.stderr
        count = int(re.search(r"published (\d+) messages", result.stderr).group(1))
        endpoint, queue = re.search(r"mns\+http://([^/]+)/(\S+)", " ".join(argv)).groups()
        credentials = Credentials(env["ALIBABA_CLOUD_ACCESS_KEY_ID"], env["ALIBABA_CLOUD_ACCESS_KEY_SECRET"])
        assert check_queue(f"http://{endpoint}", queue, credentials)["active_messages"] == count > 0
    finally:
        for process in started:
            process.send_signal(signal.SIGINT)
            try:
                process.wait(10)
            except subprocess.TimeoutExpired:
                process.kill()
