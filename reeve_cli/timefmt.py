"""Reading and showing times: parse what people type, store UTC, show local.

Strict forms (ISO 8601, `now`, relative durations, clock times, epoch seconds) are
read here without any library. Anything else goes to dateparser, imported only
then, because its first use costs about 0.1 s.

Local wall times are resolved in the user's zone with one rule for daylight
saving: a time that falls in a gap (the clock jumps forward) moves forward by the
length of the gap, and a time that occurs twice (the clock falls back) means the
first occurrence. docs/configuration.md says the same.
"""

from __future__ import annotations

import re
from datetime import UTC, date, datetime, time, timedelta, tzinfo

from reeve_cli.errors import InvalidTime

ACCEPTED_FORMS = (
    "ISO 8601 ('2026-09-01 06:45', '2026-09-01T06:45:00Z'), 'now', "
    "'in 20m', '+90s', '+1d', 'at 18:30', 'tomorrow 6:45', 'tomorrow at 9am', "
    "'next monday 14:00', 'tonight' or epoch seconds"
)
DURATION_FORMS = "'90s', '15m', '2h', '1h30m', '2 hours', '1d' or '1w'"

# How far in the past a time may lie before it is refused (clock skew, typing).
PAST_TOLERANCE = timedelta(minutes=1)
TONIGHT = time(20, 0)

_UNITS = {
    "s": 1,
    "sec": 1,
    "secs": 1,
    "second": 1,
    "seconds": 1,
    "m": 60,
    "min": 60,
    "mins": 60,
    "minute": 60,
    "minutes": 60,
    "h": 3600,
    "hr": 3600,
    "hrs": 3600,
    "hour": 3600,
    "hours": 3600,
    "d": 86400,
    "day": 86400,
    "days": 86400,
    "w": 604800,
    "week": 604800,
    "weeks": 604800,
}
_DURATION_PART = re.compile(r"(\d+(?:\.\d+)?)\s*([a-z]+)")
_DURATION = re.compile(r"^(?:\d+(?:\.\d+)?\s*[a-z]+\s*,?\s*(?:and\s+)?)+$")
_RELATIVE = re.compile(r"^(?:in\s+|\+\s*)(.+)$")
_CLOCK = re.compile(
    r"^(?:at\s+)?(\d{1,2})(?::(\d{2}))?(?::(\d{2}))?\s*(am|pm|a\.m\.|p\.m\.)?$"
)
_CLOCK_IN_PHRASE = re.compile(r"\b(\d{1,2}):(\d{2})\b")
_EPOCH = re.compile(r"^@?(\d{9,11})(\.\d+)?$")


def parse_duration(text: str) -> timedelta:
    """Read a duration such as '90s', '15m', '1h30m', '2 hours' or a plain '90'.

    Raises:
        InvalidTime: the text is not a duration, or it is negative.
    """
    cleaned = text.strip().lower()
    if re.fullmatch(r"\d+(?:\.\d+)?", cleaned):
        return timedelta(seconds=float(cleaned))
    if not cleaned or not _DURATION.match(cleaned):
        raise InvalidTime(
            f"Cannot read duration '{_shown(text)}'; use {DURATION_FORMS}"
        )

    seconds = 0.0
    for amount, unit in _DURATION_PART.findall(cleaned):
        if unit not in _UNITS:
            raise InvalidTime(
                f"Unknown unit '{unit}' in duration '{_shown(text)}'; "
                f"use {DURATION_FORMS}"
            )
        seconds += float(amount) * _UNITS[unit]
    return timedelta(seconds=seconds)


def resolve_local(naive: datetime, zone: tzinfo) -> datetime:
    """Attach `zone` to a wall-clock time and return it in UTC.

    A time in a DST gap moves forward by the gap; an ambiguous time is the first
    of its two occurrences (fold=0 gives both in zoneinfo).
    """
    return naive.replace(tzinfo=zone, fold=0).astimezone(UTC)


def _next_clock(now_local: datetime, at: time, zone: tzinfo) -> datetime:
    candidate = resolve_local(datetime.combine(now_local.date(), at), zone)
    if candidate < now_local.astimezone(UTC) - timedelta(seconds=1):
        candidate = resolve_local(
            datetime.combine(now_local.date() + timedelta(days=1), at), zone
        )
    return candidate


def _clock(match: re.Match[str]) -> time | None:
    hour, minute, second, meridiem = match.groups()
    if minute is None and meridiem is None:
        return None  # a bare number such as "18" is not a time
    hour_i, minute_i, second_i = int(hour), int(minute or 0), int(second or 0)
    if meridiem:
        if not 1 <= hour_i <= 12:
            return None
        hour_i = hour_i % 12 + (12 if meridiem.startswith("p") else 0)
    if hour_i > 23 or minute_i > 59 or second_i > 59:
        return None
    return time(hour_i, minute_i, second_i)


def _parse_iso(text: str, zone: tzinfo) -> datetime | None:
    candidate = (
        text.replace(" ", "T", 1) if re.match(r"^\d{4}-\d\d-\d\d ", text) else text
    )
    try:
        parsed = datetime.fromisoformat(candidate)
    except ValueError:
        try:
            day = date.fromisoformat(text)
        except ValueError:
            return None
        parsed = datetime.combine(day, time())
    if parsed.tzinfo is None:
        return resolve_local(parsed, zone)
    return parsed.astimezone(UTC)


def _parse_natural(text: str, now_local: datetime, zone: tzinfo) -> datetime | None:
    import dateparser

    settings = {
        "PREFER_DATES_FROM": "future",
        "RELATIVE_BASE": now_local.replace(tzinfo=None),
        "RETURN_AS_TIMEZONE_AWARE": False,
        "PREFER_DAY_OF_MONTH": "first",
    }
    parsed: datetime | None = dateparser.parse(
        text, languages=["en"], settings=settings
    )
    if parsed is None or not _keeps_clock(text, parsed):
        return None
    if parsed.tzinfo is not None:  # the text named its own zone or offset
        return parsed.astimezone(UTC)
    return resolve_local(parsed, zone)


def _duration_or_none(text: str) -> timedelta:
    try:
        return parse_duration(text)
    except InvalidTime:
        raise ValueError(text) from None  # parse_when names every accepted form


def _keeps_clock(text: str, parsed: datetime) -> bool:
    """Check that a clock time in the phrase survived parsing.

    dateparser drops what it cannot read: 'tomorrow 25:00' would come back as
    tomorrow at the current time. Such a result is refused, not guessed.
    """
    for hour, minute in _CLOCK_IN_PHRASE.findall(text):
        if int(hour) % 12 != parsed.hour % 12 or int(minute) != parsed.minute:
            return False
    return True


def _shown(text: str) -> str:
    """Echo user text in an error: one line, printable, at most 60 characters."""
    cleaned = "".join(c if c.isprintable() else "?" for c in text)
    return cleaned if len(cleaned) <= 60 else cleaned[:59] + "…"


def _parse(text: str, now: datetime, zone: tzinfo) -> datetime | None:
    cleaned = " ".join(text.strip().lower().split())
    now_local = now.astimezone(zone)

    if cleaned == "now":
        return now
    if cleaned == "tonight":
        return resolve_local(datetime.combine(now_local.date(), TONIGHT), zone)
    if _EPOCH.match(cleaned):
        return datetime.fromtimestamp(float(cleaned.lstrip("@")), UTC)
    if (relative := _RELATIVE.match(cleaned)) and _DURATION.match(relative[1]):
        return now + _duration_or_none(relative[1])
    if _DURATION.match(cleaned):
        return now + _duration_or_none(cleaned)
    if clock := _CLOCK.match(cleaned):
        at = _clock(clock)
        return _next_clock(now_local, at, zone) if at else None
    if re.match(r"^\d{4}-\d\d-\d\d", cleaned):
        return _parse_iso(text.strip().upper(), zone)
    return _parse_natural(cleaned, now_local, zone)


def parse_when(
    text: str,
    zone: tzinfo,
    *,
    now: datetime | None = None,
    allow_past: bool = False,
    field: str | None = "at",
) -> datetime:
    """Read when a pulse should run and return it as an aware UTC datetime.

    Args:
        text: what the user typed, in any of the accepted forms.
        zone: the user's zone, for wall-clock times.
        now: the current time (aware); default the system clock.
        allow_past: accept a time more than a minute ago (it runs at once).
        field: the name of the input, for error reports.

    Raises:
        InvalidTime: the text cannot be read, or lies in the past.
    """
    # UTC arithmetic: '+1d' is 24 hours even across a DST change.
    now = (now or datetime.now(UTC)).astimezone(UTC)
    if not text or not text.strip():
        raise InvalidTime(f"No time given; use {ACCEPTED_FORMS}", field=field)
    try:
        moment = _parse(text, now, zone)
    except (OverflowError, ValueError, OSError):
        moment = None
    if moment is None:
        raise InvalidTime(
            f"Cannot read time '{_shown(text)}'; use {ACCEPTED_FORMS}", field=field
        )

    if not allow_past and moment < now - PAST_TOLERANCE:
        shown = format_local(moment, zone)
        raise InvalidTime(
            f"Time '{_shown(text)}' ({shown}) is in the past; give a future time, "
            "or --allow-past to run it as soon as possible",
            field=field,
        )
    return moment


def format_local(moment: datetime, zone: tzinfo) -> str:
    """Show a moment as wall-clock time in `zone`, with the zone's abbreviation."""
    local = moment.astimezone(zone)
    return local.strftime("%Y-%m-%d %H:%M:%S %Z")


def format_duration(seconds: float) -> str:
    """Show a duration compactly: '45s', '12m', '2h 5m', '3d 4h'."""
    total = int(round(abs(seconds)))
    if total < 60:
        return f"{total}s"
    minutes, _ = divmod(total, 60)
    if minutes < 60:
        return f"{minutes}m"
    hours, minutes = divmod(minutes, 60)
    if hours < 48:
        return f"{hours}h {minutes}m" if minutes else f"{hours}h"
    days, hours = divmod(hours, 24)
    return f"{days}d {hours}h" if hours else f"{days}d"


def relative_hint(moment: datetime, now: datetime | None = None) -> str:
    """Say how far a moment is from now: 'in 2h 5m', '3m ago' or 'now'."""
    now = now or datetime.now(UTC)
    delta = (moment - now).total_seconds()
    if abs(delta) < 1:
        return "now"
    text = format_duration(delta)
    return f"in {text}" if delta > 0 else f"{text} ago"
