"""The OpenAPI 3.1 description served at `GET /openapi.json`.

Written by hand next to the routes; `tests/test_api_schema.py` checks that every
route is described and runs schemathesis against it.
"""

from __future__ import annotations

from typing import Any

from reeve_cli import __version__
from reeve_cli.model import PRIORITY_ORDER, Status

PRIORITIES = [p.value for p in PRIORITY_ORDER]
STATUSES = [s.value for s in Status]

NULLABLE_STRING = {"type": ["string", "null"]}
NULLABLE_NUMBER = {"type": ["number", "null"]}
NULLABLE_INTEGER = {"type": ["integer", "null"]}
TIME = {"type": "string", "description": "ISO 8601 UTC with a Z"}
NULLABLE_TIME = {"type": ["string", "null"], "description": "ISO 8601 UTC with a Z"}
STRINGS = {"type": "array", "items": {"type": "string"}}


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def _object(
    properties: dict[str, Any], required: list[str] | None = None
) -> dict[str, Any]:
    return {
        "type": "object",
        "properties": properties,
        "required": list(properties) if required is None else required,
    }


SCHEMAS: dict[str, Any] = {
    "Error": _object(
        {
            "error": _object(
                {
                    "code": {
                        "type": "string",
                        "description": "machine-readable: invalid, invalid_time, "
                        "invalid_priority, invalid_type, unknown_field, "
                        "malformed_json, too_large, not_found, conflict, "
                        "unauthorized, rate_limited, database, internal, ...",
                    },
                    "message": {"type": "string"},
                    "field": NULLABLE_STRING,
                }
            )
        }
    ),
    "PulseResult": _object(
        {
            "exit_code": NULLABLE_INTEGER,
            "session_id": NULLABLE_STRING,
            "text": NULLABLE_STRING,
            "output_tail": NULLABLE_STRING,
            "cost_usd": NULLABLE_NUMBER,
            "duration_s": NULLABLE_NUMBER,
            "usage": {"type": "object"},
        }
    ),
    "Pulse": _object(
        {
            "id": {"type": "integer"},
            "prompt": {"type": "string"},
            "scheduled_at": TIME,
            "priority": {"type": "string", "enum": PRIORITIES},
            "status": {"type": "string", "enum": STATUSES},
            "session_id": NULLABLE_STRING,
            "sticky_notes": STRINGS,
            "tags": STRINGS,
            "source": {"type": "string"},
            "created_at": TIME,
            "updated_at": TIME,
            "started_at": NULLABLE_TIME,
            "finished_at": NULLABLE_TIME,
            "attempt": {"type": "integer"},
            "max_retries": {"type": "integer"},
            "error": NULLABLE_STRING,
            "idempotency_key": NULLABLE_STRING,
            "executor": NULLABLE_STRING,
            "schedule_name": NULLABLE_STRING,
            "result": _ref("PulseResult"),
        }
    ),
    "PulseList": _object(
        {
            "pulses": {"type": "array", "items": _ref("Pulse")},
            "next_cursor": {
                "type": ["string", "null"],
                "description": "pass as ?cursor= for the next page; null at the end",
            },
        }
    ),
    "PulseCreate": {
        "type": "object",
        "additionalProperties": False,
        "required": ["prompt"],
        "properties": {
            "prompt": {"type": "string", "minLength": 1},
            "at": {
                "type": "string",
                "description": "when, in any form the CLI's --at accepts "
                "('in 20m', 'tomorrow 6:45', ISO 8601, epoch seconds); "
                "default now",
            },
            "scheduled_at": {"type": "string", "description": "same as 'at'"},
            "allow_past": {"type": "boolean", "default": False},
            "priority": {"type": "string", "enum": PRIORITIES, "default": "normal"},
            "session_id": NULLABLE_STRING,
            "sticky_notes": STRINGS,
            "tags": STRINGS,
            "max_retries": {"type": "integer", "minimum": 0, "maximum": 100},
            "executor": NULLABLE_STRING,
            "source": {"type": "string", "default": "api"},
            "idempotency_key": {
                "type": ["string", "null"],
                "description": "same as the Idempotency-Key header",
            },
        },
    },
    "PulsePatch": {
        "type": "object",
        "additionalProperties": False,
        "properties": {
            "at": {"type": "string", "description": "new time (reschedule)"},
            "scheduled_at": {"type": "string", "description": "same as 'at'"},
            "allow_past": {"type": "boolean", "default": False},
            "priority": {"type": "string", "enum": PRIORITIES},
            "sticky_notes": {**STRINGS, "description": "replace the notes"},
            "add_notes": {**STRINGS, "description": "append notes"},
            "tags": {**STRINGS, "description": "replace the tags"},
            "prompt": {"type": "string", "minLength": 1},
        },
    },
    "Schedule": _object(
        {
            "name": {"type": "string"},
            "cron": NULLABLE_STRING,
            "every_s": NULLABLE_NUMBER,
            "prompt": {"type": "string"},
            "tz": {"type": "string"},
            "priority": {"type": "string", "enum": PRIORITIES},
            "jitter_s": {"type": "number"},
            "session_id": NULLABLE_STRING,
            "sticky_notes": STRINGS,
            "tags": STRINGS,
            "max_retries": NULLABLE_INTEGER,
            "executor": NULLABLE_STRING,
            "paused": {"type": "boolean"},
            "created_at": TIME,
            "updated_at": TIME,
            "last_fire_at": NULLABLE_TIME,
            "fire_count": {"type": "integer"},
            "skip_count": {"type": "integer"},
            "failure_streak": {"type": "integer"},
        }
    ),
    "ScheduleCreate": {
        "type": "object",
        "additionalProperties": False,
        "required": ["name", "prompt"],
        "properties": {
            "name": {"type": "string", "minLength": 1},
            "prompt": {"type": "string", "minLength": 1},
            "cron": {"type": "string", "description": "crontab line (0/7 = Sunday)"},
            "every": {
                "type": ["string", "number"],
                "description": "interval: '15m', '2h', or seconds",
            },
            "tz": {"type": "string", "description": "IANA zone; default the user's"},
            "priority": {"type": "string", "enum": PRIORITIES},
            "jitter": {
                "type": ["string", "number"],
                "description": "random delay up to this ('5m', or seconds)",
            },
            "session_id": NULLABLE_STRING,
            "sticky_notes": STRINGS,
            "tags": STRINGS,
            "max_retries": {"type": "integer", "minimum": 0, "maximum": 100},
            "executor": NULLABLE_STRING,
        },
    },
    "SchedulePatch": {
        "type": "object",
        "additionalProperties": False,
        "properties": {
            "prompt": {"type": "string", "minLength": 1},
            "cron": {"type": "string"},
            "every": {"type": ["string", "number"]},
            "tz": {"type": "string"},
            "priority": {"type": "string", "enum": PRIORITIES},
            "jitter": {"type": ["string", "number"]},
            "session_id": NULLABLE_STRING,
            "sticky_notes": STRINGS,
            "tags": STRINGS,
            "max_retries": {"type": ["integer", "null"], "minimum": 0, "maximum": 100},
            "executor": NULLABLE_STRING,
            "paused": {"type": "boolean"},
        },
    },
    "ScheduleRun": _object(
        {
            "schedule": _ref("Schedule"),
            "pulse": {"oneOf": [_ref("Pulse"), {"type": "null"}]},
        }
    ),
    "Health": {
        "type": "object",
        "required": ["status", "database", "scheduler"],
        "properties": {
            "status": {"type": "string", "enum": ["ok", "error"]},
            "database": {"type": "string"},
            "scheduler": {"type": "string"},
        },
    },
    "Status": _object(
        {
            "daemon": {"type": "object"},
            "counts": {"type": "object", "additionalProperties": {"type": "integer"}},
            "running": {"type": "array", "items": _ref("Pulse")},
            "next_due": {"oneOf": [_ref("Pulse"), {"type": "null"}]},
            "last_failure": {"oneOf": [_ref("Pulse"), {"type": "null"}]},
            "schedules": {"type": "integer"},
        }
    ),
}

ERROR_TEXT = {
    "400": "bad input (malformed JSON, wrong type, unknown field, bad value)",
    "401": "missing or wrong bearer token",
    "404": "no such pulse or schedule",
    "409": "the state does not allow it",
    "413": "request body over 1 MiB",
    "429": "too many wrong tokens from this address; see Retry-After",
    "503": "database busy or unavailable",
}


def _json(schema: dict[str, Any], description: str) -> dict[str, Any]:
    return {
        "description": description,
        "content": {"application/json": {"schema": schema}},
    }


def _responses(ok: dict[str, Any], *errors: str) -> dict[str, Any]:
    responses = dict(ok)
    for code in ("400", "401", "429", "503", *errors):
        responses[code] = _json(_ref("Error"), ERROR_TEXT[code])
    return responses


def _body(name: str, required: bool = True) -> dict[str, Any]:
    return {
        "required": required,
        "content": {"application/json": {"schema": _ref(name)}},
    }


PULSE_ID = {
    "name": "pulse_id",
    "in": "path",
    "required": True,
    "schema": {"type": "integer", "minimum": 1},
}
SCHEDULE_NAME = {
    "name": "name",
    "in": "path",
    "required": True,
    "schema": {"type": "string", "minLength": 1},
}


def _query(name: str, schema: dict[str, Any], description: str) -> dict[str, Any]:
    return {
        "name": name,
        "in": "query",
        "required": False,
        "schema": schema,
        "description": description,
    }


def _paths() -> dict[str, Any]:
    pulse = _json(_ref("Pulse"), "the pulse")
    schedule = _json(_ref("Schedule"), "the schedule")
    return {
        "/api/health": {
            "get": {
                "operationId": "health",
                "summary": "Liveness, database and scheduler state (no token needed)",
                "security": [],
                "responses": {
                    "200": _json(_ref("Health"), "healthy"),
                    "503": _json(_ref("Health"), "not healthy"),
                },
            }
        },
        "/api/status": {
            "get": {
                "operationId": "status",
                "summary": "What 'reeve status' shows",
                "responses": _responses({"200": _json(_ref("Status"), "status")}),
            }
        },
        "/api/pulses": {
            "get": {
                "operationId": "listPulses",
                "summary": "List pulses (every status unless filtered), paged",
                "parameters": [
                    {
                        **_query(
                            "status",
                            {
                                "type": "array",
                                "items": {"type": "string", "enum": [*STATUSES, "all"]},
                            },
                            "only these statuses (repeat, or comma-separate)",
                        ),
                        "style": "form",
                        "explode": True,
                    },
                    _query("tag", {"type": "string"}, "only pulses with this tag"),
                    _query(
                        "priority",
                        {"type": "string", "enum": PRIORITIES},
                        "only this priority",
                    ),
                    _query(
                        "since", {"type": "string"}, "due at or after (any time form)"
                    ),
                    _query("until", {"type": "string"}, "due before (any time form)"),
                    _query(
                        "limit",
                        {
                            "type": "integer",
                            "minimum": 1,
                            "maximum": 1000,
                            "default": 100,
                        },
                        "page size",
                    ),
                    _query(
                        "cursor", {"type": "string"}, "next_cursor of the previous page"
                    ),
                    _query(
                        "order",
                        {"type": "string", "enum": ["due", "newest"], "default": "due"},
                        "due: due time, priority, id; newest: id descending",
                    ),
                ],
                "responses": _responses(
                    {"200": _json(_ref("PulseList"), "a page of pulses")}
                ),
            },
            "post": {
                "operationId": "createPulse",
                "summary": "Create a pulse (idempotent with Idempotency-Key)",
                "parameters": [
                    {
                        "name": "Idempotency-Key",
                        "in": "header",
                        "required": False,
                        "schema": {"type": "string", "minLength": 1, "maxLength": 255},
                        "description": "a repeat with the same key returns the first "
                        "pulse (200)",
                    }
                ],
                "requestBody": _body("PulseCreate"),
                "responses": _responses(
                    {
                        "201": _json(_ref("Pulse"), "created"),
                        "200": _json(
                            _ref("Pulse"),
                            "replay: the pulse created first with this key",
                        ),
                    },
                    "413",
                ),
            },
        },
        "/api/pulses/{pulse_id}": {
            "parameters": [PULSE_ID],
            "get": {
                "operationId": "getPulse",
                "summary": "One pulse",
                "responses": _responses({"200": pulse}, "404"),
            },
            "patch": {
                "operationId": "updatePulse",
                "summary": "Reschedule, reprioritise or change notes of a "
                "pending pulse",
                "requestBody": _body("PulsePatch"),
                "responses": _responses({"200": pulse}, "404", "409", "413"),
            },
            "delete": {
                "operationId": "cancelPulse",
                "summary": "Cancel a pending pulse",
                "responses": _responses({"200": pulse}, "404", "409"),
            },
        },
        "/api/pulses/{pulse_id}/run": {
            "parameters": [PULSE_ID],
            "post": {
                "operationId": "runPulse",
                "summary": "Make a pending pulse due now",
                "responses": _responses({"200": pulse}, "404", "409"),
            },
        },
        "/api/schedules": {
            "get": {
                "operationId": "listSchedules",
                "summary": "Every schedule",
                "responses": _responses(
                    {
                        "200": _json(
                            {"type": "array", "items": _ref("Schedule")}, "schedules"
                        )
                    }
                ),
            },
            "post": {
                "operationId": "createSchedule",
                "summary": "Create a schedule (cron or every)",
                "requestBody": _body("ScheduleCreate"),
                "responses": _responses({"201": schedule}, "409", "413"),
            },
        },
        "/api/schedules/{name}": {
            "parameters": [SCHEDULE_NAME],
            "get": {
                "operationId": "getSchedule",
                "summary": "One schedule",
                "responses": _responses({"200": schedule}, "404"),
            },
            "patch": {
                "operationId": "updateSchedule",
                "summary": "Change a schedule",
                "requestBody": _body("SchedulePatch"),
                "responses": _responses({"200": schedule}, "404", "409", "413"),
            },
            "delete": {
                "operationId": "removeSchedule",
                "summary": "Remove a schedule (its pulses stay)",
                "responses": _responses({"200": schedule}, "404"),
            },
        },
        "/api/schedules/{name}/run": {
            "parameters": [SCHEDULE_NAME],
            "post": {
                "operationId": "runSchedule",
                "summary": "Fire a schedule now",
                "responses": _responses(
                    {
                        "200": _json(
                            _ref("ScheduleRun"), "the pulse made, or null if skipped"
                        )
                    },
                    "404",
                    "409",
                ),
            },
        },
        "/api/schedules/{name}/pause": {
            "parameters": [SCHEDULE_NAME],
            "post": {
                "operationId": "pauseSchedule",
                "summary": "Pause a schedule",
                "responses": _responses({"200": schedule}, "404"),
            },
        },
        "/api/schedules/{name}/resume": {
            "parameters": [SCHEDULE_NAME],
            "post": {
                "operationId": "resumeSchedule",
                "summary": "Resume a paused schedule",
                "responses": _responses({"200": schedule}, "404"),
            },
        },
        "/api/events": {
            "get": {
                "operationId": "events",
                "summary": "Server-Sent Events: one per state change, resumable",
                "parameters": [
                    {
                        "name": "Last-Event-ID",
                        "in": "header",
                        "required": False,
                        "schema": {"type": "string", "pattern": "^[0-9]{1,18}$"},
                        "description": "resume after this event id",
                    },
                    _query(
                        "after",
                        {"type": "string", "pattern": "^[0-9]{1,18}$"},
                        "same as Last-Event-ID; default: only new events",
                    ),
                    _query(
                        "limit",
                        {"type": "integer", "minimum": 0, "maximum": 100000},
                        "end the stream after this many events (0: never)",
                    ),
                    _query(
                        "timeout",
                        {"type": "integer", "minimum": 0, "maximum": 86400},
                        "end the stream after this many seconds (0: never)",
                    ),
                ],
                "responses": _responses(
                    {
                        "200": {
                            "description": "event stream: 'id: <events.id>', "
                            "'event: <kind>', 'data: <Event JSON>'",
                            "content": {
                                "text/event-stream": {"schema": {"type": "string"}}
                            },
                        }
                    }
                ),
            }
        },
        "/metrics": {
            "get": {
                "operationId": "metrics",
                "summary": "Prometheus text exposition",
                "responses": _responses(
                    {
                        "200": {
                            "description": "metrics",
                            "content": {"text/plain": {"schema": {"type": "string"}}},
                        }
                    }
                ),
            }
        },
        "/openapi.json": {
            "get": {
                "operationId": "openapi",
                "summary": "This description",
                "responses": _responses(
                    {"200": _json({"type": "object"}, "OpenAPI 3.1")}
                ),
            }
        },
    }


def openapi_schema() -> dict[str, Any]:
    """Return the OpenAPI document for the API."""
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "Reeve HTTP API",
            "version": __version__,
            "description": "Wake the agent over HTTP. See docs/http-api.md.",
        },
        "security": [{"bearerAuth": []}],
        "paths": _paths(),
        "components": {
            "schemas": SCHEMAS,
            "securitySchemes": {"bearerAuth": {"type": "http", "scheme": "bearer"}},
        },
    }
