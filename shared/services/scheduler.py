"""Running a job on a schedule in-process: the local home's stand-in for Azure Functions' timer trigger.

The loop behaves like the Functions timer: it waits for the next fire, runs the job, computes the next fire after
the current time and waits again. A job that raises is logged and the schedule goes on. When the clock has moved
past more than one fire (the machine slept, the clock was set forward, a job ran long), the job runs once for all
of them, like the timer's single `past_due` invocation, and that is logged. There is no run at start-up (the
timer's `run_on_startup` defaults to off), and fires missed while nothing was running are not remembered (the
Functions host keeps the schedule's status in storage and runs one past-due invocation after a restart; the
local home keeps none).

Time is injected: `clock()` says what time it is (timezone-aware) and `wait(seconds)` blocks for up to that long,
returning True when the loop should stop (production passes `stop.wait`). Waits are cut into slices of at most
`max_wait` seconds, so a wall clock that jumps (a laptop waking up) is noticed within one slice.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from datetime import datetime, timedelta

from shared.domain.schedule import Schedule, as_utc

log = logging.getLogger(__name__)

LATE_AFTER = timedelta(minutes=1)  # a fire run later than this after its time is logged as past due
_COUNT_MISSED_UP_TO = 1000  # a per-second schedule after a week asleep should not count 600 000 fires


class Scheduler:
    """Runs `job(fire_time)` at each fire of `schedule`, one at a time, until stopped."""

    def __init__(self, schedule: Schedule, job: Callable[[datetime], None], *, clock: Callable[[], datetime],
                 wait: Callable[[float], bool], max_wait: float = 60.0) -> None:
        if max_wait <= 0:
            raise ValueError("max_wait must be positive")
        self.schedule = schedule
        self.job = job
        self.clock = clock
        self.wait = wait
        self.max_wait = max_wait
        self._due: datetime | None = None

    @property
    def next_fire(self) -> datetime:
        """The fire the scheduler is waiting for (computed from the clock on first use)."""
        if self._due is None:
            self._due = self.schedule.next_after(self._now())
        return self._due

    def run_pending(self, now: datetime | None = None) -> list[datetime]:
        """Run the job if its fire is due at `now` (default: the clock). Returns the fire times it ran for: [] when
        nothing was due, else one, however many fires `now` is past (they collapse into that one run). The job is
        given the fire it was waiting for, the first that was missed (the timer's `ScheduleStatus.Next`)."""
        current = self._now() if now is None else as_utc(now)
        due = self.next_fire
        if current < due:
            return []
        later = self._count_fires(due, current)
        late = current - due
        if later:
            more = f"{later}" if later < _COUNT_MISSED_UP_TO else f"{_COUNT_MISSED_UP_TO} or more"
            log.warning("schedule '%s' is past due: the fire at %s is %s late and %s later fire(s) also passed; "
                        "running the job once for all of them", self.schedule.expression, due.isoformat(), late, more)
        elif late > LATE_AFTER:
            log.warning("schedule '%s' is past due: running the fire at %s %s late", self.schedule.expression,
                        due.isoformat(), late)
        self._due = self.schedule.next_after(current)
        try:
            self.job(due)
        except Exception:  # the schedule outlives any one run; the job records its own failures where it can
            log.exception("the job scheduled at %s failed; the next run is at %s", due.isoformat(),
                          self._due.isoformat())
        return [due]

    def run(self, stop: threading.Event) -> None:
        """Run fires until `stop` is set or `wait` says to stop."""
        log.info("schedule '%s': next run at %s", self.schedule.expression, self.next_fire.isoformat())
        while not stop.is_set():
            now = self._now()
            if now >= self.next_fire:
                self.run_pending(now)
                continue
            remaining = (self.next_fire - now).total_seconds()
            if self.wait(min(remaining, self.max_wait)):
                return

    def _count_fires(self, after: datetime, until: datetime) -> int:
        count = 0
        fire = self.schedule.next_after(after)
        while fire <= until and count < _COUNT_MISSED_UP_TO:
            count += 1
            fire = self.schedule.next_after(fire)
        return count

    def _now(self) -> datetime:
        return as_utc(self.clock())
