"""Schedule routes: `/api/schedules` CRUD, run now, pause and resume.

Creation goes through `schedule.create_schedule` and changes re-use its checks
(`validate_cron`, the interval minimum), so the API accepts exactly what the CLI
and MCP accept.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from reeve_cli import store
from reeve_cli.api_input import (
    WrongType,
    check_query,
    check_text,
    read_json,
    reject_unknown,
    take_bool,
    take_int,
    take_str,
    take_str_list,
)
from reeve_cli.errors import InvalidValue

if TYPE_CHECKING:
    from reeve_cli.model import Schedule

CREATE_FIELDS = frozenset(
    {
        "name",
        "prompt",
        "cron",
        "every",
        "tz",
        "priority",
        "jitter",
        "session_id",
        "sticky_notes",
        "tags",
        "max_retries",
        "executor",
    }
)
PATCH_FIELDS = (CREATE_FIELDS - {"name"}) | {"paused"}


def _name(request: Request) -> str:
    return check_text(str(request.path_params["name"]), "name")


def _duration(data: dict[str, Any], name: str) -> float | str | None:
    """Read an interval given as seconds or as text such as '15m'."""
    if name not in data:
        return None
    value = data[name]
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        raise WrongType(
            f"Field '{name}' must be a duration text such as '15m' or seconds",
            field=name,
        )
    if isinstance(value, str):
        if len(value) > 100:
            raise InvalidValue(f"Field '{name}' is too long", field=name)
        return take_str(data, name)
    if value != value or value in (float("inf"), float("-inf")):
        raise InvalidValue(f"Field '{name}' must be a finite number", field=name)
    return float(value)


def _seconds(value: float | str | None, name: str) -> float | None:
    if value is None:
        return None
    if isinstance(value, float):
        seconds = value
    else:
        from reeve_cli.timefmt import parse_duration

        try:
            seconds = parse_duration(value).total_seconds()
        except InvalidValue as exc:
            raise InvalidValue(exc.message, field=name) from None
    if seconds < 0 or seconds > 366 * 86400:
        raise InvalidValue(
            f"Field '{name}' must be between 0 and 366 days, got {seconds:g}s",
            field=name,
        )
    return seconds


def _max_retries(data: dict[str, Any], nullable: bool = False) -> int | None:
    if nullable and data.get("max_retries", 0) is None:
        return None
    value = take_int(data, "max_retries")
    if value is not None and not 0 <= value <= 100:
        raise InvalidValue(
            f"max_retries must be between 0 and 100, got {value}", field="max_retries"
        )
    return value


def _common(data: dict[str, Any]) -> dict[str, Any]:
    """Read the fields creation and change share, checking their types."""
    return {
        "prompt": take_str(data, "prompt"),
        "cron": take_str(data, "cron", max_length=200),
        "every": _duration(data, "every"),
        "tz": take_str(data, "tz", max_length=64),
        "priority": take_str(data, "priority"),
        "jitter": _duration(data, "jitter"),
        "session_id": take_str(data, "session_id", nullable=True, max_length=200),
        "sticky_notes": take_str_list(data, "sticky_notes"),
        "tags": take_str_list(data, "tags"),
        "executor": take_str(data, "executor", nullable=True, max_length=64),
    }


async def schedule_list(request: Request) -> Response:
    from reeve_cli.api import api_context

    ctx = api_context(request)
    check_query(request, ())
    schedules = await ctx.run(store.list_schedules, ctx.db)
    return JSONResponse([s.to_dict() for s in schedules])


async def schedule_create(request: Request) -> Response:
    from reeve_cli.api import api_context

    ctx = api_context(request)
    check_query(request, ())
    data = await read_json(request)
    reject_unknown(data, CREATE_FIELDS)
    name = take_str(data, "name", max_length=200)
    fields = _common(data)
    max_retries = _max_retries(data)
    for required in ("name", "prompt"):
        if data.get(required) is None:
            raise InvalidValue(f"Field '{required}' is required", field=required)
    if fields["executor"] is not None and not fields["executor"].strip():
        raise InvalidValue("Field 'executor' cannot be empty", field="executor")

    def create() -> Schedule:
        from reeve_cli.schedule import create_schedule

        return create_schedule(
            ctx.settings,
            ctx.db,
            name=str(name),
            prompt=str(fields["prompt"]),
            cron=fields["cron"],
            every=fields["every"],
            tz=fields["tz"],
            priority=fields["priority"] or "normal",
            jitter=fields["jitter"],
            session_id=fields["session_id"],
            sticky_notes=fields["sticky_notes"] or [],
            tags=fields["tags"] or [],
            max_retries=max_retries,
            executor=fields["executor"],
        )

    schedule = await ctx.run(create)
    ctx.wrote()
    return JSONResponse(schedule.to_dict(), 201)


async def schedule_get(request: Request) -> Response:
    from reeve_cli.api import api_context

    ctx = api_context(request)
    check_query(request, ())
    schedule = await ctx.run(store.get_schedule, ctx.db, _name(request))
    return JSONResponse(schedule.to_dict())


def _changes(ctx: Any, name: str, data: dict[str, Any]) -> dict[str, Any]:
    """Validate a change against the stored schedule; return store fields."""
    from reeve_cli.model import Priority
    from reeve_cli.schedule import MIN_EVERY_S, validate_cron

    fields = _common(data)
    paused = take_bool(data, "paused")
    max_retries = _max_retries(data, nullable=True)
    current = store.get_schedule(ctx.db, name)
    changes: dict[str, Any] = {}
    if fields["cron"] is not None and fields["every"] is not None:
        raise InvalidValue("Give exactly one of cron or every", field="cron")
    tz = fields["tz"] or current.tz
    if fields["tz"] is not None or fields["cron"] is not None:
        cron = fields["cron"] if fields["cron"] is not None else current.cron
        if cron is not None:
            changes["cron"] = validate_cron(cron, tz)
            changes["every_s"] = None
        else:
            validate_cron("0 0 * * *", tz)  # checks the zone
        if fields["tz"] is not None:
            changes["tz"] = tz
    if fields["every"] is not None:
        every_s = _seconds(fields["every"], "every")
        if every_s is None or every_s < MIN_EVERY_S:
            raise InvalidValue(
                f"every must be at least {MIN_EVERY_S:g}s", field="every"
            )
        changes["every_s"] = every_s
        changes["cron"] = None
    if fields["jitter"] is not None:
        changes["jitter_s"] = _seconds(fields["jitter"], "jitter")
    if fields["prompt"] is not None:
        changes["prompt"] = store.check_prompt(
            fields["prompt"], ctx.settings.max_prompt_bytes
        )
    if fields["priority"] is not None:
        changes["priority"] = Priority.parse(fields["priority"])
    for optional in ("session_id", "executor"):
        if fields[optional] is not None and not fields[optional].strip():
            raise InvalidValue(f"Field '{optional}' cannot be empty", field=optional)
    if "session_id" in data:
        changes["session_id"] = fields["session_id"]
    for listed in ("sticky_notes", "tags"):
        if fields[listed] is not None:
            limit = store.MAX_NOTE_LENGTH if listed == "sticky_notes" else 64
            for item in fields[listed]:
                if not item.strip() or len(item) > limit:
                    raise InvalidValue(
                        f"Each item of '{listed}' is 1 to {limit} characters",
                        field=listed,
                    )
            changes[listed] = [item.strip() for item in fields[listed]]
    if "max_retries" in data:
        changes["max_retries"] = max_retries
    if "executor" in data:
        changes["executor"] = fields["executor"]
    if paused is not None:
        changes["paused"] = paused
    if not changes:
        raise InvalidValue("Nothing to change; give at least one field")
    return changes


async def schedule_patch(request: Request) -> Response:
    from reeve_cli.api import api_context

    ctx = api_context(request)
    check_query(request, ())
    name = _name(request)
    data = await read_json(request)
    reject_unknown(data, PATCH_FIELDS)

    def change() -> Schedule:
        return store.update_schedule(ctx.db, name, **_changes(ctx, name, data))

    schedule = await ctx.run(change)
    ctx.wrote()
    return JSONResponse(schedule.to_dict())


async def schedule_remove(request: Request) -> Response:
    from reeve_cli.api import api_context

    ctx = api_context(request)
    check_query(request, ())
    schedule = await ctx.run(store.remove_schedule, ctx.db, _name(request))
    ctx.wrote()
    return JSONResponse(schedule.to_dict())


async def _set_paused(request: Request, paused: bool) -> Response:
    from reeve_cli.api import api_context

    ctx = api_context(request)
    check_query(request, ())
    name = _name(request)

    schedule = await ctx.run(store.set_schedule_paused, ctx.db, name, paused)
    ctx.wrote()
    return JSONResponse(schedule.to_dict())


async def schedule_pause(request: Request) -> Response:
    return await _set_paused(request, True)


async def schedule_resume(request: Request) -> Response:
    return await _set_paused(request, False)


async def schedule_run(request: Request) -> Response:
    from reeve_cli.api import api_context
    from reeve_cli.schedule import fire_schedule_now

    ctx = api_context(request)
    check_query(request, ())
    name = _name(request)
    await ctx.run(store.get_schedule, ctx.db, name)
    if ctx.runtime is not None:
        pulse = await ctx.runtime.run_schedule(name)
    else:
        pulse = await ctx.run(fire_schedule_now, ctx.settings, ctx.db, name)
    ctx.wrote()
    schedule = await ctx.run(store.get_schedule, ctx.db, name)
    return JSONResponse(
        {
            "schedule": schedule.to_dict(),
            "pulse": pulse.to_dict() if pulse is not None else None,
        }
    )


def schedule_routes() -> list[Route]:
    return [
        Route("/api/schedules", schedule_list, methods=["GET"]),
        Route("/api/schedules", schedule_create, methods=["POST"]),
        Route("/api/schedules/{name}", schedule_get, methods=["GET"]),
        Route("/api/schedules/{name}", schedule_patch, methods=["PATCH"]),
        Route("/api/schedules/{name}", schedule_remove, methods=["DELETE"]),
        Route("/api/schedules/{name}/run", schedule_run, methods=["POST"]),
        Route("/api/schedules/{name}/pause", schedule_pause, methods=["POST"]),
        Route("/api/schedules/{name}/resume", schedule_resume, methods=["POST"]),
    ]
