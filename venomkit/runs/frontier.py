"""The stealth-vs-promotion frontier of a run: HR@K gain against mean SSIM, one line per method.

A promotion attack is only as good as what it buys at a given stealth: a larger budget raises
HR and lowers SSIM. The frontier puts every (victim, attack) setting of a run at (mean SSIM,
mean HR@K gain) and joins the settings of one method (one registry name: INSA at several eps)
in order of budget, so methods compare at matched stealth (AUV-Fusion's claim: more HR@5 than
INSA / EXPA at the same SSIM); settings of a method without a budget (AUV-Fusion and its
ablations) are separate labelled points. Settings with no SSIM (text or feature attacks) are
left out.

Shape: ``rows`` are :func:`venomkit.runs.tables.promotion_rows`; the picture is one panel per
victim, x = mean SSIM in [0, 1] (right is stealthier), y = mean HR@K gain.
"""

from __future__ import annotations

import io
import math
from pathlib import Path
from typing import Any, Mapping, Sequence


def _number(value: Any) -> float | None:
    try:
        out = float(value)  # promotion.csv gives strings, "" for no budget
    except (TypeError, ValueError):
        return None
    return out if math.isfinite(out) else None


def frontier_points(rows: Sequence[Mapping[str, Any]], k: int) -> dict[str, dict[str, list[tuple[float, float, str, float | None]]]]:
    """``{victim: {method: [(ssim, gain, attack name, budget), ...]}}``, budgeted points by
    budget first, then the settings without a budget (drawn as separate points, never joined)."""
    out: dict[str, dict[str, list[tuple[float, float, str, float | None]]]] = {}
    for r in rows:
        ssim, gain = _number(r.get("ssim")), _number(r.get(f"hr@{k}_gain"))
        if ssim is None or gain is None:
            continue
        out.setdefault(str(r["victim"]), {}).setdefault(str(r["method"]), []).append((ssim, gain, str(r["attack"]), _number(r.get("budget"))))
    order = lambda p: (p[3] is None, p[3] if p[3] is not None else 0.0)  # noqa: E731
    return {v: {m: sorted(pts, key=order) for m, pts in methods.items()} for v, methods in out.items()}


def frontier_png(rows: Sequence[Mapping[str, Any]], k: int, path: str | Path | None = None) -> bytes:
    """Draw the frontier (one panel per victim) as PNG bytes; also written to ``path`` when given."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    points = frontier_points(rows, k)
    if not points:
        raise ValueError(f"no setting has both an SSIM and an HR@{k} gain: nothing to draw")
    fig, axes = plt.subplots(1, len(points), figsize=(5.2 * len(points), 4.2), squeeze=False)
    for ax, (victim, methods) in zip(axes[0], points.items()):
        for method, pts in sorted(methods.items()):
            swept = [p for p in pts if p[3] is not None]  # one method over its budgets: a line
            single = [p for p in pts if p[3] is None]  # settings without a budget (variants, ablations): points
            line, = ax.plot([p[0] for p in swept], [p[1] for p in swept], marker="o", label=method) if swept else \
                ax.plot([p[0] for p in single], [p[1] for p in single], marker="D", linewidth=0, label=method)
            if swept and single:
                ax.plot([p[0] for p in single], [p[1] for p in single], marker="D", linewidth=0, color=line.get_color())
            for x, y, name, _ in pts:
                if name != method:
                    ax.annotate(name, (x, y), textcoords="offset points", xytext=(4, 3), fontsize=7, color=line.get_color())
        ax.set_title(victim)
        ax.set_xlabel("mean SSIM (stealthier →)")
        ax.set_ylabel(f"mean HR@{k} gain (after − before)")
        ax.axhline(0, color="0.7", linewidth=0.8)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=110)
    plt.close(fig)
    data = buffer.getvalue()
    if path is not None:
        from venomkit.atomic import write_bytes

        write_bytes(Path(path), data)
    return data
