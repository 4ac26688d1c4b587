"""The shop's image pipeline: what a real shop does to an uploaded photo before anyone sees it.

Shops re-encode uploads (resize, JPEG). A run's ``shop_transform`` applies such a pipeline to
every adversarial image before the victim re-encodes it and before stealth is measured, so a
table can say whether an attack survives JPEG quality 90. The pipeline is a comma-separated
list of steps applied in order, with PIL, to the saved 8-bit image:

    png                 nothing (the saved PNG is lossless): today's behaviour, the default
    jpeg:Q              JPEG round trip at quality Q (1-100, 4:2:0 chroma subsampling, PIL)
    resize:S            resize so the LONGER side is at most S pixels (aspect kept, bicubic
                        with antialiasing; smaller images are left alone)

e.g. ``resize:512,jpeg:85``. Stealth figures compare ``shop(clean)`` with ``shop(adv)`` (what a
customer would have seen against what they see), and the victim scores ``shop(adv)``; both
files are saved next to the PNGs (``<item>_clean_shop.<ext>``, ``<item>_adv_shop.<ext>``) so
every figure can be recomputed from the folder.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image


@dataclass(frozen=True)
class ShopStep:
    """One step: ``("jpeg", quality)`` or ``("resize", longest side)``."""

    op: str
    value: int


def parse_shop_transform(spec: str) -> tuple[ShopStep, ...]:
    """``"resize:512,jpeg:90"`` -> steps; ``"png"`` -> (). ValueError naming the bad step."""
    if not isinstance(spec, str) or not spec.strip():
        raise ValueError("shop_transform must be png, jpeg:Q or resize:S[,jpeg:Q]")
    steps: list[ShopStep] = []
    for part in (p.strip() for p in spec.split(",")):
        op, sep, value = part.partition(":")
        op = op.strip().lower()
        if op == "png" and not sep:
            continue
        if op not in ("jpeg", "resize") or not sep:
            raise ValueError(f"shop_transform step {part!r} is not png, jpeg:Q or resize:S (e.g. resize:512,jpeg:90)")
        try:
            number = int(value)
        except ValueError:
            raise ValueError(f"shop_transform step {part!r}: {value!r} is not an integer") from None
        if op == "jpeg" and not 1 <= number <= 100:
            raise ValueError(f"shop_transform step {part!r}: JPEG quality must be in 1..100")
        if op == "resize" and number < 8:
            raise ValueError(f"shop_transform step {part!r}: the longest side must be >= 8 pixels")
        steps.append(ShopStep(op, number))
    return tuple(steps)


class ShopTransform:
    """Apply a parsed shop pipeline to (3, H, W) images in [0, 1]; identity for ``png``."""

    def __init__(self, spec: str = "png") -> None:
        self.spec = spec
        self.steps = parse_shop_transform(spec)

    @property
    def identity(self) -> bool:
        return not self.steps

    @property
    def suffix(self) -> str:
        """File suffix of the shop's output: ``.jpg`` when the last lossy step is JPEG, else ``.png``."""
        return ".jpg" if any(s.op == "jpeg" for s in self.steps) else ".png"

    def encode(self, image: torch.Tensor) -> bytes:
        """The file the shop would serve for ``image`` (3, H, W) in [0, 1] (8-bit rounding first)."""
        array = np.rint(np.clip(image.detach().cpu().float().numpy(), 0, 1) * 255).astype(np.uint8).transpose(1, 2, 0)
        pil = Image.fromarray(array)
        data = None
        for step in self.steps:
            if step.op == "resize":
                w, h = pil.size
                scale = step.value / max(w, h)
                if scale < 1:
                    pil = pil.resize((max(1, round(w * scale)), max(1, round(h * scale))), Image.BICUBIC, reducing_gap=None)
                data = None
            else:
                buf = io.BytesIO()
                pil.save(buf, format="JPEG", quality=step.value)
                data = buf.getvalue()
                pil = Image.open(io.BytesIO(data)).convert("RGB")
        if data is None:
            buf = io.BytesIO()
            pil.save(buf, format="PNG")
            data = buf.getvalue()
        return data

    @staticmethod
    def decode(data: bytes) -> torch.Tensor:
        """(3, H, W) float in [0, 1] from the bytes :meth:`encode` made."""
        with Image.open(io.BytesIO(data)) as img:
            array = np.asarray(img.convert("RGB"), dtype=np.uint8)
        return torch.from_numpy(np.ascontiguousarray(array.transpose(2, 0, 1), dtype=np.float32) / np.float32(255.0))

    def __call__(self, image: torch.Tensor) -> torch.Tensor:
        return self.decode(self.encode(image))

    def save(self, image: torch.Tensor, path: Path) -> tuple[Path, torch.Tensor]:
        """Write the shop's file for ``image`` atomically at ``path`` (suffix replaced); returns it and its pixels."""
        from venomkit.atomic import write_bytes

        data = self.encode(image)
        path = Path(path).with_suffix(self.suffix)
        write_bytes(path, data)
        return path, self.decode(data)


def parse_save_format(spec: str) -> int | None:
    """``"png"`` -> None; ``"jpeg:Q"`` -> Q (1..100). ValueError naming the expected forms."""
    text = str(spec).strip().lower()
    if text == "png":
        return None
    kind, sep, value = text.partition(":")
    if kind in ("jpeg", "jpg") and sep:
        try:
            quality = int(value)
        except ValueError:
            quality = -1
        if 1 <= quality <= 100:
            return quality
    raise ValueError(f"save_format must be png or jpeg:Q with Q in 1..100 (e.g. jpeg:95), got {spec!r}")


def save_jpeg(image: torch.Tensor, path: Path, quality: int) -> Path:
    """Write (3, H, W) [0, 1] as a JPEG at ``quality`` atomically (a shop-ready file)."""
    from venomkit.atomic import write_bytes

    array = np.rint(np.clip(image.detach().cpu().float().numpy(), 0, 1) * 255).astype(np.uint8).transpose(1, 2, 0)
    buffer = io.BytesIO()
    Image.fromarray(array, "RGB").save(buffer, format="JPEG", quality=quality)
    return write_bytes(path, buffer.getvalue())
