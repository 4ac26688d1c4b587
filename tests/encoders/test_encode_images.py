"""encode_images over photos of different sizes, and streaming feature extraction of a mixed-size catalog."""

from __future__ import annotations

import pytest
import torch

from venomkit.data.catalog import Catalog
from venomkit.encoders.base import encode_images, group_by_size
from venomkit.encoders.features import content_key, extract_image_features

SIZES = [(40, 56), (64, 64), (33, 90)]  # (H, W)


@pytest.fixture(scope="module")
def clip_encoder(tiny_clip_dir):
    from venomkit.encoders.loading import load_image_encoder

    return load_image_encoder(f"local-dir:{tiny_clip_dir}")


def _mixed_images(n: int, seed: int = 0) -> list[torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return [torch.rand(3, *SIZES[k % len(SIZES)], generator=g) for k in range(n)]


class CallLog(torch.nn.Module):
    """Wraps an encoder and records the batch shape of every call."""

    def __init__(self, encoder):
        super().__init__()
        self.encoder, self.calls = encoder, []
        self.spec, self.output_dim = encoder.spec, encoder.output_dim

    def forward(self, images):
        self.calls.append(tuple(images.shape))
        return self.encoder(images)


def test_mixed_sizes_equal_encoding_each_alone(clip_encoder):
    images = _mixed_images(7)
    logged = CallLog(clip_encoder)
    with torch.no_grad():
        together = encode_images(logged, images)
        alone = torch.cat([clip_encoder(im[None]) for im in images])
    assert together.shape == (7, clip_encoder.output_dim)
    assert (together - alone).abs().max() <= 1e-5
    # one call per distinct size, in order of first appearance
    assert logged.calls == [(3, 3, 40, 56), (2, 3, 64, 64), (2, 3, 33, 90)]
    stacked = torch.stack([im for im in images if im.shape[1:] == (64, 64)])
    with torch.no_grad():
        assert torch.equal(encode_images(clip_encoder, stacked), clip_encoder(stacked))


def test_gradients_reach_every_native_image(clip_encoder):
    images = [im.requires_grad_(True) for im in _mixed_images(4, seed=1)]
    features = encode_images(clip_encoder, images)
    features[2].sum().backward()  # only image 2 feeds row 2
    grads = [im.grad for im in images]
    assert grads[2] is not None and grads[2].abs().sum() > 0 and torch.isfinite(grads[2]).all()
    assert all(g is None or g.abs().sum() == 0 for k, g in enumerate(grads) if k != 2)
    images = [im.detach().requires_grad_(True) for im in images]
    encode_images(clip_encoder, images).square().sum().backward()
    assert all(im.grad is not None and im.grad.abs().sum() > 0 for im in images)


def test_encoders_take_lists_directly(clip_encoder, tiny_cnn_dir):
    from venomkit.encoders.loading import load_image_encoder

    images = _mixed_images(5, seed=2)
    for encoder in (clip_encoder, load_image_encoder(str(tiny_cnn_dir))):
        with torch.no_grad():
            assert (encoder(images) - encode_images(encoder, images)).abs().max() <= 1e-5


def test_bad_image_batches_are_named():
    with pytest.raises(ValueError, match="image 1"):
        group_by_size([torch.zeros(3, 8, 8), torch.zeros(8, 8)])
    with pytest.raises(ValueError, match="empty"):
        group_by_size([])
    with pytest.raises(ValueError, match=r"\(N, 3, H, W\)"):
        group_by_size(torch.zeros(3, 8, 8))


class CountingCatalog(Catalog):
    """Records which items are decoded, and how many decoded images are alive at once."""

    def __post_init__(self) -> None:
        super().__post_init__()
        self.decoded: list[int] = []

    def image(self, index: int) -> torch.Tensor:
        self.decoded.append(index)
        return super().image(index).clone()


def _mixed_catalog(n: int = 11) -> CountingCatalog:
    return CountingCatalog(
        item_ids=[f"i{k}" for k in range(n)], texts=[f"item {k}" for k in range(n)], images=_mixed_images(n, seed=3)
    )


def test_extraction_of_a_mixed_size_catalog_streams_in_order(clip_encoder):
    catalog = _mixed_catalog()
    logged = CallLog(clip_encoder)
    features = extract_image_features(logged, catalog, batch_size=4, progress=False)
    with torch.no_grad():
        alone = torch.cat([clip_encoder(catalog.images[i][None]) for i in range(catalog.n_items)])
    assert features.shape == (11, clip_encoder.output_dim) and features.dtype == torch.float32
    assert (features - alone).abs().max() <= 1e-5
    assert catalog.decoded == list(range(11))  # each item read once, in index order
    # batches of at most 4 images, split by size: never more than one batch of images per call
    assert sum(shape[0] for shape in logged.calls) == 11 and max(shape[0] for shape in logged.calls) <= 2
    assert len(logged.calls) == 3 + 3 + 3


def test_memory_is_bounded_by_one_batch(clip_encoder):
    """Decoded images of a batch are freed before the next batch is read."""
    import weakref

    catalog = _mixed_catalog(9)
    alive: list[weakref.ref] = []
    peak = []
    decode = catalog.image

    def tracked(index: int) -> torch.Tensor:
        image = decode(index)
        alive.append(weakref.ref(image))
        peak.append(sum(ref() is not None for ref in alive))
        return image

    catalog.image = tracked
    extract_image_features(clip_encoder, catalog, batch_size=3, progress=False)
    assert max(peak) <= 3


def test_cache_key_tells_native_sizes_apart(clip_encoder, tmp_path):
    catalog = _mixed_catalog(3)
    resized = catalog.with_content([1], images=torch.nn.functional.interpolate(catalog.images[1][None], size=(20, 20))[0][None])
    assert content_key(clip_encoder, catalog, "image") != content_key(clip_encoder, resized, "image")
    same_values = catalog.with_content([0], images=catalog.images[0].reshape(3, 56, 40)[None])  # same bytes, other shape
    assert content_key(clip_encoder, catalog, "image") != content_key(clip_encoder, same_values, "image")
    first = extract_image_features(clip_encoder, catalog, cache_dir=tmp_path, progress=False)
    again = extract_image_features(clip_encoder, catalog, cache_dir=tmp_path, progress=False)
    assert torch.equal(first, again) and len(list(tmp_path.glob("image-*.safetensors"))) == 1


def test_catalog_of_image_files_at_native_sizes(clip_encoder, tmp_path):
    from venomkit.data.catalog import save_png

    images = _mixed_images(3, seed=4)
    paths = [tmp_path / f"{k}.png" for k in range(3)]
    for image, path in zip(images, paths):
        save_png(image, path)
    catalog = Catalog(item_ids=["a", "b", "c"], texts=["x", "y", "z"], images=[str(p) for p in paths])
    assert [tuple(catalog.image(i).shape) for i in range(3)] == [(3, *size) for size in SIZES]
    features = extract_image_features(clip_encoder, catalog, batch_size=2, progress=False)
    with torch.no_grad():
        alone = torch.cat([clip_encoder(catalog.image(i)[None]) for i in range(3)])
    assert (features - alone).abs().max() <= 1e-5
    key = content_key(clip_encoder, catalog, "image")
    assert content_key(clip_encoder, catalog, "image") == key  # path + file size + mtime, stable
    save_png(torch.rand(3, 20, 30), paths[1])  # the file changes (other size): the key changes
    assert content_key(clip_encoder, Catalog(item_ids=["a", "b", "c"], texts=["x", "y", "z"], images=[str(p) for p in paths]), "image") != key


def test_cache_key_includes_the_placeholder(clip_encoder):
    grey = Catalog(item_ids=["a"], texts=["x"])
    darker = Catalog(item_ids=["a"], texts=["x"], placeholder_value=0.2)
    assert content_key(clip_encoder, grey, "image") == content_key(clip_encoder, Catalog(item_ids=["a"], texts=["x"]), "image")
    assert content_key(clip_encoder, grey, "image") != content_key(clip_encoder, darker, "image")
