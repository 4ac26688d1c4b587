"""The stealth-vs-promotion frontier of a run: HR@K gain against mean SSIM, one line per method.

A promotion attack is only as good as what it buys at a given stealth: a larger budget raises
HR and lowers SSIM. The frontier puts every (victim, attack) setting of a run at (mean SSIM,
mean HR@K gain) and joins the settings of one method (one registry name: INSA at several eps)
in order of budget, so methods compare at matched stealth (AUV-Fusion's claim: more HR@5 than
INSA / EXPA at the same SSIM). Settings with no SSIM (text or feature attacks) are left out.

Shape: ``rows`` are :func:`venomkit.runs.tables.promotion_rows`; the picture is one panel per
victim, x = mean SSIM in [0, 1] (right is stealthier), y = mean HR@K gain.
"""

from __future__ import annotations

import io
import math
from pathlib import Path
from typing import Any, Mapping, Sequence


def frontier_points(rows: Sequence[Mapping[str, Any]], k: int) -> dict[str, dict[str, list[tuple[float, float, str]]]]:
    """``{victim: {method: [(ssim, gain, attack name), ...]}}`` ordered by budget (None last)."""
    out: dict[str, dict[str, list[tuple[float, float, str, float]]]] = {}
    for r in rows:
        ssim, gain = r.get("ssim"), r.get(f"hr@{k}_gain")
        if ssim is None or gain is None or not (math.isfinite(float(ssim)) and math.isfinite(float(gain))):
            continue
        budget = r.get("budget")
        order = float(budget) if budget is not None else math.inf
        out.setdefault(r["victim"], {}).setdefault(r["method"], []).append((float(ssim), float(gain), str(r["attack"]), order))
    return {v: {m: [p[:3] for p in sorted(pts, key=lambda p: p[3])] for m, pts in methods.items()} for v, methods in out.items()}


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
            xs, ys = [p[0] for p in pts], [p[1] for p in pts]
            line, = ax.plot(xs, ys, marker="o", label=method, linewidth=1.5 if len(pts) > 1 else 0)
            for x, y, name in pts:
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
