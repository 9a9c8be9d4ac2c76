"""Reading what HTTP clients send: JSON bodies, fields and query parameters.

Every check here raises a `ReeveError` subclass, so a client's mistake becomes a
4xx JSON error naming the field, never a 500. Handlers validate the whole request
before they write anything.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Collection, Mapping
from typing import Any

from starlette.requests import Request

from reeve_cli.errors import InvalidValue, ReeveError

# The largest request body the API reads (bytes); larger ones get 413.
MAX_BODY_BYTES = 1024 * 1024
# Time phrases longer than this are refused before they reach the parser.
MAX_TIME_TEXT = 200


class BodyTooLarge(ReeveError):
    """The request body is larger than the API accepts."""

    http_status = 413
    code = "too_large"

    def __init__(self, limit: int = MAX_BODY_BYTES) -> None:
        super().__init__(
            f"The request body is larger than {limit} bytes; send less, "
            "or split the request"
        )


class MalformedJson(InvalidValue):
    """The request body is not a JSON object."""

    code = "malformed_json"


class WrongType(InvalidValue):
    """A field has the wrong JSON type."""

    code = "invalid_type"


class UnknownField(InvalidValue):
    """The request names a field the endpoint does not know."""

    code = "unknown_field"

    def __init__(self, name: str, known: Collection[str], where: str = "field") -> None:
        super().__init__(
            f"Unknown {where} '{name}'; use one of {', '.join(sorted(known))}",
            field=name,
        )


async def read_json(request: Request, limit: int = MAX_BODY_BYTES) -> dict[str, Any]:
    """Read the body as one JSON object of at most `limit` bytes.

    Raises:
        BodyTooLarge: the body (or its declared length) exceeds `limit`.
        MalformedJson: the body is empty, not JSON, or not an object.
    """
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        raise BodyTooLarge(limit)

    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > limit:
            raise BodyTooLarge(limit)

    if not body.strip():
        raise MalformedJson("The request body is empty; send a JSON object")
    try:
        data = json.loads(bytes(body))
    except UnicodeDecodeError:
        raise MalformedJson("The request body is not UTF-8 text") from None
    except json.JSONDecodeError as exc:
        raise MalformedJson(
            f"The request body is not valid JSON ({exc.msg} at line {exc.lineno}, "
            f"column {exc.colno})"
        ) from None
    except (ValueError, RecursionError):
        raise MalformedJson("The request body is not valid JSON") from None
    if not isinstance(data, dict):
        raise MalformedJson("The request body must be a JSON object")
    return data


def reject_unknown(data: Mapping[str, Any], known: Collection[str]) -> None:
    for name in data:
        if name not in known:
            raise UnknownField(name, known)


def check_text(value: str, name: str) -> str:
    """Refuse text that cannot be stored as UTF-8 (lone surrogates)."""
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise InvalidValue(
            f"Field '{name}' contains characters that are not valid Unicode",
            field=name,
        ) from None
    return value


def _type_name(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "an array"
    return "an object"


def take_str(
    data: Mapping[str, Any],
    name: str,
    *,
    nullable: bool = False,
    max_length: int | None = None,
) -> str | None:
    """Return a string field, None when absent (or null if `nullable`)."""
    if name not in data or (nullable and data[name] is None):
        return None
    value = data[name]
    if not isinstance(value, str):
        expected = "a string or null" if nullable else "a string"
        raise WrongType(
            f"Field '{name}' must be {expected}, got {_type_name(value)}",
            field=name,
        )
    if max_length is not None and len(value) > max_length:
        raise InvalidValue(
            f"Field '{name}' is longer than {max_length} characters", field=name
        )
    return check_text(value, name)


def take_str_list(data: Mapping[str, Any], name: str) -> list[str] | None:
    """Return a list-of-strings field, or None when absent."""
    if name not in data:
        return None
    value = data[name]
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise WrongType(
            f"Field '{name}' must be an array of strings, got {_type_name(value)}",
            field=name,
        )
    return [check_text(v, name) for v in value]


def take_int(data: Mapping[str, Any], name: str) -> int | None:
    """Return an integer field (booleans refused), or None when absent."""
    if name not in data:
        return None
    value = data[name]
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if not isinstance(value, int) or isinstance(value, bool):
        raise WrongType(
            f"Field '{name}' must be an integer, got {_type_name(value)}",
            field=name,
        )
    return value


def take_bool(data: Mapping[str, Any], name: str) -> bool | None:
    if name not in data:
        return None
    value = data[name]
    if not isinstance(value, bool):
        raise WrongType(
            f"Field '{name}' must be true or false, got {_type_name(value)}",
            field=name,
        )
    return value


def take_number(data: Mapping[str, Any], name: str) -> float | None:
    if name not in data:
        return None
    value = data[name]
    if not isinstance(value, int | float) or isinstance(value, bool):
        raise WrongType(
            f"Field '{name}' must be a number, got {_type_name(value)}", field=name
        )
    return float(value)


def check_query(request: Request, known: Collection[str]) -> None:
    if not request.scope.get("query_string"):
        return  # most requests have none: skip parsing
    for name in request.query_params:
        if name not in known:
            raise UnknownField(name, known, where="query parameter")


def query_str(request: Request, name: str, max_length: int = 200) -> str | None:
    values = request.query_params.getlist(name)
    if not values:
        return None
    if len(values) > 1:
        raise InvalidValue(f"Give query parameter '{name}' once", field=name)
    if len(values[0]) > max_length:
        raise InvalidValue(
            f"Query parameter '{name}' is longer than {max_length} characters",
            field=name,
        )
    return check_text(values[0], name)


def query_int(request: Request, name: str, default: int, low: int, high: int) -> int:
    text = query_str(request, name)
    if text is None:
        return default
    try:
        value = int(text)
    except ValueError:
        raise InvalidValue(
            f"Query parameter '{name}' must be a whole number, got '{text}'",
            field=name,
        ) from None
    if not low <= value <= high:
        raise InvalidValue(
            f"Query parameter '{name}' must be between {low} and {high}, got {value}",
            field=name,
        )
    return value


def parse_pulse_id(text: str) -> int:
    """Read a pulse id from a URL path segment."""
    if not text.isascii() or not text.isdigit() or len(text) > 18:
        raise InvalidValue(
            f"Pulse ids are whole numbers, got '{text[:40]}'", field="id"
        )
    value = int(text)
    if value < 1:
        raise InvalidValue(f"Pulse ids start at 1, got '{text}'", field="id")
    return value


def encode_cursor(payload: dict[str, Any]) -> str:
    raw = json.dumps(payload, separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(text: str) -> dict[str, Any]:
    """Read an opaque `next_cursor` back; anything else is a 400."""
    try:
        raw = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
        data = json.loads(raw)
    except (binascii.Error, ValueError):
        data = None
    if not isinstance(data, dict):
        raise InvalidValue(
            "Query parameter 'cursor' is not a cursor this API gave out; "
            "pass the 'next_cursor' of the previous page unchanged",
            field="cursor",
        )
    return data
