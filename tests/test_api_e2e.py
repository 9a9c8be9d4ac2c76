"""The HTTP API served by a real `reeve daemon` on 127.0.0.1 (ephemeral port)."""

from __future__ import annotations

import http.client
import json
import threading
from urllib.parse import urlsplit

import pytest

from tests.daemon_helpers import start_daemon, wait_for

pytestmark = pytest.mark.e2e


class Api:
    """A tiny stdlib client for one daemon's API."""

    def __init__(self, daemon):
        parts = urlsplit(daemon.api_url)
        self.host, self.port = parts.hostname, parts.port
        self.token = daemon.api_token

    def connect(self, timeout=30):
        return http.client.HTTPConnection(self.host, self.port, timeout=timeout)

    def request(self, method, path, body=None, headers=None):
        conn = self.connect()
        sent = {"Authorization": f"Bearer {self.token}", **(headers or {})}
        payload = None
        if body is not None:
            payload = json.dumps(body).encode()
            sent["Content-Type"] = "application/json"
        try:
            conn.request(method, path, body=payload, headers=sent)
            response = conn.getresponse()
            data = response.read()
        finally:
            conn.close()
        if response.getheader("Content-Type", "").startswith("application/json"):
            return response.status, json.loads(data)
        return response.status, data.decode()


@pytest.fixture
def daemons(db, tmp_path):
    """Start daemons for a test; every one left running is killed at the end."""
    started = []

    def start():
        handle = start_daemon({"FAKE_AGENT_LOG": str(tmp_path / "agent.log")})
        started.append(handle)
        return handle

    yield start
    for handle in started:
        if handle.proc.poll() is None:
            handle.kill()


def read_events(response, until_kind, pulse_id, limit=200):
    """Read SSE events from an open response until `until_kind` for `pulse_id`."""
    events, fields = [], {}
    while len(events) < limit:
        line = response.readline().decode()
        if not line:
            break
        line = line.rstrip("\n")
        if line == "":
            if "data" in fields:
                event = json.loads(fields["data"])
                assert event["id"] == int(fields["id"])
                events.append(event)
                if event["kind"] == until_kind and event["pulse_id"] == pulse_id:
                    break
            fields = {}
        elif not line.startswith(":"):
            name, _, value = line.partition(": ")
            fields[name] = value
    return events


def test_created_pulse_is_fired_and_seen_in_events_and_metrics(daemons):
    daemon = daemons()
    api = Api(daemon)
    stream = api.connect()
    stream.request(
        "GET", "/api/events", headers={"Authorization": f"Bearer {api.token}"}
    )
    events_response = stream.getresponse()
    assert events_response.status == 200
    assert events_response.readline() == b"retry: 2000\n"

    status, pulse = api.request(
        "POST", "/api/pulses", {"prompt": "say hello", "at": "now"}
    )
    events = read_events(events_response, "pulse.completed", pulse["id"])
    stream.close()
    _, metrics = api.request("GET", "/metrics")

    assert status == 201
    kinds = [e["kind"] for e in events if e["pulse_id"] == pulse["id"]]
    assert kinds[0] == "pulse.created"
    assert kinds[-1] == "pulse.completed"
    assert [e["id"] for e in events] == sorted(e["id"] for e in events)
    assert events[-1]["data"]["pulse"]["status"] == "completed"
    assert 'reeve_pulses{status="completed"} 1' in metrics.splitlines()
    assert 'reeve_attempts_total{status="completed"} 1' in metrics.splitlines()
    assert "reeve_pulse_lateness_seconds_count 1" in metrics.splitlines()
    assert "reeve_attempt_duration_seconds_count 1" in metrics.splitlines()
    assert daemon.stop() == 0
    assert "Traceback" not in daemon.log()


def test_idempotent_replay_survives_a_daemon_restart(daemons):
    first_daemon = daemons()
    headers = {"Idempotency-Key": "webhook-7"}
    body = {"prompt": "once only", "at": "in 2h"}
    created_status, created = Api(first_daemon).request(
        "POST", "/api/pulses", body, headers
    )
    assert first_daemon.stop() == 0

    second_daemon = daemons()
    replay_status, replayed = Api(second_daemon).request(
        "POST", "/api/pulses", body, headers
    )
    _, listing = Api(second_daemon).request("GET", "/api/pulses")

    assert (created_status, replay_status) == (201, 200)
    assert replayed == created
    assert [p["id"] for p in listing["pulses"]] == [created["id"]]
    second_daemon.stop()


def test_open_event_stream_ends_when_the_daemon_stops(daemons):
    daemon = daemons()
    api = Api(daemon)
    stream = api.connect()
    stream.request(
        "GET", "/api/events", headers={"Authorization": f"Bearer {api.token}"}
    )
    response = stream.getresponse()
    response.readline()
    ended = threading.Event()

    def drain():
        while response.readline():
            pass
        ended.set()

    reader = threading.Thread(target=drain, daemon=True)
    reader.start()
    code = daemon.stop()

    assert code == 0
    assert ended.wait(10)
    assert "graceful shutdown exceeded" not in daemon.log()
    stream.close()


def test_schedule_run_through_the_daemon_fires_a_pulse(daemons, db):
    daemon = daemons()
    api = Api(daemon)
    created_status, _ = api.request(
        "POST",
        "/api/schedules",
        {"name": "beat", "prompt": "heartbeat", "cron": "@yearly"},
    )

    status, fired = api.request("POST", "/api/schedules/beat/run")
    pulse_id = fired["pulse"]["id"]
    wait_for(
        lambda: (
            api.request("GET", f"/api/pulses/{pulse_id}")[1]["status"] == "completed"
        )
    )

    assert (created_status, status) == (201, 200)
    assert fired["pulse"]["schedule_name"] == "beat"
    assert fired["schedule"]["fire_count"] == 1
    daemon.stop()


def test_cli_prints_the_running_daemons_url_and_token(daemons, run_reeve):
    daemon = daemons()

    url = run_reeve("api", "url")
    token = run_reeve("api", "token")

    assert (url.returncode, url.stdout, url.stderr) == (0, f"{daemon.api_url}\n", "")
    assert token.stdout == f"{daemon.api_token}\n"
    daemon.stop()


def test_health_and_auth_on_the_real_server(daemons):
    daemon = daemons()
    api = Api(daemon)
    conn = api.connect()
    conn.request("GET", "/api/status")
    unauthorized = conn.getresponse()
    unauthorized_body = json.loads(unauthorized.read())
    conn.close()

    health_status, health = api.request("GET", "/api/health")
    wait_for(lambda: api.request("GET", "/api/status")[1]["daemon"]["running"])

    assert unauthorized.status == 401
    assert unauthorized_body["error"]["code"] == "unauthorized"
    assert api.token not in daemon.log()
    assert health_status == 200
    assert health["status"] == "ok"
    assert health["scheduler"] == "running"
    daemon.stop()
