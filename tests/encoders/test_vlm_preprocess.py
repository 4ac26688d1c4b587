"""LLaVA's CLIPImageProcessor and Qwen2VLImageProcessor redone in torch, against transformers.

The reference is the processor called on the PIL photo (1166 x 1750, W x H, a real JPEG),
both the default torchvision-backend class (what ``AutoImageProcessor`` gives) and the PIL
backend. Tolerances, measured, in 8-bit grey levels (normalised difference x 255 x std):
max <= 1.1 (measured: LLaVA 336 px 0.96, toyshop-vlm 64 px 0.70, Qwen2-VL 1.05), mean <= 0.35
(measured 0.25-0.30). Geometry (output sizes, crop offsets, ``image_grid_thw``, patch order)
is exact.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from photo_helpers import grey_levels, pil_to_tensor
from PIL import Image

from venomkit.encoders.preprocess import OPENAI_CLIP_MEAN, OPENAI_CLIP_STD
from venomkit.encoders.vlm_preprocess import (
    Qwen2VLImagePreprocess,
    clip_image_preprocess,
    clip_processor_config,
    qwen2vl_patchify,
    smart_resize,
)

MAX_LEVELS, MEAN_LEVELS = 1.1, 0.35
ZOO_VLM = "zoo:toyshop-vlm"


def _llava_clip_processor(backend: str = "torchvision", side: int = 336, crop: int | None = None):
    """LLaVA-1.5's image processor settings (llava-hf/llava-1.5-7b-hf), built in code."""
    from transformers import CLIPImageProcessor
    from transformers.models.clip.image_processing_pil_clip import CLIPImageProcessorPil

    cls = CLIPImageProcessor if backend == "torchvision" else CLIPImageProcessorPil
    crop = crop or side
    return cls(
        size={"shortest_edge": side},
        crop_size={"height": crop, "width": crop},
        resample=3,
        image_mean=list(OPENAI_CLIP_MEAN),
        image_std=list(OPENAI_CLIP_STD),
    )


def _qwen2vl_processor(backend: str = "torchvision", **kwargs):
    from transformers import Qwen2VLImageProcessor
    from transformers.models.qwen2_vl.image_processing_pil_qwen2_vl import Qwen2VLImageProcessorPil

    return (Qwen2VLImageProcessor if backend == "torchvision" else Qwen2VLImageProcessorPil)(**kwargs)


def _assert_levels(got: torch.Tensor, expected: torch.Tensor, std) -> None:
    assert got.shape == expected.shape
    levels = grey_levels(got, expected, std)
    assert levels.max() <= MAX_LEVELS, f"max {levels.max():.3f} grey levels"
    assert levels.mean() <= MEAN_LEVELS, f"mean {levels.mean():.3f} grey levels"


def _qwen_levels(pixel_values: torch.Tensor, patch_size: int = 14, temporal: int = 2) -> torch.Tensor:
    # a pixel_values row is (channel, temporal, patch, patch): per-column std for grey levels
    return torch.tensor(OPENAI_CLIP_STD).repeat_interleave(temporal * patch_size * patch_size) * pixel_values.abs() * 255


@pytest.mark.parametrize("backend", ["torchvision", "pil"])
def test_llava_clip_processor_on_a_large_photo(large_photo, backend):
    pil, x = large_photo
    processor = _llava_clip_processor(backend)
    expected = processor(pil, return_tensors="pt").pixel_values
    pre = clip_image_preprocess(processor)
    assert pre.config.size == (336, 336) and pre.config.resize_size == 336 and pre.config.crop_rounding == "floor"
    _assert_levels(pre(x), expected, OPENAI_CLIP_STD)


def test_zoo_vlm_processor_on_a_large_photo(large_photo):
    from transformers import AutoProcessor

    from venomkit.models.resolve import resolve_model

    pil, x = large_photo
    processor = AutoProcessor.from_pretrained(resolve_model(ZOO_VLM, what="vision-language model"))
    assert processor.image_processor.backend == "torchvision"  # what AutoProcessor gives by default
    expected = processor.image_processor(pil, return_tensors="pt").pixel_values
    pre = clip_image_preprocess(processor)
    assert pre.config.size == (64, 64)
    _assert_levels(pre(x), expected, OPENAI_CLIP_STD)
    identity = torch.rand(2, 3, 64, 64)  # toyshop images pass through resize and crop untouched
    assert torch.equal(pre.resize_crop(identity), identity)


def test_clip_processor_crop_offsets_are_floored():
    """transformers crops at (W - w) // 2 where torchvision rounds: a 16 x 31 image crops columns 7..22."""
    processor = _llava_clip_processor(side=16)
    image = np.random.default_rng(0).integers(0, 256, (16, 31, 3), dtype=np.uint8)
    expected = processor(Image.fromarray(image), return_tensors="pt").pixel_values
    got = clip_image_preprocess(processor)(pil_to_tensor(Image.fromarray(image))[None])
    assert torch.allclose(got, expected, atol=1e-5)
    normalised = (torch.from_numpy(image).permute(2, 0, 1).float() / 255 - torch.tensor(OPENAI_CLIP_MEAN).view(3, 1, 1)) / torch.tensor(
        OPENAI_CLIP_STD
    ).view(3, 1, 1)
    assert torch.allclose(got[0], normalised[:, :, 7:23], atol=1e-5)


def test_clip_processor_settings_are_read_or_refused():
    from transformers import CLIPImageProcessor

    squash = clip_processor_config(CLIPImageProcessor(size={"height": 48, "width": 40}, do_center_crop=False, resample=2))
    assert (squash.size, squash.resize_mode, squash.interpolation) == ((48, 40), "squash", "bilinear")
    raw = clip_processor_config(CLIPImageProcessor(do_rescale=False, do_normalize=False))
    assert np.allclose(raw.mean, 0) and np.allclose(raw.std, 1 / 255)  # uint8 values for [0, 1] pixels
    with pytest.raises(ValueError, match="no fixed size"):
        clip_processor_config(CLIPImageProcessor(do_center_crop=False))
    with pytest.raises(ValueError, match="resample"):
        clip_processor_config(CLIPImageProcessor(resample=0))


@pytest.mark.parametrize("backend", ["torchvision", "pil"])
def test_qwen2vl_processor_on_a_large_photo(large_photo, backend):
    pil, x = large_photo
    processor = _qwen2vl_processor(backend)
    expected = processor(pil, return_tensors="pt")
    got = Qwen2VLImagePreprocess.from_processor(processor)(x)
    # 1750 x 1166 has 2.04 M pixels > max_pixels (1280 * 28 * 28): smart_resize gives 1204 x 812
    assert expected["image_grid_thw"].tolist() == [[1, 86, 58]]
    assert torch.equal(got["image_grid_thw"], expected["image_grid_thw"])
    assert got["pixel_values"].shape == expected["pixel_values"].shape == (86 * 58, 3 * 2 * 14 * 14)
    levels = _qwen_levels(got["pixel_values"] - expected["pixel_values"])
    assert levels.max() <= MAX_LEVELS and levels.mean() <= MEAN_LEVELS, (levels.max(), levels.mean())


def test_qwen2vl_mixed_sizes_keep_order_grid_and_patch_layout(large_photo):
    """A batch of three sizes (large, exact multiple of 28, tiny -> upscaled) matches the processor's concatenation."""
    pil, _ = large_photo
    rng = np.random.default_rng(1)
    exact = Image.fromarray(rng.integers(0, 256, (56, 84, 3), dtype=np.uint8))  # smart_resize keeps 56 x 84
    tiny = Image.fromarray(rng.integers(0, 256, (40, 30, 3), dtype=np.uint8))  # below min_pixels: 84 x 56
    images = [exact, pil, tiny, exact]
    processor = _qwen2vl_processor()
    expected = processor(images, return_tensors="pt")
    pre = Qwen2VLImagePreprocess.from_processor(processor)
    got = pre([pil_to_tensor(im) for im in images])
    assert got["image_grid_thw"].tolist() == expected["image_grid_thw"].tolist() == [[1, 4, 6], [1, 86, 58], [1, 6, 4], [1, 4, 6]]
    assert got["pixel_values"].shape == expected["pixel_values"].shape
    # an image already at a multiple of 28 is not resized: only float rounding of the normalisation differs
    assert torch.allclose(got["pixel_values"][:24], expected["pixel_values"][:24], atol=1e-5)
    assert torch.allclose(got["pixel_values"][-24:], expected["pixel_values"][-24:], atol=1e-5)
    levels = _qwen_levels(got["pixel_values"] - expected["pixel_values"])
    assert levels.max() <= MAX_LEVELS and levels.mean() <= MEAN_LEVELS, (levels.max(), levels.mean())


def test_qwen2vl_patch_order_is_transformers_exactly():
    """Raw uint8 values (no resize, rescale or normalisation) land in exactly the processor's rows and columns."""
    image = np.random.default_rng(2).integers(0, 256, (56, 112, 3), dtype=np.uint8)
    processor = _qwen2vl_processor(do_resize=False, do_rescale=False, do_normalize=False)
    expected = processor(Image.fromarray(image), return_tensors="pt")["pixel_values"]
    got = qwen2vl_patchify(torch.from_numpy(image).permute(2, 0, 1)[None].float(), 14, 2, 2)[0]
    assert torch.equal(got, expected.float())
    # row 1 is the second patch of the first 2 x 2 merge window: rows 0-13, columns 14-27, both temporal copies
    first = torch.from_numpy(image[:14, 14:28, 0]).float().reshape(-1)
    assert torch.equal(got[1, : 14 * 14], first) and torch.equal(got[1, 14 * 14 : 2 * 14 * 14], first)


def test_smart_resize_equals_transformers():
    from transformers.models.qwen2_vl.image_processing_qwen2_vl import smart_resize as reference

    sides = [1, 27, 28, 29, 55, 100, 333, 812, 1166, 1750, 4000]
    for h in sides:
        for w in sides:
            if max(h, w) / min(h, w) > 200:
                with pytest.raises(ValueError, match="aspect ratio"):
                    smart_resize(h, w)
                continue
            for min_pixels, max_pixels in ((56 * 56, 28 * 28 * 1280), (256 * 28 * 28, 512 * 28 * 28)):
                assert smart_resize(h, w, 28, min_pixels, max_pixels) == reference(h, w, 28, min_pixels, max_pixels), (h, w)


def test_default_auto_image_processor_is_the_one_matched(tmp_path):
    from transformers import AutoImageProcessor

    _qwen2vl_processor().save_pretrained(tmp_path)
    loaded = AutoImageProcessor.from_pretrained(tmp_path)
    assert type(loaded).__name__ == "Qwen2VLImageProcessor" and loaded.backend == "torchvision"
    pre = Qwen2VLImagePreprocess.from_processor(loaded)
    assert (pre.patch_size, pre.temporal_patch_size, pre.merge_size) == (14, 2, 2)
    assert (pre.min_pixels, pre.max_pixels, pre.interpolation) == (56 * 56, 28 * 28 * 1280, "bicubic")


def test_gradients_reach_the_native_photo(large_photo):
    _, x = large_photo
    llava = clip_image_preprocess(_llava_clip_processor())
    qwen = Qwen2VLImagePreprocess()
    for fn in (lambda p: llava(p), lambda p: qwen(p)["pixel_values"], lambda p: qwen([p[0]])["pixel_values"]):
        photo = x.clone().requires_grad_(True)
        fn(photo).square().mean().backward()
        assert photo.grad is not None and torch.isfinite(photo.grad).all()
        assert photo.grad.abs().sum() > 0 and (photo.grad != 0).float().mean() > 0.5


def test_qwen2vl_settings_are_validated():
    with pytest.raises(ValueError, match="patch_size"):
        Qwen2VLImagePreprocess(patch_size=0)
    with pytest.raises(ValueError, match="min_pixels"):
        Qwen2VLImagePreprocess(min_pixels=10, max_pixels=5)
    with pytest.raises(ValueError, match="not a multiple"):
        qwen2vl_patchify(torch.zeros(1, 3, 30, 28), 14, 2, 2)
    with pytest.raises(ValueError, match=r"\(3, H, W\)"):
        Qwen2VLImagePreprocess()([torch.zeros(1, 28, 28)])
