"""Catalog images at a zoo model's training size.

A catalog keeps each photo at its own size; a model trains on fixed-size tensors. The zoo's
builders bring every image to ``size x size`` with the same preprocessing the encoders apply
at inference (``venomkit.encoders.preprocess``: resize of the shorter side with antialiasing,
centre crop), so a model trains on what it will later see. Toyshop images are already 64 px:
for them this is the identity, and the shipped models do not change.
"""

from __future__ import annotations

from typing import Sequence

import torch

from venomkit.encoders.preprocess import PreprocessConfig, TorchPreprocess


def fitted_images(catalog, indices: Sequence[int], size: int, uint8: bool = False) -> torch.Tensor:
    """(N, 3, size, size) images of items ``indices``: float in [0, 1], or uint8 (0..255) to save memory."""
    crop = TorchPreprocess(PreprocessConfig(size=size, interpolation="bicubic", resize_mode="shortest"))
    out = []
    for i in indices:
        image = catalog.image(int(i))
        if tuple(image.shape[1:]) != (size, size):
            with torch.no_grad():
                image = crop.resize_crop(image[None].float())[0]
        out.append(image.mul(255).round().to(torch.uint8) if uint8 else image)
    return torch.stack(out)
