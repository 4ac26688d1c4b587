"""The image preprocessing of vision-language processors, in differentiable torch.

A multimodal-LLM victim (LLaVA, Qwen2-VL) sees a photo through its Hugging Face image
processor. An attack perturbs the native float pixels, so the processor's steps are redone
here in torch, reading every setting from the processor object itself, and gradients reach
the (3, H, W) photo at its own size.

- :func:`clip_image_preprocess`: ``CLIPImageProcessor`` as LLaVA-1.5 uses it
  (``llava-hf/llava-1.5-7b-hf``: resize the shortest edge to 336 with bicubic, centre crop
  336 x 336, rescale by 1/255, normalise with the OpenAI CLIP mean/std), and the zoo VLM's
  (``zoo:toyshop-vlm``: the same at 64 px).
- :class:`Qwen2VLImagePreprocess`: ``Qwen2VLImageProcessor``: :func:`smart_resize` (height
  and width rounded to multiples of ``patch_size * merge_size`` = 28 inside
  [min_pixels, max_pixels], keeping the aspect ratio), bicubic resize, rescale, normalise,
  then :func:`qwen2vl_patchify` into ``pixel_values`` (sum of grid_t * grid_h * grid_w rows,
  channels * temporal_patch_size * patch_size ** 2 columns) and ``image_grid_thw``.

Reference implementation: transformers 5.24, whose default classes (what ``AutoProcessor`` /
``AutoImageProcessor`` and ``CLIPImageProcessor(...)`` / ``Qwen2VLImageProcessor(...)`` give)
are the torchvision-backend processors (``image_processor.backend == "torchvision"``). On the
CPU their bicubic resize of uint8 images is torchvision's native uint8 kernel, a port of
PIL's; the ``...Pil`` classes call PIL itself. Both agree with the torch path here to one
grey level, the uint8 rounding of the processors' resize passes. Crop offsets are
transformers' floor ``(H - h) // 2`` (torchvision's ``CenterCrop`` rounds instead).
Measured on 1166 x 1750 (W x H) JPEG photos, ``pixel_values`` after normalisation, also in
8-bit grey levels (difference x 255 x std); ``tests/encoders/test_vlm_preprocess.py`` bounds
max <= 1.1 and mean <= 0.35 grey levels against both backends:

=======================================  ==============  ===============  ===========
processor                                 max abs diff    mean abs diff    max levels
=======================================  ==============  ===============  ===========
LLaVA-1.5 ``CLIPImageProcessor`` 336 px   0.0143          0.0039           0.96
zoo:toyshop-vlm processor, 64 px (18x)    0.0106          0.0037           0.70
``Qwen2VLImageProcessor`` defaults        0.0156          0.0043           1.05
=======================================  ==============  ===============  ===========

(Qwen2-VL: 1750 x 1166 -> 1204 x 812, ``image_grid_thw`` [1, 86, 58]; its 1.44x bicubic
downscale lets the processor's intermediate rounding add up to just over one level.) The
Qwen2-VL ``image_grid_thw`` and the patch layout are identical (exact on unresized input).
On a CUDA device transformers' torchvision backend resizes uint8 images in float in one 2-D
pass (no intermediate rounding or clamp), which differs from its own CPU and PIL results at
sharp edges (that float path computed on this photo: max 5 grey levels at 504 x 336, 8 at
1204 x 812, mean 0.1-0.2); this module follows the CPU/PIL result.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import nn

from venomkit.encoders.base import Images, group_by_size
from venomkit.encoders.preprocess import OPENAI_CLIP_MEAN, OPENAI_CLIP_STD, PreprocessConfig, TorchPreprocess, resize_images

# PIL.Image.Resampling values transformers stores as ``resample``
_RESAMPLE = {2: "bilinear", 3: "bicubic"}


def _image_processor(processor):
    """The image processor of a processor (``LlavaProcessor.image_processor``) or itself."""
    return getattr(processor, "image_processor", None) or processor


def _size_field(size, key: str) -> int | None:
    # Image processors hold sizes as dicts or SizeDicts whose unset fields are None.
    if size is None:
        return None
    value = size.get(key) if hasattr(size, "get") else getattr(size, key, None)
    return int(value) if value is not None else None


def _interpolation(resample) -> str:
    """``bicubic``/``bilinear`` from a PIL resampling int, ``PILImageResampling`` or torchvision mode."""
    value = getattr(resample, "value", resample)
    if isinstance(value, str) and value in _RESAMPLE.values():
        return value
    try:
        return _RESAMPLE[int(value)]
    except (KeyError, TypeError, ValueError):
        raise ValueError(f"image processor resample={resample!r}: only bilinear (2) and bicubic (3) are supported") from None


def _pixel_statistics(ip) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """(mean, std) that map [0, 1] pixels to what the processor computes from uint8 ones.

    The processor computes ``(u * r - mean) / std`` from uint8 values ``u = 255 x`` (``r`` =
    ``rescale_factor`` with ``do_rescale``, else 1; mean 0 and std 1 without
    ``do_normalize``), which is ``(x - mean / s) / (std / s)`` with ``s = 255 r``.
    """
    scale = 255.0 * (float(ip.rescale_factor) if getattr(ip, "do_rescale", True) else 1.0)
    if getattr(ip, "do_normalize", True):
        mean = [float(m) for m in _triple(ip.image_mean)]
        std = [float(s) for s in _triple(ip.image_std)]
    else:
        mean, std = [0.0] * 3, [1.0] * 3
    return tuple(m / scale for m in mean), tuple(s / scale for s in std)


def _triple(value) -> list[float]:
    return list(value) if isinstance(value, (list, tuple)) else [value] * 3


def clip_processor_config(processor) -> PreprocessConfig:
    """The :class:`PreprocessConfig` of a ``CLIPImageProcessor`` (or a processor holding one).

    Supported settings: resize of the shortest edge then centre crop (LLaVA-1.5:
    ``size={"shortest_edge": 336}``, ``crop_size={"height": 336, "width": 336}``), or a
    resize to ``size={"height", "width"}`` without a crop (or with a crop of that same size).
    Output size: the crop size. ValueError naming the setting for anything else.
    """
    ip = _image_processor(processor)
    size, crop = getattr(ip, "size", None), getattr(ip, "crop_size", None)
    shortest = _size_field(size, "shortest_edge")
    height, width = _size_field(size, "height"), _size_field(size, "width")
    do_crop = bool(getattr(ip, "do_center_crop", False)) and _size_field(crop, "height") is not None
    crop_hw = (_size_field(crop, "height"), _size_field(crop, "width")) if do_crop else None
    mean, std = _pixel_statistics(ip)
    common = dict(mean=mean, std=std, interpolation=_interpolation(getattr(ip, "resample", 3)), crop_rounding="floor")
    if not getattr(ip, "do_resize", True):
        raise ValueError(f"{type(ip).__name__}: do_resize=False is not supported (the vision tower needs a fixed size)")
    if shortest and not _size_field(size, "longest_edge"):
        if crop_hw is None:
            raise ValueError(f"{type(ip).__name__}: size={{'shortest_edge': {shortest}}} without a centre crop gives no fixed size")
        return PreprocessConfig(size=crop_hw, resize_size=shortest, resize_mode="shortest", **common)
    if height and width and (crop_hw is None or crop_hw == (height, width)):
        return PreprocessConfig(size=(height, width), resize_mode="squash", **common)
    raise ValueError(f"{type(ip).__name__}: size={dict(size) if size else size}, crop_size={crop_hw} is not a supported combination")


def clip_image_preprocess(processor) -> TorchPreprocess:
    """Differentiable ``CLIPImageProcessor``: (N, 3, H, W) or [(3, H_i, W_i)] in [0, 1] -> (N, 3, h, w).

    ``processor`` is a ``LlavaProcessor`` (or any processor with ``image_processor``) or the
    image processor itself. The output equals the processor's ``pixel_values`` on the same
    photo as a PIL image to one grey level (module docstring); differentiable in the pixels.
    """
    return TorchPreprocess(clip_processor_config(processor))


def smart_resize(
    height: int, width: int, factor: int = 28, min_pixels: int = 56 * 56, max_pixels: int = 28 * 28 * 1280
) -> tuple[int, int]:
    """Qwen2-VL's output (height, width) for an input of (height, width) pixels.

    Both sides are multiples of ``factor`` (``patch_size * merge_size``), the area stays in
    [min_pixels, max_pixels] and the aspect ratio is kept as closely as that allows:
    ``round(side / factor) * factor``; if the area is too large both sides are divided by
    ``sqrt(area / max_pixels)`` and floored to multiples of ``factor`` (at least ``factor``);
    too small: multiplied by ``sqrt(min_pixels / area)`` and ceiled. ValueError for an aspect
    ratio above 200. Same arithmetic as transformers' ``smart_resize`` (tested on a grid).
    """
    if min(height, width) < 1:
        raise ValueError(f"smart_resize: image sides must be positive, got {height} x {width}")
    if max(height, width) / min(height, width) > 200:
        raise ValueError(f"absolute aspect ratio must be smaller than 200, got {max(height, width) / min(height, width)}")
    h_bar, w_bar = round(height / factor) * factor, round(width / factor) * factor
    if h_bar * w_bar > max_pixels:
        beta = math.sqrt((height * width) / max_pixels)
        h_bar = max(factor, math.floor(height / beta / factor) * factor)
        w_bar = max(factor, math.floor(width / beta / factor) * factor)
    elif h_bar * w_bar < min_pixels:
        beta = math.sqrt(min_pixels / (height * width))
        h_bar = math.ceil(height * beta / factor) * factor
        w_bar = math.ceil(width * beta / factor) * factor
    return h_bar, w_bar


def qwen2vl_patchify(images: torch.Tensor, patch_size: int, merge_size: int, temporal_patch_size: int) -> torch.Tensor:
    """(N, C, H, W) normalised images -> (N, grid_h * grid_w, C * temporal_patch_size * patch_size ** 2).

    transformers' patch order: rows run over merge windows (``grid_h / merge`` then
    ``grid_w / merge``), and inside each window over its ``merge x merge`` patches row-major;
    a row holds channel, then the temporal copy (a still image is repeated
    ``temporal_patch_size`` times), then the patch's pixels row-major. H and W must be
    multiples of ``patch_size * merge_size``.
    """
    n, channels, height, width = images.shape
    factor = patch_size * merge_size
    if height % factor or width % factor:
        raise ValueError(f"qwen2vl_patchify: image size {height} x {width} is not a multiple of {factor}")
    grid_h, grid_w = height // patch_size, width // patch_size
    patches = images.reshape(
        n, channels, grid_h // merge_size, merge_size, patch_size, grid_w // merge_size, merge_size, patch_size
    )
    # (N, grid_h/merge, grid_w/merge, merge, merge, C, patch, patch)
    patches = patches.permute(0, 2, 5, 3, 6, 1, 4, 7)
    patches = patches.unsqueeze(6).expand(-1, -1, -1, -1, -1, -1, temporal_patch_size, -1, -1)
    return patches.reshape(n, grid_h * grid_w, channels * temporal_patch_size * patch_size * patch_size)


class Qwen2VLImagePreprocess(nn.Module):
    """Differentiable ``Qwen2VLImageProcessor``: photos at any sizes -> ``pixel_values`` + ``image_grid_thw``.

    Steps, per image of (H, W): :func:`smart_resize` to (h, w) with ``factor = patch_size *
    merge_size``; antialiased bicubic (or bilinear) resize, PIL-style
    (:func:`~venomkit.encoders.preprocess.resize_images`); normalise with ``mean``/``std``
    (for [0, 1] pixels, the processor's rescale folded in); :func:`qwen2vl_patchify`.
    Input: an (N, 3, H, W) tensor or a sequence of N (3, H_i, W_i) tensors in [0, 1].
    Output: ``{"pixel_values": (sum_i h_i * w_i / patch_size ** 2, 3 * temporal_patch_size *
    patch_size ** 2) float, "image_grid_thw": (N, 3) int64 rows [1, h_i / patch_size,
    w_i / patch_size]}``, images in input order, as the processor returns them. Differentiable
    with respect to every input pixel.
    """

    def __init__(
        self,
        *,
        patch_size: int = 14,
        temporal_patch_size: int = 2,
        merge_size: int = 2,
        min_pixels: int = 56 * 56,
        max_pixels: int = 28 * 28 * 1280,
        mean: Sequence[float] = OPENAI_CLIP_MEAN,
        std: Sequence[float] = OPENAI_CLIP_STD,
        interpolation: str = "bicubic",
    ) -> None:
        super().__init__()
        for name, value in (("patch_size", patch_size), ("temporal_patch_size", temporal_patch_size), ("merge_size", merge_size)):
            if int(value) < 1:
                raise ValueError(f"Qwen2VLImagePreprocess.{name} must be >= 1, got {value}")
        if not 1 <= min_pixels <= max_pixels:
            raise ValueError(f"Qwen2VLImagePreprocess needs 1 <= min_pixels <= max_pixels, got {min_pixels}, {max_pixels}")
        # validates mean / std / interpolation with the preprocessing's own checks
        checked = PreprocessConfig(mean=tuple(mean), std=tuple(std), interpolation=interpolation)
        self.patch_size, self.temporal_patch_size, self.merge_size = int(patch_size), int(temporal_patch_size), int(merge_size)
        self.min_pixels, self.max_pixels = int(min_pixels), int(max_pixels)
        self.interpolation = checked.interpolation
        self.register_buffer("mean", torch.tensor(checked.mean).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(checked.std).view(1, 3, 1, 1), persistent=False)

    @classmethod
    def from_processor(cls, processor) -> "Qwen2VLImagePreprocess":
        """Read the settings of a ``Qwen2VLImageProcessor`` (or a ``Qwen2VLProcessor`` holding one)."""
        ip = _image_processor(processor)
        if not getattr(ip, "do_resize", True):
            raise ValueError(f"{type(ip).__name__}: do_resize=False is not supported")
        size = getattr(ip, "size", None)
        min_pixels = _size_field(size, "shortest_edge") or getattr(ip, "min_pixels", None)
        max_pixels = _size_field(size, "longest_edge") or getattr(ip, "max_pixels", None)
        if not min_pixels or not max_pixels:
            raise ValueError(f"{type(ip).__name__}: size needs 'shortest_edge' (min_pixels) and 'longest_edge' (max_pixels), got {size}")
        mean, std = _pixel_statistics(ip)
        return cls(
            patch_size=int(ip.patch_size),
            temporal_patch_size=int(ip.temporal_patch_size),
            merge_size=int(ip.merge_size),
            min_pixels=int(min_pixels),
            max_pixels=int(max_pixels),
            mean=mean,
            std=std,
            interpolation=_interpolation(getattr(ip, "resample", 3)),
        )

    def resized_size(self, height: int, width: int) -> tuple[int, int]:
        """(h, w) an (height, width) image is resized to (:func:`smart_resize`)."""
        return smart_resize(height, width, self.patch_size * self.merge_size, self.min_pixels, self.max_pixels)

    def grid_thw(self, height: int, width: int) -> tuple[int, int, int]:
        """``image_grid_thw`` row of an (height, width) image: (1, h / patch_size, w / patch_size)."""
        h, w = self.resized_size(height, width)
        return 1, h // self.patch_size, w // self.patch_size

    def forward(self, images: Images) -> dict[str, torch.Tensor]:
        groups = group_by_size(images)
        n = sum(len(idx) for idx, _ in groups)
        rows: list[torch.Tensor | None] = [None] * n
        grids: list[tuple[int, int, int] | None] = [None] * n
        for idx, batch in groups:
            batch = batch if batch.is_floating_point() else batch.float()
            height, width = batch.shape[-2:]
            size = self.resized_size(height, width)
            x = resize_images(batch, size, self.interpolation)
            x = (x - self.mean.to(x.device, x.dtype)) / self.std.to(x.device, x.dtype)
            patches = qwen2vl_patchify(x, self.patch_size, self.merge_size, self.temporal_patch_size)
            for k, i in enumerate(idx):
                rows[i] = patches[k]
                grids[i] = self.grid_thw(height, width)
        device = rows[0].device
        return {"pixel_values": torch.cat(rows), "image_grid_thw": torch.tensor(grids, dtype=torch.long, device=device)}

    def extra_repr(self) -> str:
        return (
            f"patch_size={self.patch_size}, temporal_patch_size={self.temporal_patch_size}, merge_size={self.merge_size}, "
            f"min_pixels={self.min_pixels}, max_pixels={self.max_pixels}, interpolation={self.interpolation}"
        )
