"""The item catalog: raw images at their own size (read lazily), texts and attributes.

A :class:`Catalog` is the raw content a shop shows: one image and one description per item.
Attacks change exactly this content; victims re-encode it through their own encoders.
Items are addressed by a dense integer index ``0..n_items-1``; ``item_ids`` keeps the
dataset's own (string) identifiers in the same order.

Images are never resized here: a photo of 1166 x 1750 pixels is a (3, 1750, 1166) tensor, and
resizing, cropping and normalising belong to each encoder (they are part of the victim, and
attacks differentiate through them). Files are decoded on first use and kept in a cache
bounded in megabytes (as 8-bit arrays), so a catalog of thousands of photos does not live in
memory at once.
"""

from __future__ import annotations

import io
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
from PIL import Image

from venomkit.data.errors import DataFormatError


def read_image_array(path: str | Path) -> np.ndarray:
    """Decode an image file to an (H, W, 3) uint8 array (RGB, the file's own size).

    A missing or corrupt file raises :class:`DataFormatError` naming the file.
    """
    path = Path(path)
    try:
        with Image.open(path) as img:
            return np.asarray(img.convert("RGB"), dtype=np.uint8)
    except FileNotFoundError:
        raise DataFormatError(f"image file is missing: {path}", file=path) from None
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as exc:
        reason = " ".join(str(exc).split())
        raise DataFormatError(f"image file is corrupt or not an image: {path} ({reason})", file=path) from None


def array_to_tensor(array: np.ndarray) -> torch.Tensor:
    """(H, W, 3) uint8 -> (3, H, W) float32 in [0, 1] (exactly ``value / 255``)."""
    # Converted in numpy: per-image torch ops on tiny tensors stall for milliseconds on busy
    # CPUs (thread-pool wake-ups); the float32 division gives identical values.
    chw = np.ascontiguousarray(array.transpose(2, 0, 1), dtype=np.float32) / np.float32(255.0)
    return torch.from_numpy(chw)


def load_image_file(path: str | Path) -> torch.Tensor:
    """Read an image file as a float tensor (3, H, W) in [0, 1] at the file's own size."""
    return array_to_tensor(read_image_array(path))


def image_file_size(path: str | Path) -> tuple[int, int]:
    """(height, width) of an image file from its header (no decoding)."""
    try:
        with Image.open(path) as img:
            width, height = img.size
    except FileNotFoundError:
        raise DataFormatError(f"image file is missing: {path}", file=path) from None
    except (OSError, ValueError, SyntaxError) as exc:
        raise DataFormatError(f"image file is corrupt or not an image: {path} ({' '.join(str(exc).split())})", file=path) from None
    return height, width


class ImageCache:
    """Decoded images kept as uint8 arrays, least recently used first out, at most ``megabytes``."""

    def __init__(self, megabytes: float) -> None:
        self.capacity = int(megabytes * 2**20)
        self.bytes = 0
        self._items: OrderedDict[int, np.ndarray] = OrderedDict()

    def get(self, key: int) -> np.ndarray | None:
        array = self._items.get(key)
        if array is not None:
            self._items.move_to_end(key)
        return array

    def put(self, key: int, array: np.ndarray) -> None:
        if array.nbytes > self.capacity:
            return
        self._items[key] = array
        self.bytes += array.nbytes
        while self.bytes > self.capacity:
            _, old = self._items.popitem(last=False)
            self.bytes -= old.nbytes

    def __len__(self) -> int:
        return len(self._items)


def check_image_file(path: str | Path) -> None:
    """Raise :class:`DataFormatError` naming ``path`` when it is not a readable image; return None.

    Cheaper than decoding: PNG files are verified chunk by chunk (structure and checksums, no
    pixels); JPEG files are decoded in PIL's draft mode (the entropy-coded data is read, so a
    truncated download is found, while the pixels are reconstructed at 1/8 scale); other
    formats are decoded. Measured on the ML-100K posters folder (1,663 JPEGs): 0.3-0.4 s in all.
    """
    path = Path(path)
    try:
        with Image.open(path) as img:
            if img.format == "PNG":
                img.verify()
            else:
                if img.format == "JPEG":
                    img.draft("RGB", (1, 1))
                img.load()
    except FileNotFoundError:
        raise DataFormatError(f"image file is missing: {path}", file=path) from None
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as exc:
        reason = " ".join(str(exc).split())
        raise DataFormatError(f"image file is corrupt or not an image: {path} ({reason})", file=path) from None


def png_bytes(image: torch.Tensor, compress_level: int = 6) -> bytes:
    """A (3, H, W) float image in [0, 1] encoded as an 8-bit PNG (round to nearest)."""
    if image.dim() != 3 or image.shape[0] != 3:
        raise ValueError(f"save_png expects a (3, H, W) tensor, got shape {tuple(image.shape)}")
    # numpy, not torch, for the same reason as in array_to_tensor; np.rint rounds half to even
    # like torch.round.
    values = image.detach().to("cpu", torch.float32).numpy()
    array = np.rint(np.clip(values, 0.0, 1.0) * np.float32(255.0)).astype(np.uint8).transpose(1, 2, 0)
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format="PNG", compress_level=compress_level)
    return buffer.getvalue()


def save_png(image: torch.Tensor, path: str | Path) -> None:
    """Write a (3, H, W) float image in [0, 1] as an 8-bit PNG (round to nearest)."""
    data = png_bytes(image)
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    Path(path).write_bytes(data)


@dataclass
class Catalog:
    """Items with raw content.

    Attributes:
        item_ids: the dataset's identifiers, one per item, in index order.
        texts: one description per item (the text a seller controls).
        attributes: optional per-item columns (category, colour, title, ...), each a list
            aligned with ``item_ids``.
        images: per-item sources: a path to an image file (decoded on first use, at its own
            size), an in-memory (3, H, W) tensor in [0, 1], or ``None`` for an item with no
            image (shown as a flat grey placeholder of ``placeholder_size`` pixels; attack
            targets never come from those, see ``venomkit.runs.engine.select_targets``).
        cache_mb: decoded files kept in memory (uint8), least recently used dropped first.
    """

    item_ids: list[str]
    texts: list[str]
    attributes: dict[str, list] = field(default_factory=dict)
    images: list[str | Path | torch.Tensor | None] = field(default_factory=list)
    placeholder_size: int = 64
    placeholder_value: float = 0.5
    cache_mb: float = 256.0

    def __post_init__(self) -> None:
        n = len(self.item_ids)
        if len(self.texts) != n:
            raise ValueError(f"Catalog: {len(self.texts)} texts for {n} items")
        if self.images and len(self.images) != n:
            raise ValueError(f"Catalog: {len(self.images)} images for {n} items")
        if not self.images:
            self.images = [None] * n
        for name, column in self.attributes.items():
            if len(column) != n:
                raise ValueError(f"Catalog: attribute {name!r} has {len(column)} values for {n} items")
        if not 8 <= self.placeholder_size <= 4096:
            raise ValueError(f"Catalog: placeholder_size must be in [8, 4096], got {self.placeholder_size}")
        if not self.cache_mb >= 0:
            raise ValueError(f"Catalog: cache_mb must be >= 0, got {self.cache_mb}")
        for i, source in enumerate(self.images):
            if isinstance(source, torch.Tensor) and (source.dim() != 3 or source.shape[0] != 3):
                raise ValueError(f"Catalog: the image of item {self.item_ids[i]!r} must be (3, H, W), got {tuple(source.shape)}")
        self._index = {item_id: i for i, item_id in enumerate(self.item_ids)}
        if len(self._index) != n:
            raise ValueError("Catalog: item_ids are not unique")
        self._cache = ImageCache(self.cache_mb)
        self._sizes: dict[int, tuple[int, int]] = {}

    def __len__(self) -> int:
        return len(self.item_ids)

    @property
    def n_items(self) -> int:
        return len(self.item_ids)

    def index_of(self, item_id: str) -> int:
        """Dense index of a dataset item id (KeyError naming the id when unknown)."""
        try:
            return self._index[str(item_id)]
        except KeyError:
            raise KeyError(f"unknown item id {item_id!r}") from None

    def has_image(self, index: int) -> bool:
        return self.images[index] is not None

    def image(self, index: int) -> torch.Tensor:
        """The image of item ``index`` as (3, H, W) float in [0, 1], at its own size."""
        source = self.images[index]
        if source is None:
            return torch.full((3, self.placeholder_size, self.placeholder_size), self.placeholder_value)
        if isinstance(source, torch.Tensor):
            return source
        array = self._cache.get(index)
        if array is None:
            array = read_image_array(source)
            self._cache.put(index, array)
            self._sizes[index] = array.shape[:2]
        return array_to_tensor(array)

    def image_size(self, index: int) -> tuple[int, int]:
        """(height, width) of item ``index``'s image, from the file header when not decoded yet."""
        source = self.images[index]
        if source is None:
            return self.placeholder_size, self.placeholder_size
        if isinstance(source, torch.Tensor):
            return int(source.shape[1]), int(source.shape[2])
        if index not in self._sizes:
            self._sizes[index] = image_file_size(source)
        return self._sizes[index]

    def image_list(self, indices: Sequence[int] | torch.Tensor) -> list[torch.Tensor]:
        """Images of several items, each (3, H_i, W_i) at its own size."""
        if isinstance(indices, torch.Tensor):
            indices = indices.tolist()
        return [self.image(int(i)) for i in indices]

    def image_batch(self, indices: Sequence[int] | torch.Tensor) -> torch.Tensor:
        """Images of several items of ONE size stacked as (B, 3, H, W) float in [0, 1].

        Items whose images differ in size raise ValueError naming them: use
        :meth:`image_list` (a batch of native photos is a list).
        """
        images = self.image_list(indices)
        sizes = {tuple(im.shape[1:]) for im in images}
        if len(sizes) > 1:
            ids = [self.item_ids[int(i)] for i in (indices.tolist() if isinstance(indices, torch.Tensor) else indices)]
            shown = ", ".join(f"{i} {tuple(im.shape[1:])}" for i, im in list(zip(ids, images))[:4])
            raise ValueError(f"images differ in size ({shown}, ...): stack only same-size images, or use Catalog.image_list")
        return torch.stack(images)

    def text_batch(self, indices: Sequence[int] | torch.Tensor) -> list[str]:
        if isinstance(indices, torch.Tensor):
            indices = indices.tolist()
        return [self.texts[int(i)] for i in indices]

    def _copy(self, **changes: object) -> "Catalog":
        values = dict(item_ids=list(self.item_ids), texts=list(self.texts), attributes=self.attributes, images=list(self.images),
                      placeholder_size=self.placeholder_size, placeholder_value=self.placeholder_value, cache_mb=self.cache_mb)
        values.update(changes)
        return Catalog(**values)  # type: ignore[arg-type]

    def with_content(
        self, indices: Sequence[int], images: Sequence[torch.Tensor] | torch.Tensor | None = None, texts: Sequence[str] | None = None
    ) -> "Catalog":
        """A copy of the catalog whose items ``indices`` show new images ((3, H, W) each) and/or texts.

        This is how an attack's output becomes a shop: the rest of the catalog is shared.
        """
        new_images = list(self.images)
        new_texts = list(self.texts)
        for k, index in enumerate(indices):
            if images is not None:
                new_images[index] = images[k].detach().clone()
            if texts is not None:
                new_texts[index] = texts[k]
        return self._copy(texts=new_texts, images=new_images)

    def subset(self, indices: Sequence[int]) -> "Catalog":
        indices = list(indices)
        return self._copy(
            item_ids=[self.item_ids[i] for i in indices],
            texts=[self.texts[i] for i in indices],
            attributes={k: [v[i] for i in indices] for k, v in self.attributes.items()},
            images=[self.images[i] for i in indices],
        )
