"""The encoder interface every victim and attack uses to turn raw content into features.

Images enter as float tensors (N, 3, H, W) in [0, 1] at the photo's own size; resizing,
cropping and normalisation happen inside the encoder, in torch, so gradients reach the native
pixels. Photos of different sizes travel as lists of (3, H_i, W_i) tensors:
:func:`encode_images` encodes such a list (or a tensor) with one encoder call per size.
Texts enter as strings; token-level attacks use the tokenizer and the token-embedding table
the encoder exposes.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence

import torch
from torch import nn

Images = torch.Tensor | Sequence[torch.Tensor]
"""A batch of images: an (N, 3, H, W) tensor, or a sequence of N (3, H_i, W_i) tensors."""


def group_by_size(images: Images) -> list[tuple[list[int], torch.Tensor]]:
    """Split a batch into same-size groups: ``[(indices, (n_g, 3, H_g, W_g) tensor), ...]``.

    An (N, 3, H, W) tensor is one group (no copy). A sequence of (3, H_i, W_i) tensors is
    grouped by (H_i, W_i) in order of first appearance, each group stacked with ``torch.stack``
    (differentiable: gradients flow back to every input image). ``indices`` are positions in
    the input. ValueError for anything that is not images of 3 channels, or an empty sequence.
    """
    if isinstance(images, torch.Tensor):
        if images.dim() != 4 or images.shape[1] != 3:
            raise ValueError(f"expected images of shape (N, 3, H, W) or a list of (3, H, W) tensors, got {tuple(images.shape)}")
        return [(list(range(images.shape[0])), images)]
    images = list(images)
    if not images:
        raise ValueError("expected at least one image, got an empty sequence")
    groups: dict[tuple[int, int], list[int]] = {}
    for k, image in enumerate(images):
        if not isinstance(image, torch.Tensor) or image.dim() != 3 or image.shape[0] != 3:
            shape = tuple(image.shape) if isinstance(image, torch.Tensor) else type(image).__name__
            raise ValueError(f"image {k}: expected a (3, H, W) tensor, got {shape}")
        groups.setdefault((int(image.shape[1]), int(image.shape[2])), []).append(k)
    return [(idx, torch.stack([images[k] for k in idx])) for idx in groups.values()]


def map_by_size(fn: Callable[[torch.Tensor], torch.Tensor], images: Images) -> torch.Tensor:
    """``fn`` once per same-size group (:func:`group_by_size`), rows back in input order.

    ``fn`` maps (n, 3, H, W) to (n, ...) with the same trailing shape for every group; the
    result is (N, ...) with row k belonging to input image k. Differentiable.
    """
    groups = group_by_size(images)
    if len(groups) == 1:
        return fn(groups[0][1])
    outputs = torch.cat([fn(batch) for _, batch in groups])
    order = torch.tensor([k for idx, _ in groups for k in idx], device=outputs.device)
    return outputs[torch.argsort(order)]


def images_to(images: Images, device: torch.device | str, dtype: torch.dtype | None = None) -> Images:
    """Move a tensor, or every tensor of a sequence, to ``device`` (and ``dtype``), differentiably."""
    if isinstance(images, torch.Tensor):
        return images.to(device, dtype)
    return [image.to(device, dtype) for image in images]


def encode_images(encoder: nn.Module, images: Images) -> torch.Tensor:
    """Features (N, D) of N images of any sizes, in input order.

    ``images`` is an (N, 3, H, W) tensor (one ``encoder`` call) or a sequence of (3, H_i, W_i)
    tensors in [0, 1]: equal sizes are stacked and encoded in one call per size, so a batch of
    photos at their native sizes costs one call per distinct size. Differentiable with respect
    to every input image (no ``no_grad`` inside); the encoder's own resize makes the result
    independent of how images are grouped (equal to encoding each alone, up to float
    summation order: <= 1e-5 measured, ``tests/encoders/test_encode_images.py``).
    """
    return map_by_size(encoder, images)


class ImageEncoder(nn.Module, ABC):
    """Raw images (N, 3, H, W) float in [0, 1], any H and W -> features (N, output_dim).

    Differentiable with respect to the pixels. ``spec`` is the name it was loaded from
    (``zoo:NAME``, a folder, or a hub/model id) so checkpoints can reload it. For photos of
    different sizes use :func:`encode_images` (works with every encoder); the open_clip and
    torchvision encoders also take a list of (3, H_i, W_i) tensors directly.
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
    reserved_token_ids: frozenset[int] = frozenset()
    """Token ids a text edit must not insert: words the victim's own prompt reserves (none for a
    plain text encoder; the MLLM ranker's token view lists its answer and role words). Read by
    the token attacks' ``TextFlipper`` unless ``allow_prompt_words`` is set."""

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
