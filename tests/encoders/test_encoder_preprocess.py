"""TorchPreprocess against open_clip's own PIL preprocessing (small images), its geometry and gradients.

The large-photo comparisons (1166 x 1750 JPEG, every encoder family) are in
test_native_photo_preprocessing.py and test_vlm_preprocess.py.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

from venomkit.encoders.preprocess import PreprocessConfig, TorchPreprocess, center_crop_or_pad


def _pil(image: torch.Tensor) -> Image.Image:
    return Image.fromarray(image.mul(255).round().byte().permute(1, 2, 0).numpy())


def _quantised(images: torch.Tensor) -> torch.Tensor:
    # the PIL path sees uint8 pixels; give the torch path the same ones
    return images.mul(255).round().div(255)


@pytest.mark.parametrize("size", [64, 48, 224])
@pytest.mark.parametrize("interpolation", ["bicubic", "bilinear"])
def test_matches_open_clip_pil_transform(product_images, size, interpolation):
    import open_clip

    reference = open_clip.image_transform(size, is_train=False, interpolation=interpolation)
    ours = TorchPreprocess(PreprocessConfig(size=size, interpolation=interpolation))
    x = _quantised(product_images)
    expected = torch.stack([reference(_pil(img)) for img in x])
    got = ours(x)
    assert got.shape == expected.shape == (len(x), 3, size, size)
    # PIL rounds each resize pass to uint8: about one grey level, /std ~ 0.015
    assert (got - expected).abs().max() < 0.03
    assert (got - expected).abs().mean() < 0.005


def test_features_match_library_preprocessing(tiny_clip_dir, product_images):
    import open_clip

    from venomkit.encoders.loading import load_image_encoder

    encoder = load_image_encoder(f"local-dir:{tiny_clip_dir}")
    model, _, preprocess_val = open_clip.create_model_and_transforms(f"local-dir:{tiny_clip_dir}")
    model.eval()
    x = _quantised(product_images)
    with torch.no_grad():
        expected = model.encode_image(torch.stack([preprocess_val(_pil(img)) for img in x]))
        got = encoder(x)
    cosine = F.cosine_similarity(got, expected, dim=-1)
    assert cosine.min() > 0.99


def test_identity_resize_is_exact_and_normalises():
    cfg = PreprocessConfig(size=64, mean=(0.5, 0.25, 0.0), std=(0.5, 0.25, 1.0))
    x = torch.rand(2, 3, 64, 64)
    out = TorchPreprocess(cfg)(x)
    expected = (x - torch.tensor([0.5, 0.25, 0.0]).view(1, 3, 1, 1)) / torch.tensor([0.5, 0.25, 1.0]).view(1, 3, 1, 1)
    assert torch.equal(out, expected)


def test_shortest_side_resize_then_center_crop_geometry():
    pre = TorchPreprocess(PreprocessConfig(size=32, resize_size=40))
    x = torch.rand(1, 3, 60, 90)
    assert pre.resize_crop(x).shape == (1, 3, 32, 32)
    # torchvision CenterCrop offsets: round((h - th) / 2)
    y = torch.arange(5 * 7, dtype=torch.float32).view(1, 1, 5, 7)
    assert torch.equal(center_crop_or_pad(y, (3, 3)), y[..., 1:4, 2:5])
    padded = center_crop_or_pad(torch.ones(1, 1, 2, 2), (4, 4), fill=0.0)
    assert padded.shape == (1, 1, 4, 4) and padded.sum() == 4


@pytest.mark.parametrize("mode", ["shortest", "squash", "longest"])
def test_gradients_reach_pixels(mode):
    pre = TorchPreprocess(PreprocessConfig(size=32, resize_mode=mode))
    x = torch.rand(2, 3, 50, 70, requires_grad=True)
    pre(x).square().sum().backward()
    assert x.grad is not None and x.grad.abs().sum() > 0
    assert torch.isfinite(x.grad).all()


def test_config_validation_names_the_field():
    with pytest.raises(ValueError, match="interpolation"):
        PreprocessConfig(interpolation="nearest")
    with pytest.raises(ValueError, match="resize_mode"):
        PreprocessConfig(resize_mode="fit")
    with pytest.raises(ValueError, match="std"):
        PreprocessConfig(std=(0.5, 0.0, 0.5))
    with pytest.raises(ValueError, match="expected images"):
        TorchPreprocess(PreprocessConfig(size=8))(torch.rand(3, 8, 8))


def test_from_open_clip_reads_library_config():
    cfg = PreprocessConfig.from_open_clip({"size": 96, "mean": (0.5,) * 3, "std": (0.5,) * 3, "interpolation": "random"})
    assert cfg.size == (96, 96) and cfg.interpolation == "bicubic" and cfg.mean == (0.5, 0.5, 0.5)
    assert np.allclose(cfg.std, 0.5)


def test_list_of_native_sizes_equals_one_at_a_time():
    pre = TorchPreprocess(PreprocessConfig(size=32))
    g = torch.Generator().manual_seed(0)
    images = [torch.rand(3, h, w, generator=g) for h, w in [(50, 70), (32, 32), (50, 70), (90, 41)]]
    together = pre(images)
    assert together.shape == (4, 3, 32, 32)
    for k, image in enumerate(images):
        assert torch.allclose(together[k], pre(image[None])[0], atol=1e-6)


def test_crop_rounding_follows_the_library():
    y = torch.arange(4 * 19, dtype=torch.float32).view(1, 1, 4, 19)
    # (19 - 4) / 2 = 7.5: torchvision rounds (to 8), transformers floors (to 7)
    assert torch.equal(center_crop_or_pad(y, (4, 4)), y[..., 8:12])
    assert torch.equal(center_crop_or_pad(y, (4, 4), rounding="floor"), y[..., 7:11])
    with pytest.raises(ValueError, match="crop_rounding"):
        PreprocessConfig(crop_rounding="ceil")


def test_open_clip_non_square_shortest_is_bicubic():
    """open_clip's ResizeKeepRatio (non-square 'shortest' targets) ignores the interpolation setting."""
    cfg = PreprocessConfig.from_open_clip({"size": (32, 48), "interpolation": "bilinear"})
    assert cfg.interpolation == "bicubic"
    assert PreprocessConfig.from_open_clip({"size": 32, "interpolation": "bilinear"}).interpolation == "bilinear"
