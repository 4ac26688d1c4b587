"""Batched, cached feature extraction for a whole catalog.

:func:`extract_image_features` / :func:`extract_text_features` run an encoder over every item
in batches under ``torch.no_grad`` with progress (``venomkit.progress``) and return an (I, D) float32 CPU
tensor in catalog order.

Images stream: the catalog is read in index order, ``batch_size`` items at a time, each item
through ``catalog.image(i)`` (a (3, H_i, W_i) tensor at the photo's own size, decoded on
demand), and a batch is encoded with :func:`~venomkit.encoders.base.encode_images` (one
encoder call per distinct size in the batch). At most one batch of decoded images is alive at
a time, so memory is bounded by ``batch_size`` photos, whatever the catalog's length.

Cache behaviour (when ``cache_dir`` is given):

- one safetensors file per (encoder, catalog content) pair, named
  ``{image|text}-{key}.safetensors`` with ``key`` a SHA-256 over
  (a) the encoder's ``spec``, class and a weights fingerprint (every tensor's name, shape,
      dtype, sum and a strided sample of its values: a re-trained or randomly initialised
      encoder with the same spec gets a different key),
  (b) the item ids in order, and
  (c) the content: texts verbatim; images as the SHA-256 of in-memory tensors (their
      bytes, shape and dtype, so native sizes key apart), or the path plus file size and
      modification time for files (not re-reading every file), or ``none`` for items
      without an image, together with how the catalog decodes them (the placeholder's size
      and value; a resize-on-load ``image_size`` where a catalog has one);
- a hit loads the file without running the encoder or touching the images; anything that
  changes the key (an attacked image, an edited text, other weights) misses and recomputes;
- files are written atomically (temporary file + rename), so an interrupted run never leaves
  a truncated cache entry; nothing is ever evicted (delete the folder to clear it).
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from pathlib import Path
from typing import Callable, Iterable

import torch
from torch import nn

from venomkit.data.catalog import Catalog
from venomkit.encoders.base import encode_images, images_to
from venomkit.models.freeze import frozen_eval
from venomkit.progress import progress as progress_bar

_HASH_SAMPLE = 4096


def weights_fingerprint(module: nn.Module) -> str:
    """A cheap SHA-256 fingerprint of a module's state dict (names, shapes, sums, samples)."""
    h = hashlib.sha256()
    for name, tensor in module.state_dict().items():
        t = tensor.detach()
        h.update(f"{name}|{tuple(t.shape)}|{t.dtype}|".encode())
        if t.numel() == 0:
            continue
        flat = t.reshape(-1)
        stride = max(1, flat.numel() // _HASH_SAMPLE)
        sample = flat[::stride][:_HASH_SAMPLE].to("cpu", torch.float64)
        h.update(sample.numpy().tobytes())
        h.update(repr(float(flat.sum(dtype=torch.float64))).encode())
    return h.hexdigest()


def _image_source_digest(source) -> str:
    if source is None:
        return "none"
    if isinstance(source, torch.Tensor):
        t = source.detach().to("cpu").contiguous()
        return "t:" + hashlib.sha256(t.numpy().tobytes() + str((tuple(t.shape), t.dtype)).encode()).hexdigest()
    path = Path(source)
    try:
        stat = path.stat()
        return f"f:{path.resolve()}|{stat.st_size}|{stat.st_mtime_ns}"
    except OSError:
        return f"f:{path}|missing"


def _decoding(catalog: Catalog) -> tuple:
    """The catalog settings that change decoded pixels: the placeholder of image-less items
    (``placeholder_size``, ``placeholder_value``) and, in catalogs that resize on load, the
    int ``image_size`` (a catalog at native sizes has none)."""
    resize = getattr(catalog, "image_size", None)
    return (
        resize if isinstance(resize, int) else None,
        getattr(catalog, "placeholder_size", None),
        getattr(catalog, "placeholder_value", None),
    )


def content_key(encoder: nn.Module, catalog: Catalog, modality: str) -> str:
    """The cache key described in the module docstring (hex SHA-256)."""
    h = hashlib.sha256()
    h.update(f"{modality}|{type(encoder).__module__}.{type(encoder).__qualname__}|{getattr(encoder, 'spec', '')}|".encode())
    h.update(weights_fingerprint(encoder).encode())
    h.update(f"|decoding={_decoding(catalog)}|n={catalog.n_items}|".encode())
    for item_id in catalog.item_ids:
        h.update(item_id.encode() + b"\x00")
    if modality == "image":
        for source in catalog.images:
            h.update(_image_source_digest(source).encode() + b"\x00")
    else:
        for text in catalog.texts:
            h.update(text.encode("utf-8") + b"\x00")
    return h.hexdigest()


def _batches(n: int, batch_size: int) -> Iterable[list[int]]:
    for start in range(0, n, batch_size):
        yield list(range(start, min(start + batch_size, n)))


def _extract(
    encoder: nn.Module,
    catalog: Catalog,
    modality: str,
    batch_fn: Callable[[list[int]], object],
    encode_batch: Callable[[object, torch.device], torch.Tensor],
    batch_size: int,
    cache_dir: str | Path | None,
    device: str | torch.device | None,
    progress: bool | None,
) -> torch.Tensor:
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    cache_path = None
    if cache_dir is not None:
        cache_path = Path(cache_dir) / f"{modality}-{content_key(encoder, catalog, modality)}.safetensors"
        if cache_path.is_file():
            from safetensors.torch import load_file

            return load_file(str(cache_path))["features"]
    if device is None:
        param = next(iter(encoder.parameters()), None)
        device = param.device if param is not None else torch.device("cpu")
    chunks = []
    with frozen_eval(encoder), torch.no_grad():
        batches = _batches(catalog.n_items, batch_size)
        total = (catalog.n_items + batch_size - 1) // batch_size
        bar = progress_bar(batches, total=total, desc=f"{modality} features", unit="batch", enabled=progress is not False, leave=False)
        for idx in bar:
            chunks.append(encode_batch(batch_fn(idx), device).float().cpu())
    features = torch.cat(chunks) if chunks else torch.zeros(0, int(getattr(encoder, "output_dim", 0)))
    if cache_path is not None:
        _save_atomic(features, cache_path, encoder, catalog)
    return features


def _save_atomic(features: torch.Tensor, path: Path, encoder: nn.Module, catalog: Catalog) -> None:
    from safetensors.torch import save_file

    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, suffix=".tmp")
    os.close(fd)
    try:
        save_file(
            {"features": features.contiguous()},
            tmp,
            metadata={"spec": str(getattr(encoder, "spec", "")), "n_items": str(catalog.n_items)},
        )
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def extract_image_features(
    encoder: nn.Module,
    catalog: Catalog,
    batch_size: int = 64,
    cache_dir: str | Path | None = None,
    device: str | torch.device | None = None,
    progress: bool | None = None,
) -> torch.Tensor:
    """Encode every catalog image: -> (I, D) float32 on CPU, in catalog order.

    ``encoder`` maps (B, 3, H, W) [0, 1] images to (B, D); images of different sizes are
    streamed and grouped by size (module docstring), so features equal encoding each image
    alone. ``cache_dir`` enables the on-disk cache (module docstring). ``progress=None`` shows
    the bar only on a terminal.
    """

    def images(idx: list[int]) -> list[torch.Tensor]:
        return [catalog.image(i) for i in idx]

    def encode(batch: list[torch.Tensor], dev: torch.device) -> torch.Tensor:
        return encode_images(encoder, images_to(batch, dev))

    return _extract(encoder, catalog, "image", images, encode, batch_size, cache_dir, device, progress)


def extract_text_features(
    encoder: nn.Module,
    catalog: Catalog,
    batch_size: int = 64,
    cache_dir: str | Path | None = None,
    device: str | torch.device | None = None,
    progress: bool | None = None,
) -> torch.Tensor:
    """Encode every catalog text: -> (I, D) float32 on CPU, in catalog order (see above)."""
    return _extract(encoder, catalog, "text", catalog.text_batch, lambda texts, _: encoder(texts), batch_size, cache_dir, device, progress)


def extract_features(
    encoder: nn.Module,
    catalog: Catalog,
    batch_size: int = 64,
    cache_dir: str | Path | None = None,
    device: str | torch.device | None = None,
    progress: bool | None = None,
) -> torch.Tensor:
    """Image features for an :class:`~venomkit.encoders.base.ImageEncoder`, text features otherwise."""
    from venomkit.encoders.base import TextEncoder

    if isinstance(encoder, TextEncoder):
        return extract_text_features(encoder, catalog, batch_size, cache_dir, device, progress)
    return extract_image_features(encoder, catalog, batch_size, cache_dir, device, progress)
