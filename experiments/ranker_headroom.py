"""How far above popularity can any ranker get on toyshop's 99 + 1 candidate lists?

    python experiments/ranker_headroom.py                                   # the oracles and popularity
    venomkit train --victim vbpr --data toyshop --out runs/vbpr             # then, for trained models:
    python experiments/ranker_headroom.py --victim runs/vbpr --victim runs/lightgcn
    python experiments/ranker_headroom.py --ranker runs/ranker --ranker-users 200   # what an MLLM ranker's scores follow

On the default toyshop (1,000 users x 600 items, seed 0). The MLLM ranker's acceptance asks it to beat popularity on HR@10 over VenomRec's lists (one
held-out item + 99 sampled never-interacted items per user, seed 0, the lists of
``venomkit.victims.mllm.evaluate.evaluate_ranker``). This script measures the room there is,
on exactly those lists, paired user by user with popularity (training counts):

* ``oracle``: toyshop's hidden interaction model (``venomkit.data.toyshop.preference_model``),
  ``taste_u . attributes_i + quality_i + log popularity prior_i``, the logit every interaction
  was drawn from: no ranker that sees only the training data can do better on average;
* ``oracle without popularity``: taste + quality only (what content can explain);
* ``popularity prior``: the hidden prior alone (popularity without count noise);
* ``what the prompt shows``: a logistic regression on exactly what the MLLM ranker's prompt
  holds, read by an oracle parser: for each of the four attributes (category, colour, pattern,
  material), the share of the ``--max-history`` history titles (drawn as ``evaluate_ranker``
  draws them) that share the candidate's value, plus log(1 + training count) (the popularity
  cue of ``ranker_with_popularity_cue.py``); fitted on training interactions (each user's
  training items against uniform never-interacted items, the history drawn from the user's
  other training items), five weights and a bias. What a ranker that reads the titles
  perfectly but combines them linearly reaches: a reference for the 2-layer language model;
* each ``--victim`` checkpoint (``venomkit train``): a model trained on the training split;
* ``--ranker``: a fine-tuned MLLM ranker folder (``venomkit train --victim mllm``), scored on the
  first ``--ranker-users`` lists with the same histories; besides its HR, the share of its
  scores' within-list variance that the five prompt features explain (R², least squares with
  each list centred) and their standardised weights: does it read the titles' attributes at
  all, or mostly the candidate's popularity?

Ranks count ties against the positive, as ``evaluate_ranker`` does. Seconds, not minutes: no
image is rendered or encoded for the oracles.
"""

from __future__ import annotations

import argparse
import sys


ATTRIBUTES = ("category", "colour", "pattern", "material")


def _prompt_features(codes, counts, history: list[int], items):
    """(len(items), 5): per attribute, the share of ``history`` sharing each item's value; log(1 + count)."""
    import numpy as np

    items = np.asarray(items)
    shares = [(codes[a][history][None, :] == codes[a][items][:, None]).mean(1) if history else np.zeros(len(items))
              for a in range(len(ATTRIBUTES))]
    return np.stack([*shares, np.log1p(counts[items])], axis=1)


def prompt_linear_scores(dataset, lists, max_history: int, seed: int, pairs_per_user: int = 10):
    """(U, 100) scores of the ``what the prompt shows`` reference (module docstring)."""
    import numpy as np
    import torch

    from venomkit.victims.mllm.candidates import sample_history, sample_negative

    attrs = dataset.catalog.attributes
    codes = [np.unique(np.asarray(attrs[a]), return_inverse=True)[1] for a in ATTRIBUTES]
    counts = np.asarray(dataset.split.train.popularity(), dtype=np.float64)
    train = dataset.split.train
    rng = np.random.default_rng(seed + 7)
    x, y = [], []
    for u in range(dataset.n_users):
        owned = train.items_of(u)
        seen = set(dataset.interactions.items_of(u).tolist())
        for pos in rng.permutation(owned)[:pairs_per_user]:
            history = sample_history(rng, owned, int(pos), max_history)
            neg = sample_negative(rng, seen, dataset.n_items)
            x.append(_prompt_features(codes, counts, history, [pos, neg]))
            y += [1.0, 0.0]
    features = torch.tensor(np.concatenate(x), dtype=torch.float64)
    labels = torch.tensor(y, dtype=torch.float64)
    weights = torch.zeros(features.shape[1] + 1, dtype=torch.float64, requires_grad=True)
    optimiser = torch.optim.LBFGS([weights], max_iter=200, line_search_fn="strong_wolfe")

    def closure():
        optimiser.zero_grad()
        loss = torch.nn.functional.binary_cross_entropy_with_logits(features @ weights[:-1] + weights[-1], labels)
        loss.backward()
        return loss

    optimiser.step(closure)
    w = weights.detach().numpy()
    hist_rng = np.random.default_rng(seed + 1)  # evaluate_ranker's history draws, list by list
    rows = []
    for cand in lists:
        history = sample_history(hist_rng, train.items_of(cand.user), -1, max_history)
        rows.append(_prompt_features(codes, counts, history, cand.items) @ w[:-1] + w[-1])
    return np.stack(rows)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--users", type=int, default=1000)
    parser.add_argument("--seed", type=int, default=0, help="candidate lists' seed (evaluate_ranker's default: 0)")
    parser.add_argument("--victim", action="append", default=[], help="a victim checkpoint folder (repeatable)")
    parser.add_argument("--ranker", default=None, help="a fine-tuned MLLM ranker folder to score and explain")
    parser.add_argument("--ranker-users", type=int, default=200, help="lists the --ranker scores (the first ones)")
    parser.add_argument("--max-history", type=int, nargs="+", default=[8, 24],
                        help="history lengths of the 'what the prompt shows' rows (the shipped ranker's: 8)")
    args = parser.parse_args(argv)
    if args.users < 1:
        parser.error(f"--users must be >= 1, got {args.users}")
    if any(h < 1 for h in args.max_history):
        parser.error(f"--max-history values must be >= 1, got {args.max_history}")

    import numpy as np
    import torch

    from venomkit.data import toyshop
    from venomkit.data.loaders import load_dataset
    from venomkit.victims.checkpoint import load_victim
    from venomkit.victims.mllm.candidates import sampled_candidates
    from venomkit.victims.mllm.evaluate import paired_difference, positive_ranks, rank_metrics

    dataset = load_dataset("toyshop")  # the default shop, as the ranker's table; its hidden model:
    model = toyshop.preference_model()
    lists = sampled_candidates(dataset, n_users=args.users, n_negatives=99, split="test", seed=args.seed)
    users = np.array([c.user for c in lists])
    items = np.stack([c.items for c in lists])  # (U, 100), the positive first
    rows = np.arange(len(lists))[:, None]
    popularity = np.asarray(dataset.split.train.popularity(), dtype=np.float64)
    logits = model.logits(users)
    scorers = {
        "popularity (training counts)": popularity[items],
        "oracle (taste + quality + popularity prior)": logits[rows, items],
        "oracle without popularity (taste + quality)": (logits - model.log_prior[None, :])[rows, items],
        "popularity prior alone": np.broadcast_to(model.log_prior[None, :], logits.shape)[rows, items],
    }
    for history in args.max_history:
        scorers[f"what the prompt shows: {history} titles + popularity cue (linear)"] = prompt_linear_scores(
            dataset, lists, history, args.seed)
    for folder in args.victim:
        victim = load_victim(folder, load_encoders=False)
        if victim.n_users != dataset.n_users or victim.n_items != dataset.n_items:
            parser.error(f"--victim {folder}: trained on {victim.n_users} users x {victim.n_items} items, "
                         f"the data has {dataset.n_users} x {dataset.n_items}")
        with torch.no_grad():
            scores = victim.scores(torch.as_tensor(users)).float().cpu().numpy()
        scorers[f"{folder} ({type(victim).__name__})"] = scores[rows, items]

    ks = (5, 10, 20)
    pop_ranks = positive_ranks(scorers["popularity (training counts)"])
    print(f"{len(lists)} users of toyshop, 1 held-out + 99 sampled negatives each (seed {args.seed}), "
          "paired with popularity user by user")
    print("| ranker | HR@5 | HR@10 | HR@20 | - popularity, HR@10 (paired ± SE) |")
    print("|---|---:|---:|---:|---:|")
    for name, scores in scorers.items():
        ranks = positive_ranks(np.ascontiguousarray(scores))
        got = rank_metrics(ranks, ks)
        diff = paired_difference(ranks, pop_ranks, ks, prefix="d_")
        print(f"| {name} | {got['hr@5']:.3f} | {got['hr@10']:.3f} | {got['hr@20']:.3f} | "
              f"{diff['d_hr@10']:+.3f} ± {diff['d_hr@10_se']:.3f} |")
    if args.ranker is not None:
        explain_ranker(args.ranker, dataset, lists[: args.ranker_users], pop_ranks[: args.ranker_users], args.seed, ks)
    return 0


def explain_ranker(folder: str, dataset, lists, pop_ranks, seed: int, ks) -> None:
    """Score ``lists`` with the MLLM ranker in ``folder`` (its own history length) and print its HR
    and how much of its within-list score variance the prompt features explain (module docstring)."""
    import numpy as np
    import torch

    from venomkit.runs.poisoning import load_victim_ranker
    from venomkit.victims.mllm.candidates import item_titles, sample_history
    from venomkit.victims.mllm.evaluate import paired_difference, positive_ranks, rank_metrics
    from venomkit.victims.mllm.finetune import catalog_images

    ranker = load_victim_ranker(folder)
    titles = item_titles(dataset.catalog)
    attrs = dataset.catalog.attributes
    codes = [np.unique(np.asarray(attrs[a]), return_inverse=True)[1] for a in ATTRIBUTES]
    counts = np.asarray(dataset.split.train.popularity(), dtype=np.float64)
    hist_rng = np.random.default_rng(seed + 1)  # the histories evaluate_ranker shows, list by list
    scores, features = [], []
    for cand in lists:
        history = sample_history(hist_rng, dataset.split.train.items_of(cand.user), -1, ranker.max_history)
        items = cand.items
        with torch.no_grad():
            got = ranker.score_candidates([titles[i] for i in history], catalog_images(dataset.catalog, items),
                                          [dataset.catalog.texts[i] for i in items])
        scores.append(got.float().cpu().numpy().astype(np.float64))
        features.append(_prompt_features(codes, counts, history, items))
    scores, features = np.stack(scores), np.stack(features)  # (U, 100), (U, 100, 5)
    ranks = positive_ranks(scores)
    got, diff = rank_metrics(ranks, ks), paired_difference(ranks, pop_ranks, ks, prefix="d_")
    y = (scores - scores.mean(1, keepdims=True)).reshape(-1)
    x = (features - features.mean(1, keepdims=True)).reshape(-1, features.shape[2])
    x = x / x.std(0).clip(min=1e-12)
    w, *_ = np.linalg.lstsq(x, y, rcond=None)
    r2 = 1 - ((y - x @ w) ** 2).sum() / (y**2).sum()
    print(f"\n{folder} ({ranker.max_history} history titles), first {len(lists)} lists: HR@5 {got['hr@5']:.3f}, HR@10 "
          f"{got['hr@10']:.3f}, HR@20 {got['hr@20']:.3f}; - popularity HR@10 {diff['d_hr@10']:+.3f} ± {diff['d_hr@10_se']:.3f}")
    print(f"its scores' within-list variance explained by the five prompt features: R² {r2:.3f}; standardised weights: "
          + ", ".join(f"{name} match {v:+.3f}" for name, v in zip(ATTRIBUTES, w[:4])) + f", log(1 + count) {w[4]:+.3f}")


if __name__ == "__main__":
    sys.exit(main())
