"""Atomic file writes: the one place venomkit writes a result file.

Every file is written to a temporary name in the same folder and renamed over its final name
with ``os.replace``, which is atomic on POSIX and Windows: a reader (or a run resumed after a
SIGKILL) sees either the old file or the complete new one, never a truncated one. Temporary
names start with :data:`TMP_PREFIX`, so a folder can be swept of what a killed writer left
(:func:`remove_stale_temporaries`).

:func:`atomic_path` is the primitive (a context manager yielding the temporary path, for
libraries that write to a path themselves: safetensors, PIL); the helpers below cover text,
bytes, JSON and CSV.
"""

from __future__ import annotations

import contextlib
import csv
import io
import itertools
import json
import math
import os
from pathlib import Path
from typing import Any, Iterable, Iterator, Mapping, Sequence

TMP_PREFIX = ".venomkit-tmp-"


_counter = itertools.count()


def _temporary_name(path: Path) -> Path:
    """A name no other writer uses: this process, a counter, and the final name (so its suffix)."""
    return path.with_name(f"{TMP_PREFIX}{os.getpid()}-{next(_counter)}-{path.name}")


@contextlib.contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yield a temporary path next to ``path``; on success rename it over ``path``.

    The parent folder is created. On an exception the temporary file is removed and the
    previous ``path`` (if any) is left untouched.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp_path = _temporary_name(path)
    try:
        yield tmp_path
        os.replace(tmp_path, path)
    finally:
        if tmp_path.exists():
            tmp_path.unlink()


def write_bytes(path: str | Path, data: bytes) -> Path:
    """Write ``data`` to ``path`` atomically; returns the path.

    The fast path of :func:`atomic_path` (one ``open`` of an exclusive temporary file, one
    ``os.replace``): run folders commit a record per target, so the syscalls add up.
    """
    path = Path(path)
    tmp = _temporary_name(path)
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0)
    try:
        fd = os.open(tmp, flags, 0o644)
    except FileNotFoundError:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(tmp, flags, 0o644)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return path


def write_text(path: str | Path, text: str) -> Path:
    """Write UTF-8 ``text`` to ``path`` atomically; returns the path."""
    return write_bytes(path, text.encode("utf-8"))


def jsonable(value: Any) -> Any:
    """``value`` with tuples as lists, numpy/torch scalars as numbers, non-finite floats as strings.

    JSON has no inf/nan: they are written as the strings ``"inf"``, ``"-inf"``, ``"nan"``
    (``float("inf")`` reads them back), so a summary stays valid JSON for every reader.
    """
    if isinstance(value, Mapping):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [jsonable(v) for v in value]
    if isinstance(value, Path):
        return str(value)
    if hasattr(value, "item") and callable(value.item) and getattr(value, "ndim", 0) == 0:
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    return value


def write_json(path: str | Path, data: Any) -> Path:
    """Write ``data`` as indented JSON (see :func:`jsonable`) atomically; returns the path."""
    return write_text(path, json.dumps(jsonable(data), indent=2, sort_keys=False) + "\n")


def write_csv(path: str | Path, rows: Iterable[Mapping[str, Any]], fields: Sequence[str] | None = None) -> Path:
    """Write ``rows`` as CSV with a header atomically; ``fields`` default to every key, first seen first."""
    rows = list(rows)
    if fields is None:
        fields = []
        for row in rows:
            fields += [k for k in row if k not in fields]
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=list(fields), extrasaction="ignore", lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    return write_text(path, buf.getvalue())


def remove_stale_temporaries(folder: str | Path) -> int:
    """Delete every temporary file a killed writer left below ``folder``; returns how many."""
    folder = Path(folder)
    if not folder.is_dir():
        return 0
    count = 0
    for tmp in folder.rglob(TMP_PREFIX + "*"):
        if tmp.is_file():
            tmp.unlink()
            count += 1
    return count
