"""The run folder: one writer for every file a run leaves, target records, merging, resume.

Layout of ``DIR``::

    run.json          format, the fingerprint (venomkit.runs.fingerprint), the resolved settings
    resolved.yaml     the resolved settings, readable
    records/<victim>/<attack>/<item>.json
                      ONE record per attacked target (its result row, its texts): the done marker.
                      Written atomically after the target's images, by whichever process ran it.
    images/<item>_clean.png, _adv.png, _grid.png          (a run with one victim and one attack)
    images/<victim>/<attack>/<item>_clean.png, ...        (several)
    victims/<name>/   checkpoint + metrics.json of every victim (trained, defended, or a copy of
                      a given checkpoint's metrics)
    results.csv       every record, merged by the main process (one row per target and setting)
    texts.csv         original and adversarial text per target of a text attack
    summary.json      means per setting, victims, skipped settings, timings, number of processes
    table.md, table.csv   the judgement table (when asked)
    report.html       the self-contained report

Every file goes through ``venomkit.atomic``: after a SIGKILL at any moment there is no
partial file where a result belongs, and the same command resumes from the records.
"""

from __future__ import annotations

import json
import re
import shutil
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Iterable

import torch
import yaml

import venomkit
from venomkit.atomic import jsonable, remove_stale_temporaries, write_bytes, write_csv, write_json, write_text
from venomkit.runs.fingerprint import differences

RUN_FORMAT = "venomkit-run"
RUN_FORMAT_VERSION = 1
_SAFE = re.compile(r"[A-Za-z0-9_.\-]+")
# What a run writes: --overwrite removes exactly these, nothing else of the folder.
RUN_OUTPUTS = ("run.json", "resolved.yaml", "records", "images", "victims", "attackers", "results.csv", "texts.csv",
               "summary.json", "table.md", "table.csv", "promotion.md", "promotion.csv", "poisoning.md", "poisoning.csv", "frontier.png",
               "report.html")


class RunFolderError(ValueError):
    """An output folder that holds another run (names what differs) or is not a run folder."""


def file_stem(item_id: str) -> str:
    """File-name stem of an item in a run folder: the id itself when safe, else a sanitised
    id plus a short hash of the real id (two ids never share a stem)."""
    item_id = str(item_id)
    if _SAFE.fullmatch(item_id) and not item_id.startswith("."):
        return item_id
    import hashlib

    clean = "".join(ch if ch.isalnum() or ch in "-_." else "_" for ch in item_id).lstrip(".") or "item"
    return f"{clean}-{hashlib.sha1(item_id.encode()).hexdigest()[:8]}"


def save_png(image: torch.Tensor, path: str | Path) -> Path:
    """Write (3, H, W) [0, 1] as an 8-bit PNG atomically (``venomkit.data.catalog.png_bytes``'s rounding)."""
    from venomkit.data.catalog import png_bytes

    return write_bytes(path, png_bytes(image))


class RunStore:
    """Reads and writes one run folder (see the module docstring)."""

    def __init__(self, out: str | Path) -> None:
        self.out = Path(out)

    # -- the folder -------------------------------------------------------------------------
    @property
    def run_json(self) -> Path:
        return self.out / "run.json"

    def read_run_info(self) -> dict[str, Any] | None:
        if not self.run_json.is_file():
            return None
        try:
            info = json.loads(self.run_json.read_text())
        except json.JSONDecodeError as exc:
            raise RunFolderError(f"{self.run_json}: not valid JSON ({exc}); use another --out or --overwrite") from None
        if not isinstance(info, dict) or info.get("format") != RUN_FORMAT:
            raise RunFolderError(f"{self.out} holds a run.json that is not a venomkit run; use another --out")
        return info

    def check(self, fingerprint: dict[str, Any], overwrite: bool = False) -> bool:
        """True when the folder holds this run (resume), False when it holds none.

        A folder holding another run raises :class:`RunFolderError` naming what differs,
        unless ``overwrite``. A folder with files but no run.json is refused too (never mix).
        """
        info = self.read_run_info()
        if info is None:
            if self.out.is_dir() and (self.out / "records").exists() and not overwrite:
                raise RunFolderError(f"{self.out} holds records but no run.json; use another --out or --overwrite")
            return False
        if info.get("fingerprint") == fingerprint:
            return True
        if overwrite:
            return False
        diffs = differences(info.get("fingerprint", {}), fingerprint)
        raise RunFolderError(
            f"{self.out} holds a different run ({'; '.join(diffs)}): use another --out, or --overwrite to replace it"
        )

    def prepare(self, fingerprint: dict[str, Any], resolved: dict[str, Any], resume: bool, num_processes: int) -> None:
        """Main process: clear a replaced run, sweep temporaries, write run.json (kept on resume)."""
        self.out.mkdir(parents=True, exist_ok=True)
        if not resume:
            for name in RUN_OUTPUTS:
                path = self.out / name
                if path.is_dir():
                    shutil.rmtree(path)
                elif path.exists():
                    path.unlink()
        remove_stale_temporaries(self.out)
        info = self.read_run_info() if resume else None
        if info is None:
            info = {
                "format": RUN_FORMAT,
                "format_version": RUN_FORMAT_VERSION,
                "venomkit_version": venomkit.__version__,
                "started": datetime.now(timezone.utc).isoformat(timespec="seconds"),
                "fingerprint": fingerprint,
                "resolved": resolved,
            }
        info["num_processes"] = num_processes
        write_json(self.run_json, info)
        write_text(self.out / "resolved.yaml", yaml.safe_dump(json.loads(json.dumps(resolved, default=str)), sort_keys=False))

    # -- records ----------------------------------------------------------------------------
    def record_path(self, setting: str, item_id: str) -> Path:
        return self.out / "records" / setting / f"{file_stem(item_id)}.json"

    def is_done(self, setting: str, item_id: str) -> bool:
        return self.record_path(setting, item_id).is_file()

    def commit(self, setting: str, item_id: str, record: dict[str, Any]) -> None:
        """Write one target's record atomically: from now on the target is done."""
        write_bytes(self.record_path(setting, item_id), json.dumps(jsonable(record)).encode())

    def read_record(self, setting: str, item_id: str) -> dict[str, Any]:
        return json.loads(self.record_path(setting, item_id).read_text())

    # -- merged tables ----------------------------------------------------------------------
    def write_results(self, rows: list[dict[str, Any]]) -> Path:
        return write_csv(self.out / "results.csv", rows)

    def write_texts(self, rows: list[dict[str, Any]]) -> Path | None:
        if not rows:
            return None
        return write_csv(self.out / "texts.csv", rows, ["victim", "attack", "item_id", "original", "adversarial"])

    def write_summary(self, summary: dict[str, Any]) -> Path:
        return write_json(self.out / "summary.json", summary)

    def write_table(self, rows: Iterable[dict[str, Any]], markdown: str, stem: str = "table") -> None:
        """``<stem>.csv`` and ``<stem>.md`` (the judgement: ``table``; the promotion table: ``promotion``)."""
        write_csv(self.out / f"{stem}.csv", list(rows))
        write_text(self.out / f"{stem}.md", markdown)
