"""VenomRec's poisoning and its measure: compromised users, a poisoned fine-tune, ER@K (arXiv 2602.06409).

What the released code does, kept here:

* **The seller's edit**: the edited target replaces the target's content in the catalogue
  (:meth:`~venomkit.data.catalog.Catalog.with_content`); every later prompt shows it.
* **Compromised users**: ``ceil(#users x mr)`` EXISTING users per target (at least 1), drawn
  among users who never interacted with the target and are not evaluated; their histories are
  rewritten to include the target -- one poisoned training row ``(user, target, history)``
  each (:func:`poison_rows`), added to the clean rows of :func:`~venomkit.victims.mllm.finetune.finetune`.
  The paper's ``mr`` is 0.001; on toyshop-sized data (1,000 users) that is one user, so the
  default here is 0.01.
* **ER@K** (:func:`exposure_rate`): per target, every evaluated user's candidate list with the
  target in place of the held-out item (99 sampled negatives + the target), ranked by the
  poisoned ranker on the poisoned catalogue; ER@K is the share of users whose top K holds the
  target (chance K / 100); users who interacted with the target, or whose negatives hold it,
  are left out, as are compromised users.
* **Utility**: HR/NDCG/Recall@K of the poisoned ranker on the held-out items of the same
  users (compromised users excluded), against the clean fine-tune's.
"""

from __future__ import annotations

import math
from typing import Sequence

import numpy as np
import torch

from venomkit.progress import progress as progress_bar
from venomkit.victims.mllm.candidates import CandidateList, item_titles, sample_history
from venomkit.victims.mllm.evaluate import positive_ranks
from venomkit.victims.mllm.finetune import TrainingRow, catalog_images

DEFAULT_KS = (1, 5, 10, 20)


def n_compromised(n_users: int, mr: float) -> int:
    """``ceil(n_users * mr)``, at least 1 (the paper's count of compromised users per target)."""
    if not 0 < mr <= 1:
        raise ValueError(f"mr (the share of compromised users) must be in (0, 1], got {mr!r}")
    return max(1, math.ceil(n_users * mr))


def compromised_users(dataset, targets: Sequence[int], mr: float, *, exclude: Sequence[int] = (), seed: int = 0) -> dict[int, list[int]]:
    """Per target, ``n_compromised(#users, mr)`` distinct users (disjoint across targets), seeded.

    Eligible: users with a training item, who never interacted with the target, not in ``exclude``
    (the evaluated users).
    """
    rng = np.random.default_rng(seed)
    count = n_compromised(dataset.n_users, mr)
    taken = set(int(u) for u in exclude)
    degree = dataset.split.train.user_degree()
    out: dict[int, list[int]] = {}
    for t in targets:
        touched = set(np.flatnonzero(np.asarray(dataset.interactions.matrix[:, int(t)].todense()).ravel() > 0).tolist())
        pool = np.array([u for u in range(dataset.n_users) if degree[u] > 0 and u not in taken and u not in touched])
        if len(pool) < count:
            raise ValueError(f"target {t}: only {len(pool)} eligible users to compromise, {count} needed (lower mr)")
        chosen = sorted(int(u) for u in rng.choice(pool, size=count, replace=False))
        taken.update(chosen)
        out[int(t)] = chosen
    return out


def poison_rows(dataset, compromised: dict[int, list[int]], max_history: int, seed: int = 0) -> list[TrainingRow]:
    """One positive row per compromised user: its own training items as history, then the target."""
    rng = np.random.default_rng(seed)
    train = dataset.split.train
    rows = []
    for target, users in compromised.items():
        for u in users:
            history = tuple(sample_history(rng, train.items_of(u), -1, max_history))
            rows.append(TrainingRow(int(u), int(target), history))
    return rows


def exposure_rate(
    ranker,
    catalog,
    lists: Sequence[CandidateList],
    histories: dict[int, Sequence[int]],
    target: int,
    *,
    interacted: dict[int, set[int]],
    ks: Sequence[int] = DEFAULT_KS,
    exclude_users: Sequence[int] = (),
    batch_size: int = 64,
) -> dict[str, float]:
    """ER@K of one target (module docstring) and the number of users it was measured on."""
    row = exposure_table(ranker, catalog, lists, histories, [target], interacted=interacted, ks=ks, exclude_users=exclude_users,
                         batch_size=batch_size, progress=False)[0]
    return {key: value for key, value in row.items() if key != "item"}


def exposure_table(ranker, catalog, lists: Sequence[CandidateList], histories: dict[int, Sequence[int]], targets: Sequence[int], *,
                   interacted: dict[int, set[int]], ks: Sequence[int] = DEFAULT_KS, exclude_users: Sequence[int] = (),
                   batch_size: int = 64, progress: bool = True) -> list[dict[str, float]]:
    """ER@K of every target (module docstring), one row each: ``{item, er@K, chance@K, users}``.

    One ranking call per user: its 99 negatives and every target it can see are scored
    together, and each target's rank is the number of negatives scoring at least as high --
    what ranking the list ``[target] + negatives`` gives, because the ranker scores each
    candidate on its own (pointwise ``logit(yes) - logit(no)``). The negatives are scored once
    per user instead of once per target: 99 + T candidates per user instead of 100 T.
    """
    targets = [int(t) for t in targets]
    titles = item_titles(catalog)
    excluded = set(int(u) for u in exclude_users)
    ranks: dict[int, list[int]] = {t: [] for t in targets}
    n_candidates = None
    for cl in progress_bar(list(lists), desc="ER@K", unit="user", leave=False, enabled=progress):
        if cl.user in excluded:
            continue
        negatives = np.asarray(cl.negatives, dtype=np.int64)
        hidden = interacted.get(cl.user, set()) | set(negatives.tolist())
        visible = [t for t in targets if t not in hidden]
        if not visible:
            continue
        items = np.concatenate([negatives, visible]).astype(np.int64)
        history = [titles[i] for i in histories[cl.user]]
        with torch.no_grad():
            scores = ranker.score_candidates(history, catalog_images(catalog, items), [catalog.texts[i] for i in items],
                                             batch_size=batch_size).detach().float().cpu().numpy()
        n = len(negatives)
        lists_of_targets = np.concatenate([scores[n:, None], np.broadcast_to(scores[None, :n], (len(visible), n))], axis=1)
        for t, rank in zip(visible, positive_ranks(lists_of_targets)):  # (V, 1 + N): each target, then the negatives
            ranks[t].append(int(rank))
        n_candidates = len(negatives) + 1
    rows = []
    for t in targets:
        if not ranks[t]:
            raise ValueError(f"target {t}: no evaluated user can see it (every list excludes it)")
        r = np.array(ranks[t])
        row: dict[str, float] = {"item": t, **{f"er@{k}": float((r < k).mean()) for k in ks}}
        row.update({f"chance@{k}": min(k, n_candidates) / n_candidates for k in ks})
        row["users"] = len(r)
        rows.append(row)
    return rows
