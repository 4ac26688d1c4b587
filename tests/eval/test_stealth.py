"""Stealth metrics: SSIM equals skimage's Gaussian SSIM, pixel/feature/text metrics, PNG tables, CLI."""

from __future__ import annotations

import argparse
import csv
import json
import math
import types

import numpy as np
import pytest
import torch
from skimage.metrics import peak_signal_noise_ratio, structural_similarity
from torch import nn

from venomkit.data.catalog import load_image_file, save_png
from venomkit.encoders.base import ImageEncoder, TextEncoder
from venomkit.eval.stealth import (
    SSIM_SETTINGS,
    add_stealth_arguments,
    cli_stealth,
    clip_image_similarity,
    clip_image_text_similarity,
    edit_ratio,
    l2,
    linf,
    lpips_distance,
    psnr,
    ssim,
    stealth_table,
    summarize,
    text_similarity,
)


def skimage_ssim(a: torch.Tensor, b: torch.Tensor) -> float:
    return structural_similarity(
        a.permute(1, 2, 0).double().numpy(),
        b.permute(1, 2, 0).double().numpy(),
        gaussian_weights=True,
        sigma=1.5,
        use_sample_covariance=False,
        data_range=1,
        channel_axis=-1,
    )


def image_pairs(seed: int, n: int, h: int, w: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Smooth random images plus a perturbed copy (SSIM well inside (0, 1), not ~0)."""
    g = torch.Generator().manual_seed(seed)
    base = torch.rand(n, 3, h // 4 + 1, w // 4 + 1, generator=g)
    clean = torch.nn.functional.interpolate(base, size=(h, w), mode="bilinear", align_corners=False)
    adv = (clean + 0.15 * torch.randn(n, 3, h, w, generator=g)).clamp(0, 1)
    return clean, adv


class TinyImageEncoder(ImageEncoder):
    """A fixed random projection of 4x4-pooled pixels: enough to test cosine plumbing."""

    spec = "test:tiny-image"
    output_dim = 8

    def __init__(self) -> None:
        super().__init__()
        self.proj = nn.Linear(3 * 16, self.output_dim)
        torch.nn.init.normal_(self.proj.weight, generator=torch.Generator().manual_seed(0))

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.proj(torch.nn.functional.adaptive_avg_pool2d(images, 4).flatten(1))


class TinyTextEncoder(TextEncoder):
    """Bag of hashed words -> embedding mean: deterministic, tokenizer-free texts to features."""

    spec = "test:tiny-text"
    output_dim = 8

    def __init__(self) -> None:
        super().__init__()
        self._embedding = nn.Embedding(97, self.output_dim)
        torch.nn.init.normal_(self._embedding.weight, generator=torch.Generator().manual_seed(1))

    def tokenize(self, texts):
        ids = [[1 + sum(map(ord, w)) % 96 for w in t.split()][:16] for t in texts]
        return torch.tensor([row + [0] * (16 - len(row)) for row in ids])

    def decode(self, token_ids):
        return [" ".join(str(int(t)) for t in row if t) for row in token_ids]

    @property
    def token_embedding(self) -> nn.Embedding:
        return self._embedding

    def forward_embeddings(self, embeddings, token_ids):
        keep = (token_ids != 0).unsqueeze(-1).float()
        return (embeddings * keep).sum(1) / keep.sum(1).clamp(min=1)


# ----- SSIM ----------------------------------------------------------------------------------


@pytest.mark.parametrize("shape", [(2, 11, 11), (3, 32, 32), (2, 23, 40)])
def test_ssim_equals_skimage_gaussian(shape):
    n, h, w = shape
    clean, adv = image_pairs(0, n, h, w)
    noise = torch.rand(n, 3, h, w, generator=torch.Generator().manual_seed(5))  # pure noise too
    for x, y in ((clean, adv), (clean, noise)):
        expected = [skimage_ssim(x[i], y[i]) for i in range(n)]
        got64 = ssim(x.double(), y.double())
        np.testing.assert_allclose(got64.numpy(), expected, rtol=0, atol=1e-10)
        got32 = ssim(x.float(), y.float())
        np.testing.assert_allclose(got32.numpy(), expected, rtol=0, atol=1e-5)
    assert ssim(clean, clean).tolist() == pytest.approx([1.0] * n)
    assert "11x11" in SSIM_SETTINGS and "sigma 1.5" in SSIM_SETTINGS


def test_ssim_differs_from_skimage_defaults():
    # The settings matter: skimage's default (uniform 7x7, sample covariance) is another number.
    x, y = image_pairs(1, 1, 32, 32)
    default = structural_similarity(x[0].permute(1, 2, 0).numpy(), y[0].permute(1, 2, 0).numpy(), data_range=1, channel_axis=-1)
    assert abs(default - ssim(x, y).item()) > 1e-3


def test_ssim_is_differentiable():
    x, y = image_pairs(2, 1, 12, 13)
    x = x.double().requires_grad_(True)
    assert torch.autograd.gradcheck(lambda a: ssim(a, y.double()), (x,), eps=1e-6, atol=1e-6, fast_mode=True)
    loss = 1 - ssim(x, y.double()).sum()
    loss.backward()
    with torch.no_grad():
        stepped = x - 1e-3 * x.grad.sign()
    assert 1 - ssim(stepped, y.double()).sum() < loss  # the gradient points the right way


def test_ssim_argument_errors():
    x = torch.rand(1, 3, 10, 20)
    with pytest.raises(ValueError, match="at least 11x11"):
        ssim(x, x)
    with pytest.raises(ValueError, match="shapes differ"):
        ssim(torch.rand(1, 3, 16, 16), torch.rand(1, 3, 16, 17))
    with pytest.raises(ValueError, match=r"\(N, C, H, W\)"):
        ssim(torch.rand(3, 16, 16), torch.rand(3, 16, 16))


# ----- pixel metrics ---------------------------------------------------------------------------


def test_psnr_linf_l2_match_numpy():
    x, y = image_pairs(3, 3, 16, 16)
    diff = (x - y).double().numpy()
    for i in range(3):
        assert psnr(x, y)[i].item() == pytest.approx(
            peak_signal_noise_ratio(x[i].double().numpy(), y[i].double().numpy(), data_range=1), rel=1e-9
        )
        assert linf(x, y)[i].item() == pytest.approx(np.abs(diff[i]).max(), rel=1e-6)
        assert l2(x, y)[i].item() == pytest.approx(np.sqrt((diff[i] ** 2).sum()), rel=1e-5)
    assert math.isinf(psnr(x, x)[0].item())
    assert linf(x, x).tolist() == [0.0] * 3


# ----- encoder similarities and LPIPS -----------------------------------------------------------


def test_clip_similarities_are_feature_cosines():
    enc, txt = TinyImageEncoder(), TinyTextEncoder()
    x, y = image_pairs(4, 3, 16, 16)
    got = clip_image_similarity(enc, x, y)
    expected = torch.nn.functional.cosine_similarity(enc(x), enc(y))
    torch.testing.assert_close(got, expected)
    torch.testing.assert_close(clip_image_similarity(enc, x, x), torch.ones(3))
    texts = ["red cotton shirt", "blue leather bag", "green striped scarf"]
    got = clip_image_text_similarity(enc, txt, x, texts)
    torch.testing.assert_close(got, torch.nn.functional.cosine_similarity(enc(x), txt(texts)))
    with pytest.raises(ValueError, match="texts"):
        clip_image_text_similarity(enc, txt, x, texts[:2])
    wide = TinyTextEncoder()
    wide.output_dim = 9
    wide._embedding = nn.Embedding(97, 9)
    with pytest.raises(ValueError, match="one CLIP model"):
        clip_image_text_similarity(enc, wide, x, texts)


def test_lpips_needs_weights():
    x = torch.rand(1, 3, 32, 32)
    with pytest.raises(ValueError, match="weights"):
        lpips_distance(x, x, weights=None)


@pytest.mark.slow  # builds a torchvision AlexNet (61M parameters) inside lpips; lpips is optional
def test_lpips_with_local_backbone_weights(tmp_path):
    pytest.importorskip("lpips")
    from safetensors.torch import save_file

    g = torch.Generator().manual_seed(0)
    shapes = {0: (64, 3, 11, 11), 3: (192, 64, 5, 5), 6: (384, 192, 3, 3), 8: (256, 384, 3, 3), 10: (256, 256, 3, 3)}
    state = {}
    for index, shape in shapes.items():
        state[f"features.{index}.weight"] = torch.randn(*shape, generator=g) * 0.05
        state[f"features.{index}.bias"] = torch.zeros(shape[0])
    save_file(state, str(tmp_path / "alexnet.safetensors"))
    x, y = image_pairs(6, 2, 64, 64)
    same = lpips_distance(x, x, tmp_path / "alexnet.safetensors")
    different = lpips_distance(x, y, tmp_path / "alexnet.safetensors")
    assert same.shape == (2,) and torch.allclose(same, torch.zeros(2), atol=1e-6)
    assert (different > 0).all()
    state["features.0.weight"] = torch.zeros(64, 3, 5, 5)
    save_file(state, str(tmp_path / "bad.safetensors"))
    with pytest.raises(ValueError, match="features.0.weight"):
        lpips_distance(x, y, tmp_path / "bad.safetensors")


# ----- text metrics -------------------------------------------------------------------------------


def test_edit_ratio():
    assert edit_ratio("a red cotton shirt", "a red cotton shirt") == 0.0
    assert edit_ratio("a red cotton shirt", "a blue cotton shirt") == pytest.approx(1 / 4)
    assert edit_ratio("a red shirt", "a red cotton shirt") == pytest.approx(1 / 4)  # one insertion
    assert edit_ratio("", "") == 0.0
    assert edit_ratio("", "new words") == 1.0
    assert edit_ratio("Shirt", "shirt") == 1.0  # case counts at word level
    assert edit_ratio("shirt", "short", tokenizer=list) == pytest.approx(1 / 5)  # character tokens
    assert edit_ratio([5, 6, 7, 8], torch.tensor([5, 9, 7, 8])) == pytest.approx(1 / 4)


def test_text_similarity():
    txt = TinyTextEncoder()
    a = ["red cotton shirt", "blue bag"]
    got = text_similarity(txt, a, ["red cotton shirt", "green bag"])
    assert got[0].item() == pytest.approx(1.0)
    assert got[1].item() < 1.0
    with pytest.raises(ValueError):
        text_similarity(txt, a, a[:1])


# ----- tables over saved PNGs ----------------------------------------------------------------------


def write_pairs(tmp_path, names, size=24, eps=8 / 255):
    clean_dir, adv_dir = tmp_path / "clean", tmp_path / "adv"
    clean, adv = image_pairs(7, len(names), size, size)
    adv = (clean + (adv - clean).clamp(-eps, eps)).clamp(0, 1)
    for i, name in enumerate(names):
        save_png(clean[i], clean_dir / f"{name}.png")
        save_png(adv[i], adv_dir / f"{name}.png")
    return clean_dir, adv_dir


def test_stealth_table_on_saved_pngs(tmp_path):
    names = ["item1", "item2", "item3"]
    clean_dir, adv_dir = write_pairs(tmp_path, names)
    rows = stealth_table(clean_dir, adv_dir, batch_size=2, progress=False)
    assert [r["name"] for r in rows] == names
    for row in rows:
        c = load_image_file(clean_dir / f"{row['name']}.png")
        a = load_image_file(adv_dir / f"{row['name']}.png")
        assert row["ssim"] == pytest.approx(skimage_ssim(c, a), abs=1e-9)
        assert row["linf"] <= 8 / 255 + 1 / 255 + 1e-6
        assert row["linf_255"] == pytest.approx(round(row["linf"] * 255))  # PNGs are 8-bit
        assert row["psnr"] == pytest.approx(psnr(c[None], a[None]).item())
        assert row["l2"] == pytest.approx(l2(c[None], a[None]).item(), rel=1e-5)
    summary = summarize(rows)
    assert summary["n"] == 3 and summary["ssim"] == pytest.approx(np.mean([r["ssim"] for r in rows]))


def test_stealth_table_with_encoders(tmp_path):
    names = ["a", "b"]
    clean_dir, adv_dir = write_pairs(tmp_path, names)
    enc, txt = TinyImageEncoder(), TinyTextEncoder()
    enc.train()
    texts = {"a": "red shirt", "b": "blue bag"}
    rows = stealth_table(clean_dir, adv_dir, image_encoder=enc, text_encoder=txt, texts=texts, progress=False)
    assert enc.training  # mode restored
    c = torch.stack([load_image_file(clean_dir / f"{n}.png") for n in names])
    a = torch.stack([load_image_file(adv_dir / f"{n}.png") for n in names])
    expected = clip_image_similarity(enc, c, a)
    assert [r["clip_image"] for r in rows] == pytest.approx(expected.tolist(), abs=1e-6)
    expected_text = clip_image_text_similarity(enc, txt, a, [texts[n] for n in names])
    assert [r["clip_text_adv"] for r in rows] == pytest.approx(expected_text.tolist(), abs=1e-6)
    with pytest.raises(ValueError, match="no description"):
        stealth_table(clean_dir, adv_dir, image_encoder=enc, text_encoder=txt, texts={"a": "x"}, progress=False)


def test_stealth_table_matching_errors(tmp_path):
    clean_dir, adv_dir = write_pairs(tmp_path, ["x1", "x2"])
    save_png(torch.rand(3, 24, 24), clean_dir / "only_clean.png")
    save_png(torch.rand(3, 24, 24), adv_dir / "only_adv.png")
    with pytest.raises(ValueError, match=r"only_clean\.png.*only_adv\.png"):
        stealth_table(clean_dir, adv_dir, progress=False)
    (clean_dir / "only_clean.png").unlink()
    (adv_dir / "only_adv.png").unlink()
    save_png(torch.rand(3, 20, 24), adv_dir / "x1.png")
    with pytest.raises(ValueError, match="x1.png"):
        stealth_table(clean_dir, adv_dir, progress=False)
    with pytest.raises(ValueError, match="no image files"):
        stealth_table(tmp_path / "adv", tmp_path / "adv", clean_suffix="_clean", progress=False)


def test_stealth_table_suffixes_in_one_folder(tmp_path):
    folder = tmp_path / "images"
    clean, adv = image_pairs(8, 2, 16, 16)
    for i, item in enumerate(["42", "7"]):
        save_png(clean[i], folder / f"{item}_clean.png")
        save_png(adv[i], folder / f"{item}_adv.png")
    save_png(clean[0], folder / "7_grid.png")  # neither suffix: ignored
    rows = stealth_table(folder, folder, clean_suffix="_clean", adv_suffix="_adv", progress=False)
    assert [r["name"] for r in rows] == ["42", "7"]


def run_cli(argv):
    parser = argparse.ArgumentParser()
    add_stealth_arguments(parser)
    return cli_stealth(parser.parse_args(argv))


def test_cli_writes_csv_and_summary(tmp_path, capsys, monkeypatch):
    clean_dir, adv_dir = write_pairs(tmp_path, ["p", "q"])
    (tmp_path / "texts.csv").write_text("item,original\np,red shirt\nq,blue bag\n")
    fake_loading = types.SimpleNamespace(
        load_image_encoder=lambda spec: TinyImageEncoder(), load_text_encoder=lambda spec: TinyTextEncoder()
    )
    monkeypatch.setitem(__import__("sys").modules, "venomkit.encoders.loading", fake_loading)
    out = tmp_path / "report" / "stealth.csv"
    argv = [str(clean_dir), str(adv_dir), "--out", str(out), "--encoder", "zoo:x", "--texts", str(tmp_path / "texts.csv")]
    assert run_cli(argv) == 0
    printed = capsys.readouterr().out
    assert "mean" in printed and "sigma 1.5" in printed
    with open(out) as f:
        rows = list(csv.DictReader(f))
    assert [r["name"] for r in rows] == ["p", "q"]
    assert {"ssim", "psnr", "linf", "linf_255", "l2", "clip_image", "clip_text_clean", "clip_text_adv"} <= set(rows[0])
    summary = json.loads((tmp_path / "report" / "stealth.summary.json").read_text())
    assert summary["mean"]["n"] == 2 and "11x11" in summary["settings"]["ssim"]
    assert run_cli([str(clean_dir), str(tmp_path / "missing")]) == 2
    assert "not found" in capsys.readouterr().err


def test_stealth_compares_original_jpegs_with_adversarial_pngs_at_native_size(tmp_path):
    """A shop's folder of original JPEG photos against an attack's adversarial PNGs: paired by
    name, measured at each photo's own size; a size mismatch names both files and sizes."""
    from PIL import Image
    from skimage.metrics import structural_similarity

    originals, adversarial = tmp_path / "originals", tmp_path / "adv"
    originals.mkdir()
    rng = np.random.default_rng(0)
    for name, (h, w) in {"tall": (45, 30), "wide": (32, 48)}.items():
        Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8)).save(originals / f"{name}.jpg", quality=90)
        clean = load_image_file(originals / f"{name}.jpg")
        save_png((clean + 4 / 255 * torch.sign(torch.randn(clean.shape))).clamp(0, 1), adversarial / f"{name}.png")
    Image.fromarray(rng.integers(0, 256, (20, 20, 3), dtype=np.uint8)).save(originals / "not_attacked.jpg")
    rows = stealth_table(originals, adversarial, progress=False)  # every original vs the attacked few: those two
    assert [r["name"] for r in rows] == ["tall", "wide"]
    for r in rows:
        c, a = load_image_file(originals / f"{r['name']}.jpg"), load_image_file(adversarial / f"{r['name']}.png")
        expected = structural_similarity(c.double().numpy(), a.double().numpy(), gaussian_weights=True, sigma=1.5,
                                         use_sample_covariance=False, data_range=1.0, channel_axis=0)
        assert r["ssim"] == pytest.approx(expected, abs=1e-9) and r["linf"] == pytest.approx(4 / 255, abs=1e-6)
    save_png(torch.rand(3, 30, 45), adversarial / "tall.png")  # the photo came back squared / rotated
    with pytest.raises(ValueError, match=r"tall\.jpg is 30x45 \(W x H\), .*tall\.png is 45x30"):
        stealth_table(originals, adversarial, progress=False)
