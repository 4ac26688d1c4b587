"""The encoder interface every victim and attack uses to turn raw content into features.

Images enter as float tensors (N, 3, H, W) in [0, 1]; resizing, cropping and normalisation
happen inside the encoder, in torch, so gradients reach the pixels. Texts enter as strings;
token-level attacks use the tokenizer and the token-embedding table the encoder exposes.
"""

from __future__ import annotations

from abc import ABC, abstractmethod

import torch
from torch import nn


class ImageEncoder(nn.Module, ABC):
    """Raw images (N, 3, H, W) float in [0, 1] -> features (N, output_dim).

    Differentiable with respect to the pixels. ``spec`` is the name it was loaded from
    (``zoo:NAME``, a folder, or a hub/model id) so checkpoints can reload it.
    """

    spec: str
    output_dim: int

    @abstractmethod
    def forward(self, images: torch.Tensor) -> torch.Tensor: ...


class TextEncoder(nn.Module, ABC):
    """Texts -> features (N, output_dim), with the hooks token-level attacks need.

    ``tokenize`` gives (N, L) token ids, ``token_embedding`` the (vocab, d) embedding table,
    and ``forward_embeddings`` encodes (N, L, d) input embeddings, so a first-order attack
    (HotFlip) can take gradients with respect to one-hot token choices.
    """

    spec: str
    output_dim: int

    @abstractmethod
    def tokenize(self, texts: list[str]) -> torch.Tensor: ...

    @abstractmethod
    def decode(self, token_ids: torch.Tensor) -> list[str]: ...

    @property
    @abstractmethod
    def token_embedding(self) -> nn.Embedding: ...

    @abstractmethod
    def forward_embeddings(self, embeddings: torch.Tensor, token_ids: torch.Tensor) -> torch.Tensor:
        """Encode (N, L, d) token embeddings; ``token_ids`` (N, L) locate padding/EOT."""

    def forward_tokens(self, token_ids: torch.Tensor) -> torch.Tensor:
        return self.forward_embeddings(self.token_embedding(token_ids), token_ids)

    def forward(self, texts: list[str]) -> torch.Tensor:
        device = self.token_embedding.weight.device
        return self.forward_tokens(self.tokenize(texts).to(device))
