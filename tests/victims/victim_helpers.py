"""Tiny in-code encoders, a tiny shop and victim builders for the victim tests (no zoo, seconds)."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import torch

from venomkit.data.catalog import Catalog
from venomkit.data.dataset import Dataset
from venomkit.data.interactions import Interactions
from venomkit.encoders.base import ImageEncoder, TextEncoder

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # tests/ (pytest runs with --import-mode=importlib)
from tiny_encoders import TinyConvImageEncoder, TinyWordTextEncoder

COLOURS = ["red", "green", "blue"]
RGB = {"red": (0.9, 0.1, 0.1), "green": (0.1, 0.9, 0.1), "blue": (0.1, 0.1, 0.9)}
WORDS = ["<pad>", "<unk>", "a", "an", "item", "red", "green", "blue", "mug", "hat", "lamp", "soft", "bright", "nice"]


class TinyImageEncoder(TinyConvImageEncoder):
    """conv -> ReLU -> global mean, next to the per-channel means, -> linear. Any H, W."""

    def __init__(self, dim: int = 8, seed: int = 0) -> None:
        super().__init__(dim, seed, activation="relu")


class TinyTextEncoder(TinyWordTextEncoder):
    """Whitespace tokenizer over WORDS, mean of token embeddings -> linear."""

    def __init__(self, dim: int = 8, seed: int = 1) -> None:
        super().__init__(WORDS, dim, seed, scale=0.5, activation="none")


def make_tiny_dataset(n_users: int = 60, n_items: int = 45, per_user: int = 8, seed: int = 0, size: int = 12) -> Dataset:
    """Items have a colour shown in the image and named in the text; each user likes one colour."""
    rng = np.random.default_rng(seed)
    colours = [COLOURS[i % 3] for i in range(n_items)]
    kinds = ["mug", "hat", "lamp"]
    images, texts = [], []
    for i, c in enumerate(colours):
        base = torch.tensor(RGB[c]).view(3, 1, 1).expand(3, size, size)
        noise = torch.from_numpy(rng.uniform(-0.08, 0.08, (3, size, size)).astype(np.float32))
        images.append((base + noise).clamp(0, 1))
        texts.append(f"a {rng.choice(['soft', 'bright', 'nice'])} {c} {kinds[(i // 3) % 3]}")
    catalog = Catalog(item_ids=[f"i{i}" for i in range(n_items)], texts=texts, images=images)
    users, items = [], []
    by_colour = {c: np.array([i for i in range(n_items) if colours[i] == c]) for c in COLOURS}
    # Popularity skew inside each colour, so some items stay cold.
    for u in range(n_users):
        pool = by_colour[COLOURS[u % 3]]
        weights = 1.0 / np.arange(1, len(pool) + 1) ** 0.7
        chosen = rng.choice(pool, size=min(per_user, len(pool)), replace=False, p=weights / weights.sum())
        users += [u] * len(chosen)
        items += chosen.tolist()
    inter = Interactions.from_pairs(np.array(users), np.array(items), n_users, n_items)
    return Dataset(name="tiny", catalog=catalog, interactions=inter)


def clean_features(dataset: Dataset, image_encoder: ImageEncoder | None, text_encoder: TextEncoder | None) -> dict[str, torch.Tensor]:
    out = {}
    with torch.no_grad():
        idx = list(range(dataset.n_items))
        if image_encoder is not None:
            out["visual"] = image_encoder(dataset.catalog.image_batch(idx))
        if text_encoder is not None:
            out["text"] = text_encoder(dataset.catalog.text_batch(idx))
    return out


def build(kind: str, dataset: Dataset, image_encoder=None, text_encoder=None, seed: int = 0, **config):
    """A victim of ``kind`` on ``dataset`` with clean features and the encoders attached."""
    from venomkit.victims.pipeline import build_victim

    torch.manual_seed(seed)
    fields = dict(config)
    if image_encoder is not None:
        fields["visual_dim"] = image_encoder.output_dim
    if text_encoder is not None:
        fields["text_dim"] = text_encoder.output_dim
    victim = build_victim(kind, dataset.n_users, dataset.n_items, train=dataset.split.train, **fields)
    victim.set_clean_features(clean_features(dataset, image_encoder, text_encoder))
    victim.attach_encoders(image_encoder, text_encoder)
    return victim
