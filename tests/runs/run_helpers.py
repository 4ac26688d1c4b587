"""Helpers of the run-engine tests (imported by the test modules; conftest puts this folder on sys.path)."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import torch

from venomkit.runs import RunFlags, execute, load_run

SMALL_SHOP = "toyshop:n_users=150,n_items=90"
"""A toyshop small enough that training a victim for a few epochs takes about a second."""

REPO = Path(__file__).resolve().parents[2]
FAST_VICTIM = ("victims.vbpr.train.epochs=2",)


def attack_run(out, attack="pgd", overrides=(), targets=4, batch_size=16, victim="vbpr", **flags):
    recipe = REPO / "attacks" / f"{attack}.yaml"
    run = load_run(recipe, [*(FAST_VICTIM if victim == "vbpr" else ()), *overrides],
                   RunFlags(victim=victim, data=SMALL_SHOP, targets=targets, batch_size=batch_size, **flags))
    run.recipe.outputs.report = False
    return execute(run, out, progress=False)


def rows(path):
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def naive_hr(victim, dataset, target, features, k):
    """HR@k of one target with its rows replaced, by brute force (numpy, no venomkit ranking code)."""
    with torch.no_grad():
        index = torch.tensor([target])
        user, item = victim(victim.features_with(index, features))
        scores = (user @ item.T).double().numpy()
    seen = dataset.split.train.matrix.toarray() > 0
    mine = scores[:, target].copy()
    scores[seen] = -np.inf
    scores[:, target] = -np.inf
    rank = (scores > mine[:, None]).sum(1)
    eligible = ~seen[:, target]
    return float(((rank < k) & eligible).sum() / eligible.sum())




def tiny_shop_and_victim(n_users: int = 40, n_items: int = 30, size: int = 16, seed: int = 0):
    """A dataset of random 16 px images and short texts, and an untrained VBPR over tiny in-code
    encoders (no zoo): a run on it takes about a second."""
    import sys

    sys.path.insert(0, str(REPO / "tests"))
    from tiny_encoders import TinyConvImageEncoder, TinyWordTextEncoder

    from venomkit.data.catalog import Catalog
    from venomkit.data.dataset import Dataset
    from venomkit.data.interactions import Interactions
    from venomkit.victims.vbpr import VBPR, VBPRConfig

    words = ["<pad>", "<unk>", "a", "red", "blue", "soft", "bright", "new", "mug", "hat", "lamp", "shirt"]
    rng = np.random.default_rng(seed)
    g = torch.Generator().manual_seed(seed)
    images = [torch.rand(3, size, size, generator=g) for _ in range(n_items)]
    texts = [" ".join(["a", *rng.choice(words[3:8], size=3), words[8 + i % 4]]) for i in range(n_items)]
    catalog = Catalog(item_ids=[f"it{i}" for i in range(n_items)], texts=texts, images=images,
                      attributes={"category": [words[8 + i % 4] for i in range(n_items)]})
    dense = rng.random((n_users, n_items)) < np.linspace(0.6, 0.02, n_items)  # item 0 popular, the last ones cold
    users, items = np.nonzero(dense)
    dataset = Dataset("tiny", catalog, Interactions.from_pairs(users, items, n_users, n_items))
    torch.manual_seed(seed)
    img, txt = TinyConvImageEncoder(dim=8, activation="tanh"), TinyWordTextEncoder(words, dim=8, activation="tanh")
    victim = VBPR(VBPRConfig(n_users=n_users, n_items=n_items, embed_dim=8, visual_dim=8, text_dim=8, init_std=0.5))
    with torch.no_grad():
        victim.theta_user.normal_(0, 1.0)
        victim.item_bias.normal_(0, 0.3)
        victim.set_clean_features({"visual": img(torch.stack(images)), "text": txt(texts)})
    victim.attach_encoders(img, txt)
    return dataset, victim.eval()
