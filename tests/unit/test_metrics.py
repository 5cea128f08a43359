"""shipper's metrics on prometheus_client, readiness, the monitoring server and JSON logs, in process."""
import io
import json
import logging
import urllib.error
import urllib.request

import pytest
from prometheus_client.parser import text_string_to_metric_families

from shipper import config
from shipper.config import BatchSettings, ConfigError
from shipper.hooks import SKIPPED, action_record
from shipper.hooks.engine import HookEngine
from shipper.pipeline import Message, Pipeline
from shipper.telemetry import logs, metrics
from shipper.telemetry.api import MonitoringServer
from shipper.telemetry.health import Health, not_ready
from tests.conftest import FIXTURES
from tests.fakes import FakeSink
from tests.waiting import wait_until


def parsed() -> dict:
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(metrics.render().decode()) for s in family.samples}


def test_call_sites_keep_their_form_and_the_text_parses_as_prometheus():
    before = metrics.DEAD_LETTERS.value({"reason": "not-json"})
    metrics.DEAD_LETTERS.inc(labels={"reason": "not-json"})
    metrics.DEAD_LETTERS.inc(2, labels={"reason": "not-json"})
    assert metrics.DEAD_LETTERS.value({"reason": "not-json"}) == before + 3
    assert parsed()[("shipper_dead_letters_total", (("reason", "not-json"),))] == before + 3
    metrics.INFLIGHT.set(7)
    assert metrics.INFLIGHT.value() == 7 and parsed()[("shipper_inflight_events", ())] == 7
    assert ("process_cpu_seconds_total", ()) in parsed()  # the process collector is on the registry


def test_a_scrape_time_gauge_that_fails_shows_nan_and_the_scrape_still_answers():
    metrics.REGISTRY_INSTANCES.set_function(lambda: 1 / 0)
    value = parsed()[("shipper_registry_instances", ())]
    metrics.REGISTRY_INSTANCES.set_function(lambda: 5)
    assert value != value and parsed()[("shipper_registry_instances", ())] == 5  # NaN, then 5


class Clock:
    def __init__(self):
        self.now = 100.0

    def __call__(self):
        return self.now


def test_health_is_unready_only_after_the_window_without_success():
    clock = Clock()
    sink = Health("sink sls", clock)
    sink.trying()
    clock.now += 0.9
    assert not_ready([sink], 1.0) == {}           # a write under way, younger than the window
    sink.failed("PutLogs: InternalServerError")
    clock.now += 0.2
    assert not_ready([sink], 1.0) == {"sink sls": "no success for 1 s: PutLogs: InternalServerError"}
    sink.trying()                                   # a retry does not restart the clock
    assert not_ready([sink], 1.0)
    sink.ok()
    assert not_ready([sink], 1.0) == {}


def test_pipeline_sink_health_follows_its_writes():
    sink = FakeSink()
    pipeline = Pipeline([sink], BatchSettings(linger_ms=10)).start()
    message = Message(body=(FIXTURES / "a_statechange_stopped.json").read_bytes(), source="test")
    sink.fail = "disk full"
    pipeline.submit(message)
    wait_until(lambda: "disk full" in not_ready(pipeline.sink_health, 0.0).get("sink fake", ""), timeout=5)
    sink.fail = ""
    pipeline.submit(message)  # the source delivers it again
    wait_until(lambda: not not_ready(pipeline.sink_health, 0.0), timeout=5)
    pipeline.close(5)


def test_every_hook_decision_is_counted_by_hook_decision_and_reason():
    class Broken:
        name, dry_run = "probe", False

        def wants(self, event):
            return True

        def delay_seconds(self, event):
            return 0

        def decide(self, event, trigger):
            raise RuntimeError("bug")

    labels = {"hook": "probe", "decision": SKIPPED, "reason": "hook-error"}
    before = metrics.HOOK_DECISIONS.value(labels)
    engine = HookEngine([Broken()], lambda records, done: done(True))
    decided = []
    engine.schedule({"event_uid": "u1", "instance_id": "i-1"}, engine.hooks, "inline", lambda: decided.append(1))
    wait_until(lambda: decided)
    engine.close(1)
    assert metrics.HOOK_DECISIONS.value(labels) == before + 1


def get(port: int, path: str) -> tuple[int, dict]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5) as answer:
            return answer.status, json.loads(answer.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read())


def test_readyz_names_what_is_not_ready_and_a_taken_port_is_one_error_line(caplog):
    problems = {"sink sls": "no success for 31 s: refused"}
    server = MonitoringServer("127.0.0.1:0", lambda: problems).start()
    port = server.port
    try:
        assert get(port, "/readyz") == (503, {"status": "not ready", "not_ready": problems})
        problems.clear()
        assert get(port, "/readyz") == (200, {"status": "ready"}) and get(port, "/healthz")[0] == 200
        assert get(port, "/nope")[0] == 404
        caplog.set_level(logging.ERROR)
        second = MonitoringServer(f"127.0.0.1:{port}", dict).start()  # the port is taken: logged, not raised
        second.close()
        (line,) = [r.getMessage() for r in caplog.records if r.name == "shipper.api"]
        assert f"cannot listen on 127.0.0.1:{port}" in line and "[api] listen" in line
    finally:
        server.close()


def test_api_settings_default_off_and_bad_values():
    minimal = {"sinks": [{"type": "sqlite"}]}
    assert config.from_dict(minimal).api.listen == "127.0.0.1:9598"
    assert config.from_dict(minimal).api.enabled
    for off in ("", "off"):
        assert not config.from_dict(minimal | {"api": {"listen": off}}).api.enabled
    with pytest.raises(ConfigError, match=r"\[api\]: `listen` must be host:port .*or \"off\""):
        config.from_dict(minimal | {"api": {"listen": "9598"}})
    with pytest.raises(ConfigError, match=r"\[shipper\]: `log_format` must be one of text, json"):
        config.from_dict(minimal | {"shipper": {"log_format": "xml"}})


def test_json_logs_are_one_object_per_line_with_fields_and_the_secret_masked(monkeypatch):
    secret = "json-secret-Hk3Lm5Np7"
    monkeypatch.setenv("ALIBABA_CLOUD_ACCESS_KEY_SECRET", secret)
    root = logging.getLogger()
    monkeypatch.setattr(root, "handlers", [])  # restored after the test
    monkeypatch.setattr(root, "level", root.level)
    logs.setup("info", log_format="json")
    stream = io.StringIO()
    root.handlers[0].setStream(stream)
    log = logging.getLogger("shipper.test")
    log.warning("refused %s", f"key {secret}", extra={"queue": "q1", "detail": f"body {secret}", "count": 3})
    try:
        raise ValueError(f"bad {secret}")
    except ValueError:
        log.exception("failed")
    first, second = [json.loads(line) for line in stream.getvalue().splitlines()]
    assert first["level"] == "warning" and first["logger"] == "shipper.test" and first["time"].endswith("Z")
    assert first["message"] == "refused key ***" and first["detail"] == "body ***"
    assert first["queue"] == "q1" and first["count"] == 3
    assert "ValueError: bad ***" in second["exception"]
    assert secret not in stream.getvalue()
