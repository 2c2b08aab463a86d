"""The patch scan's NCRONTAB schedule (six fields, seconds first, UTC, day-of-month AND day-of-week) and the
in-process scheduler that runs it, on a fake clock: nothing here sleeps."""

from __future__ import annotations

import bisect
import itertools
import logging
import threading
from collections.abc import Iterator
from datetime import UTC, date, datetime, time, timedelta, timezone

import pytest
from croniter import croniter

from shared.domain.errors import InvalidDefinition
from shared.domain.schedule import DEFAULT_SCAN_SCHEDULE, InvalidSchedule, Schedule, parse_schedule
from shared.services.scheduler import Scheduler


def utc(year: int, month: int, day: int, hour: int = 0, minute: int = 0, second: int = 0,
        microsecond: int = 0) -> datetime:
    return datetime(year, month, day, hour, minute, second, microsecond, tzinfo=UTC)


# --- parsing ---------------------------------------------------------------------------------------------------------

def test_the_default_is_days_1_15_and_29_at_three_in_the_morning() -> None:
    schedule = parse_schedule(DEFAULT_SCAN_SCHEDULE)
    assert schedule.expression == "0 0 3 */14 * *"
    # seconds first: second 0, minute 0, hour 3
    assert schedule.values[:3] == (frozenset({0}), frozenset({0}), frozenset({3}))
    assert schedule.values[3] == {1, 15, 29}
    assert schedule.canonical == "0 0 3 1,15,29 * *"


@pytest.mark.parametrize(("expression", "canonical"), [
    ("* * * * * *", "* * * * * *"),
    ("  0  30   9 * *  Mon-Fri ", "0 30 9 * * 1,2,3,4,5"),  # extra spaces are fine, as in NCrontab
    ("*/15 0-30/10 9-17 * Jan-Mar,Dec *", "0,15,30,45 0,10,20,30 9,10,11,12,13,14,15,16,17 * 1,2,3,12 *"),
    ("5/20 * * * * *", "5,25,45 * * * * *"),  # a/n: from a to the maximum by n
    ("0 0 12 1 february,SEPT-October sunday", "0 0 12 1 2,9,10 0"),  # names: any case, three letters or more
    ("0 0 12 * Augu SAT,tue", "0 0 12 * 8 2,6"),
    ("0 0 0 1-31 1-12 0-6", "0 0 0 * * *"),
    ("00 05 3 7 * *", "0 5 3 7 * *"),  # leading zeros
    ("59 59 23 31 12 6", "59 59 23 31 12 6"),
    ("*/100 * * * * *", "0 * * * * *"),  # a step beyond the range keeps the first value, as in NCrontab
])
def test_valid_expressions_and_their_canonical_form(expression: str, canonical: str) -> None:
    assert parse_schedule(expression).canonical == canonical


@pytest.mark.parametrize(("expression", "message"), [
    ("", "empty"),
    ("   ", "empty"),
    ("0 0 3 */14 *", "5 field.*six, seconds first.*put a 0 in front"),  # five-field cron: croniter would take it
    ("0 0 3 */14 * * 2025", "7 field"),  # croniter would read a year
    ("0 3 * *", "4 field"),
    ("60 0 3 * * *", "60 is out of range 0-59"),
    ("0 60 3 * * *", "60 is out of range 0-59"),
    ("0 0 24 * * *", "24 is out of range 0-23"),
    ("0 0 3 0 * *", "0 is out of range 1-31"),
    ("0 0 3 32 * *", "32 is out of range 1-31"),
    ("0 0 3 * 0 *", "0 is out of range 1-12"),
    ("0 0 3 * 13 *", "13 is out of range 1-12"),
    ("0 0 3 * * 7", "7 is out of range 0-6.*Sunday is 0"),  # croniter reads 7 as Sunday, NCrontab refuses it
    ("0 0 22-2 * * *", "runs backwards"),  # NCrontab swaps to 2-22, croniter wraps around
    ("0 0 3 * * Fri-Mon", "runs backwards"),
    ("*/0 * * * * *", "step.*1 or more"),
    ("0 0 3 ? * *", "NCRONTAB has no"),
    ("0 0 3 L * *", "'L' is not a number.*NCRONTAB has no"),
    ("0 0 3 15W * *", "'15W' is not a number.*NCRONTAB has no"),
    ("0 0 3 * * 5#3", "NCRONTAB has no"),
    ("0 0 3 * * 5L", "'5L' is not a day-of-week.*NCRONTAB has no"),
    ("H 0 3 * * *", "'H' is not a number.*NCRONTAB has no"),
    ("@daily", "1 field"),
    ("0 0 3 * * M", "'M' is not a day-of-week.*three letters"),  # NCrontab would take Monday, first of the M's
    ("0 0 3 * Ju *", "'Ju' is not a month"),  # June or July?
    ("0 0 3 * * Funday", "'Funday' is not a day-of-week"),
    ("H(0-29) 0 3 * * *", "NCRONTAB has no"),
    ("R 0 3 * * *", "NCRONTAB has no"),
    ("0 0 3 1,,2 * *", "an empty list item"),
    ("0 0 3 1, * *", "an empty list item"),
    ("0 0 3 1- * *", "is not `\\*`, a value, a range or a step$"),
    ("0 0 3 *-5 * *", "is not `\\*`, a value"),
    ("0 0 3 -1 * *", "is not `\\*`, a value"),
    ("0\t0 3 * * *", "5 field"),  # NCrontab splits on spaces only
    ("0 0 0 30 2 *", "never fires"),  # NCrontab would take it and never run the function
    ("0 0 0 31 4,6,9,11 *", "never fires"),
])
def test_invalid_expressions_are_refused_with_a_clear_message(expression: str, message: str) -> None:
    with pytest.raises(InvalidSchedule, match=message) as caught:
        parse_schedule(expression)
    assert isinstance(caught.value, InvalidDefinition)  # the HTTP and CLI edges already map it


def test_the_error_names_the_field() -> None:
    with pytest.raises(InvalidSchedule) as caught:
        parse_schedule("0 0 3 * 13 *")
    assert caught.value.where == "month field"
    assert str(caught.value).startswith("month field: '0 0 3 * 13 *': 13 is out of range 1-12")


def test_february_29_alone_is_valid_it_fires_in_leap_years() -> None:
    assert parse_schedule("0 0 0 29 2 *").next_after(utc(2025, 1, 1)) == utc(2028, 2, 29)


# --- next fire, against hand-computed values ---------------------------------------------------------------------

@pytest.mark.parametrize(("expression", "after", "expected"), [
    # the default: 1, 15, 29 of each month
    (DEFAULT_SCAN_SCHEDULE, utc(2025, 2, 10), utc(2025, 2, 15, 3)),
    (DEFAULT_SCAN_SCHEDULE, utc(2025, 2, 15, 3), utc(2025, 3, 1, 3)),  # strictly after; 2025 has no 29 February
    (DEFAULT_SCAN_SCHEDULE, utc(2024, 2, 15, 3), utc(2024, 2, 29, 3)),  # 2024 has
    (DEFAULT_SCAN_SCHEDULE, utc(2025, 1, 29, 3, 0, 0, 1), utc(2025, 2, 1, 3)),  # a microsecond past is past
    (DEFAULT_SCAN_SCHEDULE, utc(2025, 1, 29, 2, 59, 59, 999999), utc(2025, 1, 29, 3)),
    (DEFAULT_SCAN_SCHEDULE, utc(2025, 12, 29, 3), utc(2026, 1, 1, 3)),
    # seconds first
    ("30 * * * * *", utc(2025, 6, 1, 12, 0, 30, 500000), utc(2025, 6, 1, 12, 1, 30)),
    ("*/20 * * * * *", utc(2025, 6, 1, 12, 0, 5), utc(2025, 6, 1, 12, 0, 20)),
    ("0 */5 * * * *", utc(2025, 6, 1, 10, 3), utc(2025, 6, 1, 10, 5)),
    ("9 2/5 * * * *", utc(2003, 1, 1, 0, 57, 30), utc(2003, 1, 1, 1, 2, 9)),  # from NCrontab's own tests
    ("6 45-47,48,49 * * * *", utc(2003, 1, 1, 0, 49, 30), utc(2003, 1, 1, 1, 45, 6)),  # idem
    # day rolls
    ("0 0 0 31 * *", utc(2025, 4, 1), utc(2025, 5, 31)),  # April has no 31st
    ("0 0 0 15,30,31 * *", utc(2000, 1, 31), utc(2000, 2, 15)),
    ("0 0 12 * * Sun", utc(2025, 3, 1, 13), utc(2025, 3, 2, 12)),  # 1 March 2025 is a Saturday
    ("0 10 * * 6 *", utc(2003, 12, 1, 5), utc(2004, 6, 1, 0, 10)),
    # both day fields restricted: AND (NCrontab's own test case; cron's OR would give Monday 6 January)
    ("0 45 16 1 * Mon", utc(2003, 1, 1, 12), utc(2003, 9, 1, 16, 45)),
    ("0 0 9 13 * Fri", utc(2025, 1, 1), utc(2025, 6, 13, 9)),
])
def test_next_fire(expression: str, after: datetime, expected: datetime) -> None:
    found = parse_schedule(expression).next_after(after)
    assert found == expected
    assert found.tzinfo is UTC


def test_next_fire_takes_any_offset_and_answers_in_utc() -> None:
    schedule = parse_schedule(DEFAULT_SCAN_SCHEDULE)
    paris_summer = timezone(timedelta(hours=2))
    # 04:59:59 at +02:00 is 02:59:59 UTC: the 03:00 UTC fire that day is still ahead
    found = schedule.next_after(datetime(2025, 6, 15, 4, 59, 59, tzinfo=paris_summer))
    assert found == utc(2025, 6, 15, 3)
    assert found.tzinfo is UTC
    # 05:00:00 at +02:00 is exactly that fire: the next one is the 29th
    assert schedule.next_after(datetime(2025, 6, 15, 5, tzinfo=paris_summer)) == utc(2025, 6, 29, 3)


def test_a_naive_moment_is_refused() -> None:
    schedule = parse_schedule(DEFAULT_SCAN_SCHEDULE)
    with pytest.raises(ValueError, match="timezone-aware"):
        schedule.next_after(datetime(2025, 1, 1))  # naive: the point of the test
    with pytest.raises(ValueError, match="timezone-aware"):
        schedule.matches(datetime(2025, 1, 1))
    with pytest.raises(ValueError, match="timezone-aware"):
        Scheduler(schedule, lambda fire: None, clock=lambda: utc(2025, 1, 1),
                  wait=lambda seconds: True).run_pending(datetime(2025, 1, 1))


def _oracle(schedule: Schedule, start: date, end: date) -> Iterator[datetime]:
    """Every fire from `start` to `end`, by NCRONTAB's rule read literally: each field matches, and the day of the
    month AND the day of the week. Independent of croniter."""
    seconds, minutes, hours, days, months, weekdays = schedule.values
    day = start
    while day < end:
        if day.day in days and day.month in months and day.isoweekday() % 7 in weekdays:
            for hour, minute, second in itertools.product(sorted(hours), sorted(minutes), sorted(seconds)):
                yield datetime.combine(day, time(hour, minute, second), tzinfo=UTC)
        day += timedelta(days=1)


@pytest.mark.parametrize("expression", [
    DEFAULT_SCAN_SCHEDULE,
    "0 0 9 13 * Fri",  # Friday the 13th
    "0 30 6,18 1-7 * Mon",  # the first Monday of each month, twice
    "15 0 0 */10 Feb Sat,Sun",  # 1, 11, 21 February, when a weekend day (Sat-Sun would run backwards)
    "0 0 3 29-31 * *",  # month ends, leap day included
    "0 0 0 * * Wed",  # day-of-month open: every Wednesday
    "0 0 0 1 * *",  # day-of-week open: every 1st
    "10,40 5 23 28-31 2,12 *",
])
def test_fires_over_two_years_match_the_ncrontab_rule(expression: str) -> None:
    schedule = parse_schedule(expression)
    expected = list(_oracle(schedule, date(2024, 1, 1), date(2026, 1, 1)))  # 2024 is a leap year, 2025 is not
    assert expected, "the oracle found no fire: a useless case"
    found = []
    moment = utc(2023, 12, 31, 23, 59, 59)
    while (moment := schedule.next_after(moment)) < utc(2026, 1, 1):
        found.append(moment)
    assert found == expected
    assert all(schedule.matches(fire) for fire in found)


def test_day_of_month_and_day_of_week_both_restricted_means_both_as_in_ncrontab() -> None:
    schedule = parse_schedule("0 0 9 13 * Fri")
    fires = []
    moment = utc(2024, 1, 1)
    for _ in range(6):
        moment = schedule.next_after(moment)
        fires.append(moment)
    assert [fire.date() for fire in fires] == [date(2024, 9, 13), date(2024, 12, 13), date(2025, 6, 13),
                                               date(2026, 2, 13), date(2026, 3, 13), date(2026, 11, 13)]
    assert all(fire.weekday() == 4 and fire.day == 13 for fire in fires)
    # croniter's default is cron's OR (the 13th, or any Friday): the reason Schedule passes day_or=False
    assert croniter("0 0 9 13 * 5", utc(2024, 1, 1), second_at_beginning=True).get_next(datetime) == utc(2024, 1, 5, 9)


# --- the default: at least one scan in every 14-day window -------------------------------------------------------

@pytest.mark.parametrize("first_year", [2024, 2099])  # 2024-2025: a leap year then a common one; 2100 is not leap
def test_the_default_scans_at_least_once_in_every_14_day_window(first_year: int) -> None:
    schedule = parse_schedule(DEFAULT_SCAN_SCHEDULE)
    start, end = utc(first_year, 1, 1), utc(first_year + 2, 1, 1)
    fires = [schedule.next_after(start - timedelta(seconds=1))]
    while fires[-1] < end + timedelta(days=15):
        fires.append(schedule.next_after(fires[-1]))
    window = timedelta(days=14)

    gaps = [later - earlier for earlier, later in itertools.pairwise(fires)]
    # The largest gap is exactly 14 days (the 15th to the 29th; 15 February to 1 March in a common year), so any
    # window [t, t + 14 days) holds a fire: the first fire at or after t is at most 14 days after the last one
    # before t, hence before t + 14 days.
    assert max(gaps) == window
    assert min(gaps) >= timedelta(days=1)  # 29 February to 1 March in a leap year

    # and checked directly: a window starting every hour, and one a second after each fire (the tightest)
    starts = [start + timedelta(hours=hours) for hours in range(int((end - start) / timedelta(hours=1)))]
    starts += [fire + timedelta(seconds=1) for fire in fires if fire < end]
    for begin in starts:
        first = fires[bisect.bisect_left(fires, begin)]
        assert first < begin + window, f"no scan in the 14 days from {begin.isoformat()}"

    # and in calendar days: any 14 consecutive days contain a scan day
    scan_days = {fire.date() for fire in fires}
    day = start.date()
    while day < end.date():
        assert any(day + timedelta(days=offset) in scan_days for offset in range(14)), day
        day += timedelta(days=1)


# --- the scheduler, on a fake clock ------------------------------------------------------------------------------

class FakeTime:
    """A clock that moves only when the scheduler waits; `jumps` moves it further at chosen waits."""

    def __init__(self, now: datetime) -> None:
        self.now = now
        self.waits: list[float] = []
        self.jumps: dict[int, timedelta] = {}  # wait number -> extra time that passes during it
        self.stop_after_waits: int | None = None

    def clock(self) -> datetime:
        return self.now

    def wait(self, seconds: float) -> bool:
        assert seconds > 0
        self.waits.append(seconds)
        self.now += timedelta(seconds=seconds) + self.jumps.get(len(self.waits), timedelta())
        return self.stop_after_waits is not None and len(self.waits) >= self.stop_after_waits


class Recorder:
    """A job that records each call (its fire time and the clock then) and stops after `limit` calls."""

    def __init__(self, fake: FakeTime, stop: threading.Event, limit: int, fail_on: frozenset[int] = frozenset()):
        self.fake, self.stop, self.limit, self.fail_on = fake, stop, limit, fail_on
        self.calls: list[tuple[datetime, datetime]] = []

    def __call__(self, fire: datetime) -> None:
        self.calls.append((fire, self.fake.now))
        if len(self.calls) >= self.limit:
            self.stop.set()
        if len(self.calls) in self.fail_on:
            raise RuntimeError(f"scan {len(self.calls)} failed")

    @property
    def fires(self) -> list[datetime]:
        return [fire for fire, _ in self.calls]


def test_the_scheduler_fires_at_the_scheduled_times() -> None:
    fake, stop = FakeTime(utc(2025, 1, 10, 12)), threading.Event()
    job = Recorder(fake, stop, limit=5)
    Scheduler(parse_schedule(DEFAULT_SCAN_SCHEDULE), job, clock=fake.clock, wait=fake.wait, max_wait=3600).run(stop)
    assert job.fires == [utc(2025, 1, 15, 3), utc(2025, 1, 29, 3), utc(2025, 2, 1, 3), utc(2025, 2, 15, 3),
                         utc(2025, 3, 1, 3)]
    assert all(now == fire for fire, now in job.calls)  # run on time, not before
    assert max(fake.waits) <= 3600  # waits come in slices, so a jumping wall clock is noticed


def test_a_failing_job_is_logged_and_the_schedule_goes_on(caplog: pytest.LogCaptureFixture) -> None:
    fake, stop = FakeTime(utc(2025, 6, 1, 0, 0, 30)), threading.Event()
    job = Recorder(fake, stop, limit=3, fail_on=frozenset({1, 2}))
    with caplog.at_level(logging.ERROR, logger="shared.services.scheduler"):
        Scheduler(parse_schedule("0 * * * * *"), job, clock=fake.clock, wait=fake.wait).run(stop)
    assert job.fires == [utc(2025, 6, 1, 0, 1), utc(2025, 6, 1, 0, 2), utc(2025, 6, 1, 0, 3)]
    failures = [record for record in caplog.records if record.levelno == logging.ERROR]
    assert len(failures) == 2
    assert failures[0].exc_info is not None and "scan 1 failed" in str(failures[0].exc_info[1])
    assert "next run is at 2025-06-01T00:02:00+00:00" in failures[0].getMessage()


def test_missed_fires_collapse_into_one_run_and_are_logged(caplog: pytest.LogCaptureFixture) -> None:
    fake, stop = FakeTime(utc(2025, 6, 1, 0, 0, 30)), threading.Event()
    fake.jumps = {2: timedelta(minutes=10, seconds=15)}  # the machine sleeps during the second wait
    job = Recorder(fake, stop, limit=3)
    with caplog.at_level(logging.WARNING, logger="shared.services.scheduler"):
        Scheduler(parse_schedule("0 * * * * *"), job, clock=fake.clock, wait=fake.wait).run(stop)
    # 00:01 runs; the clock then jumps from 00:01 to 00:12:15 past the fires of 00:02 to 00:12: one run for all
    # eleven, for the first of them (the one it was waiting for); then 00:13 as usual
    assert job.calls == [(utc(2025, 6, 1, 0, 1), utc(2025, 6, 1, 0, 1)),
                         (utc(2025, 6, 1, 0, 2), utc(2025, 6, 1, 0, 12, 15)),
                         (utc(2025, 6, 1, 0, 13), utc(2025, 6, 1, 0, 13))]
    [warning] = [record.getMessage() for record in caplog.records if record.levelno == logging.WARNING]
    assert "past due" in warning and "2025-06-01T00:02:00+00:00" in warning and "10 later fire(s)" in warning


def test_a_late_single_fire_runs_once_and_is_logged(caplog: pytest.LogCaptureFixture) -> None:
    fake, stop = FakeTime(utc(2025, 1, 14, 12)), threading.Event()
    fake.jumps = {1: timedelta(days=3)}  # past one fire (15 January), not two
    job = Recorder(fake, stop, limit=2)
    with caplog.at_level(logging.WARNING, logger="shared.services.scheduler"):
        Scheduler(parse_schedule(DEFAULT_SCAN_SCHEDULE), job, clock=fake.clock, wait=fake.wait,
                  max_wait=86400).run(stop)
    assert job.fires == [utc(2025, 1, 15, 3), utc(2025, 1, 29, 3)]
    assert job.calls[0][1] == utc(2025, 1, 18, 3)
    [warning] = [record.getMessage() for record in caplog.records if record.levelno == logging.WARNING]
    assert "past due" in warning and "3 days" in warning


def test_run_pending_runs_what_is_due_once() -> None:
    fake = FakeTime(utc(2025, 6, 1, 0, 0, 30))
    fires: list[datetime] = []
    scheduler = Scheduler(parse_schedule("0 * * * * *"), fires.append, clock=fake.clock, wait=fake.wait)
    assert scheduler.next_fire == utc(2025, 6, 1, 0, 1)
    assert scheduler.run_pending(utc(2025, 6, 1, 0, 0, 59)) == []
    assert scheduler.run_pending(utc(2025, 6, 1, 0, 1)) == [utc(2025, 6, 1, 0, 1)]
    assert scheduler.run_pending(utc(2025, 6, 1, 0, 1, 30)) == []  # not twice
    assert scheduler.run_pending(utc(2025, 6, 1, 1, 0, 30)) == [utc(2025, 6, 1, 0, 2)]  # 59 fires passed: one run
    assert scheduler.next_fire == utc(2025, 6, 1, 1, 1)
    assert fires == [utc(2025, 6, 1, 0, 1), utc(2025, 6, 1, 0, 2)]


def test_stop_ends_the_loop() -> None:
    fake, stop = FakeTime(utc(2025, 1, 10)), threading.Event()
    fires: list[datetime] = []
    scheduler = Scheduler(parse_schedule(DEFAULT_SCAN_SCHEDULE), fires.append, clock=fake.clock, wait=fake.wait)

    fake.stop_after_waits = 3  # wait says "stop" on its third call: no fire was due yet
    scheduler.run(stop)
    assert (len(fake.waits), fires) == (3, [])

    stop.set()  # an already-set event: no wait, no run
    scheduler.run(stop)
    assert (len(fake.waits), fires) == (3, [])


def test_stop_wait_in_a_thread_ends_it_without_waiting_for_the_fire() -> None:
    stop = threading.Event()
    scheduler = Scheduler(parse_schedule("0 0 0 1 1 *"), lambda fire: None, clock=lambda: utc(2025, 6, 1),
                          wait=stop.wait, max_wait=3600)
    thread = threading.Thread(target=scheduler.run, args=(stop,), daemon=True)
    thread.start()
    stop.set()  # what `envhub serve` does on shutdown: stop.wait returns True at once
    thread.join(timeout=10)
    assert not thread.is_alive()


def test_a_naive_clock_is_refused() -> None:
    scheduler = Scheduler(parse_schedule(DEFAULT_SCAN_SCHEDULE), lambda fire: None,
                          clock=lambda: datetime(2025, 1, 1), wait=lambda seconds: True)
    with pytest.raises(ValueError, match="timezone-aware"):
        scheduler.run(threading.Event())
