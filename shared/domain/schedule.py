"""The patch scan's schedule: one NCRONTAB expression, read the way Azure Functions' timer trigger reads it.

In Azure the timer trigger runs `schedule="%PATCH_SCAN_SCHEDULE%"`; the Functions host parses it with NCrontab
(six fields, seconds first) and, unless WEBSITE_TIME_ZONE says otherwise, in UTC. Locally `envhub serve` runs
the same expression in-process (shared.services.scheduler). This module makes both homes agree:

    {second} {minute} {hour} {day} {month} {day-of-week}
    0-59     0-59     0-23   1-31  1-12    0-6 (Sunday=0)

Each field is `*`, a value, a range `a-b`, any of those with a step (`*/n`, `a-b/n`, `a/n` meaning a to the
field's maximum by n), or a comma list of them. Months and days of the week may be named in English
(`Jan`, `february`, `Mon`, `Sunday`: any case, at least three letters).

The next fire is computed by croniter (a well-kept cron iterator); the grammar is checked here first, and
croniter only ever sees the canonical numeric form of the expression, because croniter reads several things
differently from NCrontab:

- Field count. croniter also takes five fields (minutes first) and seven (a trailing year): `0 0 3 */14 *`
  would silently mean "03 of every 14th month at 00:00". NCRONTAB as Azure reads it has exactly six fields;
  anything else is an error here.
- Day-of-month and day-of-week both restricted: NCrontab fires only on days matching BOTH (`0 0 9 13 * Fri`
  is Friday the 13th); croniter's default, like Vixie cron, fires on days matching EITHER. We pass
  `day_or=False`, which is NCrontab's AND.
- Reversed ranges: NCrontab swaps the ends (`22-2` in hours is 2-22), croniter wraps around (22, 23, 0, 1, 2).
  They disagree and both surprise, so a reversed range is an error here: write `2-22` or `22-23,0-2` (and
  `Sat,Sun`, not `Sat-Sun`).
- Day-of-week 7: croniter reads it as Sunday, NCrontab rejects it (0-6 only); so do we.
- Step 0: NCrontab silently reads `*/0` as `*`; we reject it.
- Extensions NCrontab lacks (`?`, `L`, `W`, `#`, croniter's hashed `H` and random `R`, `@daily` and the like)
  are errors here, though croniter would accept them.
- Names: NCrontab takes any prefix of an English name and the first name it prefixes wins (`T` is Tuesday);
  we require three letters or more, which never names two.
- Azure also accepts a TimeSpan (`hh:mm:ss`) as a timer schedule on App Service plans; this module does not.

Time zone: UTC only, in and out (WEBSITE_TIME_ZONE must stay unset in Azure for the homes to agree).
An expression that can never fire (`0 0 0 30 2 *`) is rejected when parsed; NCrontab would accept it and never
run the function.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import UTC, datetime

from croniter import CroniterBadDateError, CroniterError, croniter

from shared.domain.errors import InvalidDefinition

# Days 1, 15 and 29 of each month at 03:00:00 UTC. Consecutive fires are at most 14 days apart (the 15th to the
# 29th, and 15 February to 1 March in a common year), so every 14-day window holds at least one scan.
DEFAULT_SCAN_SCHEDULE = "0 0 3 */14 * *"


class InvalidSchedule(InvalidDefinition):
    """A schedule expression that Azure Functions' NCRONTAB would not read, or not read the same way."""

    slug = "invalid-schedule"


@dataclass(frozen=True)
class _FieldSpec:
    name: str
    low: int
    high: int
    names: tuple[str, ...] = ()  # full English names, for months and days of the week


_MONTHS = ("january", "february", "march", "april", "may", "june", "july", "august", "september", "october",
           "november", "december")
_WEEKDAYS = ("sunday", "monday", "tuesday", "wednesday", "thursday", "friday", "saturday")

_FIELDS = (
    _FieldSpec("second", 0, 59),
    _FieldSpec("minute", 0, 59),
    _FieldSpec("hour", 0, 23),
    _FieldSpec("day", 1, 31),
    _FieldSpec("month", 1, 12, _MONTHS),
    _FieldSpec("day-of-week", 0, 6, _WEEKDAYS),
)
_FORMAT = "{second} {minute} {hour} {day} {month} {day-of-week}"
_DAY, _MONTH = 3, 4
_DAYS_IN_MONTH = (31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31)  # February at its longest
_ITEM = re.compile(r"^(?:(?P<star>\*)|(?P<first>[0-9A-Za-z]+)(?:-(?P<last>[0-9A-Za-z]+))?)(?:/(?P<step>[0-9]+))?$")


@dataclass(frozen=True)
class Schedule:
    """A parsed NCRONTAB schedule; `values` holds each field's allowed values, seconds first."""

    expression: str
    values: tuple[frozenset[int], ...] = field(repr=False)

    @property
    def canonical(self) -> str:
        """The expression with every field spelled as numbers (`*` for a whole range): what croniter is given."""
        parts = []
        for spec, allowed in zip(_FIELDS, self.values, strict=True):
            full = len(allowed) == spec.high - spec.low + 1
            parts.append("*" if full else ",".join(str(value) for value in sorted(allowed)))
        return " ".join(parts)

    def next_after(self, moment: datetime) -> datetime:
        """The first fire strictly after `moment` (timezone-aware), in UTC. Like NCrontab, a `moment` that is
        itself a fire time is not returned, and fractions of a second are ignored."""
        start = as_utc(moment)
        try:
            found = croniter(self.canonical, start, day_or=False, second_at_beginning=True).get_next(datetime)
        except CroniterBadDateError as error:
            raise InvalidSchedule(f"'{self.expression}' has no fire time within 50 years after "
                                  f"{start.isoformat()}") from error
        return found.astimezone(UTC)

    def matches(self, moment: datetime) -> bool:
        """True when `moment` (timezone-aware, whole second) is a fire time: every field matches, the day of the
        month AND the day of the week (NCRONTAB's rule)."""
        utc = as_utc(moment)
        weekday = utc.isoweekday() % 7  # Sunday=0
        actual = (utc.second, utc.minute, utc.hour, utc.day, utc.month, weekday)
        return utc.microsecond == 0 and all(value in allowed for value, allowed in zip(actual, self.values,
                                                                                       strict=True))


def as_utc(moment: datetime) -> datetime:
    """`moment` in UTC; a naive datetime is refused rather than guessed at (local time? UTC?)."""
    if moment.tzinfo is None or moment.utcoffset() is None:
        raise ValueError(f"a schedule needs timezone-aware datetimes, got the naive {moment.isoformat()}")
    return moment.astimezone(UTC)


def parse_schedule(expression: str) -> Schedule:
    """Parse an NCRONTAB expression (six fields, seconds first); InvalidSchedule says what is wrong."""
    if not isinstance(expression, str):
        raise InvalidSchedule(f"a schedule is a string, not {type(expression).__name__}")
    text = expression.strip(" ")
    if not text:
        raise InvalidSchedule(f"the schedule is empty; it needs six fields: {_FORMAT}")
    tokens = [token for token in text.split(" ") if token]  # NCrontab splits on spaces only
    if len(tokens) != len(_FIELDS):
        hint = ""
        if len(tokens) == 5:
            hint = " (a five-field cron expression has no seconds: put a 0 in front for Azure's NCRONTAB)"
        raise InvalidSchedule(f"'{expression}' has {len(tokens)} field(s); an NCRONTAB schedule has six, seconds "
                              f"first: {_FORMAT}{hint}")
    values = tuple(_parse_field(spec, token, expression) for spec, token in zip(_FIELDS, tokens, strict=True))
    _check_some_day_exists(values, expression)
    schedule = Schedule(expression=text, values=values)
    try:  # croniter must agree that the canonical form is valid; it always should
        croniter.expand(schedule.canonical, second_at_beginning=True)
    except CroniterError as error:
        raise InvalidSchedule(f"'{expression}' is not a schedule croniter can run: {error}") from error
    return schedule


def _parse_field(spec: _FieldSpec, token: str, expression: str) -> frozenset[int]:
    where = f"{spec.name} field"
    allowed: set[int] = set()
    for item in token.split(","):
        match = _ITEM.match(item)
        if match is None:
            reason = "an empty list item" if not item else f"'{item}' is not `*`, a value, a range or a step"
            raise InvalidSchedule(f"'{expression}': {reason}{_unsupported(item)}", where=where)
        step = 1
        if match["step"] is not None:
            step = int(match["step"])
            if step < 1:
                raise InvalidSchedule(f"'{expression}': the step in '{item}' must be 1 or more", where=where)
        if match["star"]:
            first, last = spec.low, spec.high
        else:
            first = _value(spec, match["first"], expression)
            if match["last"] is not None:
                last = _value(spec, match["last"], expression)
                if last < first:
                    raise InvalidSchedule(
                        f"'{expression}': the range '{item}' runs backwards; NCrontab would read it as {last}-{first}"
                        f" and other crons wrap around, so write it in order", where=where)
            else:
                last = spec.high if match["step"] is not None else first  # `a/n`: from a to the maximum by n
        allowed.update(range(first, last + 1, step))
    return frozenset(allowed)


def _value(spec: _FieldSpec, word: str, expression: str) -> int:
    where = f"{spec.name} field"
    if word.isdigit():
        number = int(word)
        if not spec.low <= number <= spec.high:
            extra = " (Sunday is 0; NCRONTAB has no 7)" if spec.name == "day-of-week" and number == 7 else ""
            raise InvalidSchedule(f"'{expression}': {number} is out of range {spec.low}-{spec.high}{extra}",
                                  where=where)
        return number
    lowered = word.lower()
    if spec.names and len(lowered) >= 3:
        for index, name in enumerate(spec.names):
            if name.startswith(lowered):
                return spec.low + index
    if not spec.names:
        raise InvalidSchedule(f"'{expression}': '{word}' is not a number from {spec.low} to {spec.high}"
                              f"{_unsupported(word)}", where=where)
    raise InvalidSchedule(f"'{expression}': '{word}' is not a {spec.name} (a number from {spec.low} to {spec.high} "
                          f"or a name of three letters or more, such as {spec.names[0][:3].title()})"
                          f"{_unsupported(word)}", where=where)


def _unsupported(text: str) -> str:
    """A hint when `text` looks like a cron extension NCRONTAB lacks (Quartz's ? L W #, Jenkins' H, croniter's R)."""
    if re.search(r"[?#]|^[LWHR]$|[0-9][LW]$|^LW$|^[HR]\(", text):
        return " (NCRONTAB has no ?, L, W, #, H or R)"
    return ""


def _check_some_day_exists(values: tuple[frozenset[int], ...], expression: str) -> None:
    days, months = values[_DAY], values[_MONTH]
    if not any(day <= _DAYS_IN_MONTH[month - 1] for month in months for day in days):
        raise InvalidSchedule(f"'{expression}' never fires: none of its months has any of its days", where="day field")
