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


LABEL_OFFSETS = [(dx, dy) for dy in (3, -9, 12, -18, 21, -27) for dx in (4, -4, 12, -12)]
"""Offsets (points) tried in turn for a point's label, nearest first; a negative dx puts the
label to the left of the point."""


def place_labels(fig: Any, ax: Any, labels: Sequence[tuple[float, float, str, Any]]) -> list[Any]:
    """Label each (x, y, text, colour) point, in order, at the first of :data:`LABEL_OFFSETS` whose box
    overlaps no label placed before and stays inside the figure (the nearest offset when none
    does), with a thin leader line when the label had to move away from its point, so that
    close settings (an attack and its ablations at nearly the same SSIM) stay readable.
    Returns the labels' boxes in display pixels, in order."""
    renderer = fig.canvas.get_renderer()
    figure_box = fig.bbox
    placed: list[Any] = []

    def draw(x: float, y: float, text: str, colour: Any, offset: tuple[int, int], leader: bool = False) -> Any:
        return ax.annotate(text, (x, y), textcoords="offset points", xytext=offset, fontsize=7, color=colour,
                           ha="left" if offset[0] > 0 else "right", va="bottom",
                           arrowprops={"arrowstyle": "-", "color": colour, "linewidth": 0.5, "alpha": 0.6} if leader else None)

    for x, y, text, colour in labels:
        chosen, box = LABEL_OFFSETS[0], None
        for offset in LABEL_OFFSETS:
            annotation = draw(x, y, text, colour, offset)  # measured without a leader line (its box would count the line)
            candidate = annotation.get_window_extent(renderer)
            annotation.remove()
            box = box or candidate
            inside = candidate.x0 >= figure_box.x0 and candidate.x1 <= figure_box.x1 and candidate.y0 >= figure_box.y0 and candidate.y1 <= figure_box.y1
            if inside and not any(candidate.overlaps(other) for other in placed):
                chosen, box = offset, candidate
                break
        draw(x, y, text, colour, chosen, leader=abs(chosen[1]) > 3)
        placed.append(box)
    return placed


def frontier_png(rows: Sequence[Mapping[str, Any]], k: int, path: str | Path | None = None) -> bytes:
    """Draw the frontier (one panel per victim) as PNG bytes; also written to ``path`` when given."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    points = frontier_points(rows, k)
    if not points:
        raise ValueError(f"no setting has both an SSIM and an HR@{k} gain: nothing to draw")
    fig, axes = plt.subplots(1, len(points), figsize=(7.6 * len(points), 4.8), squeeze=False)
    panel_labels = []
    for ax, (victim, methods) in zip(axes[0], points.items()):
        labels: list[tuple[float, float, str, Any]] = []
        for method, pts in sorted(methods.items()):
            swept = [p for p in pts if p[3] is not None]  # one method over its budgets: a line
            single = [p for p in pts if p[3] is None]  # settings without a budget (variants, ablations): points
            line, = ax.plot([p[0] for p in swept], [p[1] for p in swept], marker="o", label=method) if swept else \
                ax.plot([p[0] for p in single], [p[1] for p in single], marker="D", linewidth=0, label=method)
            if swept and single:
                ax.plot([p[0] for p in single], [p[1] for p in single], marker="D", linewidth=0, color=line.get_color())
            labels += [(x, y, name, line.get_color()) for x, y, name, _ in pts if name != method]
        ax.set_title(victim)
        ax.set_xlabel("mean SSIM (stealthier →)")
        ax.set_ylabel(f"mean HR@{k} gain (after − before)")
        ax.axhline(0, color="0.7", linewidth=0.8)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
        # Each labelled point gets a number (short: close points stay readable) and the key
        # beside the panel names its setting.
        labels.sort(key=lambda label: (-label[1], label[0]))
        for n, (_, _, name, colour) in enumerate(labels, 1):
            ax.annotate(f"{n:>2}  {name}", (1.02, 1.0), xycoords="axes fraction", textcoords="offset points", xytext=(0, -9 * (n - 1)),
                        fontsize=7, va="top", ha="left", family="monospace", color=colour)
        panel_labels.append((ax, [(x, y, str(n), colour) for n, (x, y, _, colour) in enumerate(labels, 1)]))
    fig.tight_layout()  # before the labels: they are placed in the final layout's pixels
    for ax, labels in panel_labels:
        place_labels(fig, ax, labels)
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=110)
    plt.close(fig)
    data = buffer.getvalue()
    if path is not None:
        from venomkit.atomic import write_bytes

        write_bytes(Path(path), data)
    return data
