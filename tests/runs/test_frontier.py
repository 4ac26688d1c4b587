"""The frontier picture: points grouped per method, and labels of close settings kept apart."""

from __future__ import annotations

import itertools

from venomkit.runs.frontier import frontier_png, frontier_points, place_labels


def _rows():
    rows = [{"victim": "vbpr", "method": "insa", "attack": f"insa_{e}", "budget": e / 255, "ssim": 1 - e / 40, "hr@5_gain": e / 1000}
            for e in (4, 8, 16)]
    # Five AUV-Fusion variants within 0.005 SSIM and 0.0005 HR of each other: their labels collide unless moved.
    rows += [{"victim": "vbpr", "method": "auv_fusion", "attack": f"auv_variant_{n}", "budget": "", "ssim": 0.83 + n / 1000,
              "hr@5_gain": 0.016 + n / 10000} for n in range(5)]
    return rows


def test_frontier_points_join_budgets_in_order_and_keep_variants_apart():
    points = frontier_points(_rows(), 5)["vbpr"]
    assert [p[2] for p in points["insa"]] == ["insa_4", "insa_8", "insa_16"]
    assert all(p[3] is None for p in points["auv_fusion"]) and len(points["auv_fusion"]) == 5


def test_labels_of_close_points_do_not_overlap():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5, 4))
    rows = [r for r in _rows() if r["method"] == "auv_fusion"]
    ax.plot([r["ssim"] for r in rows], [r["hr@5_gain"] for r in rows], "D")
    ax.set_xlim(0.5, 1.0)
    ax.set_ylim(0, 0.05)
    boxes = place_labels(fig, ax, [(r["ssim"], r["hr@5_gain"], r["attack"], "C0") for r in rows])
    plt.close(fig)
    assert len(boxes) == 5
    assert not any(a.overlaps(b) for a, b in itertools.combinations(boxes, 2))


def test_frontier_png_is_a_png(tmp_path):
    data = frontier_png(_rows(), 5, tmp_path / "frontier.png")
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and (tmp_path / "frontier.png").read_bytes() == data
