"""Real photos at their own size: a catalog of non-square JPEGs of different sizes, a VBPR
trained on it, PGD on targets of both sizes in one batch -- the saved PNGs keep the photos'
sizes and pixels, the budget holds on the saved files, SSIM is skimage's on the native images."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image
from run_helpers import REPO, rows

from venomkit.data.catalog import load_image_file
from venomkit.runs import RunFlags, execute, load_run

SIZES = [(300, 450), (640, 480)]  # (width, height): a portrait and a landscape photo


def photo(width: int, height: int, seed: int) -> Image.Image:
    """A photo-like picture: smooth colour gradients, a few sharp-edged shapes, sensor noise."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:height, 0:width].astype(np.float32)
    base = np.stack([x / width, y / height, 0.5 + 0.5 * np.sin((x + y) / (20 + seed))], axis=-1) * rng.uniform(0.4, 1.0, 3)
    for _ in range(4):
        cx, cy, r = rng.integers(0, width), rng.integers(0, height), rng.integers(20, 120)
        base[(x - cx) ** 2 + (y - cy) ** 2 < r**2] = rng.uniform(0, 1, 3)
    base += rng.normal(0, 0.02, base.shape)
    return Image.fromarray((np.clip(base, 0, 1) * 255).astype(np.uint8), "RGB")


@pytest.fixture(scope="module")
def photo_shop(tmp_path_factory):
    """An atomic folder: 24 products with JPEG photos of two sizes, 40 users with 6-10 purchases."""
    folder = tmp_path_factory.mktemp("photo-shop")
    (folder / "images").mkdir()
    rng = np.random.default_rng(0)
    words = ["red", "blue", "soft", "leather", "cotton", "bright", "classic", "warm"]
    items = []
    for i in range(24):
        width, height = SIZES[i % 2]
        photo(width, height, i).save(folder / "images" / f"p{i:02d}.jpg", quality=90)
        items.append(f"p{i:02d}\ta {' '.join(rng.choice(words, 3))} {['bag', 'shoe', 'lamp'][i % 3]}")
    (folder / "photos.item").write_text("item_id:token\ttext:token_seq\n" + "\n".join(items) + "\n")
    popularity = np.linspace(1.0, 0.05, 24)
    lines = []
    for u in range(40):
        chosen = rng.choice(24, size=rng.integers(6, 11), replace=False, p=popularity / popularity.sum())
        lines += [f"u{u}\tp{i:02d}\t{t}" for t, i in enumerate(chosen)]
    (folder / "photos.inter").write_text("user_id:token\titem_id:token\ttimestamp:float\n" + "\n".join(lines) + "\n")
    return folder


def test_pgd_on_native_photos(photo_shop, tmp_path):
    from skimage.metrics import structural_similarity

    run = load_run(REPO / "attacks" / "pgd.yaml", ["steps=2", "victims.vbpr.train.epochs=3"],
                   RunFlags(victim="vbpr", data=str(photo_shop), targets=4, max_interactions=100, batch_size=4))
    run.recipe.outputs.report = False
    summary = execute(run, tmp_path, progress=False)
    table = rows(tmp_path / "results.csv")
    sizes = set()
    for r in table:
        original = np.asarray(Image.open(photo_shop / "images" / f"{r['item_id']}.jpg").convert("RGB"))
        clean, adv = load_image_file(tmp_path / r["clean_image"]), load_image_file(tmp_path / r["adv_image"])
        sizes.add(tuple(clean.shape[1:]))
        assert clean.shape[1:] == original.shape[:2] and adv.shape == clean.shape  # (H, W) of the photo, never squared
        assert torch.equal(clean, torch.from_numpy(original.transpose(2, 0, 1).astype(np.float32) / 255))
        assert float((adv - clean).abs().max()) <= 8 / 255 + 1 / 255 + 1e-6 and float(r["linf"]) <= 9 / 255
        ssim = structural_similarity(clean.double().numpy(), adv.double().numpy(), gaussian_weights=True, sigma=1.5,
                                     use_sample_covariance=False, data_range=1.0, channel_axis=0)
        assert float(r["ssim"]) == pytest.approx(ssim, abs=1e-9)
        assert float(r["hr@50_after"]) >= 0 and float(r["victim_image_sim"]) > 0.5
    assert sizes == {(450, 300), (480, 640)}, "the batch held photos of both sizes"
    grid = Image.open(tmp_path / table[0]["clean_image"].replace("_clean.png", "_grid.png"))
    assert max(grid.size) <= 3 * 256 + 4  # grids are downscaled for display only
    assert summary["n_targets"] == 4
