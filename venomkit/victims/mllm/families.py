"""What differs between vision-language model families, for the MLLM ranker (VenomRec, arXiv 2602.06409).

The ranker (:mod:`venomkit.victims.mllm.ranker`) is written once; a small adapter per family
says the four things that differ, and nothing else in the ranker branches on the family:

1. the image **placeholder** the prompt holds and the token the processor repeats for it,
2. how raw pixels become the vision tower's inputs (differentiable torch preprocessing of
   :mod:`venomkit.encoders.vlm_preprocess`) and how many language-model tokens each image gets,
3. the position ids of a token sequence (None: the model's own ``arange``),
4. the (rows, cols) grid the image tokens of each image form in the language-model sequence.

Families (chosen by ``model.config.model_type``):

- :class:`LlavaFamily` (``llava``: ``LlavaForConditionalGeneration`` + ``LlavaProcessor``):
  placeholder ``<image>``, expanded to ``(h / patch) * (w / patch)`` tokens (+ the CLS token
  kept by the ``full`` feature strategy) for every image: the processor's crop size is fixed.
  Pixels: ``CLIPImageProcessor`` in torch, (B, 3, h, w). Positions: 1-D ``arange``.
- :class:`Qwen2VLFamily` (``qwen2_vl``: ``Qwen2VLForConditionalGeneration`` +
  ``Qwen2VLProcessor``): placeholder ``<|vision_start|><|image_pad|><|vision_end|>``, the
  ``<|image_pad|>`` repeated ``grid_t * grid_h * grid_w / merge_size ** 2`` times per image,
  the grid following each photo's own size (``smart_resize``), as ``Qwen2VLProcessor`` does.
  Pixels: ``Qwen2VLImageProcessor`` in torch (``pixel_values`` rows of flattened patches +
  ``image_grid_thw``). Positions: the 3-D multimodal RoPE indices (3, B, T) of the model's
  own ``get_rope_index`` (text tokens advance by one; an image's tokens get (t, row, col)
  offsets from the position where it starts), computed for whole sequences so a KV-cached
  suffix reads the same positions as the plain forward.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch
from torch import nn

from venomkit.encoders.base import images_to
from venomkit.encoders.vlm_preprocess import Qwen2VLImagePreprocess, clip_image_preprocess


@dataclass
class ImageInputs:
    """B images made ready for one family's model.

    Attributes:
        model_kwargs: keyword inputs of the model's forward (``pixel_values``, and for
            Qwen2-VL ``image_grid_thw``), differentiable in the raw pixels.
        n_tokens: language-model placeholder tokens of each image (length B).
        grids: (rows, cols) the tokens of each image form, row-major (length B); a LLaVA
            CLS token kept by the ``full`` strategy is the one token outside the grid.
    """

    model_kwargs: dict[str, torch.Tensor]
    n_tokens: list[int]
    grids: list[tuple[int, int]] = field(default_factory=list)


def _check_images(images) -> None:
    if isinstance(images, torch.Tensor):
        if images.dim() != 4 or images.shape[1] != 3:
            raise ValueError(f"images must be (B, 3, H, W) in [0, 1] or a list of (3, H, W), got shape {tuple(images.shape)}")
    elif not all(isinstance(im, torch.Tensor) and im.dim() == 3 and im.shape[0] == 3 for im in images):
        raise ValueError("images must be (B, 3, H, W) in [0, 1] or a list of (3, H, W) tensors")


class VLMFamily:
    """The per-family adapter (see module docstring). Subclasses set ``model_types``."""

    model_types: tuple[str, ...] = ()

    def __init__(self, processor, config) -> None:
        self.processor = processor
        self.config = config
        self.image_token: str = processor.image_token
        self.image_token_id = int(processor.image_token_id)
        self.placeholder: str = self.image_token
        self.preprocess: nn.Module = nn.Identity()
        self._index_maps: dict[tuple[int, int], torch.Tensor] = {}

    @property
    def fixed_n_tokens(self) -> int | None:
        """Tokens per image when they do not depend on the photo's size, else None."""
        return None

    def image_inputs(self, images, device: torch.device, dtype: torch.dtype) -> ImageInputs:
        """(B, 3, H, W) or B x (3, H_i, W_i) in [0, 1] -> :class:`ImageInputs`, differentiably."""
        raise NotImplementedError

    def expand(self, text: str, n_tokens: int) -> str:
        """``text`` with its one image token repeated ``n_tokens`` times (what the processor does)."""
        return text.replace(self.image_token, self.image_token * n_tokens)

    def position_ids(self, core: nn.Module, input_ids: torch.Tensor, attention_mask: torch.Tensor, images: ImageInputs):
        """Position ids of whole right-padded sequences (prefix + suffix), or None for ``arange``."""
        return None

    def token_index_map(self, height: int, width: int) -> torch.Tensor:
        """(H, W) long: for each pixel of a (H, W) photo, the index (row * cols + col) of the
        image token on whose grid cell the pixel's centre lands after preprocessing, or -1
        for a pixel the model never sees (cropped away). What attention-guided patch edits
        use to turn a token mask into a pixel mask.

        Kept for the last few sizes asked (a batch's photos share one size, and every round of
        an attack asks again); read-only: callers index with it, never write to it.
        """
        key = (int(height), int(width))
        if key not in self._index_maps:
            if len(self._index_maps) >= 4:  # native photos: up to 16 MB each
                self._index_maps.pop(next(iter(self._index_maps)))
            self._index_maps[key] = self._compute_token_index_map(*key)
        return self._index_maps[key]

    def _compute_token_index_map(self, height: int, width: int) -> torch.Tensor:
        raise NotImplementedError


def _axis_tokens(centres_in_model: torch.Tensor, model_size: int, cell: int) -> torch.Tensor:
    """Cell index along one axis of pixel centres given in model-input pixel coordinates (-1 outside)."""
    cells = torch.div(centres_in_model + 0.5, cell, rounding_mode="floor").long()
    inside = (centres_in_model >= -0.5) & (centres_in_model < model_size - 0.5)
    return torch.where(inside, cells.clamp(0, model_size // cell - 1), torch.full_like(cells, -1))


def _grid_index(rows: torch.Tensor, cols: torch.Tensor, n_cols: int) -> torch.Tensor:
    index = rows.view(-1, 1) * n_cols + cols.view(1, -1)
    return torch.where((rows.view(-1, 1) < 0) | (cols.view(1, -1) < 0), torch.full_like(index, -1), index)


class LlavaFamily(VLMFamily):
    """LLaVA(-1.5): CLIP vision tower at a fixed crop size, one ``<image>`` expanded to its patches."""

    model_types = ("llava",)

    def __init__(self, processor, config) -> None:
        super().__init__(processor, config)
        self.preprocess = clip_image_preprocess(processor)
        height, width = self.preprocess.config.size
        patch = int(processor.patch_size)
        self.grid = (height // patch, width // patch)
        self._n_tokens = num_image_tokens(processor)
        self.grid_cell = patch

    @property
    def fixed_n_tokens(self) -> int:
        return self._n_tokens

    def image_inputs(self, images, device: torch.device, dtype: torch.dtype) -> ImageInputs:
        _check_images(images)
        pixels = self.preprocess.to(device)(images_to(images, device, torch.float32)).to(dtype)
        n = len(pixels)
        return ImageInputs({"pixel_values": pixels}, [self._n_tokens] * n, [self.grid] * n)


    def _compute_token_index_map(self, height: int, width: int) -> torch.Tensor:
        """The resize and crop are pushed through on coordinate ramps (cubic resizing keeps a
        ramp linear), giving the photo coordinate each model pixel samples; photo pixels are
        then placed on the model grid by interpolating that monotone map, per axis."""
        patch = self.grid_cell
        ramps = torch.zeros(1, 3, height, width, dtype=torch.float64)  # in [0, 1]: the resize clamps to it
        ramps[0, 0] = torch.linspace(0, 1, height, dtype=torch.float64).view(-1, 1)
        ramps[0, 1] = torch.linspace(0, 1, width, dtype=torch.float64).view(1, -1)
        sampled = self.preprocess.resize_crop(ramps)[0]  # (3, h, w): photo coordinates per model pixel, scaled
        sampled[0] *= max(height - 1, 1)
        sampled[1] *= max(width - 1, 1)
        model_h, model_w = sampled.shape[-2:]
        rows = _axis_tokens(_invert(sampled[0].mean(1), height), model_h, patch)
        cols = _axis_tokens(_invert(sampled[1].mean(0), width), model_w, patch)
        return _grid_index(rows, cols, model_w // patch)


def _invert(source: torch.Tensor, n: int) -> torch.Tensor:
    """Model coordinates of photo pixels 0..n-1, from the photo coordinate (m,) each model pixel samples (increasing)."""
    source = source.double()
    m = source.numel()
    step = (source[-1] - source[0]) / max(m - 1, 1)
    model = torch.arange(m, dtype=torch.float64)
    photo = torch.arange(n, dtype=torch.float64)
    inside = torch.from_numpy(np.interp(photo.numpy(), source.numpy(), model.numpy()))
    below = (photo - source[0]) / step  # linear extension outside the sampled range
    above = (m - 1) + (photo - source[-1]) / step
    return torch.where(photo < source[0], below, torch.where(photo > source[-1], above, inside))


def num_image_tokens(processor) -> int:
    """How many placeholder tokens ``LlavaProcessor`` puts in place of one ``<image>``."""
    height, width = clip_image_preprocess(processor).config.size
    n = (height // processor.patch_size) * (width // processor.patch_size)
    n += int(getattr(processor, "num_additional_image_tokens", 0) or 0)
    if getattr(processor, "vision_feature_select_strategy", None) == "default":
        n -= 1
    return n


class Qwen2VLFamily(VLMFamily):
    """Qwen2-VL: native-resolution patches, merged ``merge_size x merge_size``, 3-D multimodal RoPE."""

    model_types = ("qwen2_vl",)

    def __init__(self, processor, config) -> None:
        super().__init__(processor, config)
        tokenizer = processor.tokenizer
        start = tokenizer.convert_ids_to_tokens(int(config.vision_start_token_id))
        end = tokenizer.convert_ids_to_tokens(int(config.vision_end_token_id))
        if self.image_token_id != int(config.image_token_id):
            raise ValueError(
                f"processor image token id {self.image_token_id} != model config image_token_id {config.image_token_id}"
            )
        self.placeholder = f"{start}{self.image_token}{end}"
        self.preprocess = Qwen2VLImagePreprocess.from_processor(processor)
        self.merge = int(self.preprocess.merge_size)
        if int(config.vision_config.spatial_merge_size) != self.merge:
            raise ValueError(
                f"image processor merge_size {self.merge} != vision_config.spatial_merge_size {config.vision_config.spatial_merge_size}"
            )

    def image_inputs(self, images, device: torch.device, dtype: torch.dtype) -> ImageInputs:
        _check_images(images)
        out = self.preprocess.to(device)(images_to(images, device, torch.float32))
        grid_thw = out["image_grid_thw"]
        thw = grid_thw.tolist()
        n_tokens = [t * h * w // self.merge**2 for t, h, w in thw]
        grids = [(h // self.merge, w // self.merge) for _, h, w in thw]
        return ImageInputs({"pixel_values": out["pixel_values"].to(dtype), "image_grid_thw": grid_thw}, n_tokens, grids)

    def _compute_token_index_map(self, height: int, width: int) -> torch.Tensor:
        """A plain resize to :func:`smart_resize`'s size, no crop: merged cells of ``patch * merge`` pixels."""
        model_h, model_w = self.preprocess.resized_size(height, width)
        cell = self.preprocess.patch_size * self.merge
        rows = _axis_tokens((torch.arange(height) + 0.5) * model_h / height - 0.5, model_h, cell)
        cols = _axis_tokens((torch.arange(width) + 0.5) * model_w / width - 0.5, model_w, cell)
        return _grid_index(rows, cols, model_w // cell)

    def position_ids(self, core: nn.Module, input_ids: torch.Tensor, attention_mask: torch.Tensor, images: ImageInputs):
        """(3, B, T) multimodal RoPE indices from the model's ``get_rope_index`` (padding: 0)."""
        token_types = (input_ids == self.image_token_id).to(torch.int)  # text 0, image 1 (the processor's mm_token_type_ids)
        positions, _ = core.get_rope_index(
            input_ids,
            mm_token_type_ids=token_types,
            image_grid_thw=images.model_kwargs["image_grid_thw"],
            attention_mask=attention_mask,
        )
        return positions


FAMILIES: tuple[type[VLMFamily], ...] = (LlavaFamily, Qwen2VLFamily)


def family_for(model: nn.Module, processor) -> VLMFamily:
    """The adapter of ``model`` (by ``model.config.model_type``); ValueError for another family."""
    config = model.config
    model_type = getattr(config, "model_type", None)
    for family in FAMILIES:
        if model_type in family.model_types:
            return family(processor, config)
    known = sorted(t for f in FAMILIES for t in f.model_types)
    raise ValueError(f"MLLMRanker supports model_type {known}, got {model_type!r} ({type(model).__name__})")

