"""A large photo-like JPEG made in code, and helpers to compare preprocessed pixels with it."""

from __future__ import annotations

import io

import numpy as np
import torch


def make_photo(width: int = 1166, height: int = 1750, seed: int = 0):
    """A photo-like RGB JPEG (PIL image, quality 90, decoded back) of ``width`` x ``height``.

    Smooth colour gradients and low-frequency waves, 14 filled shapes with sharp edges
    (ellipses, outlined rectangles, triangles), 40 thin lines, a striped texture patch and
    Gaussian sensor noise (sigma 0.03), then a real JPEG round trip.
    """
    from PIL import Image, ImageDraw

    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:height, 0:width].astype(np.float32)
    u, v = x / width, y / height
    background = np.stack(
        [0.55 + 0.35 * u - 0.2 * v, 0.35 + 0.3 * np.sin(3.1 * u + 1.7 * v), 0.6 - 0.3 * u * v + 0.1 * np.cos(5 * v)], -1
    )
    img = Image.fromarray((np.clip(background, 0, 1) * 255).astype(np.uint8))
    draw = ImageDraw.Draw(img)
    for k in range(14):
        cx, cy, r = rng.uniform(0, width), rng.uniform(0, height), rng.uniform(40, 260)
        colour = tuple(int(c) for c in rng.integers(0, 256, 3))
        if k % 3 == 0:
            draw.ellipse([cx - r, cy - r * 0.7, cx + r, cy + r * 0.7], fill=colour)
        elif k % 3 == 1:
            draw.rectangle([cx - r, cy - r / 2, cx + r, cy + r / 2], fill=colour, outline=(0, 0, 0), width=6)
        else:
            draw.polygon([(cx, cy - r), (cx + r, cy + r), (cx - r, cy + r)], fill=colour)
    for _ in range(40):
        xs, ys = rng.uniform(0, width, 2), rng.uniform(0, height, 2)
        colour = tuple(int(c) for c in rng.integers(0, 256, 3))
        draw.line([(xs[0], ys[0]), (xs[1], ys[1])], fill=colour, width=int(rng.integers(1, 5)))
    array = np.asarray(img).astype(np.float32) / 255
    patch = (slice(min(200, height // 4), min(600, height // 2)), slice(min(100, width // 4), min(500, width // 2)))
    array[patch] *= (0.75 + 0.25 * np.sin(x[patch] * 0.9))[..., None]
    array += rng.normal(0, 0.03, array.shape).astype(np.float32)
    buffer = io.BytesIO()
    Image.fromarray((np.clip(array, 0, 1) * 255).round().astype(np.uint8)).save(buffer, format="JPEG", quality=90)
    buffer.seek(0)
    with Image.open(buffer) as jpeg:
        assert jpeg.format == "JPEG"
        return jpeg.convert("RGB")


def pil_to_tensor(image) -> torch.Tensor:
    """A PIL RGB image as (3, H, W) float32 in [0, 1] (exact: uint8 / 255)."""
    return torch.from_numpy(np.asarray(image, dtype=np.float32) / 255).permute(2, 0, 1).contiguous()


def grey_levels(got: torch.Tensor, expected: torch.Tensor, std) -> torch.Tensor:
    """|got - expected| of normalised (..., 3, H, W) images in 8-bit grey levels (x 255 * std)."""
    return (got - expected).abs() * torch.tensor(std).view(3, 1, 1) * 255

