"""Helpers of the defense tests: a tiny shop whose image and text carry DIFFERENT signals.

Item i has a colour (shown in its image only) and a kind (named in its text only); half the
users choose by colour, half by kind, so the visual and the textual feature gradients of an
item are driven by different users -- the cross-modal mismatch UAT-MC is about. Encoders are
tiny in-code modules (no zoo); everything builds in well under a second.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import torch

from venomkit.data.catalog import Catalog
from venomkit.data.dataset import Dataset
from venomkit.data.interactions import Interactions
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # tests/ (pytest runs with --import-mode=importlib)
from tiny_encoders import TinyConvImageEncoder, TinyWordTextEncoder

RGB = {"red": (0.9, 0.15, 0.1), "green": (0.1, 0.85, 0.2), "blue": (0.15, 0.2, 0.9)}
COLOURS = list(RGB)
KINDS = ["mug", "hat", "lamp"]
WORDS = ["<pad>", "<unk>", "a", "soft", "bright", "nice", "new", *KINDS]


class TinyImageEncoder(TinyConvImageEncoder):
    """conv -> tanh -> pooled, next to channel means, -> linear; any size; normalisation inside."""

    def __init__(self, dim: int = 8, seed: int = 0) -> None:
        super().__init__(dim, seed, activation="tanh")


class TinyTextEncoder(TinyWordTextEncoder):
    """Whitespace tokenizer over WORDS; masked mean of embeddings -> tanh -> linear."""

    def __init__(self, dim: int = 6, seed: int = 1) -> None:
        super().__init__(WORDS, dim, seed, scale=0.7, activation="tanh")


def make_shop(n_users: int = 60, n_items: int = 36, per_user: int = 7, seed: int = 0, size: int = 12) -> Dataset:
    rng = np.random.default_rng(seed)
    colour = [COLOURS[i % 3] for i in range(n_items)]
    kind = [KINDS[(i // 3) % 3] for i in range(n_items)]
    images, texts = [], []
    for i in range(n_items):
        base = torch.tensor(RGB[colour[i]]).view(3, 1, 1).expand(3, size, size)
        noise = torch.from_numpy(rng.uniform(-0.08, 0.08, (3, size, size)).astype(np.float32))
        images.append((base + noise).clamp(0, 1))
        texts.append(f"a {rng.choice(['soft', 'bright', 'nice', 'new'])} {kind[i]}")
    catalog = Catalog(item_ids=[f"i{i}" for i in range(n_items)], texts=texts, images=images)
    users, items = [], []
    for u in range(n_users):
        pool = np.array([i for i in range(n_items) if (colour[i] == COLOURS[u % 3] if u % 2 == 0 else kind[i] == KINDS[u % 3])])
        w = 1.0 / np.arange(1, len(pool) + 1) ** 0.8  # popularity skew: some items stay cold
        chosen = rng.choice(pool, size=min(per_user, len(pool)), replace=False, p=w / w.sum())
        users += [u] * len(chosen)
        items += chosen.tolist()
    inter = Interactions.from_pairs(np.array(users), np.array(items), n_users, n_items)
    return Dataset(name="tiny-defense", catalog=catalog, interactions=inter)


def build_victim(kind: str, dataset: Dataset, seed: int = 0, **config):
    """A victim of ``kind`` with tiny encoders attached and clean features set (untrained)."""
    from venomkit.victims.pipeline import build_victim as build

    torch.manual_seed(seed)
    img, txt = TinyImageEncoder(), TinyTextEncoder()
    victim = build(kind, dataset.n_users, dataset.n_items, train=dataset.split.train, visual_dim=img.output_dim, text_dim=txt.output_dim, **config)
    idx = list(range(dataset.n_items))
    with torch.no_grad():
        victim.set_clean_features({"visual": img(dataset.catalog.image_batch(idx)), "text": txt(dataset.catalog.text_batch(idx))})
    victim.attach_encoders(img, txt)
    return victim


SMALL = {"vbpr": {"embed_dim": 8}, "mmgcn": {"embed_dim": 8, "latent_dim": 8}}



def trained_copy(kind, shop, trained):
    victim = build_victim(kind, shop, **SMALL[kind])
    victim.load_state_dict(trained[kind])
    victim.eval()
    return victim
