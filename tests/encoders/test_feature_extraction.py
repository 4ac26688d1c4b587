"""Batched, cached feature extraction over a catalog."""

from __future__ import annotations

import torch
from torch import nn

from venomkit.data.catalog import Catalog
from venomkit.encoders.base import ImageEncoder
from venomkit.encoders.features import extract_image_features, extract_text_features


class CountingImageEncoder(ImageEncoder):
    def __init__(self, seed: int = 0):
        super().__init__()
        torch.manual_seed(seed)
        self.spec = "counting"
        self.output_dim = 4
        self.proj = nn.Linear(3, 4)
        self.calls = 0

    def forward(self, images):
        self.calls += 1
        return self.proj(images.mean(dim=(2, 3)))


def _catalog(n: int = 10) -> Catalog:
    g = torch.Generator().manual_seed(0)
    return Catalog(
        item_ids=[f"i{k}" for k in range(n)],
        texts=[f"a red mug number {k}" for k in range(n)],
        images=[torch.rand(3, 8, 8, generator=g) for _ in range(n)],
    )


def test_batched_equals_one_pass():
    encoder, catalog = CountingImageEncoder(), _catalog()
    features = extract_image_features(encoder, catalog, batch_size=3)
    assert encoder.calls == 4 and features.shape == (10, 4) and features.dtype == torch.float32
    with torch.no_grad():
        assert torch.allclose(features, encoder(torch.stack([catalog.image(i) for i in range(10)])), atol=1e-6)


def test_cache_hit_skips_encoder_and_content_change_misses(tmp_path):
    encoder, catalog = CountingImageEncoder(), _catalog()
    first = extract_image_features(encoder, catalog, batch_size=4, cache_dir=tmp_path)
    calls = encoder.calls
    again = extract_image_features(encoder, catalog, batch_size=4, cache_dir=tmp_path)
    assert encoder.calls == calls and torch.equal(first, again)
    attacked = catalog.with_content([2], images=torch.zeros(1, 3, 8, 8))
    changed = extract_image_features(encoder, attacked, batch_size=4, cache_dir=tmp_path)
    assert encoder.calls > calls
    assert not torch.allclose(changed[2], first[2]) and torch.allclose(changed[3], first[3])
    other_weights = extract_image_features(CountingImageEncoder(seed=1), catalog, cache_dir=tmp_path)
    assert not torch.allclose(other_weights, first)
    assert len(list(tmp_path.glob("image-*.safetensors"))) == 3


def test_text_features_cached_by_text(tiny_clip_dir, tmp_path):
    from venomkit.encoders.loading import load_text_encoder

    encoder, catalog = load_text_encoder(str(tiny_clip_dir)), _catalog(5)
    features = extract_text_features(encoder, catalog, batch_size=2, cache_dir=tmp_path)
    with torch.no_grad():
        assert torch.allclose(features, encoder(catalog.texts), atol=1e-5)
    edited = catalog.with_content([0], texts=["a blue lamp"])
    extract_text_features(encoder, edited, cache_dir=tmp_path)
    assert len(list(tmp_path.glob("text-*.safetensors"))) == 2
