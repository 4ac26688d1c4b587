"""Errors and counted warnings for bad input data."""

from __future__ import annotations

import warnings
from pathlib import Path


class DataFormatError(ValueError):
    """Bad input data, with where it is: file, line (1-based, header is line 1) and field."""

    def __init__(self, message: str, file: str | Path | None = None, line: int | None = None, field: str | None = None):
        where = []
        if file is not None and str(file) not in message:
            where.append(str(file))
        if line is not None:
            where.append(f"line {line}")
        if field is not None:
            where.append(f"field {field!r}")
        super().__init__(f"{', '.join(where)}: {message}" if where else message)
        self.file = None if file is None else Path(file)
        self.line = line
        self.field = field


class DataWarning(UserWarning):
    """A counted warning about input handled by a documented policy (never a silent drop)."""


def warn_counted(what: str, count: int, policy: str, examples: list[str], file: str | Path | None = None) -> None:
    """Emit one warning that says how many items a policy touched, and shows a few of them."""
    if count == 0:
        return
    shown = ", ".join(examples[:5]) + (" ..." if len(examples) > 5 else "")
    where = f" in {file}" if file is not None else ""
    warnings.warn(f"{count} {what}{where} handled by policy {policy!r}: {shown}", DataWarning, stacklevel=3)
