"""Exporting a dataset as RecBole/MMRec atomic files plus PNG images (:func:`write_atomic`).

The files are the ones :func:`venomkit.data.loaders.load_atomic` reads: ``NAME.inter``,
``NAME.item`` and ``images/<item_id>.png``. ``venomkit toyshop --out DIR`` writes the synthetic
shop with it.
"""

from __future__ import annotations

import numbers
import re
from pathlib import Path
from typing import Any

from venomkit.data.catalog import save_png
from venomkit.data.dataset import Dataset
from venomkit.progress import progress as progress_bar

_SAFE_NAME = re.compile(r"[A-Za-z0-9_.\-]+")


def _clean_cell(value: str) -> str:
    # Tabs and newlines would break the row; they become single spaces.
    return re.sub(r"[\t\r\n]+", " ", value)


def _attribute_column(name: str, values: list) -> tuple[str, list[str]]:
    """Atomic type and cells for one attribute column."""
    present = [v for v in values if v is not None]
    if present and all(isinstance(v, (list, tuple)) for v in present):
        if all(isinstance(e, numbers.Real) and not isinstance(e, bool) for v in present for e in v):
            return "float_seq", [" ".join(repr(float(e)) for e in v) if v is not None else "" for v in values]
        cells = []
        for v in values:
            elements = [] if v is None else [str(e) for e in v]
            bad = [e for e in elements if e == "" or re.search(r"\s", e)]
            if bad:
                raise ValueError(f"attribute {name!r}: list element {bad[0]!r} is empty or has whitespace (token_seq)")
            cells.append(" ".join(elements))
        return "token_seq", cells
    if present and all(isinstance(v, numbers.Real) and not isinstance(v, bool) for v in present):

        def number(v: Any) -> str:
            if v is None:
                return ""
            if isinstance(v, numbers.Integral):
                return str(int(v))
            return repr(float(v))

        return "float", [number(v) for v in values]
    return "token", ["" if v is None else _clean_cell(str(v)) for v in values]


def write_atomic(dataset: Dataset, folder: str | Path, name: str | None = None) -> Path:
    """Write ``dataset`` as ``folder/NAME.inter``, ``folder/NAME.item`` and ``folder/images/*.png``.

    ``.inter`` has ``user_id:token item_id:token`` (+ ``timestamp:float`` when known) for
    every interaction (the split is not written: it is recomputed, seeded, on load).
    ``.item`` has ``item_id:token text:token_seq`` and one typed column per attribute
    (str -> token, numbers -> float, lists -> token_seq / float_seq). Tabs and newlines
    in texts become spaces. Images are written as 8-bit PNG at the catalog's image size;
    items without an image get no file (they load back as missing images). Returns the
    folder.
    """
    name = name or dataset.name
    if not _SAFE_NAME.fullmatch(name):
        raise ValueError(f"dataset name {name!r} is not a safe file name (letters, digits, '_', '.', '-')")
    catalog = dataset.catalog
    for attr in catalog.attributes:
        if attr in ("item_id", "text") or not _SAFE_NAME.fullmatch(attr):
            raise ValueError(f"attribute name {attr!r} cannot be written as an atomic column")
    for item_id in catalog.item_ids:
        if not item_id or not _SAFE_NAME.fullmatch(item_id):
            raise ValueError(f"item id {item_id!r} cannot name an image file (letters, digits, '_', '.', '-')")
    folder = Path(folder)
    (folder / "images").mkdir(parents=True, exist_ok=True)

    columns = [_attribute_column(attr, values) for attr, values in catalog.attributes.items()]
    header = ["item_id:token", "text:token_seq"] + [f"{attr}:{kind}" for attr, (kind, _) in zip(catalog.attributes, columns)]
    with open(folder / f"{name}.item", "w", encoding="utf-8", newline="\n") as handle:
        handle.write("\t".join(header) + "\n")
        for i, item_id in enumerate(catalog.item_ids):
            cells = [item_id, _clean_cell(catalog.texts[i])] + [cells[i] for _, cells in columns]
            handle.write("\t".join(cells) + "\n")

    inter = dataset.interactions
    users, items = inter.pairs()
    user_ids = dataset.user_ids or [str(u) for u in range(inter.n_users)]
    for user_id in set(user_ids):
        if not user_id or re.search(r"\s", user_id):
            raise ValueError(f"user id {user_id!r} is empty or has whitespace")
    stamps = inter.timestamps.data if inter.timestamps is not None else None  # same CSR order as pairs()
    with open(folder / f"{name}.inter", "w", encoding="utf-8", newline="\n") as handle:
        handle.write("user_id:token\titem_id:token" + ("\ttimestamp:float" if stamps is not None else "") + "\n")
        for k in range(len(users)):
            row = f"{user_ids[users[k]]}\t{catalog.item_ids[items[k]]}"
            if stamps is not None:
                t = float(stamps[k])
                row += "\t" + (str(int(t)) if t.is_integer() else repr(t))
            handle.write(row + "\n")

    for i in progress_bar(range(catalog.n_items), desc="writing images", unit="img"):
        if catalog.has_image(i):
            save_png(catalog.image(i), folder / "images" / f"{catalog.item_ids[i]}.png")
    return folder
