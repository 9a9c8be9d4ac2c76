"""`GET /metrics`: queue and attempt figures in the Prometheus text format 0.0.4.

Everything is computed from the tables on each scrape (a few indexed aggregate
queries), so the figures survive restarts and agree with `reeve status`. Counters
count rows, so they only drop if old rows are pruned.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, Any

from starlette.requests import Request
from starlette.responses import Response

from reeve_cli.api_input import check_query
from reeve_cli.model import PRIORITY_ORDER, Status, db_time, utcnow

if TYPE_CHECKING:
    from reeve_cli.db import Connection, Database

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
# Seconds an attempt started after its pulse was due.
LATENESS_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 15, 60, 300, 900, 3600)
# Seconds an attempt ran.
DURATION_BUCKETS = (1, 5, 15, 30, 60, 120, 300, 600, 1800, 3600, 7200)


def _value(number: float | int | None) -> str:
    if number is None:
        return "0"
    if isinstance(number, int) or float(number).is_integer():
        return str(int(number))
    return repr(float(number))


def _label(value: Any) -> str:
    text = str(value).replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')
    return f'"{text}"'


class Exposition:
    """Collects metric families and renders them as Prometheus text."""

    def __init__(self) -> None:
        self.lines: list[str] = []

    def family(self, name: str, kind: str, help_text: str) -> None:
        self.lines.append(f"# HELP {name} {help_text}")
        self.lines.append(f"# TYPE {name} {kind}")

    def sample(
        self, name: str, value: float | int | None, labels: dict[str, Any] | None = None
    ) -> None:
        if labels:
            inner = ",".join(f"{k}={_label(v)}" for k, v in labels.items())
            self.lines.append(f"{name}{{{inner}}} {_value(value)}")
        else:
            self.lines.append(f"{name} {_value(value)}")

    def histogram(
        self,
        name: str,
        help_text: str,
        buckets: Sequence[float],
        counts: Sequence[int],
        total: int,
        value_sum: float,
    ) -> None:
        self.family(name, "histogram", help_text)
        for bound, count in zip(buckets, counts, strict=True):
            self.sample(f"{name}_bucket", count, {"le": _value(bound)})
        self.sample(f"{name}_bucket", total, {"le": "+Inf"})
        self.sample(f"{name}_sum", value_sum)
        self.sample(f"{name}_count", total)

    def render(self) -> str:
        return "\n".join(self.lines) + "\n"


def _histogram_row(
    conn: Connection, column: str, buckets: Iterable[float]
) -> tuple[list[int], int, float]:
    # `column` is one of two fixed names above, never user input.
    parts = [
        f"COALESCE(SUM(CASE WHEN {column} <= {float(b)!r} THEN 1 ELSE 0 END), 0) "
        f"AS b{i}"
        for i, b in enumerate(buckets)
    ]
    sql = (
        f"SELECT {', '.join(parts)}, COUNT({column}) AS n, "
        f"COALESCE(SUM({column}), 0) AS total FROM attempts "
        f"WHERE {column} IS NOT NULL"
    )
    row = conn.execute(sql)[0]
    counts = [int(row[f"b{i}"]) for i in range(len(parts))]
    return counts, int(row["n"]), float(row["total"])


def collect_metrics(db: Database) -> str:
    """Read the figures from the database and render the exposition text."""
    out = Exposition()
    now = db_time(utcnow())
    with db.transaction() as conn:
        by_status = {s.value: 0 for s in Status}
        for row in conn.execute(
            "SELECT status, COUNT(*) AS n FROM pulses GROUP BY status"
        ):
            by_status[row["status"]] = row["n"]
        due = {p.rank: 0 for p in PRIORITY_ORDER}
        for row in conn.execute(
            "SELECT priority, COUNT(*) AS n FROM pulses "
            "WHERE status = 'pending' AND scheduled_at <= :now GROUP BY priority",
            {"now": now},
        ):
            due[row["priority"]] = row["n"]
        attempts = conn.execute(
            "SELECT status, COUNT(*) AS n, COALESCE(SUM(cost_usd), 0) AS cost "
            "FROM attempts GROUP BY status ORDER BY status"
        )
        lateness = _histogram_row(conn, "lateness_s", LATENESS_BUCKETS)
        durations = _histogram_row(conn, "duration_s", DURATION_BUCKETS)
        schedules = conn.execute(
            "SELECT COUNT(*) AS n, COALESCE(SUM(paused), 0) AS paused FROM schedules"
        )[0]
        last_event = conn.execute("SELECT COALESCE(MAX(id), 0) AS n FROM events")[0]

    out.family("reeve_pulses", "gauge", "Pulses by status.")
    for status, count in by_status.items():
        out.sample("reeve_pulses", count, {"status": status})
    out.family(
        "reeve_queue_depth",
        "gauge",
        "Pending pulses already due, waiting for a slot, by priority.",
    )
    for rank, count in sorted(due.items()):
        out.sample("reeve_queue_depth", count, {"priority": PRIORITY_ORDER[rank]})
    out.histogram(
        "reeve_pulse_lateness_seconds",
        "How long after its due time each attempt started.",
        LATENESS_BUCKETS,
        *lateness,
    )
    out.histogram(
        "reeve_attempt_duration_seconds",
        "How long each finished attempt ran.",
        DURATION_BUCKETS,
        *durations,
    )
    out.family("reeve_attempts_total", "counter", "Attempts by outcome.")
    for row in attempts:
        out.sample("reeve_attempts_total", row["n"], {"status": row["status"]})
    out.family(
        "reeve_pulse_failures_total",
        "counter",
        "Pulses that failed for good (retries exhausted).",
    )
    out.sample("reeve_pulse_failures_total", by_status[Status.FAILED.value])
    out.family(
        "reeve_attempt_failures_total", "counter", "Attempts that did not succeed."
    )
    failed_attempts = sum(
        row["n"] for row in attempts if row["status"] in ("failed", "lost")
    )
    out.sample("reeve_attempt_failures_total", failed_attempts)
    out.family(
        "reeve_cost_usd_total", "counter", "Agent cost reported by attempts (USD)."
    )
    out.sample("reeve_cost_usd_total", sum(float(row["cost"]) for row in attempts))
    out.family("reeve_schedules", "gauge", "Schedules, and how many are paused.")
    out.sample("reeve_schedules", schedules["n"], {"state": "total"})
    out.sample("reeve_schedules", schedules["paused"], {"state": "paused"})
    out.family("reeve_events_total", "counter", "State changes recorded.")
    out.sample("reeve_events_total", last_event["n"])
    return out.render()


async def metrics(request: Request) -> Response:
    from reeve_cli.api import api_context

    ctx = api_context(request)
    check_query(request, ())
    text = await ctx.run(collect_metrics, ctx.db)
    return Response(text, media_type=CONTENT_TYPE)
