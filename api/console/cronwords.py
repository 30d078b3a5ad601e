"""A 5-field cron expression in English words: ``describe("0 4 * * 1-5")`` is
"at 04:00, Monday to Friday". A pure function, tested with a table.

It covers what crontab allows (``*``, numbers, names, lists, ranges, steps); where a
combination has no short phrase it spells each field out ("minutes 0 and 30 past
hours 9 to 17"). Day of month and day of week together follow cron's rule: a day
matching *either* fires, which is said as "on day 1 of the month or on Monday".
"""

from __future__ import annotations

__all__ = ["describe"]

_MONTHS = [
    "January", "February", "March", "April", "May", "June", "July", "August", "September",
    "October", "November", "December",
]  # fmt: skip
#: Day-of-week numbers 0-7 (0 and 7 are both Sunday).
_DAYS = ["Sunday", "Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday"]
_MONTH_NUMBERS = {name[:3].lower(): str(i + 1) for i, name in enumerate(_MONTHS)}
_DAY_NUMBERS = {name[:3].lower(): str(i) for i, name in enumerate(_DAYS[:7])}


def _join(words: list[str]) -> str:
    return words[0] if len(words) == 1 else ", ".join(words[:-1]) + " and " + words[-1]


def _plural(unit: str, count: int) -> str:
    return unit if count == 1 else unit + "s"


def _field(text: str, unit: str, name: dict[str, str] | None = None) -> str | None:
    """One field in words ('every 15 minutes', '9 to 17', '1, 15 and 20'); None for '*'."""
    names = {"month": _MONTHS, "weekday": _DAYS}.get(unit)

    def word(value: str) -> str:
        value = (name or {}).get(value.lower(), value)
        if names is not None and value.isdigit():
            index = int(value) - (1 if unit == "month" else 0)
            if 0 <= index < len(names):
                return names[index]
        return value

    if text == "*":
        return None
    parts = []
    for item in text.split(","):
        span, _, step = item.partition("/")
        if step:
            every = f"every {step} {_plural(unit, int(step))}" if step.isdigit() else item
            if span not in ("*", ""):
                low, _, high = span.partition("-")
                every += f" from {word(low)}" + (f" to {word(high)}" if high else "")
            parts.append(every)
        elif "-" in span:
            low, _, high = span.partition("-")
            parts.append(f"{word(low)} to {word(high)}")
        else:
            parts.append(word(span))
    return _join(parts)


def _single(text: str) -> bool:
    return text.isdigit()


def _time(minute: str, hour: str) -> str:
    if _single(minute) and _single(hour):
        return f"at {int(hour):02d}:{int(minute):02d}"
    if _single(minute) and all(_single(h) for h in hour.split(",")):
        return "at " + _join([f"{int(h):02d}:{int(minute):02d}" for h in hour.split(",")])
    if minute == "*" and hour == "*":
        return "every minute"
    if _single(minute) and hour == "*":
        return "every hour" if minute == "0" else f"every hour at minute {int(minute)}"
    if minute.startswith("*/") and hour == "*":
        return _field(minute, "minute") or "every minute"
    minutes = _field(minute, "minute")
    hours = _field(hour, "hour")
    if _single(minute) and hours is not None and hours.startswith("every"):
        return hours + (f" at minute {int(minute)}" if minute != "0" else "")
    if minutes is None:
        said = "every minute"
    elif minutes.startswith("every"):
        said = minutes
    else:
        said = f"at {_plural('minute', 1 if _single(minute) else 2)} {minutes}"
    if hours is None:
        return said
    if hours.startswith("every"):
        return f"{said}, {hours}"
    return f"{said} {'during' if said.startswith('every') else 'past'} " + (
        f"{_plural('hour', 1 if _single(hour) else 2)} {hours}"
    )


def describe(expression: str) -> str:
    """``expression`` (5 fields; aliases such as ``@daily`` expanded first) in words;
    the expression itself when it is not 5 fields."""
    fields = expression.split()
    if len(fields) != 5:
        return expression
    minute, hour, day, month, weekday = fields
    said = [_time(minute, hour)]
    days = _field(day, "day")
    weekdays = _field(weekday, "weekday", _DAY_NUMBERS)
    on_days = None if days is None else (
        days if days.startswith("every") else f"on day {days} of the month"
    )  # fmt: skip
    on_weekdays = None if weekdays is None else (
        weekdays if weekdays.startswith("every") else f"on {weekdays}"
    )  # fmt: skip
    if on_days and on_weekdays:
        said.append(f"{on_days} or {on_weekdays}")
    elif on_days or on_weekdays:
        said.append(on_days or on_weekdays or "")
    elif said[0].startswith("at "):
        said[0] = "every day " + said[0]
    months = _field(month, "month", _MONTH_NUMBERS)
    if months:
        said.append(months if months.startswith("every") else f"in {months}")
    return ", ".join(said)
