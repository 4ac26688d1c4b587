"""What a person looks at: clean | adversarial | amplified difference, small enough to show.

The difference ``0.5 + amplify * (adv - clean)`` (clipped to [0, 1]) is computed at the photos'
own size; only for display are large photos downscaled (PIL's Lanczos thumbnail), and the
difference then keeps, per block, the change of largest magnitude -- averaging (any resampling
filter) would wash a high-frequency perturbation out to flat grey. Every figure a run reports is
computed on the native files, never on these pictures.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from PIL import Image

DISPLAY_MAX_SIDE = 256
"""Longest side of a displayed photo (grids, report cards)."""

AMPLIFY = 10.0
"""How much the difference panel magnifies the change."""


def pool_max_change(delta: np.ndarray, factor: int) -> np.ndarray:
    """Downscale a signed difference (H, W, C) by ``factor``, keeping each block's change of largest magnitude."""
    h, w, c = delta.shape
    hp, wp = -(-h // factor) * factor, -(-w // factor) * factor
    padded = np.zeros((hp, wp, c), dtype=delta.dtype)
    padded[:h, :w] = delta
    blocks = padded.reshape(hp // factor, factor, wp // factor, factor, c).transpose(0, 2, 4, 1, 3).reshape(hp // factor, wp // factor, c, -1)
    pick = np.abs(blocks).argmax(axis=-1)[..., None]
    return np.take_along_axis(blocks, pick, axis=-1)[..., 0]


def display_triplet(clean: Image.Image, adv: Image.Image, max_side: int = DISPLAY_MAX_SIDE, amplify: float = AMPLIFY) -> tuple[list[Image.Image], int]:
    """(clean, adversarial, amplified difference) as RGB images at most ``max_side`` pixels on
    the longer side, and the downscaling factor of the difference (1: shown at native size).

    An adversarial image of another size than the clean one is resized to it for the difference.
    """
    clean, adv = clean.convert("RGB"), adv.convert("RGB")
    adv_for_diff = adv if adv.size == clean.size else adv.resize(clean.size, Image.BILINEAR)
    delta = np.asarray(adv_for_diff, dtype=np.float32) / 255.0 - np.asarray(clean, dtype=np.float32) / 255.0
    factor = math.ceil(max(clean.size) / max_side)
    if factor > 1:
        delta = pool_max_change(delta, factor)
    diff = Image.fromarray(np.round(np.clip(0.5 + amplify * delta, 0.0, 1.0) * 255).astype(np.uint8), "RGB")
    shown = []
    for img in (clean, adv, diff):
        if max(img.size) > max_side:
            img = img.copy()
            img.thumbnail((max_side, max_side), Image.LANCZOS)
        shown.append(img)
    return shown, factor


def to_pil(image: torch.Tensor) -> Image.Image:
    """(3, H, W) float in [0, 1] -> an 8-bit RGB PIL image (round to nearest)."""
    array = np.rint(np.clip(image.detach().cpu().float().numpy(), 0, 1) * 255).astype(np.uint8).transpose(1, 2, 0)
    return Image.fromarray(array, "RGB")


def grid_image(clean: torch.Tensor, adv: torch.Tensor, max_side: int = DISPLAY_MAX_SIDE, amplify: float = AMPLIFY, pad: int = 2) -> Image.Image:
    """clean | adversarial | amplified difference side by side (white gaps), for ``<item>_grid.png``.

    Photos up to ``max_side`` pixels are shown at their own size (toyshop's 64 px grids are
    pixel exact); larger ones are downscaled for display (module docstring).
    """
    panels, _ = display_triplet(to_pil(clean), to_pil(adv), max_side, amplify)
    width = sum(p.size[0] for p in panels) + pad * (len(panels) - 1)
    height = max(p.size[1] for p in panels)
    sheet = Image.new("RGB", (width, height), (255, 255, 255))
    x = 0
    for p in panels:
        sheet.paste(p, (x, 0))
        x += p.size[0] + pad
    return sheet
