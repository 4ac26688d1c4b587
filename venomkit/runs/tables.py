"""Tables made from a run's rows: per-setting means, the judgement table, the end-of-run screen.

* :func:`setting_summary` -- means of every numeric column over a setting's targets, and
  RI@K of the mean HRs (UAT-MC's reading: the RI of mean hit ratios, not the mean of
  per-target RIs, which is ``inf`` as soon as one target was never shown before).
* :func:`judge_rows` / :func:`format_judge_table` -- the layout of the UAT-MC paper's Table 2:
  one line per (backbone, defense, attack) with HR@50 before / after, RI, the feature shift of
  the targets, the victim's clean Recall / NDCG@20 and NDCG@20's change against w/o AT.
* :func:`promotion_rows` / :func:`format_promotion_table` -- the promotion-attack papers'
  layout (AUV-Fusion's Table 2): one line per (victim, attack) with HR@K before / after and
  the gain (after - before) at every K of the run, the attack's method and budget, and
  stealth (SSIM, CLIP cosine); :mod:`venomkit.runs.frontier` draws it.
* :func:`format_screen` -- the one-screen summary ``venomkit run`` prints at the end.
"""

from __future__ import annotations

import math
from typing import Any, Mapping, Sequence

import numpy as np

DEFENSE_LABELS = {"none": "w/o AT", "uat": "UAT", "uat_mc": "UAT-MC"}
_NOT_MEANS = ("item_id", "item_index", "victim", "backbone", "defense", "attack", "clean_image", "adv_image", "shop_image")


def setting_summary(rows: Sequence[Mapping[str, Any]], ks: Sequence[int]) -> dict[str, Any]:
    """``{"n_targets", "means": {column: mean over finite values}, "ri@K_of_means": ...}``."""
    from venomkit.eval.ranking import relative_improvement

    means: dict[str, float] = {}
    if rows:
        for key in rows[0]:
            if key in _NOT_MEANS:
                continue
            try:
                values = np.asarray([float(r[key]) for r in rows if r.get(key) not in (None, "")], dtype=float)
            except (TypeError, ValueError):
                continue
            finite = values[np.isfinite(values)]
            means[key] = float(finite.mean()) if finite.size else float("nan")
    out: dict[str, Any] = {"n_targets": len(rows), "means": means}
    for k in ks:
        if f"hr@{k}_before" in means:
            out[f"ri@{k}_of_means"] = float(relative_improvement(means[f"hr@{k}_before"], means[f"hr@{k}_after"]))
    return out


def _clean_figures(metrics: Mapping[str, Any]) -> dict[str, float]:
    test = metrics.get("test") or {}
    return {k: float(test[k]) for k in ("recall@20", "ndcg@20") if k in test}


def judge_rows(dataset: str, settings: Sequence[Mapping[str, Any]], victims: Mapping[str, Mapping[str, Any]]) -> list[dict[str, Any]]:
    """One row per (backbone, defense, attack) from the per-setting summaries and victim metrics."""
    out = []
    for s in settings:
        m = s["means"]
        clean = _clean_figures(victims.get(s["victim"], {}))
        ref = _clean_figures(victims.get(s["backbone"], {}))
        row = {
            "dataset": dataset,
            "backbone": s["backbone"],
            "defense": DEFENSE_LABELS.get(s["defense"], s["defense"]),
            "attack": s["attack"],
            "hr@50_before": m.get("hr@50_before"),
            "hr@50_after": m.get("hr@50_after"),
            "ri@50": s.get("ri@50_of_means"),
            "n_targets": s["n_targets"],
        }
        for key in ("ssim", "linf", "text_edit_ratio", "shift_visual", "shift_text", "mean_rank_before", "mean_rank_after"):
            if key in m:
                row[key] = m[key]
        row.update(clean)
        row["ndcg@20_rel_change"] = (clean["ndcg@20"] / ref["ndcg@20"] - 1) if clean.get("ndcg@20") is not None and ref.get("ndcg@20") else float("nan")
        out.append(row)
    return out


def _fmt(value: Any, spec: str = ".4f") -> str:
    try:
        value = float(value)  # RI may arrive as the JSON string "inf"
    except (TypeError, ValueError):
        return "-"
    if math.isnan(value):
        return "-"
    if math.isinf(value):
        return "inf"
    return format(value, spec)


def _pct(value: Any) -> str:
    text = _fmt(None if value is None else 100 * float(value), "+.1f")
    return text if text in ("-", "inf") else text + "%"


def format_judge_table(rows: Sequence[Mapping[str, Any]]) -> str:
    """Markdown: one line per (backbone, defense, attack) with HR@50 before/after, RI, the mean
    feature shift of the targets (``||delta f|| / ||f||`` per modality, comparable with the
    training eps) and the victim's clean Recall/NDCG@20."""
    head = "| dataset | backbone | defense | attack | HR@50 before | HR@50 after | RI | feature shift v / t | Recall@20 | NDCG@20 | NDCG@20 vs w/o AT |\n"
    head += "|---|---|---|---|---:|---:|---:|---:|---:|---:|---:|\n"
    lines = []
    for r in rows:
        lines.append(
            f"| {r['dataset']} | {r['backbone']} | {r['defense']} | {r['attack']} | {_fmt(r.get('hr@50_before'))} | "
            f"{_fmt(r.get('hr@50_after'))} | {_fmt(r.get('ri@50'), '.3f')} | {_fmt(r.get('shift_visual'), '.3f')} / {_fmt(r.get('shift_text'), '.3f')} | {_fmt(r.get('recall@20'))} | "
            f"{_fmt(r.get('ndcg@20'))} | {_pct(r.get('ndcg@20_rel_change'))} |"
        )
    return head + "\n".join(lines) + "\n"


def attack_budget(config: Any) -> float | None:
    """The perturbation budget an attack's config names (``eps``), or None (no pixel budget)."""
    eps = getattr(config, "eps", None)
    try:
        return None if eps is None else float(eps)
    except (TypeError, ValueError):
        return None


def promotion_rows(dataset: str, settings: Sequence[Mapping[str, Any]], attacks: Mapping[str, Mapping[str, Any]],
                   ks: Sequence[int]) -> list[dict[str, Any]]:
    """One row per (victim, attack): HR@K before / after / gain per K, method, budget, stealth.

    ``attacks`` maps an attack's name in the run to ``{"method": registry name, "budget":
    eps or None}``. The gain is the mean over targets of after - before (= mean after - mean
    before), AUV-Fusion's reading of a promotion.
    """
    out = []
    for s in settings:
        m = s["means"]
        info = attacks.get(s["attack"], {})
        row: dict[str, Any] = {"dataset": dataset, "victim": s["victim"], "attack": s["attack"], "method": info.get("method", s["attack"]),
                               "budget": info.get("budget"), "n_targets": s["n_targets"]}
        for k in ks:
            before, after = m.get(f"hr@{k}_before"), m.get(f"hr@{k}_after")
            row[f"hr@{k}_before"], row[f"hr@{k}_after"] = before, after
            row[f"hr@{k}_gain"] = after - before if before is not None and after is not None else None
        for key in ("ssim", "clip_image_sim", "linf", "text_edit_ratio"):
            if key in m:
                row[key] = m[key]
        out.append(row)
    return out


def format_promotion_table(rows: Sequence[Mapping[str, Any]], ks: Sequence[int]) -> str:
    """Markdown of :func:`promotion_rows`: HR@K before -> after (gain) per K, then stealth."""
    head = "| victim | attack | budget | " + " | ".join(f"HR@{k} before → after (gain)" for k in ks) + " | SSIM | CLIP cos |\n"
    head += "|---|---|---:|" + "---:|" * len(ks) + "---:|---:|\n"
    lines = []
    for r in rows:
        budget = "-" if r.get("budget") is None else f"{255 * float(r['budget']):.3g}/255"
        cells = [f"{_fmt(r.get(f'hr@{k}_before'))} → {_fmt(r.get(f'hr@{k}_after'))} ({_fmt(r.get(f'hr@{k}_gain'), '+.4f')})" for k in ks]
        lines.append(f"| {r['victim']} | {r['attack']} | {budget} | " + " | ".join(cells) + f" | {_fmt(r.get('ssim'), '.3f')} | {_fmt(r.get('clip_image_sim'), '.3f')} |")
    return head + "\n".join(lines) + "\n"


def format_victims(victims: Mapping[str, Mapping[str, Any]]) -> str:
    """Markdown: each victim's clean test Recall/NDCG@20 (and on cold items), popularity first."""
    lines = ["| victim | Recall@20 | NDCG@20 | cold Recall@20 | cold NDCG@20 |", "|---|---:|---:|---:|---:|"]
    popularity = next((v["popularity"] for v in victims.values() if isinstance(v.get("popularity"), Mapping)), None)
    rows = ([("popularity", popularity)] if popularity else []) + list(victims.items())
    for name, m in rows:
        test, cold = (m.get("test") or {}), (m.get("cold") or {})
        lines.append(f"| {name} | {_fmt(test.get('recall@20'))} | {_fmt(test.get('ndcg@20'))} | {_fmt(cold.get('recall@20'))} | {_fmt(cold.get('ndcg@20'))} |")
    return "\n".join(lines) + "\n"


def format_screen(summary: Mapping[str, Any]) -> str:
    """The one-screen table printed at the end of a run: a line per setting."""
    settings = summary.get("settings", [])
    ks = [k for k in (10, 50) if any(f"hr@{k}_before" in s["means"] for s in settings)]
    head = f"{'victim':<18}{'attack':<16}{'n':>4}" + "".join(f"{'HR@' + str(k) + ' before→after':>24}" for k in ks)
    head += f"{'RI@50':>9}{'SSIM':>7}{'text cos':>9}"
    lines = [head, "-" * len(head)]
    for s in settings:
        m = s["means"]
        line = f"{s['victim'][:17]:<18}{s['attack'][:15]:<16}{s['n_targets']:>4}"
        for k in ks:
            line += f"{_fmt(m.get(f'hr@{k}_before')) + ' → ' + _fmt(m.get(f'hr@{k}_after')):>24}"
        line += f"{_fmt(s.get('ri@50_of_means'), '.2f'):>9}{_fmt(m.get('ssim'), '.3f'):>7}{_fmt(m.get('text_sim'), '.3f'):>9}"
        lines.append(line)
    by_victim: dict[str, list[Mapping[str, Any]]] = {}
    for skip in summary.get("skipped", []):
        by_victim.setdefault(skip["victim"], []).append(skip)
    for victim, skips in by_victim.items():
        if len(skips) == 1:
            lines.append(f"{victim[:17]:<18}{skips[0]['attack'][:15]:<16}   skipped: {skips[0]['reason']}")
        else:
            reads = skips[0]["reason"].rpartition("; ")[2]
            lines.append(f"{victim[:17]:<18}{len(skips)} attacks skipped ({', '.join(s['attack'] for s in skips[:4])}{', ...' if len(skips) > 4 else ''}): {reads}")
    victims = summary.get("victims") or {}
    if any(isinstance(v.get("test"), Mapping) for v in victims.values()):
        lines = ["victims (clean test split):", format_victims(victims), *lines]
    return "\n".join(lines)
