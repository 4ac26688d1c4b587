"""Can the MLLM ranker beat popularity when its prompt shows each candidate's popularity?

    python experiments/ranker_with_popularity_cue.py --steps 1500 --more 2500 --users 1000
    python experiments/ranker_with_popularity_cue.py --steps 1500 --users 1000 --max-history 24

The content-only ranker stays below popularity on toyshop (README: a content-only ranker must
memorise a popularity prior no attribute explains). This experiment hands it that prior: every
candidate text is followed by `` Popularity D.``, D in 0-9 the decile of the item's training
interaction count among the catalogue's items (one digit token of the zoo tokenizer), in
training and evaluation alike. It fully fine-tunes ``zoo:toyshop-vlm`` (``--mode full``, lr 1e-3,
as the VenomRec victim) for ``--steps``, evaluates, then optionally ``--more`` steps (a second
fine-tune from the first one's weights, seed 1) and evaluates again: HR@K of the ranker and of
popularity over the same 1 held-out + 99 sampled negatives per user (seed 0), paired per user.
``--max-history`` sets how many of the user's training titles the prompt shows (the shipped
ranker's 8 by default; a toyshop user has about 24, and their tastes span four attributes),
in fine-tuning and evaluation alike.

For measurement only: the cue is appended to the catalog texts, so it sits in the span a token
attack may edit; a victim for attacks would keep it outside (platform data, not the seller's).
"""

from __future__ import annotations

import argparse
import sys
import time


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default="toyshop")
    parser.add_argument("--steps", type=int, default=1500)
    parser.add_argument("--more", type=int, default=0, help="steps of a second fine-tune from the first one's weights")
    parser.add_argument("--users", type=int, default=1000)
    parser.add_argument("--max-history", type=int, default=None, help="history titles per prompt (default: the ranker's, 8)")
    parser.add_argument("--quiet", action="store_true")
    args = parser.parse_args(argv)
    if args.steps < 1 or args.more < 0 or args.users < 1:
        parser.error("--steps and --users must be >= 1, --more >= 0")
    if args.max_history is not None and args.max_history < 0:
        parser.error(f"--max-history must be >= 0, got {args.max_history}")

    from venomkit.cli import configure_logging

    configure_logging(args.quiet)  # progress lines on stderr also when it is not a terminal
    import numpy as np
    import torch

    from venomkit.data.loaders import load_dataset
    from venomkit.victims.mllm.evaluate import evaluate_ranker
    from venomkit.victims.mllm.finetune import FinetuneConfig, finetune
    from venomkit.victims.mllm.ranker import MLLMRanker

    dataset = load_dataset(args.data)
    counts = np.asarray(dataset.split.train.popularity())
    deciles = counts.argsort().argsort() * 10 // dataset.n_items
    dataset.catalog.texts[:] = [f"{t} Popularity {int(d)}." for t, d in zip(dataset.catalog.texts, deciles)]
    ranker = MLLMRanker.load("zoo:toyshop-vlm")
    ks = (5, 10, 20)
    print("| fine-tune steps | ranker HR@5 | HR@10 | HR@20 | popularity HR@10 | ranker - popularity HR@10 (paired ± SE) | s |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    total = 0
    for seed, steps in ((0, args.steps), (1, args.more)):
        if steps == 0:
            continue
        started = time.perf_counter()
        finetune(ranker, dataset, FinetuneConfig(mode="full", steps=steps, lr=1e-3, seed=seed, max_history=args.max_history), progress=not args.quiet)
        total += steps
        with torch.no_grad():
            got = evaluate_ranker(ranker, dataset, n_users=args.users, ks=ks, seed=0, progress=not args.quiet)
        print(f"| {total} | {got['hr@5']:.3f} | {got['hr@10']:.3f} | {got['hr@20']:.3f} | {got['popularity_hr@10']:.3f} | "
              f"{got['vs_popularity_hr@10']:+.3f} ± {got['vs_popularity_hr@10_se']:.3f} | {time.perf_counter() - started:.0f} |",
              flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
