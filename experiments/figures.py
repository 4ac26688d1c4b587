"""README's AUV-Fusion figures from a finished run folder of ``experiments/auv_fusion.yaml``.

    python experiments/figures.py runs/auv-fusion --victim vbpr --out assets/figures

* ``auv_fusion_frontier.png``: the run's stealth-vs-promotion frontier (HR@5 gain against mean
  SSIM) for one victim (``venomkit.runs.frontier``);
* ``auv_fusion_grid.png``: the saved PNGs of the ``--rows`` targets AUV-Fusion (the promotion
  variant) promotes most, clean and per attack, each with its HR@5 before -> after and SSIM.
"""

from __future__ import annotations

import argparse
import csv
from pathlib import Path

COLUMNS = (("auv_fusion", "AUV-Fusion (paper loss)"), ("auv_promo", "AUV-Fusion + promotion"),
           ("auv_promo_per_image", "per-image + promotion"), ("insa_12", "INSA 12/255"), ("pgd_12", "PGD 12/255"))


def grid(run: Path, victim: str, rows: int, out: Path, side: int = 128) -> None:
    from PIL import Image, ImageDraw

    table = [r for r in csv.DictReader(open(run / "results.csv", newline="")) if r["victim"] == victim]
    by_item: dict[str, dict[str, dict[str, str]]] = {}
    for r in table:
        by_item.setdefault(r["item_id"], {})[r["attack"]] = r
    gain = lambda item: float(by_item[item]["auv_promo"]["hr@5_after"]) - float(by_item[item]["auv_promo"]["hr@5_before"])  # noqa: E731
    items = sorted(by_item, key=gain, reverse=True)[:rows]
    pad, head, foot = 4, 30, 14
    canvas = Image.new("RGB", ((len(COLUMNS) + 1) * (side + pad) + pad, head + rows * (side + pad + foot) + pad), "white")
    draw = ImageDraw.Draw(canvas)
    for j, label in enumerate(["clean", *(label for _, label in COLUMNS)]):
        draw.text((pad + j * (side + pad) + 2, 8), label, fill="black")
    for i, item in enumerate(items):
        y = head + i * (side + pad + foot)
        cells = [(by_item[item]["auv_promo"]["clean_image"], item)]
        for attack, _ in COLUMNS:
            r = by_item[item][attack]
            cells.append((r["adv_image"], f"HR@5 {float(r['hr@5_before']):.2f}->{float(r['hr@5_after']):.2f} SSIM {float(r['ssim']):.2f}"))
        for j, (path, caption) in enumerate(cells):
            canvas.paste(Image.open(run / path).convert("RGB").resize((side, side), Image.NEAREST), (pad + j * (side + pad), y))
            draw.text((pad + j * (side + pad), y + side + 1), caption, fill="black")
    canvas.quantize(colors=192, method=Image.Quantize.MEDIANCUT).save(out, optimize=True)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run", type=Path)
    parser.add_argument("--victim", default="vbpr")
    parser.add_argument("--rows", type=int, default=4)
    parser.add_argument("--out", type=Path, default=Path("assets/figures"))
    args = parser.parse_args(argv)
    from venomkit.runs.frontier import frontier_png

    promotion = [r for r in csv.DictReader(open(args.run / "promotion.csv", newline="")) if r["victim"] == args.victim]
    args.out.mkdir(parents=True, exist_ok=True)
    frontier_png(promotion, 5, args.out / "auv_fusion_frontier.png")
    grid(args.run, args.victim, args.rows, args.out / "auv_fusion_grid.png")
    print(f"wrote {args.out / 'auv_fusion_frontier.png'} and {args.out / 'auv_fusion_grid.png'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
