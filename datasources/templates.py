"""Run-time templates in datasource configs: ``${yesterday}``, ``${params.since}``, ...

Syntax (``string.Template`` with a stricter pattern; nothing is evaluated):

- ``${NAME}``, ``${NAME:FORMAT}`` (``FORMAT`` is a ``strftime`` format, for date and
  time values), ``${NAME+N<unit>}`` / ``${NAME-N<unit>}`` to shift a date or time by
  ``N`` days (``d``), hours (``h``) or minutes (``m``): ``${date-7d}``,
  ``${datetime-2h:%Y%m%d%H}``;
- ``$${`` is a literal ``${``; any other ``$`` is left alone (``$gt``, ``$id`` in a
  GraphQL body stay as written);
- an unknown name or a malformed ``${`` is a ``ConfigError`` naming the field.

Names (dates and times are of the run's :attr:`RunContext.run_time`: the cron slot of a
scheduled run, else the start of the run, in the job's timezone):

====================== ==================================================================
``date``, ``today``    the run's date, ``YYYY-MM-DD``
``yesterday``          the day before, ``YYYY-MM-DD``; ``tomorrow`` the day after
``datetime``           the run time, ISO-8601 with offset (``2026-03-01T04:00:00+01:00``)
``datetime_utc``       the run time in UTC, ISO-8601 (``2026-03-01T03:00:00Z``)
``timestamp``          the run time in Unix seconds
``job``, ``run_id``,   from the run context
``trigger``
``params.KEY``         ``str(ctx.params[KEY])`` (JSON for lists and objects)
``env.NAME``           the environment variable ``NAME``, as a secret: allowed in headers
                       and bodies only (never in URLs or query strings, which proxies and
                       HTTP client logs record), masked in every message
====================== ==================================================================

Day shifts are calendar days in the job's timezone; hour and minute shifts are elapsed
time (correct across DST changes).
"""

from __future__ import annotations

import json
import re
import string
from collections.abc import Iterator, Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

from datasources.context import RunContext
from datasources.errors import ConfigError
from datasources.redaction import Redactor

__all__ = ["TemplateValues", "render", "render_tree"]

_NAME = r"[A-Za-z_][A-Za-z0-9_]*(?:\.[A-Za-z0-9_-]+)?"
_KEY_RE = re.compile(rf"^(?P<name>{_NAME})(?P<shift>[+-][0-9]+[dhm])?(?::(?P<format>.*))?$", re.S)
_DATE_NAMES = {"date": 0, "today": 0, "yesterday": -1, "tomorrow": 1}
_TIME_NAMES = {"datetime", "datetime_utc", "timestamp"}
_UNITS = {"d": "days", "h": "hours", "m": "minutes"}


class _Template(string.Template):
    pattern = r"""
    \$(?:
        (?P<escaped>\$(?=\{))              # $${ -> ${
      | \{(?P<braced>[^{}$]*)\}            # ${...}: checked by TemplateValues
      | (?P<named>(?!))                    # bare $name is not a placeholder
      | (?P<invalid>\{)                    # an unclosed ${
    )
    """  # type: ignore[assignment]
    flags = re.NOFLAG


class TemplateValues(Mapping[str, str]):
    """The values of one run; ``values[key]`` computes ``key`` (``yesterday:%Y%m%d``).

    ``redactor`` enables ``env.NAME`` (its values are remembered as secrets); without
    it ``env.`` is refused.
    """

    def __init__(self, ctx: RunContext, redactor: Redactor | None = None) -> None:
        self.ctx = ctx
        self.redactor = redactor

    def __getitem__(self, key: str) -> str:
        match = _KEY_RE.match(key)
        if match is None:
            raise KeyError(key)
        name, shift, fmt = match["name"], match["shift"], match["format"]
        if name.startswith(("params.", "env.")):
            if shift or fmt is not None:
                raise ConfigError(f"${{{key}}}: shifts and formats apply to dates and times")
            return self._lookup(name)
        if name in _DATE_NAMES or name in _TIME_NAMES:
            return self._when(name, shift, fmt)
        if name in ("job", "run_id", "trigger") and not shift and fmt is None:
            return str(getattr(self.ctx, name))
        raise KeyError(key)

    def _lookup(self, name: str) -> str:
        kind, _, key = name.partition(".")
        if kind == "params":
            if key not in self.ctx.params:
                known = ", ".join(sorted(self.ctx.params)) or "none"
                raise ConfigError(f"${{{name}}}: the run has no param {key!r} (params: {known})")
            value = self.ctx.params[key]
            return value if isinstance(value, str) else json.dumps(value)
        if self.redactor is None:
            raise ConfigError(
                f"${{{name}}}: secrets from the environment are allowed in headers and "
                "bodies only, never in URLs or query parameters"
            )
        return self.redactor.secret(key, "template secret")

    def _when(self, name: str, shift: str | None, fmt: str | None) -> str:
        local = self.ctx.run_time
        if shift:
            amount = int(shift[:-1])
            unit = _UNITS[shift[-1]]
            if unit == "days":
                local = local + timedelta(days=amount)  # calendar days, wall clock
            else:
                utc = local.astimezone(UTC) + timedelta(**{unit: amount})
                local = utc.astimezone(self.ctx.tz)
        if name in _DATE_NAMES:
            day = local.date() + timedelta(days=_DATE_NAMES[name])
            return day.strftime(fmt) if fmt is not None else day.isoformat()
        moment: datetime = local.astimezone(UTC) if name == "datetime_utc" else local
        if fmt is not None:
            return moment.strftime(fmt)
        if name == "timestamp":
            return str(int(moment.timestamp()))
        text = moment.replace(microsecond=0).isoformat()
        return text.replace("+00:00", "Z") if name == "datetime_utc" else text

    def __iter__(self) -> Iterator[str]:
        return iter(sorted({*_DATE_NAMES, *_TIME_NAMES, "job", "run_id", "trigger"}))

    def __len__(self) -> int:
        return len(list(iter(self)))


def render(text: str, values: TemplateValues, where: str) -> str:
    """``text`` with its placeholders replaced; ``ConfigError`` naming ``where``."""
    if "${" not in text:
        return text
    try:
        return _Template(text).substitute(values)
    except KeyError as exc:
        known = ", ".join(values)
        raise ConfigError(
            f"{where}: unknown template name ${{{exc.args[0]}}}; known: {known}, "
            "params.KEY, env.NAME (see docs/datasources.md)"
        ) from None
    except ValueError as exc:
        raise ConfigError(f"{where}: malformed template: {exc}") from None
    except ConfigError as exc:
        raise type(exc)(f"{where}: {exc.message}") from None


def render_tree(value: Any, values: TemplateValues, where: str) -> Any:
    """``value`` (a JSON value) with every string rendered; keys are left as they are."""
    if isinstance(value, str):
        return render(value, values, where)
    if isinstance(value, Mapping):
        return {k: render_tree(v, values, f"{where}.{k}") for k, v in value.items()}
    if isinstance(value, list):
        return [render_tree(v, values, f"{where}[{i}]") for i, v in enumerate(value)]
    return value
