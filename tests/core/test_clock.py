"""The process clock: pinned by a setting, by a test, or the system's."""

from __future__ import annotations

import subprocess
import sys
import time
from datetime import UTC, datetime

import pytest
from pydantic import ValidationError

from cityos.config import Settings
from cityos.core import clock as process_clock
from cityos.core.clock import (
    FixedClock,
    StartedClock,
    SystemClock,
    clock_from_start,
    now,
    now_datetime,
    parse_clock_start,
    use_clock,
)
from cityos.core.timefmt import format_datetime, now_utc
from tests.conftest import PINNED_INSTANT


def test_the_clock_fixture_pins_now_and_timefmt(clock):
    assert now_datetime() == PINNED_INSTANT
    assert now() == PINNED_INSTANT.timestamp()
    assert format_datetime(now_utc()) == "2026-12-06T23:30:00.000000Z"  # 07:30 at UTC+8
    clock.advance(90)
    assert format_datetime(now_utc()) == "2026-12-06T23:31:30.000000Z"


def test_use_clock_puts_the_previous_clock_back():
    before = process_clock.get_clock()
    with use_clock(FixedClock(0.0)):
        assert now_datetime() == datetime(1970, 1, 1, tzinfo=UTC)
    assert process_clock.get_clock() is before


def test_a_started_clock_starts_at_its_instant_and_ticks():
    started = StartedClock(datetime(2026, 12, 7, 0, 30))  # naive: UTC
    first = started.now()
    assert 0 <= first - datetime(2026, 12, 7, 0, 30, tzinfo=UTC).timestamp() < 60
    deadline = time.monotonic() + 5
    while started.now() == first and time.monotonic() < deadline:
        time.sleep(0.001)  # wait for the condition (it moves), not for a duration
    assert started.now() > first


@pytest.mark.parametrize("text, expected", [
    ("2026-12-07T07:30:00+08:00", datetime(2026, 12, 6, 23, 30, tzinfo=UTC)),
    ("2026-12-07T23:59:30Z", datetime(2026, 12, 7, 23, 59, 30, tzinfo=UTC)),
    ("2026-12-08T01:30:00", datetime(2026, 12, 8, 1, 30, tzinfo=UTC)),
])
def test_clock_start_is_an_iso_8601_instant(text, expected):
    assert parse_clock_start(text) == expected
    assert Settings(clock_start=text).clock_start == text
    assert isinstance(clock_from_start(text), StartedClock)


def test_no_clock_start_is_the_system_clock():
    assert isinstance(clock_from_start(None), SystemClock)
    assert Settings(clock_start="").clock_start is None


def test_a_bad_clock_start_names_the_setting():
    with pytest.raises(ValidationError, match="clock_start: 'half past seven'"):
        Settings(clock_start="half past seven")


def test_the_environment_pins_a_new_process(tmp_path):
    code = ("from cityos.core.timefmt import format_datetime, now_utc;"
            "print(format_datetime(now_utc())[:16])")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            env={"CITYOS_CLOCK_START": "2026-12-08T01:30:00+08:00",
                                 "PATH": "/usr/bin:/bin"}, cwd=tmp_path, timeout=60)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "2026-12-07T17:30"

