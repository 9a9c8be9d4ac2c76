"""Property-based run of schemathesis against /openapi.json: no 5xx, no drift.

Each operation gets a bounded number of generated requests (valid and invalid),
sent in-process with the token. Every response must be a documented status with
a body matching the schema, and never a server error.
"""

from __future__ import annotations

import pytest
import schemathesis
from hypothesis import HealthCheck
from hypothesis import settings as hypothesis_settings
from schemathesis import checks

from reeve_cli.api import create_app
from reeve_cli.api_openapi import openapi_schema
from reeve_cli.api_token import ensure_api_token

# The event stream is endless by design; tests/test_api.py covers it, and auth
# on every route (schemathesis' ignored_auth probe cannot reach an in-process app).
schema = schemathesis.openapi.from_dict(openapi_schema()).exclude(path="/api/events")

CHECKS = [
    checks.not_a_server_error,
    checks.status_code_conformance,
    checks.content_type_conformance,
    checks.response_schema_conformance,
    checks.negative_data_rejection,
]


@pytest.fixture
def session(settings, db):
    """An in-process client of a fresh app on this test's database."""
    from schemathesis.python import asgi

    with asgi.get_client(create_app(settings, db)) as client:
        yield client


@pytest.fixture
def auth(settings):
    return {"Authorization": f"Bearer {ensure_api_token(settings)}"}


@schema.parametrize()
@hypothesis_settings(
    max_examples=30,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
def test_api_matches_its_openapi_and_never_fails(case, session, auth):
    case.call_and_validate(
        session=session, base_url="http://testserver", headers=auth, checks=CHECKS
    )
