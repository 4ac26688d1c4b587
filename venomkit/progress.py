"""Progress of long loops: a bar on a terminal, log lines when output is not a terminal, nothing when quiet.

``progress(iterable, total=, desc=, unit=)`` returns a tqdm-like object (iterate it, or call
``update(n)``; ``set_postfix(...)``, ``close()``, ``with``):

* when stderr is a terminal: a tqdm bar with rate and ETA;
* otherwise (CI, ``nohup``, a pipe): a line logged through ``logging.getLogger("venomkit")`` at
  INFO at most every ``VENOMKIT_PROGRESS_SECONDS`` seconds (default 10) and one at the end, e.g.
  ``train vbpr: 40/200 epochs (20%), 1.3 epochs/s, ETA 2m03s, loss=0.21``. A loop made with
  ``leave=False`` (an inner loop: one attack batch, one ranking pass) logs its end line only
  when it already logged a line, so short inner loops stay out of the log;
* nothing at all when ``enabled`` is False, after ``set_quiet(True)`` (the CLI's ``--quiet``)
  or with the environment variable ``VENOMKIT_QUIET=1``.

Library modules never configure logging handlers: the ``venomkit`` command does (a Python
caller who wants the lines configures ``logging`` as usual, e.g. ``logging.basicConfig(level=logging.INFO)``).
"""

from __future__ import annotations

import logging
import math
import os
import sys
import time
from typing import Any, Iterable, Iterator, Mapping

from tqdm.auto import tqdm

LOGGER = logging.getLogger("venomkit")
"""The logger progress lines go to (INFO)."""

SECONDS_ENV = "VENOMKIT_PROGRESS_SECONDS"
QUIET_ENV = "VENOMKIT_QUIET"
DEFAULT_SECONDS = 10.0

_quiet = False  # the process-wide switch of set_quiet


def set_quiet(quiet: bool = True) -> None:
    """Silence (True) every progress bar and progress line of this process, or lift that (False).

    ``VENOMKIT_QUIET=1`` silences them too, whatever this switch says.
    """
    global _quiet
    _quiet = bool(quiet)


def is_quiet() -> bool:
    """True after ``set_quiet(True)`` or with the environment variable ``VENOMKIT_QUIET`` set to 1/true/yes/on."""
    return _quiet or os.environ.get(QUIET_ENV, "").strip().lower() in ("1", "true", "yes", "on")


def log_interval() -> float:
    """Seconds between two progress lines: ``VENOMKIT_PROGRESS_SECONDS`` (a number >= 0) or 10."""
    text = os.environ.get(SECONDS_ENV, "").strip()
    if not text:
        return DEFAULT_SECONDS
    try:
        seconds = float(text)
    except ValueError:
        seconds = float("nan")
    if not math.isfinite(seconds) or seconds < 0:
        raise ValueError(f"environment variable {SECONDS_ENV}={text!r}: expected a number of seconds >= 0, e.g. 10")
    return seconds


def _stderr_is_terminal() -> bool:
    try:
        return bool(sys.stderr.isatty())
    except (AttributeError, ValueError):  # no stderr, or a closed one
        return False


def progress(
    iterable: Iterable | None = None,
    *,
    total: int | float | None = None,
    desc: str = "",
    unit: str = "it",
    enabled: bool = True,
    leave: bool = True,
) -> Any:
    """A progress reporter over ``iterable`` (or driven by ``update(n)``); see the module docstring.

    Args:
        iterable: what to iterate; None for a reporter advanced with ``update(n)``.
        total: expected number of units (default ``len(iterable)`` when it has one).
        desc: what runs, e.g. ``"train vbpr"``.
        unit: one unit's name, e.g. ``"epoch"`` (lines say ``epochs`` and ``epochs/s``).
        enabled: False silences this reporter (the caller's own progress switch).
        leave: keep the bar when done; for log lines, log the end line even for a short loop.

    Returns:
        a ``tqdm`` bar on a terminal (disabled when silenced), else a :class:`ProgressLog`.
    """
    if not enabled or is_quiet():
        return tqdm(iterable, total=total, desc=desc, unit=unit, disable=True)
    if _stderr_is_terminal():
        return tqdm(iterable, total=total, desc=desc, unit=unit, leave=leave, file=sys.stderr)
    return ProgressLog(iterable, total=total, desc=desc, unit=unit, leave=leave, interval=log_interval())


class ProgressLog:
    """Progress as log lines (``logging.getLogger("venomkit")``, INFO): what runs when stderr is no terminal.

    Attributes:
        n: units done so far; total: units expected (None when unknown).
    """

    def __init__(
        self,
        iterable: Iterable | None = None,
        *,
        total: int | float | None = None,
        desc: str = "",
        unit: str = "it",
        leave: bool = True,
        interval: float = DEFAULT_SECONDS,
        clock: Any = time.monotonic,
    ) -> None:
        if total is None and iterable is not None and hasattr(iterable, "__len__"):
            total = len(iterable)  # type: ignore[arg-type]
        self.iterable = iterable
        self.total = total
        self.desc = desc
        self.unit = unit
        self.leave = leave
        self.interval = interval
        self.n = 0
        self.postfix = ""
        self._clock = clock
        self._start = clock()
        self._last_line = self._start
        self._lines = 0
        self._closed = False

    # -- tqdm's interface -------------------------------------------------------------------
    def __iter__(self) -> Iterator:
        if self.iterable is None:
            raise ValueError(f"progress {self.desc!r} has no iterable: advance it with update(n)")
        try:
            for item in self.iterable:
                yield item
                self.update(1)
        finally:
            self.close()

    def __len__(self) -> int:
        return int(self.total) if self.total is not None else 0

    def __enter__(self) -> "ProgressLog":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def update(self, n: int | float = 1) -> None:
        """Count ``n`` more units; log a line when the interval has passed since the last one."""
        self.n += n
        now = self._clock()
        if now - self._last_line >= self.interval:
            self._log(now)

    def set_postfix(self, ordered_dict: Mapping[str, Any] | None = None, refresh: bool = True, **kwargs: Any) -> None:
        """Values shown after the rate, e.g. ``loss=0.21`` (floats with 4 significant digits)."""
        values = dict(ordered_dict or {}, **kwargs)
        self.postfix = ", ".join(f"{k}={_format_value(v)}" for k, v in values.items())

    def set_description(self, desc: str = "", refresh: bool = True) -> None:
        self.desc = desc

    def close(self) -> None:
        """Log the end line (see ``leave``) once."""
        if self._closed:
            return
        self._closed = True
        if self.leave or self._lines:
            self._log(self._clock())

    # -- the line ---------------------------------------------------------------------------
    def line(self, now: float | None = None) -> str:
        """The progress line, e.g. ``train vbpr: 40/200 epochs (20%), 1.3 epochs/s, ETA 2m03s, loss=0.21``.

        The end line says the time taken instead of the ETA (``..., 2m34s in all, ...``).
        """
        now = self._clock() if now is None else now
        elapsed = max(now - self._start, 1e-9)
        units = _plural(self.unit)
        done = _format_count(self.n)
        parts = [f"{done}/{_format_count(self.total)} {units} ({100 * self.n / self.total:.0f}%)" if self.total else f"{done} {units}"]
        rate = self.n / elapsed
        parts.append(f"{rate:.3g} {units}/s" if rate >= 1 or self.n == 0 else f"{1 / rate:.3g} s/{self.unit}")
        if self._closed:
            parts.append(f"{_format_seconds(elapsed)} in all")
        elif self.total and self.n < self.total and rate > 0:
            parts.append(f"ETA {_format_seconds((self.total - self.n) / rate)}")
        if self.postfix:
            parts.append(self.postfix)
        head = f"{self.desc}: " if self.desc else ""
        return head + ", ".join(parts)

    def _log(self, now: float) -> None:
        self._last_line = now
        self._lines += 1
        LOGGER.info("%s", self.line(now))


def _plural(unit: str) -> str:
    if unit in ("it", "") or unit.endswith("s"):
        return unit or "it"
    if unit.endswith(("tch", "sh", "x")):  # batch -> batches; epoch -> epochs
        return unit + "es"
    return unit + "s"


def _format_count(value: int | float | None) -> str:
    if value is None:
        return "?"
    return str(int(value)) if float(value).is_integer() else f"{value:.3g}"


def _format_value(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def _format_seconds(seconds: float) -> str:
    """``45s``, ``2m03s``, ``1h02m``."""
    seconds = int(round(seconds))
    if seconds < 60:
        return f"{seconds}s"
    minutes, seconds = divmod(seconds, 60)
    if minutes < 60:
        return f"{minutes}m{seconds:02d}s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m"


__all__ = ["LOGGER", "ProgressLog", "is_quiet", "log_interval", "progress", "set_quiet"]
