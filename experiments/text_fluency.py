"""How far each attack's text edits fall under a language model: the fluency constraint's measure, per attack.

    python experiments/text_fluency.py runs/venomrec
    python experiments/text_fluency.py runs/venomrec-fluency --lm zoo:toyshop-lm --max-drop 5

For every edited text of a run (``texts.csv``: original and adversarial), the drop in
log-probability, in nats, of the edited text as a rewrite of the original under a causal LM
(:meth:`venomkit.generators.llm_text.LLMRewriter.rewrite_log_prob`, ``zoo:toyshop-lm`` by default):
``log P(original | original) - log P(edited | original)``, the quantity the token attacks'
fluency constraint (``fluency_lm``, ``max_log_prob_drop``) bounds. Prints one Markdown row per
attack: edited texts, mean / median / max drop, and the share above ``--max-drop``. Under
``zoo:toyshop-lm``, its own sampled rewrites of a toyshop description sit within about 2 nats of
the original; one attribute word replaced by "fedora" costs 14-25.
"""

from __future__ import annotations

import argparse
import csv
from pathlib import Path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run", type=Path, help="a run folder (holds texts.csv)")
    parser.add_argument("--lm", default="zoo:toyshop-lm", help="the causal LM that judges the edits (default zoo:toyshop-lm)")
    parser.add_argument("--max-drop", type=float, default=5.0, help="report the share of edits whose drop exceeds this, in nats (default 5)")
    args = parser.parse_args(argv)

    texts = args.run / "texts.csv"
    if not texts.is_file():
        parser.error(f"{texts}: no such file (a run folder written by venomkit run / attack with text edits)")
    with open(texts, newline="") as f:
        rows = list(csv.DictReader(f))
    missing = {"attack", "original", "adversarial"} - set(rows[0] if rows else {})
    if not rows or missing:
        parser.error(f"{texts}: " + ("no edited texts" if not rows else f"columns {sorted(missing)} missing"))
    import numpy as np

    from venomkit.generators.llm_text import LLMRewriter

    judge = LLMRewriter(args.lm)
    print(f"| attack | edited texts | mean drop (nats) | median | max | share > {args.max_drop:g} |")
    print("|---|---:|---:|---:|---:|---:|")
    for attack in dict.fromkeys(r["attack"] for r in rows):
        mine = [r for r in rows if r["attack"] == attack]
        originals, edited = [r["original"] for r in mine], [r["adversarial"] for r in mine]
        drop = (judge.rewrite_log_prob(originals, originals) - judge.rewrite_log_prob(originals, edited)).numpy()
        print(f"| {attack} | {len(mine)} | {drop.mean():.1f} | {np.median(drop):.1f} | {drop.max():.1f} | {np.mean(drop > args.max_drop):.2f} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
