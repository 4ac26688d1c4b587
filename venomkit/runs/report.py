"""``report.html``: one self-contained page describing a run folder.

``build_report(DIR)`` reads what the run engine wrote into ``DIR`` (``run.json``,
``summary.json``, ``results.csv``, ``texts.csv``, ``table.csv``, ``victims/**/metrics.json``,
the PNGs under ``images/``) and writes ``DIR/report.html`` atomically. The page needs nothing
but a browser: every image and plot is embedded as ``data:image/png;base64``, the CSS is
inline, there is no script and no remote resource. Sections, in order:

1. **Run** -- name, description, dataset, start time, venomkit version, processes, wall time
   and the resolved recipe as YAML.
2. **Results** -- one line per setting (victim x attack): HR@K before -> after, RI@50 of the
   means, mean rank, stealth (SSIM, PSNR, CLIP image similarity, text cosine, edit ratio);
   the judgement table (``table.csv``) when there is one; the victims' clean quality.
3. **Plots** -- HR@K per target before/after, stealth vs success, victims' training curves,
   RI of the judgement per defense.
4. **Adversarial images** -- per setting, clean | adversarial | amplified difference (x10).
5. **Adversarial texts** -- per setting, word-level diffs of original and adversarial text.

Every input is optional: a missing or unreadable file turns its section into one line saying
so, never into an exception. The module is read top to bottom: reader, numbers, sections,
plots, HTML page, entry points.
"""

from __future__ import annotations

import argparse
import base64
import csv
import difflib
import html
import io
import json
import math
import os
import tempfile
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from venomkit.config import check_int
from venomkit.runs.grids import AMPLIFY as DIFF_AMPLIFY  # the same pictures as the run's _grid.png
from venomkit.runs.grids import DISPLAY_MAX_SIDE as THUMB_MAX_SIDE

SECTION_TITLES = {
    "run": "1. Run",
    "results": "2. Results",
    "plots": "3. Plots",
    "images": "4. Adversarial images",
    "texts": "5. Adversarial texts",
}
"""The page's section headings, by anchor id (the tests look for each)."""


CELL_PX = 168
"""Side of the square box each image of a grid card is shown in (CSS, ``object-fit: contain``)."""


# ----------------------------------------------------------------------------------------
# Reader: the run folder, defensively
# ----------------------------------------------------------------------------------------


@dataclass
class RunFolder:
    """Everything read from a run folder; absent files leave empty values and a note."""

    root: Path
    run: dict[str, Any] = field(default_factory=dict)
    summary: dict[str, Any] = field(default_factory=dict)
    rows: list[dict[str, str]] = field(default_factory=list)
    texts: list[dict[str, str]] = field(default_factory=list)
    table: list[dict[str, str]] = field(default_factory=list)
    victims: dict[str, dict[str, Any]] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    @property
    def resolved(self) -> dict[str, Any]:
        return _dict(self.run.get("resolved"))


def _read_json(path: Path, notes: list[str]) -> dict[str, Any]:
    if not path.is_file():
        return {}
    try:
        data = json.loads(path.read_text(encoding="utf-8", errors="replace"))
    except (OSError, ValueError) as exc:
        notes.append(f"{path.name}: unreadable ({exc.__class__.__name__}: {exc})")
        return {}
    if not isinstance(data, dict):
        notes.append(f"{path.name}: not a JSON object, ignored")
        return {}
    return data


def _dict(value: Any) -> dict[str, Any]:
    """``value`` if it is a dict, else {} (a file of the wrong shape reads as empty)."""
    return value if isinstance(value, dict) else {}


def _list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else []


def _read_csv(path: Path, notes: list[str]) -> list[dict[str, str]]:
    if not path.is_file():
        return []
    try:
        with path.open(newline="", encoding="utf-8", errors="replace") as f:
            rows = [{str(k): ("" if v is None else str(v)) for k, v in row.items() if k is not None} for row in csv.DictReader(f)]
    except (OSError, csv.Error) as exc:
        notes.append(f"{path.name}: unreadable ({exc.__class__.__name__}: {exc})")
        return []
    return rows


def read_run(run_dir: str | Path) -> RunFolder:
    """Read a run folder. Raises ValueError only when ``run_dir`` is not a run folder at all
    (missing, not a folder, or holding neither ``run.json`` nor ``results.csv``)."""
    root = Path(run_dir)
    if not root.exists():
        raise ValueError(f"run folder {root} does not exist")
    if not root.is_dir():
        raise ValueError(f"{root} is not a folder (expected a run folder)")
    if not (root / "run.json").is_file() and not (root / "results.csv").is_file():
        raise ValueError(f"{root} is not a venomkit run folder: it has neither run.json nor results.csv")
    folder = RunFolder(root=root)
    notes = folder.notes
    folder.run = _read_json(root / "run.json", notes)
    folder.summary = _read_json(root / "summary.json", notes)
    folder.rows = _read_csv(root / "results.csv", notes)
    folder.texts = _read_csv(root / "texts.csv", notes)
    table = _read_csv(root / "table.csv", notes)
    folder.table = table if table and "hr@50_after" in table[0] else []  # a judgement's table, not another run's
    victims_dir = root / "victims"
    if victims_dir.is_dir():
        for path in sorted(victims_dir.rglob("metrics.json")):
            name = path.parent.relative_to(victims_dir).as_posix()
            folder.victims[name] = _read_json(path, notes)
    return folder


# ----------------------------------------------------------------------------------------
# Numbers and settings
# ----------------------------------------------------------------------------------------


def _num(value: Any) -> float | None:
    """A float from a CSV/JSON value; None for empty, missing, non-numeric or NaN."""
    if value is None or isinstance(value, bool):
        return None
    try:
        x = float(value)
    except (TypeError, ValueError):
        return None
    return None if math.isnan(x) else x


def _mean(values: Iterable[Any]) -> float | None:
    xs = [x for x in (_num(v) for v in values) if x is not None and math.isfinite(x)]
    return sum(xs) / len(xs) if xs else None


def _fmt(value: Any, spec: str = ".3f") -> str:
    x = _num(value)
    if x is None:
        return "–"
    if math.isinf(x):
        return "inf" if x > 0 else "-inf"
    return format(x, spec)


def _fmt_hr(value: Any) -> str:
    """HR values span 1e-5 .. 1: four decimals, scientific when that would read 0.0000."""
    x = _num(value)
    if x is not None and x != 0 and math.isfinite(x) and abs(x) < 5e-5:
        return format(x, ".1e")
    return _fmt(x, ".4f")


def _arrow(before: str, after: str) -> str:
    return "–" if before == after == "–" else f"{before} → {after}"


def relative_improvement(before: float | None, after: float | None) -> float | None:
    """``RI = after / before - 1``; inf when before is 0 and after is not, None when both are."""
    if before is None or after is None:
        return None
    if before == 0:
        return None if after == 0 else math.inf
    return after / before - 1


def _hr_ks(columns: Iterable[str]) -> list[int]:
    ks = set()
    for c in columns:
        if c.startswith("hr@") and c.endswith("_before"):
            try:
                ks.add(int(c[3:-7]))
            except ValueError:
                pass
    return sorted(ks)


@dataclass
class Setting:
    """One (victim, attack) pair: its rows of results.csv and the means shown in the tables."""

    victim: str
    attack: str
    backbone: str = ""
    defense: str = ""
    rows: list[dict[str, str]] = field(default_factory=list)
    means: dict[str, float] = field(default_factory=dict)
    n_targets: int | None = None
    ri50: float | None = None

    @property
    def label(self) -> str:
        parts = [p for p in (self.victim, self.attack) if p]
        return " · ".join(parts) or "results"

    @property
    def key(self) -> tuple[str, str]:
        return (self.victim, self.attack)

    def mean(self, column: str) -> float | None:
        if column in self.means:
            return self.means[column]
        return _mean(r.get(column) for r in self.rows)


def collect_settings(folder: RunFolder) -> list[Setting]:
    """Settings in the order of summary.json, then any further ones found in results.csv."""
    settings: dict[tuple[str, str], Setting] = {}
    for entry in _list(folder.summary.get("settings")):
        if not isinstance(entry, dict):
            continue
        s = Setting(str(entry.get("victim", "")), str(entry.get("attack", "")), str(entry.get("backbone", "")), str(entry.get("defense", "")))
        means = entry.get("means")
        if isinstance(means, dict):
            s.means = {str(k): x for k, v in means.items() if (x := _num(v)) is not None}
        n = _num(entry.get("n_targets"))
        s.n_targets = int(n) if n is not None and math.isfinite(n) else None
        s.ri50 = _num(entry.get("ri@50_of_means"))
        settings.setdefault(s.key, s)
    for row in folder.rows:
        key = (row.get("victim", ""), row.get("attack", ""))
        if key not in settings:
            settings[key] = Setting(key[0], key[1], row.get("backbone", ""), row.get("defense", ""))
        s = settings[key]
        s.rows.append(row)
        s.backbone = s.backbone or row.get("backbone", "")
        s.defense = s.defense or row.get("defense", "")
    for s in settings.values():
        if s.n_targets is None:
            s.n_targets = len(s.rows)
        if s.ri50 is None:
            s.ri50 = relative_improvement(s.mean("hr@50_before"), s.mean("hr@50_after"))
    return list(settings.values())


def _report_k(folder: RunFolder, settings: Sequence[Setting]) -> int | None:
    """The K of the HR@K plots and cards: 50 when present, else the largest available."""
    columns: set[str] = set(folder.rows[0]) if folder.rows else set()
    for s in settings:
        columns |= set(s.means)
    ks = _hr_ks(columns)
    if not ks:
        return None
    return 50 if 50 in ks else ks[-1]


# ----------------------------------------------------------------------------------------
# Section 1: the run
# ----------------------------------------------------------------------------------------


def _e(value: Any) -> str:
    return html.escape("" if value is None else str(value), quote=True)


def _dataset_name(folder: RunFolder) -> str:
    data = folder.resolved.get("data")
    if isinstance(data, dict):
        for key in ("name", "source", "path", "dataset"):
            if data.get(key):
                return str(data[key])
        return ", ".join(f"{k}={v}" for k, v in data.items() if not isinstance(v, (dict, list)))
    if data:
        return str(data)
    for row in folder.table:
        if row.get("dataset"):
            return row["dataset"]
    return ""


def _duration(seconds: Any) -> str:
    x = _num(seconds)
    if x is None or not math.isfinite(x):
        return ""
    if x < 60:
        return f"{x:.1f} s"
    minutes, secs = divmod(int(round(x)), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes:02d} min {secs:02d} s" if hours else f"{minutes} min {secs:02d} s"


def _yaml(value: Any) -> str:
    try:
        import yaml

        return yaml.safe_dump(value, sort_keys=False, allow_unicode=True, default_flow_style=False, width=100)
    except Exception:  # a value yaml cannot represent: JSON is readable too
        return json.dumps(value, indent=2, default=str)


def section_run(folder: RunFolder) -> str:
    """Section 1: who/what/when of the run, and the resolved recipe (YAML) it ran."""
    resolved, run, summary = folder.resolved, folder.run, folder.summary
    facts = [
        ("name", resolved.get("name") or summary.get("name") or folder.root.name),
        ("description", resolved.get("description", "")),
        ("dataset", _dataset_name(folder)),
        ("started", str(run.get("started", "")).replace("T", " ")),
        ("venomkit version", run.get("venomkit_version", "")),
        ("processes", run.get("num_processes", summary.get("num_processes", ""))),
        ("wall time", _duration(summary.get("seconds"))),
        ("results rows", summary.get("n_rows", len(folder.rows) if folder.rows else "")),
        ("folder", str(folder.root.resolve())),
    ]
    body = "".join(f"<tr><th>{_e(k)}</th><td>{_e(v)}</td></tr>" for k, v in facts if v not in ("", None))
    out = [f'<table class="facts">{body}</table>']
    if resolved:
        out.append(f"<details open><summary>Resolved recipe</summary><pre>{_e(_yaml(resolved))}</pre></details>")
    else:
        out.append('<p class="note">No resolved recipe (run.json is missing or has none).</p>')
    fingerprint = run.get("fingerprint")
    if fingerprint:
        out.append(f"<details><summary>Fingerprint</summary><pre>{_e(_yaml(fingerprint))}</pre></details>")
    if folder.notes:
        out.append("<ul class='note'>" + "".join(f"<li>{_e(n)}</li>" for n in folder.notes) + "</ul>")
    return "\n".join(out)


# ----------------------------------------------------------------------------------------
# Section 2: results tables
# ----------------------------------------------------------------------------------------


def _html_table(head: Sequence[str], rows: Sequence[Sequence[str]], numeric_from: int = 1, css: str = "") -> str:
    """A table of already-escaped cells; columns from ``numeric_from`` on are right-aligned."""
    def cls(i: int) -> str:
        return ' class="num"' if i >= numeric_from else ""

    th = "".join(f"<th{cls(i)}>{h}</th>" for i, h in enumerate(head))
    trs = "".join("<tr>" + "".join(f"<td{cls(i)}>{c}</td>" for i, c in enumerate(r)) + "</tr>" for r in rows)
    return f'<div class="tablewrap"><table class="data {css}"><thead><tr>{th}</tr></thead><tbody>{trs}</tbody></table></div>'


# (header, columns, formatter) of the settings table; a column absent from every setting is skipped.
_SETTING_COLUMNS: list[tuple[str, tuple[str, ...], Any]] = [
    ("HR@10\nbefore → after", ("hr@10_before", "hr@10_after"), _fmt_hr),
    ("HR@20\nbefore → after", ("hr@20_before", "hr@20_after"), _fmt_hr),
    ("HR@50\nbefore → after", ("hr@50_before", "hr@50_after"), _fmt_hr),
    ("mean rank\nbefore → after", ("mean_rank_before", "mean_rank_after"), lambda v: _fmt(v, ".0f")),
    ("SSIM", ("ssim",), lambda v: _fmt(v, ".3f")),
    ("PSNR (dB)", ("psnr",), lambda v: _fmt(v, ".1f")),
    ("CLIP image sim", ("clip_image_sim",), lambda v: _fmt(v, ".3f")),
    ("text cos", ("text_sim",), lambda v: _fmt(v, ".3f")),
    ("text edit ratio", ("text_edit_ratio",), lambda v: _fmt(v, ".3f")),
    # a poisoning run (VenomRec): exposure after the poisoned fine-tune, its chance, and utility
    ("ER@5", ("er@5",), lambda v: _fmt(v, ".3f")),
    ("ER@10", ("er@10",), lambda v: _fmt(v, ".3f")),
    ("ER@20", ("er@20",), lambda v: _fmt(v, ".3f")),
    ("chance@20", ("chance@20",), lambda v: _fmt(v, ".3f")),
    ("utility HR@10", ("utility_hr@10",), lambda v: _fmt(v, ".3f")),
    ("utility NDCG@10", ("utility_ndcg@10",), lambda v: _fmt(v, ".3f")),
]


def section_results(folder: RunFolder, settings: Sequence[Setting]) -> str:
    """Section 2: per setting the mean over targets of attack success (HR@K, RI@50 of the means,
    mean rank) and stealth; then the judgement table (w/o AT / UAT / UAT-MC) when present,
    the victims' clean quality, and the settings the run skipped."""
    out = ["<h3>Settings (mean over targets)</h3>"]
    if settings:
        present = [c for c in _SETTING_COLUMNS if any(s.mean(col) is not None for s in settings for col in c[1])]
        n_hr = sum(1 for c in present if c[0].startswith("HR@"))  # RI@50 goes right after the HR columns
        names = [_e(c[0]).replace("\n", "<br>") for c in present]
        with_ri = any(s.ri50 is not None for s in settings)  # no HR@50 (a poisoning run): no RI column
        head = ["setting", "defense", "targets"] + names[:n_hr] + (["RI@50<br>of means"] if with_ri else []) + names[n_hr:]
        rows = []
        for s in settings:
            cells = []
            for _, cols, fmt in present:
                vals = [fmt(s.mean(c)) for c in cols]
                cells.append(_e(_arrow(*vals) if len(vals) == 2 else vals[0]))
            first = [_e(s.label), _e(s.defense or "–"), _e(s.n_targets if s.n_targets is not None else "–")]
            rows.append(first + cells[:n_hr] + ([_e(_fmt(s.ri50, ".2f"))] if with_ri else []) + cells[n_hr:])
        out.append(_html_table(head, rows, numeric_from=2))
        out.append(
            '<p class="caption">HR@K: share of users (without the target in training) whose top-K holds the target. '
            "RI@50 = mean HR@50 after / mean HR@50 before − 1. SSIM: Gaussian 11×11, σ 1.5, on the saved PNGs. "
            "Text cos: the text encoder's cosine between adversarial and original text.</p>"
        )
        if any(s.mean("er@20") is not None or s.mean("er@5") is not None for s in settings):
            out.append(
                '<p class="caption">A poisoning run (VenomRec): ER@K is the share of evaluated users whose top K of the target '
                "+ 99 sampled negatives holds the target after the setting's poisoned fine-tune (chance K / 100); utility "
                "HR/NDCG@K: the same users' held-out items, ranked by that fine-tuned ranker.</p>"
            )
    else:
        out.append('<p class="note">No results (results.csv and summary.json hold no settings).</p>')
    skipped = folder.summary.get("skipped")
    if isinstance(skipped, list) and skipped:
        out.append("<h3>Skipped settings</h3><ul>")
        for s in skipped:
            if isinstance(s, dict):
                out.append(f"<li><b>{_e(s.get('victim', ''))} · {_e(s.get('attack', ''))}</b>: {_e(s.get('reason', ''))}</li>")
            else:
                out.append(f"<li>{_e(s)}</li>")
        out.append("</ul>")
    out.append("<h3>Judgement (w/o AT vs UAT vs UAT-MC)</h3>")
    out.append(judgement_table(folder.table) if folder.table else '<p class="note">No judgement table (no table.csv: the run has no defenses).</p>')
    out.append("<h3>Victims</h3>")
    out.append(victims_table(folder))
    return "\n".join(out)


def _pct(value: Any) -> str:
    x = _num(value)
    if x is None or not math.isfinite(x):
        return _fmt(x)
    return f"{100 * x:+.1f}%"


def judgement_table(table: Sequence[dict[str, str]]) -> str:
    """table.csv in the layout of table.md: one line per (backbone, defense, attack)."""
    head = ["dataset", "backbone", "defense", "attack", "HR@50 before", "HR@50 after", "RI", "feature shift v / t", "Recall@20", "NDCG@20", "NDCG@20 vs w/o AT"]
    rows = []
    for r in table:
        rows.append(
            [_e(r.get("dataset", "")), _e(r.get("backbone", "")), _e(r.get("defense", "")), _e(r.get("attack", ""))]
            + [_e(x) for x in (_fmt_hr(r.get("hr@50_before")), _fmt_hr(r.get("hr@50_after")), _fmt(r.get("ri@50"), ".3f"))]
            + [_e(f"{_fmt(r.get('shift_visual'))} / {_fmt(r.get('shift_text'))}")]
            + [_e(x) for x in (_fmt(r.get("recall@20"), ".4f"), _fmt(r.get("ndcg@20"), ".4f"), _pct(r.get("ndcg@20_rel_change")))]
        )
    return _html_table(head, rows, numeric_from=4)


_VICTIM_METRICS = ["recall@20", "ndcg@20", "recall@50", "ndcg@50"]


def _victim_records(folder: RunFolder) -> dict[str, dict[str, Any]]:
    """Victims from summary.json merged with victims/**/metrics.json (the latter wins)."""
    records: dict[str, dict[str, Any]] = {}
    for name, rec in _dict(folder.summary.get("victims")).items():
        if isinstance(rec, dict):
            records[str(name)] = dict(rec)
    for name, rec in folder.victims.items():
        records[name] = {**records.get(name, {}), **rec}
    return records


def victims_table(folder: RunFolder) -> str:
    """Kind, defense, clean test / cold metrics and training length of each victim."""
    records = _victim_records(folder)
    if not records:
        return '<p class="note">No victim records (no victims/*/metrics.json and none in summary.json).</p>'

    def metric_keys(part: str) -> list[str]:
        keys = [k for rec in records.values() if isinstance(rec.get(part), dict) for k in rec[part]]
        chosen = [k for k in _VICTIM_METRICS if k in keys]
        return chosen or list(dict.fromkeys(keys))[:4]

    test_keys, cold_keys = metric_keys("test"), metric_keys("cold")[:2]
    head = ["victim", "kind", "defense"] + [f"test {k}" for k in test_keys] + [f"cold {k}" for k in cold_keys] + ["epochs", "best epoch"]
    rows = []
    for name, rec in records.items():
        train = _dict(rec.get("train"))
        history = _list(train.get("history"))
        defense = rec.get("defense") or rec.get("method") or ""
        test, cold = _dict(rec.get("test")), _dict(rec.get("cold"))
        rows.append(
            [_e(name), _e(rec.get("kind", "")), _e(defense)]
            + [_e(_fmt(test.get(k), ".4f")) for k in test_keys]
            + [_e(_fmt(cold.get(k), ".4f")) for k in cold_keys]
            + [_e(len(history) or train.get("epochs_run") or rec.get("epochs_run") or "–")]
            + [_e(next((x for x in (train.get("best_epoch"), rec.get("best_epoch")) if x is not None), "–"))]
        )
    return _html_table([_e(h) for h in head], rows, numeric_from=3)


# ----------------------------------------------------------------------------------------
# Section 3: plots (matplotlib, object API: no pyplot state, nothing left open)
# ----------------------------------------------------------------------------------------


def _new_figure(width: float, height: float):
    """A matplotlib Figure on the Agg canvas, not registered with pyplot (so no global
    backend switch and no figure to leak); ``_figure_png`` renders and releases it."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), dpi=100, layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def _figure_png(fig) -> bytes:
    buf = io.BytesIO()
    try:
        fig.savefig(buf, format="png", dpi=100, metadata={"Software": None})
    finally:
        fig.clear()
    return buf.getvalue()


def _colours(n: int) -> list:
    from matplotlib import colormaps

    cmap = colormaps["tab10" if n <= 10 else "tab20"]
    return [cmap(i % cmap.N) for i in range(n)]


def plot_hr_per_target(setting: Setting, k: int) -> bytes | None:
    """(a) Dumbbell chart: HR@K of each target before (grey) and after (red) the attack."""
    before_col, after_col = f"hr@{k}_before", f"hr@{k}_after"
    points = [(r.get("item_id", str(i)), _num(r.get(before_col)), _num(r.get(after_col))) for i, r in enumerate(setting.rows)]
    points = [(name, b, a) for name, b, a in points if b is not None or a is not None]
    if not points:
        return None
    n = len(points)
    fig = _new_figure(max(4.8, min(11.5, 2.2 + 0.22 * n)), 3.0)
    ax = fig.add_subplot()
    xs = list(range(n))
    for x, (_, b, a) in zip(xs, points):
        if b is not None and a is not None:
            ax.plot([x, x], [b, a], color="#b0b0b0", lw=1.5, zorder=1)
    ax.scatter([x for x, p in zip(xs, points) if p[1] is not None], [p[1] for p in points if p[1] is not None], color="#777777", s=22, label="before", zorder=2)
    ax.scatter([x for x, p in zip(xs, points) if p[2] is not None], [p[2] for p in points if p[2] is not None], color="#d62728", s=22, label="after", zorder=3)
    step = max(1, math.ceil(n / 40))
    ax.set_xticks(xs[::step])
    ax.set_xticklabels([str(p[0])[:14] for p in points][::step], rotation=60, ha="right", fontsize=7)
    ax.set_xlim(-0.7, n - 0.3)
    ax.set_ylabel(f"HR@{k}")
    ax.set_title(f"{setting.label}: HR@{k} per target", fontsize=10)
    ax.grid(axis="y", alpha=0.3)
    ax.legend(fontsize=8, loc="upper left", frameon=False)
    return _figure_png(fig)


def plot_stealth_vs_success(settings: Sequence[Setting], k: int) -> bytes | None:
    """(b) Scatter per target: x = SSIM (image attacks) or text cosine (text attacks), y = HR@K
    after − before; one colour per setting. A joint attack appears in both panels."""
    panels = []
    for x_col, x_label in (("ssim", "SSIM (image stealth)"), ("text_sim", "text cos (text stealth)")):
        series = []
        for i, s in enumerate(settings):
            pts = []
            for r in s.rows:
                x, b, a = _num(r.get(x_col)), _num(r.get(f"hr@{k}_before")), _num(r.get(f"hr@{k}_after"))
                if x is not None and b is not None and a is not None and math.isfinite(x):
                    pts.append((x, a - b))
            if pts:
                series.append((i, s.label, pts))
        if series:
            panels.append((x_label, series))
    if not panels:
        return None
    colours = _colours(len(settings))
    fig = _new_figure(5.2 * len(panels) + 2.6, 3.6)
    axes = fig.subplots(1, len(panels), squeeze=False)[0]
    handles = {}
    for ax, (x_label, series) in zip(axes, panels):
        for i, label, pts in series:
            handles[label] = ax.scatter([p[0] for p in pts], [p[1] for p in pts], color=colours[i], s=24, alpha=0.85, label=label)
        ax.axhline(0, color="#999999", lw=0.8)
        ax.set_xlabel(x_label)
        ax.set_ylabel(f"HR@{k} after − before")
        ax.grid(alpha=0.3)
    fig.legend(list(handles.values()), list(handles), loc="outside right upper", fontsize=8, frameon=False)
    fig.suptitle("Stealth vs success (one point per target)", fontsize=10)
    return _figure_png(fig)


def _valid_metric(histories: dict[str, list[dict[str, Any]]]) -> str | None:
    keys = [k for h in histories.values() for e in h for k in e if str(k).startswith("valid")]
    if not keys:
        return None
    for preferred in ("valid_recall@20", "valid_ndcg@20"):
        if preferred in keys:
            return preferred
    return keys[0]


def plot_training_curves(folder: RunFolder) -> bytes | None:
    """(c) Training loss and validation metric per epoch, one line per victim (a defended
    victim's history is its adversarial fine-tuning); the best epoch is marked."""
    histories: dict[str, list[dict[str, Any]]] = {}
    best: dict[str, Any] = {}
    for name, rec in _victim_records(folder).items():
        train = _dict(rec.get("train"))
        history = [e for e in _list(train.get("history")) if isinstance(e, dict)]
        if history:
            histories[name] = history
            best[name] = _num(train.get("best_epoch"))
    if not histories:
        return None
    metric = _valid_metric(histories)
    colours = _colours(len(histories))
    fig = _new_figure(11.0, 3.4)
    axes = fig.subplots(1, 2 if metric else 1, squeeze=False)[0]
    for colour, (name, history) in zip(colours, histories.items()):
        for ax, key in zip(axes, ["loss", metric]):
            pts = [(i + 1 if (x := _num(e.get("epoch"))) is None else x, _num(e.get(key))) for i, e in enumerate(history)]
            pts = [(x, y) for x, y in pts if y is not None and math.isfinite(y)]
            if not pts:
                continue
            ax.plot([p[0] for p in pts], [p[1] for p in pts], color=colour, lw=1.4, marker="o" if len(pts) < 30 else None, ms=3, label=name)
            if key == metric and best.get(name) is not None:
                hit = [p for p in pts if p[0] == best[name]]
                if hit:
                    ax.scatter([hit[0][0]], [hit[0][1]], color=colour, s=70, marker="*", zorder=3)
    axes[0].set_title("training loss", fontsize=10)
    axes[0].set_ylabel("loss")
    if metric:
        axes[1].set_title(f"{metric} (★ best epoch)", fontsize=10)
        axes[1].set_ylabel(metric)
    for ax in axes:
        ax.set_xlabel("epoch")
        ax.grid(alpha=0.3)
    axes[-1].legend(fontsize=8, frameon=False, loc="best")
    return _figure_png(fig)


def plot_judgement_ri(table: Sequence[dict[str, str]]) -> bytes | None:
    """(d) RI@50 of the judgement: groups per (backbone, attack), one bar per defense.
    An infinite RI (HR@50 before = 0) is drawn hatched at the top of the axis, labelled inf."""
    groups = list(dict.fromkeys((r.get("backbone", ""), r.get("attack", "")) for r in table))
    defenses = list(dict.fromkeys(r.get("defense", "") for r in table))
    values = {(r.get("backbone", ""), r.get("attack", ""), r.get("defense", "")): _num(r.get("ri@50")) for r in table}
    finite = [v for v in values.values() if v is not None and math.isfinite(v)]
    if not groups or all(v is None for v in values.values()):
        return None
    top = max([abs(v) for v in finite] + [1e-3])
    width = 0.8 / max(1, len(defenses))
    fig = _new_figure(max(7.0, min(11.5, 2.6 + 0.45 * len(groups) * max(1, len(defenses)))), 3.6)
    ax = fig.add_subplot()
    colours = _colours(len(defenses))
    for j, defense in enumerate(defenses):
        xs, heights, labels = [], [], []
        for g, (backbone, attack) in enumerate(groups):
            v = values.get((backbone, attack, defense))
            if v is None:
                continue
            xs.append(g - 0.4 + width * (j + 0.5))
            heights.append(math.copysign(1.08 * top, v) if math.isinf(v) else v)
            labels.append(_fmt(v, ".2f"))
        bars = ax.bar(xs, heights, width=width * 0.95, color=colours[j], label=defense or "?")
        for bar, label in zip(bars, labels):
            if "inf" in label:
                bar.set_hatch("//")
            y = bar.get_height()
            ax.annotate(label, (bar.get_x() + bar.get_width() / 2, y), xytext=(0, 2 if y >= 0 else -9), textcoords="offset points", ha="center", fontsize=7)
    ax.set_xticks(range(len(groups)))
    ax.set_xticklabels([f"{b}\n{a}" for b, a in groups], fontsize=8)
    ax.axhline(0, color="#666666", lw=0.8)
    ax.set_ylabel("RI@50 (HR after / before − 1)")
    ax.set_title("RI@50 per backbone / attack (lower: better defense)", fontsize=10)
    ax.grid(axis="y", alpha=0.3)
    ax.margins(y=0.15)
    ax.legend(fontsize=8, frameon=False, loc="upper left", bbox_to_anchor=(1.01, 1.0), title="defense", title_fontsize=8)
    return _figure_png(fig)


def _img_tag(png: bytes, alt: str, css: str = "") -> str:
    data = base64.b64encode(png).decode("ascii")
    cls = f' class="{css}"' if css else ""
    return f'<img{cls} alt="{_e(alt)}" src="data:image/png;base64,{data}">'


def section_plots(folder: RunFolder, settings: Sequence[Setting], k: int | None) -> str:
    """Section 3: (a) HR@K per target, (b) stealth vs success, (c) training curves, (d) RI of the judgement."""
    out = [f"<h3>(a) HR@{k or 50} per target, before → after</h3>"]
    charts = [(s, plot_hr_per_target(s, k)) for s in settings] if k else []
    charts = [(s, png) for s, png in charts if png]
    if charts:
        out.append('<div class="plots">' + "".join(_img_tag(png, f"HR@{k} per target, {s.label}", "plot") for s, png in charts) + "</div>")
    else:
        out.append('<p class="note">No per-target HR values in results.csv.</p>')
    out.append("<h3>(b) Stealth vs success</h3>")
    png = plot_stealth_vs_success(settings, k) if k else None
    out.append(_img_tag(png, "stealth vs success", "plot") if png else '<p class="note">No per-target stealth values (SSIM or text cos) with HR values.</p>')
    out.append("<h3>(c) Victims' training curves</h3>")
    png = plot_training_curves(folder)
    out.append(_img_tag(png, "training curves", "plot") if png else '<p class="note">No training history (victims loaded from checkpoints, or no victims/*/metrics.json).</p>')
    out.append("<h3>(d) Judgement: RI@50 by defense</h3>")
    png = plot_judgement_ri(folder.table) if folder.table else None
    out.append(_img_tag(png, "judgement RI", "plot") if png else '<p class="note">No judgement (no table.csv).</p>')
    return "\n".join(out)


# ----------------------------------------------------------------------------------------
# Section 4: image grids
# ----------------------------------------------------------------------------------------


def _resolve_inside(root: Path, relative: str) -> Path | None:
    """``root / relative`` if it names a file inside the run folder, else None."""
    if not relative:
        return None
    path = (root / relative).resolve()
    try:
        path.relative_to(root.resolve())
    except ValueError:
        return None
    return path if path.is_file() else None


def image_triplet(clean_path: Path, adv_path: Path) -> tuple[list[tuple[bytes, tuple[int, int]]], str]:
    """PNG bytes and shown size of (clean, adversarial, amplified difference), plus a note.

    The difference ``0.5 + 10 (adv − clean)`` clipped to [0, 1] is computed at the photos' own
    size; for display only, large photos are downscaled (``venomkit.runs.grids``)."""
    from PIL import Image

    from venomkit.runs.grids import display_triplet

    notes = []
    with Image.open(clean_path) as im:
        clean = im.convert("RGB")
    with Image.open(adv_path) as im:
        adv = im.convert("RGB")
    width, height = clean.size
    notes.append(f"{width}×{height} px")
    if adv.size != clean.size:
        notes.append(f"adversarial is {adv.size[0]}×{adv.size[1]}: resized to the clean size for the difference")
    shown, factor = display_triplet(clean, adv, THUMB_MAX_SIDE, DIFF_AMPLIFY)
    if factor > 1:
        notes.append(f"shown downscaled; difference: strongest change per {factor}×{factor} block")
    out = []
    for img in shown:
        buf = io.BytesIO()
        img.save(buf, format="PNG")
        out.append((buf.getvalue(), img.size))
    return out, "; ".join(notes)


def _image_card(folder: RunFolder, row: dict[str, str], k: int | None) -> str:
    item = row.get("item_id") or row.get("item_index") or "?"
    facts = []
    if k:
        facts.append(f"HR@{k} {_arrow(_fmt_hr(row.get(f'hr@{k}_before')), _fmt_hr(row.get(f'hr@{k}_after')))}")
    if _num(row.get("ssim")) is not None:
        facts.append(f"SSIM {_fmt(row.get('ssim'))}")
    if _num(row.get("er@20")) is not None:
        facts.append(f"ER@20 {_fmt(row.get('er@20'), '.2f')} (chance {_fmt(row.get('chance@20'), '.2f')})")
    head = f'<div class="cardhead"><b>{_e(item)}</b>' + "".join(f"<span>{_e(f)}</span>" for f in facts) + "</div>"
    clean = _resolve_inside(folder.root, row.get("clean_image", ""))
    adv = _resolve_inside(folder.root, row.get("adv_image", ""))
    if clean is None or adv is None:
        missing = [name for name, p in (("clean", clean), ("adversarial", adv)) if p is None]
        return f'<div class="card">{head}<p class="note">{_e(" and ".join(missing))} image missing ({_e(row.get("clean_image", ""))}, {_e(row.get("adv_image", ""))})</p></div>'
    try:
        triplet, note = image_triplet(clean, adv)
    except Exception as exc:  # an unreadable PNG must not stop the report
        return f'<div class="card">{head}<p class="note">unreadable image: {_e(exc.__class__.__name__)}: {_e(exc)}</p></div>'
    figures = []
    for (png, size), caption in zip(triplet, ("clean", "adversarial", f"amplified difference (x{DIFF_AMPLIFY:g})")):
        css = "cell pixelated" if max(size) < CELL_PX else "cell"
        figures.append(f"<figure>{_img_tag(png, f'{caption} {item}', css)}<figcaption>{_e(caption)}</figcaption></figure>")
    return f'<div class="card">{head}<div class="triple">{"".join(figures)}</div><div class="cardfoot">{_e(note)}</div></div>'


def section_images(folder: RunFolder, settings: Sequence[Setting], k: int | None, max_targets: int) -> str:
    """Section 4: per setting with images, the first ``max_targets`` targets (results.csv order),
    each a card "clean | adversarial | amplified difference (x10)" with its HR@K and SSIM."""
    out = []
    for s in settings:
        rows = [r for r in s.rows if r.get("clean_image") or r.get("adv_image")]
        if not rows:
            continue
        shown = rows[:max_targets]
        out.append(f"<h3>{_e(s.label)}</h3>")
        out.append(f'<p class="caption">{len(shown)} of {len(rows)} targets, in results.csv order. Difference: 0.5 + {DIFF_AMPLIFY:g}·(adversarial − clean), clipped to [0, 1].</p>')
        out.append('<div class="cards">' + "".join(_image_card(folder, r, k) for r in shown) + "</div>")
    if not out:
        return '<p class="note">No adversarial images in this run (text-only attacks, or no results.csv).</p>'
    return "\n".join(out)


# ----------------------------------------------------------------------------------------
# Section 5: text diffs
# ----------------------------------------------------------------------------------------


def diff_words(original: str, adversarial: str) -> tuple[str, str]:
    """Word-level diff (``difflib.SequenceMatcher`` over whitespace-split words) as two HTML
    strings: the original with removed words in ``<del>`` and the adversarial text with
    inserted words in ``<ins>``. Every word is HTML-escaped."""
    a, b = str(original or "").split(), str(adversarial or "").split()
    left, right = [], []
    for op, i1, i2, j1, j2 in difflib.SequenceMatcher(None, a, b, autojunk=False).get_opcodes():
        old, new = " ".join(_e(w) for w in a[i1:i2]), " ".join(_e(w) for w in b[j1:j2])
        if op == "equal":
            left.append(old)
            right.append(new)
            continue
        if old:
            left.append(f"<del>{old}</del>")
        if new:
            right.append(f"<ins>{new}</ins>")
    return " ".join(left), " ".join(right)


def section_texts(folder: RunFolder, settings: Sequence[Setting], k: int | None, max_targets: int) -> str:
    """Section 5: per text setting, the first ``max_targets`` targets' original text (removed
    words struck in red) beside the adversarial text (inserted words in green)."""
    if not folder.texts:
        return '<p class="note">No adversarial texts in this run (no texts.csv: image-only attacks).</p>'
    by_key = {s.key: s for s in settings}
    groups: dict[tuple[str, str], list[dict[str, str]]] = {}
    for row in folder.texts:
        groups.setdefault((row.get("victim", ""), row.get("attack", "")), []).append(row)
    out = []
    for key, rows in groups.items():
        setting = by_key.get(key)
        results = {r.get("item_id", ""): r for r in (setting.rows if setting else folder.rows)}
        shown = rows[:max_targets]
        out.append(f"<h3>{_e(' · '.join(p for p in key if p) or 'texts')}</h3>")
        out.append(f'<p class="caption">{len(shown)} of {len(rows)} targets. <del>removed</del> <ins>inserted</ins> (word-level diff).</p>')
        table_rows = []
        for t in shown:
            left, right = diff_words(t.get("original", ""), t.get("adversarial", ""))
            r = results.get(t.get("item_id", ""), {})
            hr = _arrow(_fmt_hr(r.get(f"hr@{k}_before")), _fmt_hr(r.get(f"hr@{k}_after"))) if k else "–"
            table_rows.append([_e(t.get("item_id", "")), f'<div class="text">{left}</div>', f'<div class="text">{right}</div>', _e(hr), _e(_fmt(r.get("text_sim")))])
        out.append(_html_table(["item", "original", "adversarial", f"HR@{k or 50} before → after", "text cos"], table_rows, numeric_from=3, css="texts"))
    return "\n".join(out)


# ----------------------------------------------------------------------------------------
# The page
# ----------------------------------------------------------------------------------------

_CSS = """
:root { color-scheme: light; }
* { box-sizing: border-box; }
body { font: 14px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, "DejaVu Sans", sans-serif; color: #1d1d1f;
       background: #f6f7f9; margin: 0; }
main { max-width: 1240px; margin: 0 auto; padding: 20px 24px 60px; }
h1 { font-size: 24px; margin: 8px 0 4px; }
h2 { font-size: 19px; margin: 34px 0 10px; padding-bottom: 4px; border-bottom: 2px solid #d0d4da; }
h3 { font-size: 15px; margin: 20px 0 8px; color: #333; }
nav { font-size: 13px; margin-bottom: 12px; } nav a { margin-right: 14px; color: #2457a6; text-decoration: none; }
.subtitle { color: #555; margin: 0 0 10px; }
section { background: #fff; border: 1px solid #e1e4e8; border-radius: 8px; padding: 4px 18px 16px; margin-top: 18px; }
table.facts th { text-align: left; padding: 2px 16px 2px 0; color: #555; font-weight: 600; vertical-align: top; white-space: nowrap; }
table.facts td { padding: 2px 0; word-break: break-all; }
.tablewrap { overflow-x: auto; max-width: 100%; }
table.data { border-collapse: collapse; font-size: 12.5px; font-variant-numeric: tabular-nums; }
table.data th, table.data td { border-bottom: 1px solid #e6e8eb; padding: 4px 8px; vertical-align: top; }
table.data th { background: #f0f2f5; text-align: left; vertical-align: bottom; }
table.data td:first-child { white-space: nowrap; }
table.data td.num, table.data th.num { text-align: right; }
table.data td.num { white-space: nowrap; }
table.data th.num { min-width: 3.5em; }
table.data tbody tr:nth-child(even) { background: #fafbfc; }
table.texts { width: 100%; table-layout: fixed; }
table.texts th:nth-child(1) { width: 10%; } table.texts th:nth-child(2), table.texts th:nth-child(3) { width: 32%; }
table.texts th:nth-child(4) { width: 16%; } table.texts th:nth-child(5) { width: 10%; }
table.texts td { white-space: normal; overflow-wrap: anywhere; }
table.texts td.num { white-space: nowrap; }
pre { background: #f3f4f6; border-radius: 6px; padding: 10px 12px; font-size: 12px; overflow-x: auto; max-height: 480px; }
details summary { cursor: pointer; font-weight: 600; margin: 8px 0; }
.note { color: #666; font-style: italic; }
.caption { color: #555; font-size: 12.5px; margin: 4px 0 8px; }
.plots { display: flex; flex-wrap: wrap; gap: 12px; }
img.plot { max-width: 100%; height: auto; border: 1px solid #eceef1; border-radius: 4px; background: #fff; }
.cards { display: grid; grid-template-columns: repeat(auto-fill, minmax(540px, 1fr)); gap: 12px; }
.card { border: 1px solid #e1e4e8; border-radius: 6px; padding: 8px 10px; background: #fcfcfd; }
.cardhead { display: flex; flex-wrap: wrap; gap: 4px 14px; align-items: baseline; margin-bottom: 6px; font-size: 13px; }
.cardhead b { font-family: ui-monospace, "DejaVu Sans Mono", monospace; overflow-wrap: anywhere; }
.cardfoot { color: #777; font-size: 11.5px; margin-top: 4px; }
.triple { display: flex; gap: 10px; }
figure { margin: 0; text-align: center; }
figcaption { font-size: 11.5px; color: #444; margin-top: 3px; }
img.cell { width: CELLpx; height: CELLpx; object-fit: contain; background: #e9ebee; border-radius: 3px; display: block; }
img.pixelated { image-rendering: pixelated; }
div.text { font-size: 13px; }
del { color: #b3141b; background: #fde8e8; text-decoration: line-through; }
ins { color: #11622a; background: #d8f5df; text-decoration: none; font-weight: 600; }
""".replace("CELL", str(CELL_PX))


def _guarded(build, *args) -> str:
    """A section's HTML; should the input surprise it, one line saying so instead of a crash."""
    try:
        return build(*args)
    except Exception as exc:
        return f'<p class="note">This section could not be built: {_e(exc.__class__.__name__)}: {_e(exc)}</p>'


def render_html(folder: RunFolder, *, max_targets: int = 12) -> str:
    """The whole page as one string."""
    try:
        settings = collect_settings(folder)
        k = _report_k(folder, settings)
    except Exception as exc:
        folder.notes.append(f"results could not be grouped into settings ({exc.__class__.__name__}: {exc})")
        settings, k = [], None
    title = folder.resolved.get("name") or folder.summary.get("name") or folder.root.name
    description = folder.resolved.get("description") or ""
    sections = {
        "run": _guarded(section_run, folder),
        "results": _guarded(section_results, folder, settings),
        "plots": _guarded(section_plots, folder, settings, k),
        "images": _guarded(section_images, folder, settings, k, max_targets),
        "texts": _guarded(section_texts, folder, settings, k, max_targets),
    }
    nav = "".join(f'<a href="#{key}">{_e(SECTION_TITLES[key])}</a>' for key in sections)
    body = "\n".join(f'<section id="{key}"><h2>{_e(SECTION_TITLES[key])}</h2>\n{content}\n</section>' for key, content in sections.items())
    return (
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>venomkit report: {_e(title)}</title><style>{_CSS}</style></head>\n<body><main>"
        f"<h1>venomkit run report: {_e(title)}</h1>"
        + (f'<p class="subtitle">{_e(description)}</p>' if description else "")
        + f"<nav>{nav}</nav>\n{body}\n</main></body></html>\n"
    )


# ----------------------------------------------------------------------------------------
# Entry points
# ----------------------------------------------------------------------------------------


def build_report(run_dir: str | Path, *, max_targets: int = 12) -> Path:
    """Write ``run_dir/report.html`` (atomically: a temporary file in the same folder, then
    ``os.replace``) and return its path. ``max_targets`` bounds the image cards and text diffs
    shown per setting. Raises ValueError when ``run_dir`` is not a run folder."""
    check_int("max_targets", max_targets, 0)
    folder = read_run(run_dir)
    page = render_html(folder, max_targets=max_targets)
    target = folder.root / "report.html"
    fd, tmp = tempfile.mkstemp(prefix=".report.", suffix=".html.tmp", dir=folder.root)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(page)
        os.chmod(tmp, 0o644)
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return target


def add_report_arguments(parser: argparse.ArgumentParser) -> None:
    """``venomkit report DIR [--max-targets N]``."""
    parser.add_argument("run_dir", metavar="DIR", help="a run folder (with run.json and/or results.csv)")
    parser.add_argument("--max-targets", type=int, default=12, metavar="N", help="image cards and text diffs shown per setting (default 12)")


def cli_report(args: argparse.Namespace) -> int:
    """Build the report of ``args.run_dir`` and print the path written."""
    path = build_report(args.run_dir, max_targets=args.max_targets)
    print(path)
    return 0
