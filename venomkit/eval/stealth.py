"""Stealth of adversarial content: how visible an image or text perturbation is.

Image metrics take float tensors (N, C, H, W) in [0, 1] and return one value per image (N,):

* :func:`ssim` -- SSIM of Wang et al. 2004 with an 11x11 Gaussian window (sigma 1.5,
  truncate 3.5), data range 1, K1 = 0.01, K2 = 0.03, population covariances, the 5-pixel
  border that the window does not cover left out, averaged over channels. This is exactly
  ``skimage.metrics.structural_similarity(a, b, gaussian_weights=True, sigma=1.5,
  use_sample_covariance=False, data_range=1, channel_axis=-1)`` (skimage's *default* settings,
  a uniform 7x7 window with sample covariances, give different numbers: always report the
  settings with the figure, see :data:`SSIM_SETTINGS`). Differentiable (AUV-Fusion's L_SSIM).
* :func:`psnr` (dB, data range 1), :func:`linf` and :func:`l2` (Euclidean norm of the
  difference over all C*H*W values, in [0, 1] units).
* :func:`clip_image_similarity`, :func:`clip_image_text_similarity`: cosine similarities of
  CLIP (any :class:`~venomkit.encoders.base.ImageEncoder` / ``TextEncoder``) features.
* :func:`lpips_distance`: LPIPS (Zhang et al. 2018) with the ``lpips`` package, only when the
  backbone weights are given as a local file (no downloads).

Text metrics: :func:`edit_ratio` (share of changed tokens: token-level Levenshtein distance
over the longer length; words by default; defined in :mod:`venomkit.eval.text_edits` with the
other token-edit measures) and :func:`text_similarity` (text-encoder cosine).

:func:`stealth_table` computes the image metrics on the *saved files* (PNG or JPEG) of two folders with
matching names, so anyone can recompute them; ``venomkit stealth CLEAN_DIR ADV_DIR`` prints
the table and writes it as CSV (:func:`add_stealth_arguments`, :func:`cli_stealth`).
"""

from __future__ import annotations

import argparse
import logging
import csv
import json
import math
import sys
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from venomkit.data.catalog import load_image_file
from venomkit.eval.text_edits import edit_ratio  # the stealth table's text metric; defined with the other token edits
from venomkit.models.freeze import freeze, frozen_eval
from venomkit.progress import progress as progress_bar

SSIM_SIGMA = 1.5
SSIM_TRUNCATE = 3.5  # skimage's choice for gaussian_weights=True: an 11-tap window at sigma 1.5
SSIM_K1 = 0.01
SSIM_K2 = 0.03

LOGGER = logging.getLogger(__name__)

SSIM_SETTINGS = (
    "SSIM: Gaussian window 11x11, sigma 1.5, data_range 1, K1 0.01, K2 0.03, population covariance, "
    "5-px border excluded, mean over RGB (= skimage structural_similarity(gaussian_weights=True, sigma=1.5, "
    "use_sample_covariance=False, data_range=1, channel_axis=-1))"
)

__all__ = [
    "SSIM_SETTINGS",
    "ssim",
    "psnr",
    "linf",
    "l2",
    "clip_image_similarity",
    "clip_image_text_similarity",
    "lpips_distance",
    "edit_ratio",
    "text_similarity",
    "stealth_settings",
    "stealth_table",
    "summarize",
    "write_csv",
    "add_stealth_arguments",
    "cli_stealth",
]


# --------------------------------------------------------------------------------------------
# Pixel metrics
# --------------------------------------------------------------------------------------------


def _check_pair(x: torch.Tensor, y: torch.Tensor, name: str) -> None:
    if x.dim() != 4:
        raise ValueError(f"{name}: expected images (N, C, H, W), got shape {tuple(x.shape)}")
    if x.shape != y.shape:
        raise ValueError(f"{name}: image shapes differ: {tuple(x.shape)} vs {tuple(y.shape)}")


def _gaussian_taps(sigma: float, truncate: float, dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    """The 1-D kernel of scipy.ndimage.gaussian_filter (radius int(truncate * sigma + 0.5))."""
    radius = int(truncate * sigma + 0.5)
    x = torch.arange(-radius, radius + 1, dtype=torch.float64)
    taps = torch.exp(-0.5 * (x / sigma) ** 2)
    return (taps / taps.sum()).to(dtype=dtype, device=device)


def ssim(x: torch.Tensor, y: torch.Tensor, data_range: float = 1.0) -> torch.Tensor:
    """Mean SSIM per image, (N, C, H, W) x 2 -> (N,); settings in the module docstring.

    Both images need H, W >= 11. Computed in the input dtype (float64 inputs reproduce
    skimage to ~1e-12, float32 to ~1e-6). Differentiable in ``x`` and ``y``.
    """
    _check_pair(x, y, "ssim")
    if not x.is_floating_point():
        raise ValueError(f"ssim: expected float images in [0, {data_range}], got dtype {x.dtype}")
    taps = _gaussian_taps(SSIM_SIGMA, SSIM_TRUNCATE, x.dtype, x.device)
    win = taps.numel()
    c, h, w = x.shape[1:]
    if h < win or w < win:
        raise ValueError(f"ssim: images must be at least {win}x{win} pixels, got {h}x{w}")
    # skimage filters the whole image with reflect padding and then crops (win - 1) // 2 pixels
    # from each side: the kept pixels are exactly those a 'valid' convolution produces.
    stack = torch.cat([x, y, x * x, y * y, x * y], dim=1)  # (N, 5C, H, W)
    groups = stack.shape[1]
    stack = F.conv2d(stack, taps.view(1, 1, win, 1).expand(groups, 1, win, 1), groups=groups)
    stack = F.conv2d(stack, taps.view(1, 1, 1, win).expand(groups, 1, 1, win), groups=groups)
    ux, uy, uxx, uyy, uxy = stack.split(c, dim=1)
    vx = uxx - ux * ux
    vy = uyy - uy * uy
    vxy = uxy - ux * uy
    c1 = (SSIM_K1 * data_range) ** 2
    c2 = (SSIM_K2 * data_range) ** 2
    s = ((2 * ux * uy + c1) * (2 * vxy + c2)) / ((ux * ux + uy * uy + c1) * (vx + vy + c2))
    return s.mean(dim=(2, 3)).mean(dim=1)


def psnr(x: torch.Tensor, y: torch.Tensor, data_range: float = 1.0) -> torch.Tensor:
    """Peak signal-to-noise ratio per image in dB, (N,): 10 log10(data_range^2 / MSE); inf if equal."""
    _check_pair(x, y, "psnr")
    mse = (x.double() - y.double()).pow(2).flatten(1).mean(1)
    return 10.0 * torch.log10(data_range**2 / mse)


def linf(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Largest absolute pixel change per image, (N,), in the images' units ([0, 1])."""
    _check_pair(x, y, "linf")
    return (x - y).abs().flatten(1).amax(1)


def l2(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Euclidean norm of the change per image over all C*H*W values, (N,), in [0, 1] units."""
    _check_pair(x, y, "l2")
    return (x - y).flatten(1).norm(dim=1)


# --------------------------------------------------------------------------------------------
# Feature similarities (CLIP or any encoder) and LPIPS
# --------------------------------------------------------------------------------------------


def _device_of(module: nn.Module) -> torch.device:
    for p in module.parameters():
        return p.device
    for b in module.buffers():
        return b.device
    return torch.device("cpu")


def clip_image_similarity(encoder: nn.Module, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Cosine similarity of ``encoder`` features of paired images, (N,) in [-1, 1].

    ``encoder`` is an :class:`~venomkit.encoders.base.ImageEncoder` (images (N, 3, H, W) in
    [0, 1] -> (N, D)); images are moved to its device.
    """
    _check_pair(a, b, "clip_image_similarity")
    device = _device_of(encoder)
    return F.cosine_similarity(encoder(a.to(device)), encoder(b.to(device)), dim=-1)


def clip_image_text_similarity(
    image_encoder: nn.Module, text_encoder: nn.Module, images: torch.Tensor, texts: Sequence[str]
) -> torch.Tensor:
    """Cosine similarity of each image's features with its text's features, (N,).

    The two encoders must share an embedding space (the two towers of one CLIP model).
    """
    if images.dim() != 4 or images.shape[0] != len(texts):
        raise ValueError(f"clip_image_text_similarity: {tuple(images.shape)} images for {len(texts)} texts")
    image_features = image_encoder(images.to(_device_of(image_encoder)))
    text_features = text_encoder(list(texts))
    if image_features.shape[-1] != text_features.shape[-1]:
        raise ValueError(
            f"clip_image_text_similarity: image features have {image_features.shape[-1]} dims but text features "
            f"{text_features.shape[-1]}: use the two towers of one CLIP model"
        )
    return F.cosine_similarity(image_features, text_features.to(image_features.device), dim=-1)


def _read_state_dict(path: Path) -> dict[str, torch.Tensor]:
    if not path.is_file():
        raise FileNotFoundError(f"LPIPS weights file not found: {path}")
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        return load_file(str(path))
    state = torch.load(path, map_location="cpu", weights_only=True)
    if isinstance(state, dict) and "state_dict" in state and isinstance(state["state_dict"], dict):
        state = state["state_dict"]
    if not isinstance(state, dict):
        raise ValueError(f"LPIPS weights file {path} does not hold a state dict")
    return state


_LPIPS_CACHE: dict[tuple[str, str, str], nn.Module] = {}


def load_lpips(weights: str | Path, net: str = "alex") -> nn.Module:
    """An ``lpips.LPIPS`` model whose backbone comes from a local torchvision state dict.

    ``weights`` is the torchvision ``alexnet``/``vgg16``/``squeezenet1_1`` ImageNet state dict
    (``.pth`` read with ``weights_only=True``, or ``.safetensors``), keys ``features.N.*``. The
    LPIPS linear heads ship inside the ``lpips`` package. Nothing is downloaded.
    """
    path = Path(weights)
    try:
        import lpips as lpips_pkg
    except ImportError:
        raise ImportError(
            "LPIPS needs the optional 'lpips' package (pip install lpips); the other stealth metrics do not"
        ) from None
    key = (str(path.resolve()), net, str(path.stat().st_mtime) if path.exists() else "")
    if key in _LPIPS_CACHE:
        return _LPIPS_CACHE[key]
    state = _read_state_dict(path)
    # pnet_rand=True builds the backbone without torchvision's download; its weights come next.
    model = lpips_pkg.LPIPS(net=net, pretrained=True, pnet_rand=True, verbose=False)
    layers: dict[int, nn.Module] = {}
    for slice_module in model.net.children():
        for name, module in slice_module.named_children():
            layers[int(name)] = module
    loaded = 0
    for name, tensor in state.items():
        parts = name.split(".")
        if parts[0] == "features":
            parts = parts[1:]
        if len(parts) != 2 or not parts[0].isdigit():
            continue  # classifier layers: LPIPS does not use them
        index, param = int(parts[0]), parts[1]
        if index not in layers or not hasattr(layers[index], param):
            continue
        target = getattr(layers[index], param)
        if target.shape != tensor.shape:
            raise ValueError(f"LPIPS weights {path}: {name} has shape {tuple(tensor.shape)}, expected {tuple(target.shape)} for net={net!r}")
        with torch.no_grad():
            target.copy_(tensor)
        loaded += 1
    expected = sum(1 for m in layers.values() for _ in m.parameters(recurse=False))
    if loaded != expected:
        raise ValueError(f"LPIPS weights {path}: loaded {loaded} of the {expected} backbone tensors of net={net!r}")
    freeze(model)
    _LPIPS_CACHE[key] = model
    return model


def lpips_distance(a: torch.Tensor, b: torch.Tensor, weights: str | Path | None, net: str = "alex") -> torch.Tensor:
    """LPIPS distance per image pair, (N,), images in [0, 1] (lower = more similar).

    ``weights``: local file with the backbone's ImageNet weights (see :func:`load_lpips`).
    Without it LPIPS is not computed: a random backbone would give meaningless numbers.
    """
    if weights is None:
        raise ValueError(
            "LPIPS needs the backbone's ImageNet weights as a local file (e.g. torchvision's alexnet "
            "state dict); pass weights=PATH (CLI: --lpips-weights PATH). Nothing is downloaded."
        )
    _check_pair(a, b, "lpips_distance")
    model = load_lpips(weights, net).to(a.device)
    return model(a, b, normalize=True).flatten()  # normalize=True maps [0, 1] to LPIPS's [-1, 1]


# --------------------------------------------------------------------------------------------
# Text metrics
# --------------------------------------------------------------------------------------------


def text_similarity(text_encoder: nn.Module, a: Sequence[str], b: Sequence[str]) -> torch.Tensor:
    """Cosine similarity of text-encoder features of paired texts, (N,)."""
    if len(a) != len(b):
        raise ValueError(f"text_similarity: {len(a)} texts vs {len(b)} texts")
    return F.cosine_similarity(text_encoder(list(a)), text_encoder(list(b)), dim=-1)


# --------------------------------------------------------------------------------------------
# Tables over two folders of saved images
# --------------------------------------------------------------------------------------------


def _image_files(folder: Path, suffix: str, role: str) -> dict[str, Path]:
    """Name -> file of every image (PNG, JPEG, WebP, BMP, GIF) in ``folder`` whose stem ends in ``suffix``."""
    from venomkit.data.loaders import IMAGE_EXTENSIONS

    if not folder.is_dir():
        raise FileNotFoundError(f"{role} folder not found: {folder}")
    files: dict[str, Path] = {}
    for path in sorted(folder.iterdir()):
        if path.suffix.lower() not in IMAGE_EXTENSIONS or not path.is_file():
            continue
        stem = path.stem
        if suffix:
            if not stem.endswith(suffix):
                continue
            stem = stem[: -len(suffix)]
        if stem in files:
            raise ValueError(f"two {role} images are named {stem!r}: {files[stem].name} and {path.name}; keep one, or tell them apart with a suffix")
        files[stem] = path
    return files


def _match(clean_dir: Path, adv_dir: Path, clean_suffix: str, adv_suffix: str) -> list[tuple[str, Path, Path]]:
    clean = _image_files(clean_dir, clean_suffix, "clean")
    adv = _image_files(adv_dir, adv_suffix, "adversarial")
    if not clean:
        raise ValueError(f"no image files{f' ending in {clean_suffix!r}' if clean_suffix else ''} in {clean_dir}")
    only_clean = sorted(set(clean) - set(adv))
    only_adv = sorted(set(adv) - set(clean))
    if only_clean and not only_adv and len(only_clean) < len(clean):
        # A folder of every original photo against the attacked few: compare those, and say so.
        LOGGER.warning("%d of %d images in %s have no adversarial file in %s; comparing the %d that do",
                       len(only_clean), len(clean), clean_dir, adv_dir, len(clean) - len(only_clean))
        only_clean = []
    if only_clean or only_adv:

        def listing(names: list[str], files: dict[str, Path]) -> str:
            shown = ", ".join(files[n].name for n in names[:10])
            return f"{shown}{f' and {len(names) - 10} more' if len(names) > 10 else ''}"

        parts = []
        if only_clean:
            parts.append(f"{len(only_clean)} file(s) in {clean_dir} have no match in {adv_dir}: {listing(only_clean, clean)}")
        if only_adv:
            parts.append(f"{len(only_adv)} file(s) in {adv_dir} have no match in {clean_dir}: {listing(only_adv, adv)}")
        raise ValueError("unmatched images: " + "; ".join(parts))
    return [(name, clean[name], adv[name]) for name in sorted(clean) if name in adv]


def stealth_settings(
    image_encoder: nn.Module | None = None,
    text_encoder: nn.Module | None = None,
    lpips_weights: str | Path | None = None,
    lpips_net: str = "alex",
) -> dict[str, str]:
    """What each column of :func:`stealth_table` measures, with its settings (for reports)."""
    settings = {
        "images": "the saved 8-bit files (PNG, JPEG, ...) read as float RGB in [0, 1] at their own size, no resizing",
        "ssim": SSIM_SETTINGS,
        "psnr": "PSNR in dB, data_range 1, MSE over all RGB values (inf for identical images)",
        "linf": "max |adv - clean| over all RGB values, [0, 1] units",
        "linf_255": "linf in 8-bit levels (linf * 255)",
        "l2": "Euclidean norm of adv - clean over all C*H*W values, [0, 1] units",
    }
    if image_encoder is not None:
        spec = getattr(image_encoder, "spec", type(image_encoder).__name__)
        settings["clip_image"] = f"cosine of image-encoder features of clean vs adversarial image ({spec})"
        if text_encoder is not None:
            settings["clip_text_clean"] = f"cosine of clean image features with the original text's features ({spec})"
            settings["clip_text_adv"] = f"cosine of adversarial image features with the original text's features ({spec})"
    if lpips_weights is not None:
        settings["lpips"] = f"LPIPS v0.1, net {lpips_net}, backbone weights {lpips_weights}"
    return settings


def stealth_table(
    clean_dir: str | Path,
    adv_dir: str | Path,
    image_encoder: nn.Module | None = None,
    text_encoder: nn.Module | None = None,
    texts: Mapping[str, str] | None = None,
    lpips_weights: str | Path | None = None,
    lpips_net: str = "alex",
    clean_suffix: str = "",
    adv_suffix: str = "",
    batch_size: int = 32,
    progress: bool = True,
) -> list[dict]:
    """Stealth figures for every pair of images with matching names in two folders (PNG or
    JPEG, e.g. a shop's original photos against an attack's adversarial PNGs), at their own size.

    Names match on the file stem after removing ``clean_suffix`` / ``adv_suffix`` (so an
    attack's ``images/`` folder with ``<id>_clean.png`` and ``<id>_adv.png`` works with
    ``clean_dir == adv_dir``). Any file without a partner raises ``ValueError`` naming it.
    Returns one dict per pair, sorted by name: ``name, ssim, psnr, linf, linf_255, l2`` plus
    ``clip_image`` (with ``image_encoder``), ``clip_text_clean``/``clip_text_adv`` (with
    ``text_encoder`` and ``texts``: name -> original description) and ``lpips`` (with
    ``lpips_weights``). Column meanings: :func:`stealth_settings`. SSIM is NaN for images
    smaller than its 11x11 window (the other figures are still computed).
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    if text_encoder is not None and texts is None:
        raise ValueError("text_encoder given without texts (name -> original description)")
    if texts is not None and (image_encoder is None or text_encoder is None):
        raise ValueError("texts need both an image encoder and a text encoder (two towers of one CLIP model)")
    pairs = _match(Path(clean_dir), Path(adv_dir), clean_suffix, adv_suffix)
    if texts is not None:
        missing = [name for name, _, _ in pairs if name not in texts]
        if missing:
            raise ValueError(f"texts: no description for {len(missing)} image(s): {', '.join(missing[:10])}")
    rows: list[dict] = []
    starts = range(0, len(pairs), batch_size)
    bar = progress_bar(starts, desc="stealth", unit="batch", enabled=progress, leave=False)
    with frozen_eval(image_encoder, text_encoder), torch.no_grad():
        for start in bar:
            chunk = pairs[start : start + batch_size]
            clean, adv = [], []
            for name, clean_path, adv_path in chunk:
                c, a = load_image_file(clean_path), load_image_file(adv_path)
                if c.shape != a.shape:
                    (ch, cw), (ah, aw) = c.shape[1:], a.shape[1:]
                    raise ValueError(f"image sizes differ: {clean_path} is {cw}x{ch} (W x H), {adv_path} is {aw}x{ah}; stealth compares photos at their own size, never resized")
                clean.append(c)
                adv.append(a)
            # Pairs of one batch may differ in size from each other: group by shape.
            by_shape: dict[tuple, list[int]] = {}
            for i, c in enumerate(clean):
                by_shape.setdefault(tuple(c.shape), []).append(i)
            batch_rows: list[dict] = [{"name": name} for name, _, _ in chunk]
            for members in by_shape.values():
                x = torch.stack([clean[i] for i in members])
                y = torch.stack([adv[i] for i in members])
                columns = _image_columns(x, y, image_encoder, text_encoder, texts, [chunk[i][0] for i in members], lpips_weights, lpips_net)
                for col, values in columns.items():
                    for i, v in zip(members, values):
                        batch_rows[i][col] = v
            rows.extend(batch_rows)
    return rows


def _image_columns(x, y, image_encoder, text_encoder, texts, names, lpips_weights, lpips_net) -> dict[str, list[float]]:
    small = min(x.shape[-2:]) >= 11
    out = {
        "ssim": ssim(x.double(), y.double()).tolist() if small else [math.nan] * len(x),
        "psnr": psnr(x, y).tolist(),
        "linf": linf(x, y).tolist(),
    }
    out["linf_255"] = [round(v * 255, 4) for v in out["linf"]]
    out["l2"] = l2(x, y).tolist()
    if image_encoder is not None:
        device = _device_of(image_encoder)
        fx, fy = image_encoder(x.to(device)), image_encoder(y.to(device))
        out["clip_image"] = F.cosine_similarity(fx, fy, dim=-1).tolist()
        if text_encoder is not None and texts is not None:
            ft = text_encoder([texts[n] for n in names]).to(fx.device)
            if ft.shape[-1] != fx.shape[-1]:
                raise ValueError(f"text features have {ft.shape[-1]} dims but image features {fx.shape[-1]}: use one CLIP model")
            out["clip_text_clean"] = F.cosine_similarity(fx, ft, dim=-1).tolist()
            out["clip_text_adv"] = F.cosine_similarity(fy, ft, dim=-1).tolist()
    if lpips_weights is not None:
        out["lpips"] = lpips_distance(x, y, lpips_weights, lpips_net).tolist()
    return out


def summarize(rows: Sequence[Mapping]) -> dict[str, float | int]:
    """Mean of every numeric column over rows (non-finite values, e.g. PSNR of identical
    images, are left out of the mean and counted in ``<column>_nonfinite``)."""
    summary: dict[str, float | int] = {"n": len(rows)}
    columns = [k for k in (rows[0] if rows else {}) if k != "name"]
    for col in columns:
        values = np.array([float(r[col]) for r in rows], dtype=np.float64)
        finite = np.isfinite(values)
        summary[col] = float(values[finite].mean()) if finite.any() else math.nan
        if not finite.all():
            summary[f"{col}_nonfinite"] = int((~finite).sum())
    return summary


def write_csv(rows: Sequence[Mapping], path: str | Path) -> None:
    """One row per image pair; ``name`` first, then the metric columns."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fields = list(rows[0]) if rows else ["name"]
    with open(path, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=fields)
        writer.writeheader()
        for row in rows:
            writer.writerow({k: (f"{v:.6g}" if isinstance(v, float) else v) for k, v in row.items()})


def format_table(rows: Sequence[Mapping], summary: Mapping | None = None) -> str:
    """A plain-text table of the rows, plus a ``mean`` line when ``summary`` is given."""
    if not rows:
        return "(no images)"
    columns = list(rows[0])
    lines = [[str(c) for c in columns]]
    for row in rows:
        lines.append([row["name"]] + [f"{row[c]:.4f}" for c in columns[1:]])
    if summary is not None:
        lines.append(["mean"] + [f"{summary.get(c, math.nan):.4f}" for c in columns[1:]])
    widths = [max(len(line[i]) for line in lines) for i in range(len(columns))]
    text = ["  ".join(cell.ljust(w) if i == 0 else cell.rjust(w) for i, (cell, w) in enumerate(zip(line, widths))) for line in lines]
    if summary is not None:
        text.insert(-1, "-" * len(text[0]))
    return "\n".join(text)


def _read_texts(path: Path) -> dict[str, str]:
    """name -> text from a CSV with a header: key column name|item|item_id, text column original|text|description."""
    with open(path, newline="", encoding="utf-8") as f:
        reader = csv.DictReader(f)
        header = reader.fieldnames or []
        key = next((c for c in ("name", "item", "item_id") if c in header), None)
        col = next((c for c in ("original", "text", "description") if c in header), None)
        if key is None or col is None:
            raise ValueError(
                f"{path}: line 1: needs a name column (name, item or item_id) and a text column "
                f"(original, text or description); found {header}"
            )
        texts: dict[str, str] = {}
        for line, row in enumerate(reader, start=2):
            if not row.get(key):
                raise ValueError(f"{path}: line {line}: field {key!r} is empty")
            texts[row[key]] = row.get(col) or ""
    return texts


def add_stealth_arguments(parser: argparse.ArgumentParser) -> None:
    """Arguments of ``venomkit stealth CLEAN_DIR ADV_DIR``."""
    parser.add_argument("clean_dir", type=Path, help="folder of the original images (PNG or JPEG, at their own size)")
    parser.add_argument("adv_dir", type=Path, help="folder of adversarial images with matching names (same sizes)")
    parser.add_argument("--out", type=Path, default=None, help="write the table as CSV (and FILE.summary.json with settings and means)")
    parser.add_argument("--encoder", default=None, help="image encoder spec for CLIP image-image similarity (zoo:NAME, folder, ARCH/pretrained, resnet18, ...)")
    parser.add_argument("--text-encoder", default=None, help="text encoder spec for image-text similarity (default: --encoder)")
    parser.add_argument("--texts", type=Path, default=None, help="CSV of original descriptions (columns name|item|item_id and original|text|description)")
    parser.add_argument("--lpips-weights", type=Path, default=None, help="local backbone weights file; LPIPS is computed only when given")
    parser.add_argument("--lpips-net", default="alex", choices=("alex", "vgg", "squeeze"))
    parser.add_argument("--clean-suffix", default="", help="file-stem suffix of clean images, removed before matching (e.g. _clean)")
    parser.add_argument("--adv-suffix", default="", help="file-stem suffix of adversarial images, removed before matching (e.g. _adv)")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--device", default="cpu", help="device for the encoders")


def cli_stealth(args: argparse.Namespace) -> int:
    """``venomkit stealth``: print the stealth table of two image folders and optionally write CSV."""
    image_encoder = text_encoder = None
    texts = None
    try:
        if args.encoder is not None:
            from venomkit.encoders.loading import load_image_encoder

            image_encoder = load_image_encoder(args.encoder).to(args.device)
        if args.texts is not None:
            if args.encoder is None:
                raise ValueError("--texts needs --encoder (image-text similarity is measured with CLIP)")
            from venomkit.encoders.loading import load_text_encoder

            text_encoder = load_text_encoder(args.text_encoder or args.encoder).to(args.device)
            texts = _read_texts(args.texts)
        rows = stealth_table(
            args.clean_dir,
            args.adv_dir,
            image_encoder=image_encoder,
            text_encoder=text_encoder,
            texts=texts,
            lpips_weights=args.lpips_weights,
            lpips_net=args.lpips_net,
            clean_suffix=args.clean_suffix,
            adv_suffix=args.adv_suffix,
            batch_size=args.batch_size,
        )
    except (ValueError, FileNotFoundError, ImportError) as exc:
        print(f"venomkit stealth: error: {exc}", file=sys.stderr)
        return 2
    summary = summarize(rows)
    settings = stealth_settings(image_encoder, text_encoder, args.lpips_weights, args.lpips_net)
    print(format_table(rows, summary))
    print()
    for column, text in settings.items():
        print(f"{column}: {text}")
    if args.out is not None:
        write_csv(rows, args.out)
        sidecar = args.out.with_name(args.out.stem + ".summary.json")
        sidecar.write_text(json.dumps({"clean_dir": str(args.clean_dir), "adv_dir": str(args.adv_dir), "mean": summary, "settings": settings}, indent=2) + "\n")
        print(f"\nwrote {args.out} ({len(rows)} rows) and {sidecar}")
    return 0
