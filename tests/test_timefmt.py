"""Time parsing against a fixed `now` in Europe/Berlin (a zone with DST)."""

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from reeve_cli.errors import InvalidTime
from reeve_cli.timefmt import (
    ACCEPTED_FORMS,
    DURATION_FORMS,
    format_duration,
    format_local,
    parse_duration,
    parse_when,
    relative_hint,
)

BERLIN = ZoneInfo("Europe/Berlin")
# Thursday 2026-12-03 17:00 in Berlin (CET, UTC+1).
NOW = datetime(2026, 12, 3, 16, 0, tzinfo=UTC)


def utc(*args):
    return datetime(*args, tzinfo=UTC)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        pytest.param("2026-12-05T10:00:00+02:00", utc(2026, 12, 5, 8), id="iso-offset"),
        pytest.param("2026-12-05T10:00:00Z", utc(2026, 12, 5, 10), id="iso-z"),
        pytest.param("2026-12-05t10:00:00z", utc(2026, 12, 5, 10), id="iso-lower-z"),
        pytest.param("2026-12-05 10:00", utc(2026, 12, 5, 9), id="naive-winter"),
        pytest.param("2027-07-01T10:00", utc(2027, 7, 1, 8), id="naive-summer"),
        pytest.param("2026-12-05", utc(2026, 12, 4, 23), id="date-only"),
        pytest.param("now", NOW, id="now"),
        pytest.param("NOW", NOW, id="now-upper"),
        pytest.param("in 20m", NOW + timedelta(minutes=20), id="in-20m"),
        pytest.param("in 2 hours", NOW + timedelta(hours=2), id="in-2-hours"),
        pytest.param("in 1h30m", NOW + timedelta(minutes=90), id="in-1h30m"),
        pytest.param("+90s", NOW + timedelta(seconds=90), id="plus-90s"),
        pytest.param("+1d", NOW + timedelta(days=1), id="plus-1d"),
        pytest.param("15m", NOW + timedelta(minutes=15), id="bare-duration"),
        pytest.param("at 18:30", utc(2026, 12, 3, 17, 30), id="at-later-today"),
        pytest.param("18:30", utc(2026, 12, 3, 17, 30), id="clock-later-today"),
        pytest.param("at 16:00", utc(2026, 12, 4, 15), id="at-earlier-is-tomorrow"),
        pytest.param("at 9am", utc(2026, 12, 4, 8), id="at-9am-tomorrow"),
        pytest.param("at 7:15 pm", utc(2026, 12, 3, 18, 15), id="at-pm"),
        pytest.param("tomorrow 6:45", utc(2026, 12, 4, 5, 45), id="tomorrow-clock"),
        pytest.param("tomorrow at 9am", utc(2026, 12, 4, 8), id="tomorrow-at-9am"),
        pytest.param("next monday 14:00", utc(2026, 12, 7, 13), id="next-monday"),
        pytest.param("friday 9am", utc(2026, 12, 4, 8), id="weekday"),
        pytest.param("tonight", utc(2026, 12, 3, 19), id="tonight"),
        pytest.param("1796400000", utc(2026, 12, 4, 16), id="epoch"),
        pytest.param(
            "@1796400000.5", utc(2026, 12, 4, 16, 0, 0, 500000), id="epoch-at"
        ),
    ],
)
def test_parse_when_accepts_every_documented_form(text, expected):
    result = parse_when(text, BERLIN, now=NOW)

    assert result == expected
    assert result.tzinfo is not None and result.utcoffset() == timedelta(0)


def test_dst_gap_moves_forward_by_the_gap():
    """02:30 on 2026-03-29 does not exist in Berlin; it becomes 03:30 CEST."""
    now = utc(2026, 3, 1, 12)

    result = parse_when("2026-03-29 02:30", BERLIN, now=now)

    assert result == utc(2026, 3, 29, 1, 30)
    assert format_local(result, BERLIN) == "2026-03-29 03:30:00 CEST"


def test_dst_overlap_takes_the_first_occurrence():
    """02:30 on 2026-10-25 happens twice in Berlin; the first (CEST) is meant."""
    now = utc(2026, 10, 1, 12)

    result = parse_when("2026-10-25 02:30", BERLIN, now=now)

    assert result == utc(2026, 10, 25, 0, 30)
    assert format_local(result, BERLIN) == "2026-10-25 02:30:00 CEST"


def test_clock_time_into_a_dst_gap_uses_the_same_rule():
    now = datetime(2026, 3, 28, 12, 0, tzinfo=BERLIN)

    result = parse_when("at 2:30", BERLIN, now=now)

    assert result == utc(2026, 3, 29, 1, 30)


def test_natural_phrase_into_dst_overlap_uses_the_same_rule():
    now = datetime(2026, 10, 24, 12, 0, tzinfo=BERLIN)

    result = parse_when("tomorrow 2:30", BERLIN, now=now)

    assert result == utc(2026, 10, 25, 0, 30)


def test_relative_day_is_24_hours_across_a_dst_change():
    now = datetime(2026, 3, 28, 12, 0, tzinfo=BERLIN)

    result = parse_when("+1d", BERLIN, now=now)

    assert result - now == timedelta(hours=24)
    assert format_local(result, BERLIN) == "2026-03-29 13:00:00 CEST"


def test_at_clock_after_it_passed_today_means_tomorrow():
    now = datetime(2026, 12, 3, 19, 0, tzinfo=BERLIN)

    result = parse_when("at 18:30", BERLIN, now=now)

    assert result == utc(2026, 12, 4, 17, 30)


@pytest.mark.parametrize(
    "text",
    [
        pytest.param("2026-12-01 10:00", id="iso"),
        pytest.param("yesterday", id="yesterday"),
        pytest.param("1700000000", id="epoch"),
    ],
)
def test_past_time_is_refused(text):
    with pytest.raises(InvalidTime) as caught:
        parse_when(text, BERLIN, now=NOW)

    assert caught.value.message.startswith(f"Time '{text}' (")
    assert caught.value.message.endswith(
        ") is in the past; give a future time, "
        "or --allow-past to run it as soon as possible"
    )
    assert caught.value.field == "at"


def test_past_time_message_shows_the_local_time():
    with pytest.raises(InvalidTime) as caught:
        parse_when("2026-12-01 10:00", BERLIN, now=NOW, field="when")

    assert caught.value.message == (
        "Time '2026-12-01 10:00' (2026-12-01 10:00:00 CET) is in the past; give a "
        "future time, or --allow-past to run it as soon as possible"
    )
    assert caught.value.field == "when"


def test_allow_past_returns_the_past_time():
    result = parse_when("2026-12-01 10:00", BERLIN, now=NOW, allow_past=True)

    assert result == utc(2026, 12, 1, 9)


def test_a_time_within_a_minute_ago_is_accepted():
    result = parse_when("2026-12-03 16:59:30", BERLIN, now=NOW)

    assert result == NOW - timedelta(seconds=30)


@pytest.mark.parametrize(
    "text",
    [
        pytest.param("someday maybe", id="words"),
        pytest.param("in 5 fortnights", id="unknown-unit"),
        pytest.param("at 25:00", id="bad-clock"),
        pytest.param("2026-13-45", id="bad-date"),
        pytest.param("18", id="bare-number"),
    ],
)
def test_unreadable_time_names_the_accepted_forms(text):
    with pytest.raises(InvalidTime) as caught:
        parse_when(text, BERLIN, now=NOW)

    assert caught.value.message == f"Cannot read time '{text}'; use {ACCEPTED_FORMS}"


@pytest.mark.parametrize(
    "text",
    [
        pytest.param("tomorrow 25:00", id="bad-clock-in-phrase"),
        pytest.param("next monday 14:75", id="bad-minutes-in-phrase"),
    ],
)
def test_phrase_whose_clock_time_is_dropped_is_refused(text):
    """dateparser ignores '25:00' and returns 'tomorrow, now'; that is not kept."""
    with pytest.raises(InvalidTime) as caught:
        parse_when(text, BERLIN, now=NOW)

    assert caught.value.message == f"Cannot read time '{text}'; use {ACCEPTED_FORMS}"


def test_phrase_with_pm_clock_is_kept():
    result = parse_when("tomorrow at 9:30pm", BERLIN, now=NOW)

    assert result == utc(2026, 12, 4, 20, 30)


def test_error_echo_is_one_short_printable_line():
    with pytest.raises(InvalidTime) as caught:
        parse_when("x\n\x00" + "y" * 100, BERLIN, now=NOW)

    echoed = caught.value.message.split("'")[1]
    assert echoed == "x??" + "y" * 56 + "…"


@pytest.mark.parametrize("text", ["", "   "])
def test_empty_time_is_refused(text):
    with pytest.raises(InvalidTime) as caught:
        parse_when(text, BERLIN, now=NOW)

    assert caught.value.message == f"No time given; use {ACCEPTED_FORMS}"


def test_natural_phrase_uses_the_given_zone_not_utc():
    tokyo = ZoneInfo("Asia/Tokyo")

    result = parse_when("tomorrow 6:45", tokyo, now=NOW)

    assert result == utc(2026, 12, 4, 21, 45)


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("90", 90),
        ("90s", 90),
        ("15m", 900),
        ("2h", 7200),
        ("1h30m", 5400),
        ("2 hours", 7200),
        ("1 hour and 5 minutes", 3900),
        ("1d", 86400),
        ("1w", 604800),
        ("1.5h", 5400),
    ],
)
def test_parse_duration(text, seconds):
    assert parse_duration(text) == timedelta(seconds=seconds)


def test_parse_duration_rejects_unknown_unit():
    with pytest.raises(InvalidTime) as caught:
        parse_duration("5 parsecs")

    assert caught.value.message == (
        f"Unknown unit 'parsecs' in duration '5 parsecs'; use {DURATION_FORMS}"
    )


@pytest.mark.parametrize("text", ["", "abc", "-5m", "m5"])
def test_parse_duration_rejects_non_durations(text):
    with pytest.raises(InvalidTime) as caught:
        parse_duration(text)

    assert caught.value.message == (
        f"Cannot read duration '{text}'; use {DURATION_FORMS}"
    )


def test_format_local_shows_zone_abbreviation():
    assert format_local(NOW, BERLIN) == "2026-12-03 17:00:00 CET"
    assert format_local(utc(2026, 7, 1, 12), BERLIN) == "2026-07-01 14:00:00 CEST"


@pytest.mark.parametrize(
    ("seconds", "text"),
    [
        (0.4, "now"),
        (45, "in 45s"),
        (-180, "3m ago"),
        (7500, "in 2h 5m"),
        (3 * 86400 + 4 * 3600, "in 3d 4h"),
        (7200, "in 2h"),
    ],
)
def test_relative_hint(seconds, text):
    assert relative_hint(NOW + timedelta(seconds=seconds), NOW) == text


def test_format_duration_days():
    assert format_duration(2 * 86400) == "2d"


def test_tonight_after_eight_pm_is_in_the_past():
    now = datetime(2026, 12, 3, 21, 0, tzinfo=BERLIN)

    with pytest.raises(InvalidTime) as caught:
        parse_when("tonight", BERLIN, now=now)

    assert caught.value.message.startswith(
        "Time 'tonight' (2026-12-03 20:00:00 CET) is in the past"
    )
