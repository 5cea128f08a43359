"""`simulate --to URL`'s client (shipper.push) against the real http source: answers read, even refusals."""
import pytest

from shipper.config import BatchSettings
from shipper.pipeline import Pipeline
from shipper.push import Pusher, explain
from shipper.sinks.sqlite import SqliteSink
from shipper.sources.http import HttpServer, HttpSourceSettings

TOKEN = "tok-push-5e4d3c2b1a"


@pytest.fixture
def server(tmp_path, monkeypatch):
    monkeypatch.setenv("SHIPPER_WEBHOOK_TOKEN", TOKEN)
    pipeline = Pipeline([SqliteSink(tmp_path / "e.db")], BatchSettings(linger_ms=20)).start()
    srv = HttpServer(HttpSourceSettings(listen="127.0.0.1:0", max_token_failures=1000), pipeline).start()
    yield srv
    srv.stop()
    pipeline.close(5)
    srv.close()


def bodies(count, size=8_000_000):
    """Bodies larger than the socket buffers: the server answers 401 and closes before it has read them, so
    the send fails (before the fix: "Connection reset by peer") while the 401 waits to be read."""
    return [b'{"pad": "' + b"x" * size + b'"}' for _ in range(count)]


def test_a_wrong_token_reads_the_401_not_a_broken_pipe(server):
    statuses = Pusher(f"http://{server.address}/").post_all(bodies(6), "not-the-token")
    assert set(statuses) == {401}


def test_the_right_token_answers_each_push(server, fixtures_dir):
    body = (fixtures_dir / "c_statechange_stopped.json").read_bytes()
    assert list(Pusher(f"http://{server.address}/").post_all([body] * 20, TOKEN)) == [200] * 20


def test_explain_names_the_fix():
    assert explain(401, "MY_TOKEN") == "401: the token was refused; set MY_TOKEN to the server's token"
    assert explain(503, "MY_TOKEN").startswith("503: ")
