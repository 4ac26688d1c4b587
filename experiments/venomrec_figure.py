"""README's VenomRec figure from a finished poisoning run (``venomkit attack venomrec --out RUN``).

    python experiments/venomrec_figure.py runs/venomrec --out assets/figures/venomrec_examples.png

For the ``--rows`` targets the ``--setting`` (default ``venomrec``) exposes most: the clean
photo, the edited photo, their difference amplified x8 (grey = unchanged), the ER@20 before
(the ``clean`` setting) and after, and the description with the substituted words in red.
"""

from __future__ import annotations

import argparse
import csv
import difflib
import textwrap
from pathlib import Path


def _rows(run: Path) -> dict[tuple[str, str], dict[str, str]]:
    return {(r["attack"], r["item_id"]): r for r in csv.DictReader(open(run / "results.csv", newline=""))}


def _texts(run: Path, setting: str) -> dict[str, tuple[str, str]]:
    path = run / "texts.csv"
    if not path.is_file():
        return {}
    return {r["item_id"]: (r["original"], r["adversarial"]) for r in csv.DictReader(open(path, newline="")) if r["attack"] == setting}


def figure(run: Path, setting: str, rows: int, out: Path, side: int = 160) -> None:
    from PIL import Image, ImageChops, ImageDraw

    table = _rows(run)
    items = sorted({item for s, item in table if s == setting}, key=lambda i: float(table[(setting, i)]["er@20"]), reverse=True)[:rows]
    texts = _texts(run, setting)
    pad, text_w, line_h = 6, 560, 13
    height = rows * (side + 2 * pad + 3 * line_h) + pad
    canvas = Image.new("RGB", (3 * (side + pad) + text_w + 2 * pad, height), "white")
    draw = ImageDraw.Draw(canvas)
    for r, item in enumerate(items):
        y = pad + r * (side + 2 * pad + 3 * line_h)
        clean = Image.open(run / "images" / setting / f"{item}_clean.png").convert("RGB").resize((side, side), Image.NEAREST)
        adv = Image.open(run / "images" / setting / f"{item}_adv.png").convert("RGB").resize((side, side), Image.NEAREST)
        diff = ImageChops.difference(adv, clean).point(lambda v: min(255, 128 + 8 * v) if v else 128)
        for c, (label, image) in enumerate((("clean", clean), (f"{setting}", adv), ("difference x8", diff))):
            canvas.paste(image, (pad + c * (side + pad), y + line_h))
            draw.text((pad + c * (side + pad), y), label, fill="black")
        before = float(table[("clean", item)]["er@20"]) if ("clean", item) in table else float("nan")
        after = float(table[(setting, item)]["er@20"])
        x0 = 3 * (side + pad) + pad
        draw.text((x0, y), f"{item}: ER@20 {before:.2f} -> {after:.2f}", fill="black")
        original, edited = texts.get(item, (None, None))
        if original is None:
            continue
        words_o, words_a = original.split(), edited.split()
        kept = set()
        for block in difflib.SequenceMatcher(a=words_o, b=words_a, autojunk=False).get_matching_blocks():
            kept.update(range(block.b, block.b + block.size))
        line_y, x = y + 2 * line_h, x0
        for k, word in enumerate(words_a):
            changed = k not in kept
            width = draw.textlength(word + " ")
            if x + width > x0 + text_w:
                line_y, x = line_y + line_h, x0
            draw.text((x, line_y), word, fill=(200, 0, 0) if changed else (40, 40, 40))
            x += width
    out.parent.mkdir(parents=True, exist_ok=True)
    canvas.save(out)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=textwrap.dedent(__doc__.split("\n\n")[0]))
    parser.add_argument("run", type=Path, help="a finished poisoning run folder")
    parser.add_argument("--setting", default="venomrec")
    parser.add_argument("--rows", type=int, default=3)
    parser.add_argument("--out", type=Path, default=Path("assets/figures/venomrec_examples.png"))
    args = parser.parse_args(argv)
    figure(args.run, args.setting, args.rows, args.out)
    print(args.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
