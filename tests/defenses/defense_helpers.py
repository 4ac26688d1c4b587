"""Helpers of the defense tests: a tiny shop whose image and text carry DIFFERENT signals.

Item i has a colour (shown in its image only) and a kind (named in its text only); half the
users choose by colour, half by kind, so the visual and the textual feature gradients of an
item are driven by different users -- the cross-modal mismatch UAT-MC is about. Encoders are
tiny in-code modules (no zoo); everything builds in well under a second.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from venomkit.data.catalog import Catalog
from venomkit.data.dataset import Dataset
from venomkit.data.interactions import Interactions
from venomkit.encoders.base import ImageEncoder, TextEncoder

RGB = {"red": (0.9, 0.15, 0.1), "green": (0.1, 0.85, 0.2), "blue": (0.15, 0.2, 0.9)}
COLOURS = list(RGB)
KINDS = ["mug", "hat", "lamp"]
WORDS = ["<pad>", "<unk>", "a", "soft", "bright", "nice", "new", *KINDS]


class TinyImageEncoder(ImageEncoder):
    """conv -> tanh -> pooled, next to channel means, -> linear; any size; normalisation inside."""

    def __init__(self, dim: int = 8, seed: int = 0) -> None:
        super().__init__()
        g = torch.Generator().manual_seed(seed)
        self.conv = nn.Conv2d(3, 4, 3, stride=2, padding=1)
        self.head = nn.Linear(7, dim)
        with torch.no_grad():
            for p in self.parameters():
                p.copy_(torch.randn(p.shape, generator=g) * 0.5)
        self.spec = f"test:tiny-image-{dim}"
        self.output_dim = dim

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        x = images * 2 - 1
        pooled = torch.tanh(self.conv(x)).mean(dim=(2, 3))
        return self.head(torch.cat([pooled, x.mean(dim=(2, 3))], dim=1))


class TinyTextEncoder(TextEncoder):
    """Whitespace tokenizer over a fixed vocabulary; masked mean of embeddings -> tanh -> linear."""

    def __init__(self, dim: int = 6, seed: int = 1) -> None:
        super().__init__()
        g = torch.Generator().manual_seed(seed)
        self.vocab = {w: i for i, w in enumerate(WORDS)}
        self.embedding = nn.Embedding(len(WORDS), 6, padding_idx=0)
        self.head = nn.Linear(6, dim)
        with torch.no_grad():
            for p in self.parameters():
                p.copy_(torch.randn(p.shape, generator=g) * 0.7)
            self.embedding.weight[0].zero_()
        self.spec = f"test:tiny-text-{dim}"
        self.output_dim = dim

    def tokenize(self, texts):
        ids = [[self.vocab.get(w, 1) for w in t.lower().split()] or [1] for t in texts]
        length = max(len(x) for x in ids)
        return torch.tensor([x + [0] * (length - len(x)) for x in ids], dtype=torch.long)

    def decode(self, token_ids):
        return [" ".join(WORDS[i] for i in row.tolist() if i != 0) for row in token_ids]

    @property
    def token_embedding(self):
        return self.embedding

    def forward_embeddings(self, embeddings, token_ids):
        mask = (token_ids != 0).unsqueeze(-1).to(embeddings.dtype)
        return self.head(torch.tanh((embeddings * mask).sum(1) / mask.sum(1).clamp_min(1)))


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
    catalog = Catalog(item_ids=[f"i{i}" for i in range(n_items)], texts=texts, image_size=size, images=images)
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
