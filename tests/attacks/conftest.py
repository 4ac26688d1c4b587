"""Tiny in-code fixtures: a conv image encoder, a word-level text encoder, a VBPR-like victim.

They follow the contracts of venomkit/encoders/base.py and venomkit/victims/base.py and are
small enough that every attack test runs in about a second.
"""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp
import torch
from torch import nn

from venomkit.attacks.targets import Knowledge
from venomkit.encoders.base import ImageEncoder, TextEncoder

WORDS = (
    "red blue green black white striped dotted plain cotton wool leather silk shirt shoe bag hat lamp mug "
    "soft bright dark classic modern cosy warm cool new fresh smart bold the a and with for of in"
).split()
CATEGORIES = ["shirt", "shoe", "bag", "hat", "lamp", "mug"]


class TinyImageEncoder(ImageEncoder):
    def __init__(self, dim: int = 16, seed: int = 0):
        super().__init__()
        torch.manual_seed(seed)
        self.spec = "tiny-image"
        self.output_dim = dim
        self.conv = nn.Conv2d(3, 8, 3, stride=2, padding=1)
        self.bn = nn.BatchNorm2d(8)
        self.proj = nn.Linear(8 * 4 * 4, dim)

    def forward(self, images):
        h = torch.tanh(self.bn(self.conv(images * 2 - 1)))
        h = nn.functional.adaptive_avg_pool2d(h, 4).flatten(1)
        return self.proj(h)


class TinyTextEncoder(TextEncoder):
    """Word-level tokenizer: 0 pad, 1 start, 2 end, then WORDS (unknown words map to 3)."""

    def __init__(self, dim: int = 16, length: int = 12, seed: int = 1):
        super().__init__()
        torch.manual_seed(seed)
        self.spec = "tiny-text"
        self.output_dim = dim
        self.length = length
        self.vocab = ["", "", "", "unk"] + WORDS
        self.index = {w: i for i, w in enumerate(self.vocab)}
        self.emb = nn.Embedding(len(self.vocab), dim)
        self.mix = nn.Linear(dim, dim)

    def tokenize(self, texts):
        out = torch.zeros(len(texts), self.length, dtype=torch.long)
        for r, text in enumerate(texts):
            ids = [1] + [self.index.get(w, 3) for w in text.lower().split()][: self.length - 2] + [2]
            out[r, : len(ids)] = torch.tensor(ids)
        return out

    def decode(self, token_ids):
        return [" ".join(self.vocab[t] for t in row.tolist() if t > 2) for row in token_ids]

    @property
    def token_embedding(self):
        return self.emb

    def forward_embeddings(self, embeddings, token_ids):
        mask = (token_ids > 0).float().unsqueeze(-1)
        pooled = (embeddings * mask).sum(1) / mask.sum(1).clamp_min(1)
        return self.mix(torch.tanh(pooled))


def tiny_vbpr(images, texts, n_users=40, dim=8, seed=0):
    """The real VBPR with tiny encoders and random weights (item rows independent)."""
    from venomkit.victims.vbpr import VBPR, VBPRConfig

    torch.manual_seed(seed)
    victim = VBPR(VBPRConfig(n_users=n_users, n_items=images.shape[0], embed_dim=dim, visual_dim=16, text_dim=16, init_std=0.5))
    with torch.no_grad():
        victim.theta_user.normal_(0, 1.0)
        victim.item_bias.normal_(0, 0.3)
    victim.attach_encoders(TinyImageEncoder(), TinyTextEncoder())
    with torch.no_grad():
        victim.set_clean_features(victim.encode_content(images, texts))
    return victim


def make_texts(n, rng):
    out = []
    for i in range(n):
        words = list(rng.choice(WORDS[:-7], size=5)) + [CATEGORIES[i % len(CATEGORIES)]]
        out.append(" ".join(["a"] + words))
    return out


@pytest.fixture(scope="session")
def shop():
    torch.manual_seed(0)
    rng = np.random.default_rng(0)
    n_items, n_users = 30, 40
    images = torch.rand(n_items, 3, 16, 16)
    texts = make_texts(n_items, rng)
    victim = tiny_vbpr(images, texts, n_users=n_users)
    dense = rng.random((n_users, n_items)) < np.linspace(0.6, 0.02, n_items)  # item 0 popular, last cold
    train = sp.csr_matrix(dense.astype(np.float32))
    knowledge = Knowledge(
        train=train,
        popularity=np.asarray(dense.sum(0)).ravel(),
        texts=texts,
        images=lambda idx: images[list(idx)],
    )
    return {"victim": victim, "images": images, "texts": texts, "train": train, "knowledge": knowledge, "categories": [CATEGORIES[i % 6] for i in range(n_items)]}
