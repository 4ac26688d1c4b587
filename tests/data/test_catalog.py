"""Catalog: lazy image loading, placeholders, content replacement, and image file errors."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from venomkit.data import Catalog, DataFormatError, load_image_file, save_png


def _write_rgb(path, array: np.ndarray) -> None:
    Image.fromarray(array.astype(np.uint8)).save(path)


def test_save_png_then_load_is_exact_for_8bit_values(tmp_path):
    generator = torch.Generator().manual_seed(0)
    image = torch.randint(0, 256, (3, 12, 12), generator=generator).float() / 255
    save_png(image, tmp_path / "a.png")
    loaded = load_image_file(tmp_path / "a.png")
    assert loaded.shape == (3, 12, 12)
    assert loaded.dtype == torch.float32
    assert torch.equal(loaded, image)


def test_load_image_file_keeps_the_photos_own_size_and_pixels(tmp_path):
    from PIL import Image

    pixels = np.random.default_rng(0).integers(0, 256, (30, 20, 3))
    _write_rgb(tmp_path / "poster.jpg", pixels)
    loaded = load_image_file(tmp_path / "poster.jpg")
    assert loaded.shape == (3, 30, 20)  # (3, H, W): never resized, never squared
    with Image.open(tmp_path / "poster.jpg") as img:
        decoded = np.asarray(img.convert("RGB"))
    assert torch.equal(loaded, torch.from_numpy(decoded.transpose(2, 0, 1).astype(np.float32) / 255))


def test_catalog_keeps_native_sizes_and_bounds_its_cache(tmp_path):
    sizes = [(450, 300), (480, 640), (40, 40)]  # (H, W): portrait, landscape, square
    for k, (h, w) in enumerate(sizes):
        _write_rgb(tmp_path / f"{k}.jpg", np.random.default_rng(k).integers(0, 256, (h, w, 3)))
    catalog = Catalog(item_ids=["p", "l", "s"], texts=["a", "b", "c"], images=[tmp_path / f"{k}.jpg" for k in range(3)], cache_mb=0.6)
    assert [catalog.image_size(i) for i in range(3)] == sizes  # from the headers, no decoding
    images = catalog.image_list([0, 1, 2])
    assert [tuple(im.shape) for im in images] == [(3, h, w) for h, w in sizes]
    assert catalog._cache.bytes <= 0.6 * 2**20 and len(catalog._cache) < 3  # 405 + 900 + 5 KB do not all fit
    assert torch.equal(catalog.image(0), images[0])  # decoded again when evicted: same pixels
    with pytest.raises(ValueError, match=r"images differ in size \(p \(450, 300\), l \(480, 640\)"):
        catalog.image_batch([0, 1, 2])
    assert catalog.image_batch([2]).shape == (1, 3, 40, 40)


def test_save_png_rejects_wrong_shape(tmp_path):
    with pytest.raises(ValueError, match="save_png"):
        save_png(torch.zeros(1, 3, 8, 8), tmp_path / "x.png")


def test_missing_image_file_names_the_file(tmp_path):
    with pytest.raises(DataFormatError) as info:
        load_image_file(tmp_path / "nope.png")
    assert "nope.png" in str(info.value)
    assert info.value.file.name == "nope.png"


def test_corrupt_image_is_reported_lazily_by_catalog_image(tmp_path):
    bad = tmp_path / "bad.png"
    bad.write_bytes(b"\x89PNG\r\n\x1a\n this is not a png")
    catalog = Catalog(item_ids=["a"], texts=["t"], images=[bad])  # no decoding yet
    with pytest.raises(DataFormatError) as info:
        catalog.image(0)
    assert "bad.png" in str(info.value)
    assert info.value.file == bad


def test_placeholder_batches_texts_and_index(tmp_path):
    _write_rgb(tmp_path / "red.png", np.tile(np.array([255, 0, 0]), (8, 8, 1)))
    catalog = Catalog(item_ids=["r", "none"], texts=["red", "grey"], placeholder_size=8, images=[tmp_path / "red.png", None])
    batch = catalog.image_batch(torch.tensor([1, 0]))
    assert batch.shape == (2, 3, 8, 8)
    assert torch.all(batch[0] == catalog.placeholder_value)
    assert torch.allclose(batch[1, 0], torch.ones(8, 8)) and torch.all(batch[1, 1:] == 0)
    assert catalog.has_image(0) and not catalog.has_image(1)
    assert catalog.text_batch([1, 0]) == ["grey", "red"]
    assert catalog.index_of("none") == 1
    with pytest.raises(KeyError, match="zzz"):
        catalog.index_of("zzz")


def test_with_content_changes_only_the_given_items():
    catalog = Catalog(item_ids=["a", "b", "c"], texts=["ta", "tb", "tc"], attributes={"k": [1, 2, 3]})
    new_images = torch.rand(1, 3, 8, 8)
    changed = catalog.with_content([2], images=new_images, texts=["new"])
    assert changed.texts == ["ta", "tb", "new"]
    assert catalog.texts == ["ta", "tb", "tc"]  # the original shop is untouched
    assert torch.equal(changed.image(2), new_images[0])
    assert not catalog.has_image(2)
    assert changed.attributes == catalog.attributes
    sub = changed.subset([2, 0])
    assert sub.item_ids == ["c", "a"] and sub.attributes["k"] == [3, 1] and sub.texts == ["new", "ta"]


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(item_ids=["a", "b"], texts=["x"]), "texts"),
        (dict(item_ids=["a", "a"], texts=["x", "y"]), "unique"),
        (dict(item_ids=["a"], texts=["x"], placeholder_size=4), "placeholder_size"),
        (dict(item_ids=["a"], texts=["x"], images=[torch.zeros(8, 8)]), r"\(3, H, W\)"),
        (dict(item_ids=["a"], texts=["x"], attributes={"k": [1, 2]}), "attribute"),
        (dict(item_ids=["a"], texts=["x"], images=[None, None]), "images"),
    ],
)
def test_catalog_validates_its_columns(kwargs, message):
    with pytest.raises(ValueError, match=message):
        Catalog(**kwargs)
