"""VenomRec's poisoning: compromised users as the released code counts them, ER@K against a naive count."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from mllm_helpers import tiny_shop, tiny_vlm_folder

from venomkit.attacks.venomrec.poisoning import compromised_users, exposure_rate, exposure_table, n_compromised, poison_rows
from venomkit.victims.mllm.candidates import sampled_candidates


def test_compromised_users_count_disjoint_and_eligible():
    dataset = tiny_shop(n_users=30, n_items=40)
    assert n_compromised(1000, 0.001) == 1 and n_compromised(943, 0.01) == 10 and n_compromised(5, 0.001) == 1
    targets = [3, 7, 11]
    exclude = [0, 1, 2]
    chosen = compromised_users(dataset, targets, 0.1, exclude=exclude, seed=0)
    assert chosen == compromised_users(dataset, targets, 0.1, exclude=exclude, seed=0)  # seeded
    flat = [u for users in chosen.values() for u in users]
    assert all(len(users) == math.ceil(30 * 0.1) for users in chosen.values())
    assert len(set(flat)) == len(flat) and not set(flat) & set(exclude)
    for t, users in chosen.items():
        assert all(t not in set(dataset.interactions.items_of(u).tolist()) for u in users)
    rows = poison_rows(dataset, chosen, max_history=4)
    assert len(rows) == len(flat)
    for row in rows:
        assert row.user in chosen[row.item] and 0 < len(row.history) <= 4
        assert set(row.history) <= set(dataset.split.train.items_of(row.user).tolist())
    with pytest.raises(ValueError, match="mr"):
        n_compromised(10, 0.0)


class _ScoreByIndex:
    """Scores a candidate by its item's position in a fixed random permutation (a known ranking)."""

    def __init__(self, n_items):
        self.order = torch.randperm(n_items, generator=torch.Generator().manual_seed(0)).float()
        self.texts = None

    def score_candidates(self, history, images, texts, batch_size=64):
        return torch.stack([self.order[self.index[t]] for t in texts])


def test_exposure_rate_equals_a_naive_count():
    dataset = tiny_shop(n_users=30, n_items=40)
    catalog = dataset.catalog
    ranker = _ScoreByIndex(dataset.n_items)
    ranker.index = {text: i for i, text in enumerate(catalog.texts)}
    lists = sampled_candidates(dataset, n_users=10, n_negatives=8, seed=0)
    histories = {cl.user: [] for cl in lists}
    interacted = {cl.user: set(dataset.interactions.items_of(cl.user).tolist()) for cl in lists}
    target = 5
    got = exposure_rate(ranker, catalog, lists, histories, target, interacted=interacted, ks=(1, 3), exclude_users=[lists[0].user])
    ranks = []
    for cl in lists[1:]:
        if target in interacted[cl.user] or target in cl.negatives:
            continue
        above = sum(ranker.order[n] >= ranker.order[target] for n in cl.negatives)
        ranks.append(int(above))
    assert got["users"] == len(ranks)
    assert got["er@1"] == pytest.approx(np.mean([r < 1 for r in ranks])) and got["er@3"] == pytest.approx(np.mean([r < 3 for r in ranks]))
    assert got["chance@3"] == pytest.approx(3 / 9)


def test_exposure_table_scores_negatives_once_and_equals_one_ranking_per_target(tmp_path):
    """Targets and negatives ranked in one call per user give each target the rank that ranking
    ``[target] + negatives`` alone gives (a real tiny LLaVA ranker: batches and padding differ)."""
    from venomkit.victims.mllm.finetune import catalog_images
    from venomkit.victims.mllm.ranker import MLLMRanker

    dataset = tiny_shop(n_users=30, n_items=40)
    catalog = dataset.catalog
    ranker = MLLMRanker.load(str(tiny_vlm_folder(tmp_path / "m", dataset)), max_history=3)
    calls = []
    score = ranker.score_candidates

    def counted(history, images, texts, batch_size=64):
        calls.append(len(texts))
        return score(history, images, texts, batch_size=batch_size)

    ranker.score_candidates = counted
    lists = sampled_candidates(dataset, n_users=6, n_negatives=8, seed=0)
    histories = {cl.user: list(dataset.split.train.items_of(cl.user)[:3]) for cl in lists}
    interacted = {cl.user: set(dataset.interactions.items_of(cl.user).tolist()) for cl in lists}
    targets = [5, 17, 23, 31]
    table = exposure_table(ranker, catalog, lists, histories, targets, interacted=interacted, ks=(1, 3, 5), progress=False)
    assert len(calls) == len(lists) and max(calls) <= 8 + len(targets)  # one call per user: negatives once
    ranker.score_candidates = score
    for t, row in zip(targets, table):
        ranks = []
        for cl in lists:
            if t in interacted[cl.user] or t in cl.negatives:
                continue
            items = np.concatenate([[t], cl.negatives])
            titles = [catalog.attributes["title"][i] for i in histories[cl.user]]
            alone = ranker.score_candidates(titles, catalog_images(catalog, items), [catalog.texts[i] for i in items], batch_size=4)
            ranks.append(int((alone[1:] >= alone[0]).sum()))
        assert row["item"] == t and row["users"] == len(ranks)
        for k in (1, 3, 5):
            assert row[f"er@{k}"] == np.mean([r < k for r in ranks])
