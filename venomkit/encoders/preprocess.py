"""Image preprocessing (resize, centre crop, normalise) written in torch so gradients reach pixels.

Libraries preprocess PIL images (open_clip: ``Resize(shorter side, bicubic) -> CenterCrop ->
ToTensor -> Normalize``; torchvision ImageNet models: ``Resize(256) -> CenterCrop(224)``).
An attack perturbs the float pixels *before* that pipeline, so the pipeline must be
differentiable. :class:`TorchPreprocess` reproduces it on (N, 3, H, W) float tensors in
[0, 1] with ``torch.nn.functional.interpolate(..., antialias=True)``, which follows PIL's
antialiased (support-scaled) filters when downsampling. Like PIL, it resizes one axis at a
time and clamps to [0, 1] after each pass (PIL's uint8 intermediate clips bicubic overshoot).
What remains is PIL's uint8 rounding (about one grey level, ~0.015 after CLIP normalisation);
``tests/encoders/test_preprocess.py`` bounds it against open_clip's own PIL transform.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import torch
import torch.nn.functional as F
from torch import nn

OPENAI_CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
OPENAI_CLIP_STD = (0.26862954, 0.26130258, 0.27577711)
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

_INTERPOLATIONS = ("bicubic", "bilinear")
_RESIZE_MODES = ("shortest", "squash", "longest")


def _pair(size: int | Sequence[int]) -> tuple[int, int]:
    if isinstance(size, int):
        return size, size
    size = tuple(int(s) for s in size)
    if len(size) == 1:
        return size[0], size[0]
    if len(size) != 2:
        raise ValueError(f"image size must be an int or (height, width), got {size}")
    return size  # type: ignore[return-value]


@dataclass
class PreprocessConfig:
    """What :class:`TorchPreprocess` does, in the terms of open_clip's ``PreprocessCfg``.

    Attributes:
        size: output (height, width) after cropping (the model's input size).
        resize_size: target of the resize step; ``None`` means ``size``. An int resizes the
            shorter side (``shortest``) or longer side (``longest``) to it, keeping the
            aspect ratio (torchvision ``Resize(int)`` rounding); ``squash`` resizes to
            exactly ``resize_size`` x ``resize_size``.
        mean, std: per-channel normalisation applied to [0, 1] pixels.
        interpolation: ``bicubic`` or ``bilinear`` (antialiased when downsampling).
        resize_mode: ``shortest`` (resize + centre crop), ``squash`` (resize to the size,
            ignoring the aspect ratio) or ``longest`` (resize + centre pad with ``fill``).
        fill: pad value for ``longest`` mode, in [0, 1] pixel units.
    """

    size: int | tuple[int, int] = 224
    resize_size: int | None = None
    mean: tuple[float, ...] = OPENAI_CLIP_MEAN
    std: tuple[float, ...] = OPENAI_CLIP_STD
    interpolation: str = "bicubic"
    resize_mode: str = "shortest"
    fill: float = 0.0

    def __post_init__(self) -> None:
        self.size = _pair(self.size)
        if min(self.size) < 1:
            raise ValueError(f"PreprocessConfig.size must be positive, got {self.size}")
        if self.resize_size is not None and int(self.resize_size) < 1:
            raise ValueError(f"PreprocessConfig.resize_size must be positive, got {self.resize_size}")
        if self.interpolation not in _INTERPOLATIONS:
            raise ValueError(f"PreprocessConfig.interpolation must be one of {_INTERPOLATIONS}, got {self.interpolation!r}")
        if self.resize_mode not in _RESIZE_MODES:
            raise ValueError(f"PreprocessConfig.resize_mode must be one of {_RESIZE_MODES}, got {self.resize_mode!r}")
        self.mean = tuple(float(m) for m in (self.mean if isinstance(self.mean, (list, tuple)) else (self.mean,) * 3))
        self.std = tuple(float(s) for s in (self.std if isinstance(self.std, (list, tuple)) else (self.std,) * 3))
        if len(self.mean) != 3 or len(self.std) != 3:
            raise ValueError(f"PreprocessConfig.mean/std need 3 values, got {self.mean} / {self.std}")
        if min(self.std) <= 0:
            raise ValueError(f"PreprocessConfig.std must be positive, got {self.std}")

    @classmethod
    def from_open_clip(cls, cfg: dict) -> "PreprocessConfig":
        """From an open_clip preprocess dict (``model.visual.preprocess_cfg`` / ``PreprocessCfg``)."""
        interpolation = cfg.get("interpolation", "bicubic")
        if interpolation not in _INTERPOLATIONS:
            interpolation = "bicubic"  # open_clip maps 'random' to bicubic at inference
        return cls(
            size=cfg.get("size", 224),
            mean=tuple(cfg.get("mean", OPENAI_CLIP_MEAN)),
            std=tuple(cfg.get("std", OPENAI_CLIP_STD)),
            interpolation=interpolation,
            resize_mode=cfg.get("resize_mode", "shortest"),
            fill=float(cfg.get("fill_color", 0)) / 255.0,
        )


def _resize(images: torch.Tensor, size: tuple[int, int], interpolation: str) -> torch.Tensor:
    """PIL-style resize: horizontal pass, clamp, vertical pass, clamp (antialiased).

    PIL resamples one axis at a time and stores the intermediate as uint8, which clips the
    bicubic overshoot between passes; doing the same in float matches PIL to about one grey
    level, where a single 2-D interpolate differs by up to ~9/255 at sharp edges.
    """
    height, width = images.shape[-2:]
    if width != size[1]:
        images = F.interpolate(images, size=(height, size[1]), mode=interpolation, align_corners=False, antialias=True)
        images = images.clamp(0.0, 1.0)
    if height != size[0]:
        images = F.interpolate(images, size=tuple(size), mode=interpolation, align_corners=False, antialias=True)
        images = images.clamp(0.0, 1.0)
    return images


def _keep_ratio_size(height: int, width: int, target: int, longest: bool) -> tuple[int, int]:
    """torchvision ``Resize(int)``: the chosen side becomes ``target``, the other is truncated."""
    if longest:
        scale = target / max(height, width)
        return max(1, round(height * scale)), max(1, round(width * scale))
    short, long = (height, width) if height <= width else (width, height)
    new_short, new_long = target, int(target * long / short)
    return (new_short, new_long) if height <= width else (new_long, new_short)


def center_crop_or_pad(images: torch.Tensor, size: tuple[int, int], fill: float = 0.0) -> torch.Tensor:
    """torchvision ``CenterCrop`` (pads with ``fill`` when the image is smaller), on (N, C, H, W)."""
    th, tw = size
    h, w = images.shape[-2:]
    if h < th or w < tw:
        pad_h, pad_w = max(th - h, 0), max(tw - w, 0)
        # torchvision pads (left, top, right, bottom) = (pw // 2, ph // 2, pw - pw // 2, ph - ph // 2)
        images = F.pad(images, (pad_w // 2, pad_w - pad_w // 2, pad_h // 2, pad_h - pad_h // 2), value=fill)
        h, w = images.shape[-2:]
    top = int(round((h - th) / 2.0))
    left = int(round((w - tw) / 2.0))
    return images[..., top : top + th, left : left + tw]


class TorchPreprocess(nn.Module):
    """Differentiable resize -> centre crop -> normalise.

    Input: (N, 3, H, W) float in [0, 1] (any H, W). Output: (N, 3, size[0], size[1]) float,
    normalised as ``(x - mean) / std``. Differentiable with respect to the input pixels.
    """

    def __init__(self, config: PreprocessConfig) -> None:
        super().__init__()
        self.config = config
        self.register_buffer("mean", torch.tensor(config.mean).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(config.std).view(1, 3, 1, 1), persistent=False)

    def resize_crop(self, images: torch.Tensor) -> torch.Tensor:
        """Geometric part only: (N, 3, H, W) [0, 1] -> (N, 3, *size) [0, 1]."""
        cfg = self.config
        if images.dim() != 4 or images.shape[1] != 3:
            raise ValueError(f"expected images of shape (N, 3, H, W), got {tuple(images.shape)}")
        images = images.float() if not images.is_floating_point() else images
        target = cfg.size
        if cfg.resize_mode == "squash":
            side = cfg.resize_size
            return _resize(images, (side, side) if side else target, cfg.interpolation)
        h, w = images.shape[-2:]
        longest = cfg.resize_mode == "longest"
        if cfg.resize_size is not None:
            side = int(cfg.resize_size)
        else:
            side = max(target) if longest else min(target)
        if cfg.resize_size is not None or (target[0] == target[1] and not longest):
            new = _keep_ratio_size(h, w, side, longest)
        else:
            # open_clip ResizeKeepRatio (longest mode, or non-square targets): divide both sides
            # by the min (shortest) or max (longest) of the per-side ratios, rounding
            ratio = max(h / target[0], w / target[1]) if longest else min(h / target[0], w / target[1])
            new = (max(1, round(h / ratio)), max(1, round(w / ratio)))
        images = _resize(images, new, cfg.interpolation)
        return center_crop_or_pad(images, target, cfg.fill)

    def normalize(self, images: torch.Tensor) -> torch.Tensor:
        return (images - self.mean.to(images.dtype)) / self.std.to(images.dtype)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.normalize(self.resize_crop(images))

    def extra_repr(self) -> str:
        c = self.config
        return f"size={c.size}, resize_size={c.resize_size}, mode={c.resize_mode}, interpolation={c.interpolation}"
