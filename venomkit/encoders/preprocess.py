"""Image preprocessing (resize, centre crop, normalise) written in torch so gradients reach pixels.

Libraries preprocess PIL images (open_clip: ``Resize(shorter side, bicubic) -> CenterCrop ->
ToTensor -> Normalize``; torchvision weights' ``transforms()``: ``ImageClassification``, e.g.
``Resize(232 or 256, bilinear) -> CenterCrop(224)`` with ImageNet statistics; transformers'
``CLIPImageProcessor``: the same steps with floor crop offsets, see
:mod:`venomkit.encoders.vlm_preprocess`). An attack perturbs the float pixels *before* that
pipeline, so the pipeline must be differentiable. :class:`TorchPreprocess` reproduces it on
(N, 3, H, W) float tensors in [0, 1] (or lists of (3, H_i, W_i) tensors) with
``torch.nn.functional.interpolate(..., antialias=True)``, whose antialiased bicubic (a=-0.5)
and bilinear filters are PIL's support-scaled filters, at any scale factor. Like PIL, it
resizes one axis at a time (width first) and clamps to [0, 1] after each pass (PIL's uint8
intermediate clips bicubic overshoot). What remains is PIL's uint8 rounding after each pass:
below one grey level. Measured on 1166 x 1750 (W x H) JPEG photos against the library
transform on the PIL image (``tests/encoders/test_native_photo_preprocessing.py``; pixels
after normalisation, also in 8-bit grey levels = difference x 255 x std; random weights):

========================================  ==============  ===============  ===========  ==========
reference                                 max abs diff    mean abs diff    max levels   cosine
========================================  ==============  ===============  ===========  ==========
open_clip zoo:toyshop-clip (64 px, 18x)   0.0106          0.0037           0.70         0.9999996
open_clip ViT-B-32 (224 px)               0.0130          0.0039           0.89         0.9999985
torchvision ResNet18 IMAGENET1K_V1 (256)  0.0156          0.0046           0.89         0.9999997
torchvision ResNet50 IMAGENET1K_V2 (232)  0.0146          0.0045           0.84         0.9999998
========================================  ==============  ===============  ===========  ==========

The tests bound max <= 1.1 and mean <= 0.35 grey levels and cosine >= 0.999 per image.
A 64 x 64 image into a 64 px model is not resized or cropped at all: the identity is exact.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from venomkit.encoders.base import Images, map_by_size

OPENAI_CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
OPENAI_CLIP_STD = (0.26862954, 0.26130258, 0.27577711)
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

_INTERPOLATIONS = ("bicubic", "bilinear")
_RESIZE_MODES = ("shortest", "squash", "longest")
_CROP_ROUNDING = ("round", "floor")


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
        crop_rounding: centre-crop offset ``(H - h) / 2``: ``round`` (Python's round, as
            torchvision ``CenterCrop`` and open_clip) or ``floor`` (transformers' image
            processors).
    """

    size: int | tuple[int, int] = 224
    resize_size: int | None = None
    mean: tuple[float, ...] = OPENAI_CLIP_MEAN
    std: tuple[float, ...] = OPENAI_CLIP_STD
    interpolation: str = "bicubic"
    resize_mode: str = "shortest"
    fill: float = 0.0
    crop_rounding: str = "round"

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
        if self.crop_rounding not in _CROP_ROUNDING:
            raise ValueError(f"PreprocessConfig.crop_rounding must be one of {_CROP_ROUNDING}, got {self.crop_rounding!r}")
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
        size = _pair(cfg.get("size", 224))
        if cfg.get("resize_mode", "shortest") == "shortest" and size[0] != size[1]:
            interpolation = "bicubic"  # open_clip's ResizeKeepRatio for non-square targets ignores it
        return cls(
            size=cfg.get("size", 224),
            mean=tuple(cfg.get("mean", OPENAI_CLIP_MEAN)),
            std=tuple(cfg.get("std", OPENAI_CLIP_STD)),
            interpolation=interpolation,
            resize_mode=cfg.get("resize_mode", "shortest"),
            fill=float(cfg.get("fill_color", 0)) / 255.0,
        )

    @classmethod
    def from_torchvision(cls, transforms: nn.Module) -> "PreprocessConfig":
        """From a torchvision weights preset, ``Weights.transforms()`` (``ImageClassification``).

        ``ResNet50_Weights.IMAGENET1K_V2.transforms()`` gives ``size=224, resize_size=232,
        interpolation="bilinear"`` and the ImageNet statistics; building the preset needs no
        weights file. On a PIL image torchvision always antialiases (PIL does), as here.
        """
        for name in ("crop_size", "resize_size", "mean", "std", "interpolation"):
            if not hasattr(transforms, name):
                raise ValueError(f"{type(transforms).__name__} is not a torchvision ImageClassification preset (no {name!r})")
        crop, resize = list(transforms.crop_size), list(transforms.resize_size)
        if len(resize) != 1:
            raise ValueError(f"torchvision preset resize_size must be one int (shorter side), got {resize}")
        interpolation = getattr(transforms.interpolation, "value", transforms.interpolation)
        return cls(
            size=crop[0] if len(crop) == 1 else tuple(crop),
            resize_size=int(resize[0]),
            mean=tuple(transforms.mean),
            std=tuple(transforms.std),
            interpolation=str(interpolation),
        )


def resize_images(images: torch.Tensor, size: tuple[int, int], interpolation: str) -> torch.Tensor:
    """PIL-style resize of (N, C, H, W) [0, 1] to ``size`` = (h, w): horizontal pass, clamp, vertical pass, clamp.

    Antialiased ``F.interpolate`` (PIL's filters, any scale factor). PIL resamples one axis
    at a time and stores the intermediate as uint8, which clips the bicubic overshoot between
    passes; doing the same in float matches PIL to one grey level (PIL's rounding), where a
    single 2-D interpolate differs by up to ~9/255 at sharp edges. The same holds for
    torchvision's native uint8 CPU resize (what transformers' torchvision-backend processors
    run on CPU), which reimplements PIL's. An axis already at its size is left untouched.
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


def center_crop_or_pad(images: torch.Tensor, size: tuple[int, int], fill: float = 0.0, rounding: str = "round") -> torch.Tensor:
    """torchvision ``CenterCrop`` (pads with ``fill`` when the image is smaller), on (N, C, H, W).

    ``rounding="round"``: offsets ``round((H - h) / 2)`` (torchvision, open_clip);
    ``"floor"``: ``(H - h) // 2`` (transformers' ``center_crop``). Padding is split
    ``(d // 2, d - d // 2)`` (left/top first) in both libraries.
    """
    th, tw = size
    h, w = images.shape[-2:]
    if h < th or w < tw:
        pad_h, pad_w = max(th - h, 0), max(tw - w, 0)
        # torchvision pads (left, top, right, bottom) = (pw // 2, ph // 2, pw - pw // 2, ph - ph // 2)
        images = F.pad(images, (pad_w // 2, pad_w - pad_w // 2, pad_h // 2, pad_h - pad_h // 2), value=fill)
        h, w = images.shape[-2:]
    if rounding == "floor":
        top, left = (h - th) // 2, (w - tw) // 2
    else:
        top, left = int(round((h - th) / 2.0)), int(round((w - tw) / 2.0))
    return images[..., top : top + th, left : left + tw]


class TorchPreprocess(nn.Module):
    """Differentiable resize -> centre crop -> normalise.

    Input: (N, 3, H, W) float in [0, 1] (any H, W), or a sequence of N (3, H_i, W_i) tensors
    (photos at their own sizes; each size group is resized in one call). Output:
    (N, 3, size[0], size[1]) float, normalised as ``(x - mean) / std``, in input order.
    Differentiable with respect to every input pixel.
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
            return resize_images(images, (side, side) if side else target, cfg.interpolation)
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
        images = resize_images(images, new, cfg.interpolation)
        return center_crop_or_pad(images, target, cfg.fill, cfg.crop_rounding)

    def normalize(self, images: torch.Tensor) -> torch.Tensor:
        return (images - self.mean.to(images.device, images.dtype)) / self.std.to(images.device, images.dtype)

    def forward(self, images: Images) -> torch.Tensor:
        return map_by_size(lambda batch: self.normalize(self.resize_crop(batch)), images)

    def extra_repr(self) -> str:
        c = self.config
        return (
            f"size={c.size}, resize_size={c.resize_size}, mode={c.resize_mode}, interpolation={c.interpolation}, "
            f"crop_rounding={c.crop_rounding}"
        )
