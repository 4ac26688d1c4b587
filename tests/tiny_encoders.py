"""Tiny in-code encoders for the victim and defense tests (no zoo; built in microseconds).

They follow the contracts of ``venomkit/encoders/base.py``: images (N, 3, H, W) in [0, 1]
with the normalisation inside the encoder, texts through a whitespace tokenizer over a fixed
vocabulary (id 0 pads, id 1 is unknown). Weights are drawn from a seeded generator, so two
encoders built with the same arguments are identical.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from venomkit.encoders.base import ImageEncoder, TextEncoder

_ACTIVATIONS = {"relu": torch.relu, "tanh": torch.tanh, "none": lambda x: x}


def _seeded_(module: nn.Module, seed: int, scale: float) -> None:
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in module.parameters():
            p.copy_(torch.randn(p.shape, generator=g) * scale)


class TinyConvImageEncoder(ImageEncoder):
    """conv(3->4, stride 2) -> activation -> global mean, next to the channel means, -> linear (N, dim)."""

    def __init__(self, dim: int = 8, seed: int = 0, activation: str = "relu") -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3, stride=2, padding=1)
        self.head = nn.Linear(7, dim)
        _seeded_(self, seed, 0.5)
        self.activation = _ACTIVATIONS[activation]
        self.spec = f"test:tiny-image-{dim}"
        self.output_dim = dim

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        x = images * 2 - 1
        pooled = self.activation(self.conv(x)).mean(dim=(2, 3))
        return self.head(torch.cat([pooled, x.mean(dim=(2, 3))], dim=1))


class TinyWordTextEncoder(TextEncoder):
    """Masked mean of 6-dim word embeddings -> activation -> linear (N, dim)."""

    def __init__(self, words: Sequence[str], dim: int = 8, seed: int = 1, scale: float = 0.5, activation: str = "none") -> None:
        super().__init__()
        self.words = list(words)
        self.vocab = {w: i for i, w in enumerate(self.words)}
        self.embedding = nn.Embedding(len(self.words), 6, padding_idx=0)
        self.head = nn.Linear(6, dim)
        _seeded_(self, seed, scale)
        with torch.no_grad():
            self.embedding.weight[0].zero_()
        self.activation = _ACTIVATIONS[activation]
        self.spec = f"test:tiny-text-{dim}"
        self.output_dim = dim

    def tokenize(self, texts: list[str]) -> torch.Tensor:
        ids = [[self.vocab.get(w, 1) for w in t.lower().split()] or [1] for t in texts]
        length = max(len(x) for x in ids)
        return torch.tensor([x + [0] * (length - len(x)) for x in ids], dtype=torch.long)

    def decode(self, token_ids: torch.Tensor) -> list[str]:
        return [" ".join(self.words[i] for i in row.tolist() if i != 0) for row in token_ids]

    @property
    def token_embedding(self) -> nn.Embedding:
        return self.embedding

    def forward_embeddings(self, embeddings: torch.Tensor, token_ids: torch.Tensor) -> torch.Tensor:
        mask = (token_ids != 0).unsqueeze(-1).to(embeddings.dtype)
        return self.head(self.activation((embeddings * mask).sum(1) / mask.sum(1).clamp_min(1)))
