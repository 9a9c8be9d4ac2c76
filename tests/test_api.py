"""The HTTP API through Starlette's TestClient, on a real SQLite file."""

from __future__ import annotations

import json
import re
import sqlite3
import stat
import time
from datetime import UTC, datetime, timedelta

import pytest
from starlette.routing import Route
from starlette.testclient import TestClient

from reeve_cli import store
from reeve_cli.api import BAD_TOKEN_LIMIT, WAKE_INTERVAL, close_streams, create_app
from reeve_cli.api_token import ensure_api_token, read_api_token
from reeve_cli.model import Pulse, utcnow
from tests.daemon_helpers import wait_for


class RecordingRuntime:
    """Stands in for the daemon: records wake() calls, reports a health state."""

    def __init__(self, settings, db, scheduler="running"):
        self.settings, self.db = settings, db
        self.wake_times: list[float] = []
        self.scheduler = scheduler
        self.fired: list[str] = []

    @property
    def wakes(self):
        return len(self.wake_times)

    def wake(self):
        self.wake_times.append(time.monotonic())

    def health(self):
        if self.scheduler == "boom":
            raise RuntimeError("health probe crashed")
        return {"database": "ok", "scheduler": self.scheduler}

    async def run_schedule(self, name):
        from reeve_cli.schedule import fire_schedule_now

        self.fired.append(name)
        return fire_schedule_now(self.settings, self.db, name)


@pytest.fixture
def token(settings):
    return ensure_api_token(settings)


@pytest.fixture
def auth(token):
    return {"Authorization": f"Bearer {token}"}


@pytest.fixture
def app(settings, db):
    return create_app(settings, db)


@pytest.fixture
def client(app):
    with TestClient(app) as test_client:
        yield test_client


def post_pulse(client, auth, **body):
    body.setdefault("prompt", "check the flight")
    return client.post("/api/pulses", json=body, headers=auth)


def table_count(db, table):
    with db.transaction() as conn:
        return conn.execute(f"SELECT COUNT(*) AS n FROM {table}")[0]["n"]


# Token ---------------------------------------------------------------------------


def test_token_file_is_created_private_once(settings):
    first = ensure_api_token(settings)

    second = ensure_api_token(settings)

    assert first == second == read_api_token(settings)
    assert len(first) >= 40
    assert stat.S_IMODE(settings.api_token_path.stat().st_mode) == 0o600
    assert stat.S_IMODE(settings.data_path.stat().st_mode) == 0o700


def test_empty_token_file_is_replaced_by_a_new_token(settings):
    settings.data_path.mkdir(mode=0o700, parents=True, exist_ok=True)
    settings.api_token_path.write_text("\n")

    token = ensure_api_token(settings)

    assert token and read_api_token(settings) == token
    assert stat.S_IMODE(settings.api_token_path.stat().st_mode) == 0o600


def test_read_token_does_not_create_the_file(settings):
    assert read_api_token(settings) is None

    assert not settings.api_token_path.exists()


def test_token_from_environment_wins_and_writes_no_file(monkeypatch):
    from reeve_cli.config import load_settings

    monkeypatch.setenv("REEVE_API_TOKEN", "from-the-environment")
    settings = load_settings()

    token = ensure_api_token(settings)

    assert token == "from-the-environment"
    assert not settings.api_token_path.exists()


def test_token_file_readable_by_others_is_made_private(settings):
    token = ensure_api_token(settings)
    settings.api_token_path.chmod(0o644)

    assert ensure_api_token(settings) == token

    assert stat.S_IMODE(settings.api_token_path.stat().st_mode) == 0o600


def test_cli_api_token_prints_the_token(cli, settings):
    result = cli("api", "token")

    assert result.exit_code == 0
    assert result.stdout.strip() == read_api_token(settings)


def test_cli_api_url_without_daemon_prints_configured_address(cli):
    result = cli("api", "url")

    assert result.exit_code == 0
    assert result.stdout == "http://127.0.0.1:8765\n"


# Auth and rate limit ------------------------------------------------------------


def _route_table():
    from reeve_cli.api import routes

    cases = []
    for route in routes():
        assert isinstance(route, Route)
        path = route.path.replace("{pulse_id}", "1").replace("{name}", "beat")
        for method in sorted(route.methods - {"HEAD"}):
            if route.path != "/api/health":
                cases.append(pytest.param(method, path, id=f"{method} {route.path}"))
    return cases


@pytest.mark.parametrize(("method", "path"), _route_table())
@pytest.mark.parametrize(
    "header",
    [
        pytest.param(None, id="no-header"),
        pytest.param("Bearer wrong-token", id="wrong-token"),
        pytest.param("Basic dXNlcjpwYXNz", id="basic-scheme"),
    ],
)
def test_every_route_but_health_needs_the_token(
    client, db, token, method, path, header
):
    headers = {"Authorization": header} if header else {}

    response = client.request(method, path, headers=headers, json={"prompt": "x"})

    assert response.status_code == 401
    assert response.headers["www-authenticate"] == "Bearer"
    assert response.json()["error"]["code"] == "unauthorized"
    assert token not in response.text
    assert table_count(db, "pulses") == 0


def test_health_needs_no_token(client):
    response = client.get("/api/health")

    assert response.status_code == 200
    assert response.json() == {"status": "ok", "database": "ok", "scheduler": "absent"}


def test_repeated_bad_tokens_are_rate_limited(client, auth):
    for _ in range(BAD_TOKEN_LIMIT):
        bad = client.get("/api/status", headers={"Authorization": "Bearer nope"})
        assert bad.status_code == 401

    limited = client.get("/api/status", headers={"Authorization": "Bearer nope"})
    also_limited = client.get("/api/status", headers=auth)

    assert limited.status_code == 429
    assert limited.json()["error"]["code"] == "rate_limited"
    assert 1 <= int(limited.headers["retry-after"]) <= 60
    assert also_limited.status_code == 429


def test_rate_limit_is_per_client_address(app, auth):
    with TestClient(app, client=("10.0.0.1", 1000)) as attacker:
        for _ in range(BAD_TOKEN_LIMIT + 1):
            attacker.get("/api/status", headers={"Authorization": "Bearer nope"})
    with TestClient(app, client=("10.0.0.2", 1000)) as other:
        response = other.get("/api/status", headers=auth)

    assert response.status_code == 200


def test_missing_tokens_are_not_counted_as_guesses(client, auth):
    for _ in range(BAD_TOKEN_LIMIT + 5):
        assert client.get("/api/status").status_code == 401

    response = client.get("/api/status", headers=auth)

    assert response.status_code == 200


# Creating pulses -------------------------------------------------------------------


def test_create_returns_201_and_the_stored_shape(client, auth, db):
    response = post_pulse(
        client,
        auth,
        at="in 20m",
        priority="high",
        tags=["travel"],
        sticky_notes=["flight LH 123"],
        session_id="abc-123",
        max_retries=4,
        executor="command",
    )

    assert response.status_code == 201
    body = response.json()
    assert body == store.get_pulse(db, body["id"]).to_dict()
    assert body["priority"] == "high"
    assert body["status"] == "pending"
    assert body["source"] == "api"
    assert body["tags"] == ["travel"]
    assert body["sticky_notes"] == ["flight LH 123"]
    assert body["max_retries"] == 4
    due = datetime.fromisoformat(body["scheduled_at"].replace("Z", "+00:00"))
    assert abs((due - utcnow()).total_seconds() - 1200) < 60


def test_create_uses_setting_defaults(client, auth, settings):
    body = post_pulse(client, auth).json()

    assert body["priority"] == "normal"
    assert body["max_retries"] == settings.max_retries
    assert body["source"] == "api"


@pytest.mark.parametrize(
    "when",
    [
        pytest.param("now", id="now"),
        pytest.param("in 20m", id="relative"),
        pytest.param("+90s", id="plus"),
        pytest.param("tomorrow 6:45", id="natural"),
        pytest.param("2099-09-01 06:45", id="iso-local"),
        pytest.param("2099-09-01T06:45:00Z", id="iso-utc"),
        pytest.param("4102444800", id="epoch"),
    ],
)
def test_create_accepts_every_cli_time_form(client, auth, settings, when):
    from reeve_cli.timefmt import parse_when

    expected = parse_when(when, settings.zone)

    response = post_pulse(client, auth, at=when)

    assert response.status_code == 201
    due = datetime.fromisoformat(response.json()["scheduled_at"].replace("Z", "+00:00"))
    assert abs((due - expected).total_seconds()) < 5


def test_create_accepts_scheduled_at_as_alias(client, auth):
    response = post_pulse(client, auth, scheduled_at="2099-01-01T00:00:00Z")

    assert response.status_code == 201
    assert response.json()["scheduled_at"] == "2099-01-01T00:00:00Z"


def test_create_allows_past_time_when_asked(client, auth):
    response = post_pulse(client, auth, at="2020-01-01 00:00", allow_past=True)

    assert response.status_code == 201


def test_idempotency_key_header_replays_first_result(client, auth, db):
    headers = {**auth, "Idempotency-Key": "webhook-42"}
    first = client.post("/api/pulses", json={"prompt": "a"}, headers=headers)

    again = client.post("/api/pulses", json={"prompt": "a"}, headers=headers)

    assert first.status_code == 201
    assert again.status_code == 200
    assert again.headers["idempotent-replayed"] == "true"
    assert again.json() == first.json()
    assert again.json()["idempotency_key"] == "webhook-42"
    assert table_count(db, "pulses") == 1


def test_idempotency_key_field_works_like_the_header(client, auth, db):
    first = post_pulse(client, auth, idempotency_key="k-1")

    again = client.post(
        "/api/pulses",
        json={"prompt": "check the flight"},
        headers={**auth, "Idempotency-Key": "k-1"},
    )

    assert (first.status_code, again.status_code) == (201, 200)
    assert again.json()["id"] == first.json()["id"]


def test_replay_returns_first_result_even_when_its_time_has_passed(client, auth):
    headers = {**auth, "Idempotency-Key": "late"}
    first = client.post(
        "/api/pulses", json={"prompt": "a", "at": "in 1m"}, headers=headers
    )
    past = (datetime.now(UTC) - timedelta(hours=1)).isoformat()

    again = client.post(
        "/api/pulses", json={"prompt": "a", "at": past}, headers=headers
    )

    assert again.status_code == 200
    assert again.json()["id"] == first.json()["id"]


@pytest.mark.parametrize(
    "bad",
    [
        pytest.param({"prompt": ""}, id="empty-prompt"),
        pytest.param({"prompt": "a", "priority": "urgent"}, id="bad-priority"),
        pytest.param({"prompt": "a", "at": "someday"}, id="unparseable-time"),
        pytest.param({"prompt": "a", "tags": [" "]}, id="blank-tag"),
    ],
)
def test_replay_with_an_invalid_body_is_still_refused(client, auth, bad):
    headers = {**auth, "Idempotency-Key": "k"}
    client.post("/api/pulses", json={"prompt": "a"}, headers=headers)

    response = client.post("/api/pulses", json=bad, headers=headers)

    assert response.status_code == 400


def test_idempotency_survives_a_new_app_on_the_same_database(settings, db, auth):
    headers = {**auth, "Idempotency-Key": "durable"}
    with TestClient(create_app(settings, db)) as first_client:
        first = first_client.post("/api/pulses", json={"prompt": "a"}, headers=headers)

    with TestClient(create_app(settings, db)) as second_client:
        again = second_client.post("/api/pulses", json={"prompt": "a"}, headers=headers)

    assert (first.status_code, again.status_code) == (201, 200)
    assert again.json()["id"] == first.json()["id"]


# Bad input: every class is a 4xx JSON error and writes nothing -----------------

NESTED = "[" * 100_000 + "]" * 100_000


@pytest.mark.parametrize(
    ("body", "status", "code", "field"),
    [
        pytest.param(b"{not json", 400, "malformed_json", None, id="malformed-json"),
        pytest.param(b"", 400, "malformed_json", None, id="empty-body"),
        pytest.param(b"[1, 2]", 400, "malformed_json", None, id="array-body"),
        pytest.param(b"\xff\xfe\x00", 400, "malformed_json", None, id="not-utf8"),
        pytest.param(NESTED.encode(), 400, "malformed_json", None, id="deep-nesting"),
        pytest.param({"prompt": 42}, 400, "invalid_type", "prompt", id="prompt-number"),
        pytest.param(
            {"prompt": "x", "tags": "a"}, 400, "invalid_type", "tags", id="tags-text"
        ),
        pytest.param(
            {"prompt": "x", "tags": [1]}, 400, "invalid_type", "tags", id="tag-number"
        ),
        pytest.param(
            {"prompt": "x", "max_retries": "3"},
            400,
            "invalid_type",
            "max_retries",
            id="retries-text",
        ),
        pytest.param(
            {"prompt": "x", "max_retries": True},
            400,
            "invalid_type",
            "max_retries",
            id="retries-bool",
        ),
        pytest.param(
            {"prompt": "x", "max_retries": 1000},
            400,
            "invalid",
            "max_retries",
            id="retries-range",
        ),
        pytest.param(
            {"prompt": "x", "at": 5}, 400, "invalid_type", "at", id="at-number"
        ),
        pytest.param(
            {"prompt": "x", "allow_past": "yes"},
            400,
            "invalid_type",
            "allow_past",
            id="bool-text",
        ),
        pytest.param(
            {"prompt": "x", "colour": "red"},
            400,
            "unknown_field",
            "colour",
            id="unknown-field",
        ),
        pytest.param({}, 400, "invalid", "prompt", id="missing-prompt"),
        pytest.param({"prompt": "   "}, 400, "invalid", "prompt", id="blank-prompt"),
        pytest.param(
            {"prompt": "x", "priority": "urgent"},
            400,
            "invalid_priority",
            "priority",
            id="bad-priority",
        ),
        pytest.param(
            {"prompt": "x", "at": "someday maybe"},
            400,
            "invalid_time",
            "at",
            id="unparseable-time",
        ),
        pytest.param(
            {"prompt": "x", "at": "2020-01-01 10:00"},
            400,
            "invalid_time",
            "at",
            id="past-time",
        ),
        pytest.param(
            {"prompt": "x", "at": "yesterday"},
            400,
            "invalid_time",
            "at",
            id="past-phrase",
        ),
        pytest.param(
            {"prompt": "x", "at": "in 99999999999w"},
            400,
            "invalid_time",
            "at",
            id="overflow",
        ),
        pytest.param(
            {"prompt": "x", "at": "9" * 500}, 400, "invalid_time", "at", id="long-time"
        ),
        pytest.param(
            {"prompt": "x", "at": "now", "scheduled_at": "now"},
            400,
            "invalid",
            "scheduled_at",
            id="both-times",
        ),
        pytest.param(
            b'{"prompt": "\\ud800"}', 400, "invalid", "prompt", id="lone-surrogate"
        ),
        pytest.param(
            {"prompt": "x", "source": ""}, 400, "invalid", "source", id="empty-source"
        ),
        pytest.param(
            {"prompt": "x", "idempotency_key": "k" * 300},
            400,
            "invalid",
            "idempotency_key",
            id="long-key",
        ),
        pytest.param(
            {"prompt": "x" * 100_001}, 400, "invalid", "prompt", id="prompt-too-big"
        ),
        pytest.param(
            b'{"prompt": "' + b"x" * (1024 * 1024) + b'"}',
            413,
            "too_large",
            None,
            id="body-over-1mib",
        ),
    ],
)
def test_bad_create_is_a_4xx_json_error_and_writes_nothing(
    client, auth, db, body, status, code, field
):
    if isinstance(body, bytes):
        response = client.post("/api/pulses", content=body, headers=auth)
    else:
        response = client.post("/api/pulses", json=body, headers=auth)

    assert response.status_code == status
    error = response.json()["error"]
    assert (error["code"], error["field"]) == (code, field)
    assert error["message"] and "Traceback" not in error["message"]
    assert table_count(db, "pulses") == 0
    assert table_count(db, "events") == 0


def test_prompt_limit_follows_the_setting(monkeypatch, db, auth):
    from reeve_cli.config import load_settings

    monkeypatch.setenv("REEVE_MAX_PROMPT_BYTES", "10")
    settings = load_settings()
    with TestClient(create_app(settings, db)) as client:
        response = post_pulse(client, auth, prompt="x" * 11)

    assert response.status_code == 400
    assert response.json()["error"]["message"] == (
        "The prompt is 11 bytes; the limit is 10 (REEVE_MAX_PROMPT_BYTES)"
    )


def test_past_time_error_names_the_api_field(client, auth):
    response = post_pulse(client, auth, at="2020-01-01 10:00")

    message = response.json()["error"]["message"]
    assert '"allow_past": true' in message
    assert "--allow-past" not in message


def test_declared_oversized_body_is_refused_before_reading(client, auth):
    response = client.post(
        "/api/pulses",
        content=b"{}",
        headers={
            **auth,
            "Content-Length": str(2 * 1024 * 1024),
            "Content-Type": "application/json",
        },
    )

    assert response.status_code == 413


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("POST", "/api/pulses"),
        ("PATCH", "/api/pulses/1"),
        ("POST", "/api/schedules"),
        ("PATCH", "/api/schedules/beat"),
    ],
)
def test_unknown_query_parameter_on_a_write_is_refused(client, auth, db, method, path):
    post_pulse(client, auth)
    before = table_count(db, "events")

    response = client.request(
        method, f"{path}?dry_run=1", json={"prompt": "x", "name": "beat"}, headers=auth
    )

    assert response.status_code == 400
    assert response.json()["error"]["field"] == "dry_run"
    assert table_count(db, "events") == before


def test_idempotency_header_and_field_must_agree(client, auth, db):
    response = client.post(
        "/api/pulses",
        json={"prompt": "x", "idempotency_key": "a"},
        headers={**auth, "Idempotency-Key": "b"},
    )

    assert response.status_code == 400
    assert response.json()["error"]["field"] == "idempotency_key"
    assert table_count(db, "pulses") == 0


# Listing ----------------------------------------------------------------------------


def test_list_filters_by_status_tag_priority_and_time(client, auth):
    a = post_pulse(client, auth, at="in 1h", tags=["mail"]).json()
    b = post_pulse(client, auth, at="in 2h", priority="high").json()
    c = post_pulse(client, auth, at="in 3h", tags=["mail"]).json()
    client.delete(f"/api/pulses/{c['id']}", headers=auth)

    def ids(query):
        response = client.get(f"/api/pulses?{query}", headers=auth)
        assert response.status_code == 200, response.text
        return [p["id"] for p in response.json()["pulses"]]

    assert ids("") == [a["id"], b["id"], c["id"]]
    assert ids("status=pending") == [a["id"], b["id"]]
    assert ids("status=pending,cancelled") == [a["id"], b["id"], c["id"]]
    assert ids("status=cancelled&status=pending") == [a["id"], b["id"], c["id"]]
    assert ids("tag=mail") == [a["id"], c["id"]]
    assert ids("priority=high") == [b["id"]]
    assert ids("since=in%2090m") == [b["id"], c["id"]]
    assert ids("until=in%2090m") == [a["id"]]
    assert ids("order=newest") == [c["id"], b["id"], a["id"]]


@pytest.mark.parametrize("order", ["due", "newest"])
def test_list_pages_with_an_opaque_cursor(client, auth, order):
    created = [
        post_pulse(client, auth, at=f"in {i + 1}h").json()["id"] for i in range(5)
    ]
    seen, cursor, pages = [], None, 0

    while True:
        query = f"limit=2&order={order}" + (f"&cursor={cursor}" if cursor else "")
        page = client.get(f"/api/pulses?{query}", headers=auth).json()
        seen += [p["id"] for p in page["pulses"]]
        pages += 1
        cursor = page["next_cursor"]
        if cursor is None:
            break

    assert pages == 3
    assert seen == (created if order == "due" else created[::-1])


@pytest.mark.parametrize(
    ("query", "field"),
    [
        pytest.param("status=asleep", "status", id="bad-status"),
        pytest.param("priority=urgent", "priority", id="bad-priority"),
        pytest.param("limit=0", "limit", id="limit-zero"),
        pytest.param("limit=abc", "limit", id="limit-text"),
        pytest.param("limit=5000", "limit", id="limit-big"),
        pytest.param("cursor=not-a-cursor", "cursor", id="bad-cursor"),
        pytest.param(
            "cursor=eyJvcmRlciI6Im5ld2VzdCIsImFmdGVyIjoxfQ", "cursor", id="other-order"
        ),
        pytest.param("since=someday", "since", id="bad-since"),
        pytest.param("order=random", "order", id="bad-order"),
        pytest.param("colour=red", "colour", id="unknown-param"),
        pytest.param("order=", "order", id="empty-order"),
        pytest.param("status=", "status", id="empty-status"),
        pytest.param("status=pending,", "status", id="trailing-comma"),
        pytest.param("since=", "since", id="empty-since"),
        pytest.param("tag=a&tag=b", "tag", id="repeated-param"),
    ],
)
def test_bad_list_query_is_a_400(client, auth, query, field):
    response = client.get(f"/api/pulses?{query}", headers=auth)

    assert response.status_code == 400
    assert response.json()["error"]["field"] == field


# One pulse: get, change, cancel, run --------------------------------------------


def test_get_returns_one_pulse(client, auth):
    created = post_pulse(client, auth).json()

    response = client.get(f"/api/pulses/{created['id']}", headers=auth)

    assert response.status_code == 200
    assert response.json() == created


@pytest.mark.parametrize(
    ("method", "suffix"),
    [("GET", ""), ("PATCH", ""), ("DELETE", ""), ("POST", "/run")],
)
def test_unknown_pulse_id_is_404(client, auth, method, suffix):
    response = client.request(
        method, f"/api/pulses/999{suffix}", headers=auth, json={"priority": "low"}
    )

    assert response.status_code == 404
    assert response.json()["error"] == {
        "code": "not_found",
        "message": "No pulse with id 999; see 'reeve pulse list --all'",
        "field": "id",
    }


@pytest.mark.parametrize("bad_id", ["abc", "0", "-1", "1.5", "99999999999999999999"])
def test_malformed_pulse_id_is_400(client, auth, bad_id):
    response = client.get(f"/api/pulses/{bad_id}", headers=auth)

    assert response.status_code == 400
    assert response.json()["error"]["field"] == "id"


def test_patch_reschedules_reprioritises_and_adds_notes(client, auth, db):
    created = post_pulse(client, auth, at="in 1h", sticky_notes=["one"]).json()

    response = client.patch(
        f"/api/pulses/{created['id']}",
        json={"at": "2099-05-01 09:00", "priority": "critical", "add_notes": ["two"]},
        headers=auth,
    )

    assert response.status_code == 200
    body = response.json()
    assert body["scheduled_at"] == "2099-05-01T07:00:00Z"  # 09:00 in Berlin (CEST)
    assert body["priority"] == "critical"
    assert body["sticky_notes"] == ["one", "two"]
    assert body == store.get_pulse(db, created["id"]).to_dict()


def test_patch_replaces_notes_and_tags(client, auth):
    created = post_pulse(client, auth, sticky_notes=["old"], tags=["x"]).json()

    body = client.patch(
        f"/api/pulses/{created['id']}",
        json={"sticky_notes": ["new"], "tags": ["y"]},
        headers=auth,
    ).json()

    assert (body["sticky_notes"], body["tags"]) == (["new"], ["y"])


@pytest.mark.parametrize(
    ("body", "code", "field"),
    [
        pytest.param({}, "invalid", None, id="nothing-to-change"),
        pytest.param({"at": "2020-01-01"}, "invalid_time", "at", id="past-time"),
        pytest.param(
            {"priority": "urgent"}, "invalid_priority", "priority", id="bad-priority"
        ),
        pytest.param(
            {"status": "completed"}, "unknown_field", "status", id="unknown-field"
        ),
        pytest.param({"add_notes": "x"}, "invalid_type", "add_notes", id="notes-text"),
    ],
)
def test_bad_patch_is_a_400_and_changes_nothing(client, auth, db, body, code, field):
    created = post_pulse(client, auth).json()

    response = client.patch(f"/api/pulses/{created['id']}", json=body, headers=auth)

    assert response.status_code == 400
    assert (response.json()["error"]["code"], response.json()["error"]["field"]) == (
        code,
        field,
    )
    assert store.get_pulse(db, created["id"]).to_dict() == created


def test_cancel_then_cancel_again_is_409(client, auth):
    created = post_pulse(client, auth).json()

    first = client.delete(f"/api/pulses/{created['id']}", headers=auth)
    second = client.delete(f"/api/pulses/{created['id']}", headers=auth)
    patch = client.patch(
        f"/api/pulses/{created['id']}", json={"priority": "low"}, headers=auth
    )

    assert first.status_code == 200
    assert first.json()["status"] == "cancelled"
    assert second.status_code == 409
    assert second.json()["error"] == {
        "code": "conflict",
        "message": f"Pulse {created['id']} is cancelled; "
        "only pending pulses can be cancelled",
        "field": None,
    }
    assert patch.status_code == 409


def test_run_now_makes_a_future_pulse_due(client, auth):
    created = post_pulse(client, auth, at="in 5h").json()

    response = client.post(f"/api/pulses/{created['id']}/run", headers=auth)

    assert response.status_code == 200
    due = datetime.fromisoformat(response.json()["scheduled_at"].replace("Z", "+00:00"))
    assert abs((due - utcnow()).total_seconds()) < 5


def test_run_now_on_a_cancelled_pulse_is_409(client, auth):
    created = post_pulse(client, auth).json()
    client.delete(f"/api/pulses/{created['id']}", headers=auth)

    response = client.post(f"/api/pulses/{created['id']}/run", headers=auth)

    assert response.status_code == 409


# The daemon runtime ---------------------------------------------------------------


def test_every_write_is_followed_by_a_wake(settings, db, auth):
    runtime = RecordingRuntime(settings, db)
    with TestClient(create_app(settings, db, runtime)) as client:
        pulse = post_pulse(client, auth).json()
        writes = [
            lambda: client.patch(
                f"/api/pulses/{pulse['id']}", json={"priority": "low"}, headers=auth
            ),
            lambda: client.post(f"/api/pulses/{pulse['id']}/run", headers=auth),
            lambda: client.delete(f"/api/pulses/{pulse['id']}", headers=auth),
            lambda: post_pulse(client, auth),
        ]
        for write in writes:
            before = time.monotonic()
            assert write().status_code in (200, 201)
            wait_for(
                lambda t=before: runtime.wake_times and runtime.wake_times[-1] >= t
            )


def test_failed_writes_do_not_wake(settings, db, auth):
    runtime = RecordingRuntime(settings, db)
    with TestClient(create_app(settings, db, runtime)) as client:
        post_pulse(client, auth, priority="urgent")
        client.delete("/api/pulses/999", headers=auth)
        client.get("/api/pulses", headers=auth)
        time.sleep(WAKE_INTERVAL * 5)  # a wake would have run by now

    assert runtime.wakes == 0


def test_a_burst_of_writes_is_coalesced_into_fewer_wakes(settings, db, auth):
    runtime = RecordingRuntime(settings, db)
    with TestClient(create_app(settings, db, runtime)) as client:
        started = time.monotonic()
        for _ in range(30):
            post_pulse(client, auth)
        last_write = time.monotonic()
        wait_for(lambda: runtime.wake_times[-1] >= last_write)
        elapsed = time.monotonic() - started

    assert 1 <= runtime.wakes <= elapsed / WAKE_INTERVAL + 2
    assert runtime.wakes < 30


@pytest.mark.parametrize(
    ("scheduler", "status", "state"),
    [
        pytest.param("running", 200, "ok", id="running"),
        pytest.param("stopped", 503, "error", id="stopped"),
        pytest.param("boom", 503, "error", id="probe-crashes"),
    ],
)
def test_health_reports_the_runtime(settings, db, scheduler, status, state):
    runtime = RecordingRuntime(settings, db, scheduler=scheduler)
    with TestClient(create_app(settings, db, runtime)) as client:
        response = client.get("/api/health")

    assert response.status_code == status
    assert response.json()["status"] == state


def test_health_is_503_when_the_database_is_unusable(settings, db, tmp_path):
    from reeve_cli.db import Database

    broken = Database(f"sqlite:///{tmp_path}/missing-dir/x.db")
    with TestClient(create_app(settings, broken)) as client:
        response = client.get("/api/health")

    assert response.status_code == 503
    assert response.json() == {
        "status": "error",
        "database": "error",
        "scheduler": "absent",
    }


# Schedules --------------------------------------------------------------------------


def test_schedule_lifecycle(client, auth, db):
    created = client.post(
        "/api/schedules",
        json={"name": "beat", "prompt": "heartbeat", "every": "1h", "tags": ["hb"]},
        headers=auth,
    )
    listed = client.get("/api/schedules", headers=auth)
    fetched = client.get("/api/schedules/beat", headers=auth)
    changed = client.patch(
        "/api/schedules/beat",
        json={"cron": "0 9 * * 1-5", "priority": "high"},
        headers=auth,
    )
    paused = client.post("/api/schedules/beat/pause", headers=auth)
    resumed = client.post("/api/schedules/beat/resume", headers=auth)
    removed = client.delete("/api/schedules/beat", headers=auth)
    gone = client.get("/api/schedules/beat", headers=auth)

    assert created.status_code == 201
    assert created.json()["every_s"] == 3600
    assert [s["name"] for s in listed.json()] == ["beat"]
    assert fetched.json() == created.json()
    assert changed.status_code == 200
    assert (changed.json()["cron"], changed.json()["every_s"]) == ("0 9 * * 1-5", None)
    assert changed.json()["priority"] == "high"
    assert paused.json()["paused"] is True
    assert resumed.json()["paused"] is False
    assert removed.status_code == 200
    assert gone.status_code == 404
    assert gone.json()["error"]["code"] == "not_found"


def test_schedule_run_creates_a_pulse_without_daemon(client, auth, db):
    client.post(
        "/api/schedules",
        json={"name": "beat", "prompt": "hb", "cron": "@daily"},
        headers=auth,
    )

    response = client.post("/api/schedules/beat/run", headers=auth)
    skipped = client.post("/api/schedules/beat/run", headers=auth)

    assert response.status_code == 200
    pulse = response.json()["pulse"]
    assert pulse["schedule_name"] == "beat"
    assert pulse == store.get_pulse(db, pulse["id"]).to_dict()
    assert response.json()["schedule"]["fire_count"] == 1
    assert skipped.json()["pulse"] is None
    assert skipped.json()["schedule"]["skip_count"] == 1


def test_schedule_run_goes_through_the_runtime(settings, db, auth):
    runtime = RecordingRuntime(settings, db)
    with TestClient(create_app(settings, db, runtime)) as client:
        client.post(
            "/api/schedules",
            json={"name": "beat", "prompt": "hb", "every": 60},
            headers=auth,
        )
        response = client.post("/api/schedules/beat/run", headers=auth)

    assert response.status_code == 200
    assert runtime.fired == ["beat"]


@pytest.mark.parametrize(
    ("body", "status", "field"),
    [
        pytest.param(
            {"name": "b", "prompt": "p", "cron": "61 * * * *"},
            400,
            "cron",
            id="bad-cron",
        ),
        pytest.param({"name": "b", "prompt": "p"}, 400, "cron", id="no-rule"),
        pytest.param(
            {"name": "b", "prompt": "p", "cron": "@daily", "every": "1h"},
            400,
            "cron",
            id="both-rules",
        ),
        pytest.param(
            {"name": "b", "prompt": "p", "every": "soon"}, 400, "every", id="bad-every"
        ),
        pytest.param(
            {"name": "b", "prompt": "p", "every": True}, 400, "every", id="every-bool"
        ),
        pytest.param(
            {"name": "b", "prompt": "p", "every": 0.5},
            400,
            "every",
            id="every-too-short",
        ),
        pytest.param(
            {"name": "b", "prompt": "p", "every": 60, "tz": "Mars/Base"},
            400,
            "tz",
            id="bad-zone",
        ),
        pytest.param(
            {"name": "b c", "prompt": "p", "every": 60}, 400, "name", id="bad-name"
        ),
        pytest.param({"prompt": "p", "every": 60}, 400, "name", id="no-name"),
        pytest.param({"name": "b", "every": 60}, 400, "prompt", id="no-prompt"),
        pytest.param(
            {"name": "b", "prompt": "p", "every": 60, "x": 1},
            400,
            "x",
            id="unknown-field",
        ),
        pytest.param(
            {"name": "b", "prompt": "p", "every": 60, "priority": "urgent"},
            400,
            "priority",
            id="bad-priority",
        ),
    ],
)
def test_bad_schedule_is_a_400_and_writes_nothing(
    client, auth, db, body, status, field
):
    response = client.post("/api/schedules", json=body, headers=auth)

    assert response.status_code == status, response.text
    assert response.json()["error"]["field"] == field
    assert table_count(db, "schedules") == 0


def test_duplicate_schedule_is_409(client, auth):
    body = {"name": "beat", "prompt": "p", "every": 60}
    client.post("/api/schedules", json=body, headers=auth)

    response = client.post("/api/schedules", json=body, headers=auth)

    assert response.status_code == 409
    assert response.json()["error"]["code"] == "conflict"


@pytest.mark.parametrize(
    ("method", "suffix"),
    [
        ("GET", ""),
        ("PATCH", ""),
        ("DELETE", ""),
        ("POST", "/run"),
        ("POST", "/pause"),
        ("POST", "/resume"),
    ],
)
def test_unknown_schedule_is_404(client, auth, method, suffix):
    response = client.request(
        method, f"/api/schedules/nope{suffix}", headers=auth, json={"prompt": "x"}
    )

    assert response.status_code == 404
    assert response.json()["error"]["field"] == "name"


@pytest.mark.parametrize(
    ("body", "field"),
    [
        pytest.param({"cron": "bad"}, "cron", id="bad-cron"),
        pytest.param({"cron": "@daily", "every": 60}, "cron", id="both-rules"),
        pytest.param({"every": 0}, "every", id="every-zero"),
        pytest.param({"jitter": "-5m"}, "jitter", id="bad-jitter"),
        pytest.param({"tz": "Mars/Base"}, "tz", id="bad-zone"),
        pytest.param({"session_id": " "}, "session_id", id="blank-session"),
        pytest.param({"executor": ""}, "executor", id="blank-executor"),
        pytest.param({"paused": "yes"}, "paused", id="paused-text"),
        pytest.param({"tags": [""]}, "tags", id="blank-tag"),
        pytest.param({"max_retries": -1}, "max_retries", id="negative-retries"),
        pytest.param({"name": "other"}, "name", id="rename"),
        pytest.param({}, None, id="nothing"),
    ],
)
def test_bad_schedule_patch_changes_nothing(client, auth, body, field):
    created = client.post(
        "/api/schedules",
        json={"name": "beat", "prompt": "p", "every": 60},
        headers=auth,
    ).json()

    response = client.patch("/api/schedules/beat", json=body, headers=auth)

    assert response.status_code == 400
    assert response.json()["error"]["field"] == field
    assert client.get("/api/schedules/beat", headers=auth).json() == created


# Status, metrics, events, errors --------------------------------------------------


def test_status_matches_collect_status(client, auth, settings, db):
    post_pulse(client, auth)

    response = client.get("/api/status", headers=auth)

    from reeve_cli.status import collect_status

    assert response.status_code == 200
    assert response.json() == collect_status(settings, db)
    assert response.json()["counts"]["pending"] == 1
    assert response.json()["daemon"]["running"] is False


def _add_attempt(db, pulse_id, number, status, lateness, duration, cost):
    with db.transaction(write=True) as conn:
        conn.execute(
            "INSERT INTO attempts (pulse_id, number, status, started_at, lateness_s, "
            "duration_s, cost_usd) VALUES (:p, :n, :s, '2026-01-01T00:00:00.000000Z', "
            ":l, :d, :c)",
            {
                "p": pulse_id,
                "n": number,
                "s": status,
                "l": lateness,
                "d": duration,
                "c": cost,
            },
        )


SAMPLE = re.compile(
    r'^[a-z_]+(\{([a-z_]+="[^"]*",?)+\})? -?[0-9.e+-]+$|^[a-z_]+\{le="\+Inf"\} \d+$'
)


def test_metrics_are_prometheus_text_from_the_tables(client, auth, db):
    pulse = post_pulse(client, auth, at="now").json()
    post_pulse(client, auth, at="in 1h", priority="high")
    _add_attempt(db, pulse["id"], 1, "failed", 0.2, 3.0, 0.25)
    _add_attempt(db, pulse["id"], 2, "completed", 7.0, 100.0, 0.5)

    response = client.get("/metrics", headers=auth)

    assert response.status_code == 200
    assert (
        response.headers["content-type"] == "text/plain; version=0.0.4; charset=utf-8"
    )
    lines = response.text.splitlines()
    for line in lines:
        assert (
            line.startswith("# HELP ")
            or line.startswith("# TYPE ")
            or SAMPLE.match(line)
        ), line
    assert 'reeve_pulses{status="pending"} 2' in lines
    assert 'reeve_queue_depth{priority="normal"} 1' in lines
    assert 'reeve_queue_depth{priority="high"} 0' in lines
    assert 'reeve_pulse_lateness_seconds_bucket{le="0.25"} 1' in lines
    assert 'reeve_pulse_lateness_seconds_bucket{le="5"} 1' in lines
    assert 'reeve_pulse_lateness_seconds_bucket{le="15"} 2' in lines
    assert 'reeve_pulse_lateness_seconds_bucket{le="+Inf"} 2' in lines
    assert "reeve_pulse_lateness_seconds_sum 7.2" in lines
    assert 'reeve_attempt_duration_seconds_bucket{le="5"} 1' in lines
    assert 'reeve_attempt_duration_seconds_bucket{le="120"} 2' in lines
    assert "reeve_attempt_duration_seconds_count 2" in lines
    assert 'reeve_attempts_total{status="failed"} 1' in lines
    assert "reeve_attempt_failures_total 1" in lines
    assert "reeve_cost_usd_total 0.75" in lines
    assert "# TYPE reeve_pulse_lateness_seconds histogram" in lines


def _sse_events(text):
    events = []
    for block in text.split("\n\n"):
        fields = dict(
            line.split(": ", 1)
            for line in block.splitlines()
            if line and not line.startswith(":")
        )
        if "data" in fields:
            events.append(fields)
    return events


def test_events_stream_replays_from_an_id(client, auth):
    first = post_pulse(client, auth).json()
    client.delete(f"/api/pulses/{first['id']}", headers=auth)

    response = client.get("/api/events?after=0&limit=2", headers=auth)

    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/event-stream")
    assert response.text.startswith("retry: ")
    events = _sse_events(response.text)
    assert [e["event"] for e in events] == ["pulse.created", "pulse.cancelled"]
    assert [int(e["id"]) for e in events] == [1, 2]
    data = json.loads(events[1]["data"])
    assert data["kind"] == "pulse.cancelled"
    assert data["pulse_id"] == first["id"]
    assert data["data"]["pulse"]["status"] == "cancelled"


def test_events_resume_after_last_event_id(client, auth):
    for _ in range(3):
        post_pulse(client, auth)

    response = client.get("/api/events?limit=2", headers={**auth, "Last-Event-ID": "1"})

    assert [int(e["id"]) for e in _sse_events(response.text)] == [2, 3]


def test_events_without_an_id_start_at_new_events(client, auth):
    post_pulse(client, auth)

    response = client.get("/api/events?timeout=1", headers=auth)

    assert _sse_events(response.text) == []


@pytest.mark.parametrize(
    "headers_query",
    [
        pytest.param(({"Last-Event-ID": "abc"}, ""), id="bad-header"),
        pytest.param(({}, "after=-3"), id="bad-after"),
        pytest.param(({"Last-Event-ID": "1"}, "after=1"), id="both"),
        pytest.param(({}, "limit=x"), id="bad-limit"),
    ],
)
def test_bad_events_request_is_400(client, auth, headers_query):
    headers, query = headers_query

    response = client.get(f"/api/events?{query}", headers={**auth, **headers})

    assert response.status_code == 400


def test_close_streams_ends_open_streams(app, client, auth):
    close_streams(app)

    response = client.get("/api/events?after=0", headers=auth)

    assert response.status_code == 200
    assert _sse_events(response.text) == []


def test_openapi_lists_every_route(client, auth):
    from reeve_cli.api import routes

    spec = client.get("/openapi.json", headers=auth).json()

    documented = {
        (path.replace("{pulse_id}", "{pulse_id}"), method.upper())
        for path, item in spec["paths"].items()
        for method in item
        if method != "parameters"
    }
    served = {(r.path, m) for r in routes() for m in r.methods - {"HEAD"}}
    assert documented == served


def test_unknown_route_and_method_are_json(client, auth):
    missing = client.get("/api/nothing", headers=auth)
    wrong = client.put("/api/pulses", headers=auth)

    assert missing.status_code == 404
    assert missing.json()["error"]["code"] == "not_found"
    assert wrong.status_code == 405
    assert wrong.json()["error"]["code"] == "method_not_allowed"


def test_unexpected_failure_is_a_500_without_internals(client, auth, db):
    with db.transaction(write=True) as conn:
        conn.execute("ALTER TABLE pulses RENAME TO pulses_gone")

    response = client.get("/api/pulses", headers=auth)

    assert response.status_code == 500
    assert response.json() == {
        "error": {
            "code": "internal",
            "message": "Internal error; the daemon log has the details",
            "field": None,
        }
    }


def test_create_that_fails_midway_is_a_500_and_writes_nothing(client, auth, db):
    with db.transaction(write=True) as conn:
        conn.execute("ALTER TABLE events RENAME TO events_gone")

    response = post_pulse(client, auth, at="in 1h")

    assert response.status_code == 500
    assert response.json()["error"]["code"] == "internal"
    with db.transaction(write=True) as conn:
        conn.execute("ALTER TABLE events_gone RENAME TO events")
    assert table_count(db, "pulses") == 0
    assert post_pulse(client, auth, at="in 1h").status_code == 201
    assert table_count(db, "pulses") == 1


def test_busy_database_is_a_503(settings, tmp_path, auth):
    from reeve_cli.db import open_database

    db = open_database(settings.db_url, busy_timeout=0.05)
    blocker = sqlite3.connect(db.path, isolation_level=None)
    blocker.execute("BEGIN IMMEDIATE")
    try:
        with TestClient(create_app(settings, db)) as client:
            response = post_pulse(client, auth)
    finally:
        blocker.execute("ROLLBACK")
        blocker.close()

    assert response.status_code == 503
    assert response.json()["error"]["code"] == "database"


def test_pulse_shape_is_the_model_shape(client, auth, db):
    body = post_pulse(client, auth).json()

    with db.transaction() as conn:
        row = conn.execute("SELECT * FROM pulses WHERE id = :id", {"id": body["id"]})[0]

    assert body == Pulse.from_row(row).to_dict()


# Writes on the event loop: batched commits, and the thread when SQLite is busy --


async def _asgi_post(app, body, headers):
    """One POST /api/pulses straight through ASGI; returns (status, JSON body)."""
    raw = json.dumps(body).encode()
    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": "/api/pulses",
        "raw_path": b"/api/pulses",
        "query_string": b"",
        "root_path": "",
        "headers": [(k.lower().encode(), v.encode()) for k, v in headers.items()]
        + [(b"content-type", b"application/json")],
        "client": ("127.0.0.1", 50000),
        "server": ("127.0.0.1", 80),
    }
    messages = [{"type": "http.request", "body": raw, "more_body": False}]

    async def receive():
        return messages.pop() if messages else {"type": "http.disconnect"}

    sent = []

    async def send(message):
        sent.append(message)

    await app(scope, receive, send)
    return sent[0]["status"], json.loads(b"".join(m.get("body", b"") for m in sent[1:]))


def test_creates_arriving_together_commit_together_and_fail_alone(app, auth, db):
    import asyncio

    bodies = [
        {"prompt": "one", "at": "in 1h"},
        {"prompt": "two", "at": "2020-01-01 10:00"},  # in the past: refused
        {"prompt": "three", "at": "in 2h", "idempotency_key": "same"},
        {"prompt": "four", "at": "in 3h", "idempotency_key": "same"},
        {"prompt": "five", "at": "+90s", "tags": ["x"]},
    ]

    async def run():
        async with app.router.lifespan_context(app):
            return await asyncio.gather(*(_asgi_post(app, b, auth) for b in bodies))

    results = asyncio.run(run())

    assert [status for status, _ in results] == [201, 400, 201, 200, 201]
    assert results[1][1]["error"]["field"] == "at"
    assert results[3][1]["id"] == results[2][1]["id"]
    assert results[3][1]["prompt"] == "three"
    stored = store.list_pulses(db)
    assert sorted(p.prompt for p in stored) == ["five", "one", "three"]
    for status, data in results:
        if status == 201:
            assert store.get_pulse(db, data["id"]).to_dict() == data
    with db.transaction() as conn:
        events = conn.execute("SELECT kind, pulse_id, data FROM events ORDER BY id")
    assert [(e["kind"], e["pulse_id"]) for e in events] == [
        ("pulse.created", results[i][1]["id"]) for i in (0, 2, 4)
    ]
    assert json.loads(events[2]["data"]) == {"pulse": results[4][1]}


def test_create_waits_on_the_thread_while_another_process_writes(client, auth, db):
    import threading

    other = sqlite3.connect(db.path, isolation_level=None, check_same_thread=False)
    other.execute("BEGIN IMMEDIATE")
    timer = threading.Timer(0.5, lambda: other.execute("COMMIT"))
    started = time.monotonic()
    timer.start()
    try:
        response = post_pulse(client, auth, at="in 10m")
    finally:
        timer.join()
        other.close()

    assert response.status_code == 201
    assert time.monotonic() - started >= 0.45  # it waited for the lock, not failed
    assert store.get_pulse(db, response.json()["id"]).prompt == "check the flight"
    assert table_count(db, "events") == 1


@pytest.mark.parametrize(
    ("text", "quick"),
    [
        (None, True),
        ("now", True),
        ("in 30d", True),
        ("+90s", True),
        ("1h30m", True),
        ("2 hours", True),
        ("at 18:30", True),
        ("9am", True),
        ("2026-09-01 06:45", True),
        ("2026-09-01T06:45:00Z", True),
        ("1767225600", True),
        ("tomorrow 6:45", False),
        ("next monday 14:00", False),
        ("in a week", False),
    ],
)
def test_quick_time_names_the_forms_read_without_dateparser(text, quick):
    from reeve_cli.api import quick_time

    assert quick_time(text) is quick


def test_schedule_resume_clears_failure_streak(client, auth, db):
    """Resuming through the API does what `reeve schedule resume` does."""
    client.post(
        "/api/schedules",
        json={"name": "beat", "prompt": "heartbeat", "every": "1h"},
        headers=auth,
    )
    store.update_schedule(db, "beat", paused=True, failure_streak=5)

    resumed = client.post("/api/schedules/beat/resume", headers=auth)

    assert resumed.status_code == 200
    assert resumed.json()["paused"] is False
    assert resumed.json()["failure_streak"] == 0
    assert store.get_schedule(db, "beat").failure_streak == 0
