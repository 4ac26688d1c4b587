"""Dataset loaders: RecBole/MMRec atomic files, the ML-100K posters folder, generic CSV files.

Every loader returns a :class:`~venomkit.data.dataset.Dataset` whose catalog holds raw content:
image *paths* (decoded lazily by :meth:`Catalog.image`) and texts as strings. Interactions are
implicit feedback: every listed (user, item) pair counts, unless ``min_rating`` is given.

Bad input never passes silently. It raises :class:`DataFormatError` naming the file, the line
(1-based, the header is line 1) and the field, or, where a documented policy says so, it is
handled and reported by ONE counted :class:`DataWarning` per kind of problem:

``missing_images``
    ``"placeholder"`` (default) keeps the item and shows a flat grey placeholder image;
    ``"drop"`` removes the item and its interactions; ``"error"`` raises. The policy covers
    missing files (a directory listing) and unreadable ones: every image file is checked at
    load time without a full decode (:func:`~venomkit.data.catalog.check_image_file`;
    0.3-0.4 s for the 1,663 ML-100K posters), so a corrupt image is reported when the catalog
    loads, not minutes later when it is first decoded.
``empty_texts``
    ``"error"`` (default for atomic and CSV files) raises; ``"keep"`` keeps the empty string;
    ``"drop"`` removes the item and its interactions. The ML-100K loader adds (and defaults
    to) ``"title"``: the movie title becomes the text (its 18 empty overviews).

``venomkit train`` exposes both policies as ``--missing-images`` and ``--empty-texts``; error
messages name the flag and the Python argument.

Repeated (user, item) pairs are merged into one interaction (latest timestamp kept), with a
counted warning (policy ``"merge"``). Users are indexed in natural order of their ids
(numeric ids numerically); items in file order. Users left with no interaction after a
``drop`` policy are removed (the warning counts them).

:func:`load_dataset` picks the loader from a spec string. The atomic format's writer,
:func:`venomkit.data.export.write_atomic`, writes any dataset so that :func:`load_atomic`
reads it back.
"""

from __future__ import annotations

import csv
import importlib
import math
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence

import numpy as np

from venomkit.data.catalog import Catalog, check_image_file
from venomkit.data.dataset import Dataset, make_split
from venomkit.data.errors import DataFormatError, warn_counted
from venomkit.data.interactions import Interactions
from venomkit.progress import progress as progress_bar

__all__ = [
    "MISSING_IMAGE_POLICIES",
    "EMPTY_TEXT_POLICIES",
    "IMAGE_EXTENSIONS",
    "ML100K_GENRES",
    "load_atomic",
    "load_ml100k_posters",
    "load_csv",
    "load_dataset",
    "is_atomic_folder",
    "is_ml100k_posters_folder",
]

MISSING_IMAGE_POLICIES = ("placeholder", "drop", "error")
EMPTY_TEXT_POLICIES = ("error", "keep", "drop")
# How a user changes a policy, for messages read on the command line and in Python alike.
MISSING_IMAGES_HOW = "--missing-images placeholder|drop (venomkit train) or missing_images='placeholder'|'drop' (Python)"
EMPTY_TEXTS_HOW = "--empty-texts keep|drop (venomkit train) or empty_texts='keep'|'drop' (Python)"
SPLIT_METHODS = ("ratio", "loo")
# Preference order when one item has several files (e.g. 12.png and 12.jpg).
IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".webp", ".bmp", ".gif")
ATOMIC_TYPES = ("token", "token_seq", "float", "float_seq")
ML100K_GENRES = (
    "genre_unknown", "Action", "Adventure", "Animation", "Children", "Comedy", "Crime", "Documentary",
    "Drama", "Fantasy", "FilmNoir", "Horror", "Musical", "Mystery", "Romance", "SciFi", "Thriller",
    "War", "Western",
)  # fmt: skip
_INT_LITERAL = re.compile(r"[+-]?\d+")


# --------------------------------------------------------------------------------------------
# Intermediate tables shared by all loaders
# --------------------------------------------------------------------------------------------


@dataclass
class _Items:
    """Parsed item rows, before the policies run."""

    file: Path
    ids: list[str]
    texts: list[str]
    lines: list[int]
    text_field: str
    attributes: dict[str, list] = field(default_factory=dict)
    images: list[Path | None] = field(default_factory=list)  # resolved file, None when missing
    expected: list[str] = field(default_factory=list)  # what was looked for (for messages)
    image_field: str = "image"


@dataclass
class _Inter:
    """Parsed interaction rows: raw user ids, item indices into ``_Items``, optional times."""

    file: Path
    users: list[str]
    items: np.ndarray
    timestamps: np.ndarray | None


def _check_choice(name: str, value: str, choices: Sequence[str]) -> None:
    if value not in choices:
        raise ValueError(f"{name} must be one of {', '.join(map(repr, choices))}; got {value!r}")


def _check_common(missing_images: str, split: str, empty_texts: str, text_policies: Sequence[str]) -> None:
    _check_choice("missing_images (--missing-images)", missing_images, MISSING_IMAGE_POLICIES)
    _check_choice("empty_texts (--empty-texts)", empty_texts, text_policies)
    _check_choice("split (--split)", split, SPLIT_METHODS)


def _natural_key(user_id: str) -> tuple[tuple[tuple[int, int, str], ...], str]:
    # "u2" before "u10", "9" before "10"; the raw id breaks ties ("7" vs "007") deterministically.
    chunks = tuple((0, int(t), "") if t.isdigit() else (1, 0, t) for t in re.findall(r"\d+|\D+", user_id))
    return chunks, user_id


def _parse_float(value: str, file: Path, line: int, field_name: str) -> float:
    try:
        number = float(value)
    except ValueError:
        raise DataFormatError(f"expected a number, got {value!r}", file=file, line=line, field=field_name) from None
    if not math.isfinite(number):
        raise DataFormatError(f"expected a finite number, got {value!r}", file=file, line=line, field=field_name)
    return number


def _image_index(folder: Path) -> dict[str, Path]:
    """Map file stem -> image path for one folder (one listing instead of a stat per item)."""
    if not folder.is_dir():
        return {}
    rank = {ext: k for k, ext in enumerate(IMAGE_EXTENSIONS)}
    found: dict[str, Path] = {}
    for entry in os.scandir(folder):
        stem, ext = os.path.splitext(entry.name)
        ext = ext.lower()
        if ext not in rank or not entry.is_file():
            continue
        if stem not in found or rank[ext] < rank[found[stem].suffix.lower()]:
            found[stem] = Path(entry.path)
    return found


def _images_by_id(items: _Items, image_dir: Path) -> None:
    index = _image_index(image_dir)
    items.images = [index.get(item_id) for item_id in items.ids]
    items.expected = [str(image_dir / f"{item_id}{{{','.join(IMAGE_EXTENSIONS)}}}") for item_id in items.ids]


# --------------------------------------------------------------------------------------------
# Policies and assembly
# --------------------------------------------------------------------------------------------


def _empty_text_policy(items: _Items, policy: str, fallback: list[str] | None = None) -> tuple[set[int], str]:
    """Apply the empty-text policy in place; return the items to drop and a warning note."""
    empty = [i for i, text in enumerate(items.texts) if not text.strip()]
    if not empty:
        return set(), ""
    if policy == "error":
        i = empty[0]
        more = f" ({len(empty) - 1} more empty texts in this file)" if len(empty) > 1 else ""
        raise DataFormatError(
            f"item {items.ids[i]!r} has an empty text{more}; an empty text is an error by default: fill it in, "
            f"or accept empty texts with {EMPTY_TEXTS_HOW}",
            file=items.file, line=items.lines[i], field=items.text_field,
        )  # fmt: skip
    examples = [f"{items.ids[i]} (line {items.lines[i]})" for i in empty]
    if policy == "title":
        assert fallback is not None
        for i in empty:
            items.texts[i] = fallback[i]
        what = f"items with an empty {items.text_field!r} (text set to the title)"
        warn_counted(what, len(empty), policy, examples, items.file)
        return set(), ""
    if policy == "keep":
        warn_counted(f"items with an empty {items.text_field!r} (kept empty)", len(empty), policy, examples, items.file)
        return set(), ""
    return set(empty), f"items with an empty {items.text_field!r}"


def _image_policy(items: _Items, policy: str) -> tuple[set[int], list[str], str]:
    """Find missing and corrupt image files (each file checked cheaply) and apply the policy.

    Returns the items to drop, example strings and a description for the warning.
    """
    problems: list[tuple[int, str, str]] = []  # (item, "missing" | "corrupt", what is wrong)
    present = [i for i, path in enumerate(items.images) if path is not None]
    for i, path in enumerate(items.images):
        if path is None:
            problems.append((i, "missing", f"image file is missing: {items.expected[i]}"))
    for i in progress_bar(present, desc=f"checking images of {items.file.name}", unit="img", leave=False):
        try:
            check_image_file(items.images[i])
        except DataFormatError as exc:
            problems.append((i, "corrupt", str(exc)))
    if not problems:
        return set(), [], ""
    problems.sort()
    if policy == "error":
        i, _, reason = problems[0]
        more = f" ({len(problems) - 1} more items have a missing or corrupt image)" if len(problems) > 1 else ""
        raise DataFormatError(
            f"item {items.ids[i]!r}: {reason}{more}; fix or remove the file, or accept missing and unreadable "
            f"images with {MISSING_IMAGES_HOW}",
            file=items.file, line=items.lines[i], field=items.image_field,
        )  # fmt: skip
    examples = [f"{items.ids[i]} ({kind})" for i, kind, _ in problems]
    n_corrupt = sum(kind == "corrupt" for _, kind, _ in problems)
    if n_corrupt:
        what = f"items with a missing or corrupt image ({len(problems) - n_corrupt} missing, {n_corrupt} corrupt)"
    else:
        what = "items with a missing image file"
    if policy == "placeholder":
        for i, _, _ in problems:
            items.images[i] = None
        warn_counted(what + ", shown as a grey placeholder", len(problems), policy, examples, items.file)
        return set(), [], ""
    return {i for i, _, _ in problems}, examples, what


def _assemble(
    name: str,
    items: _Items,
    inter: _Inter,
    *,
    text_drop: tuple[set[int], str],
    image_drop: tuple[set[int], list[str], str],
    split: str,
    split_seed: int,
) -> Dataset:
    """Drop what the policies said to drop (with counted warnings), index users, build the Dataset."""
    n_items = len(items.ids)
    drop = np.zeros(n_items, dtype=bool)
    n_users_before = len(set(inter.users)) if len(inter.items) else 0
    for indices, what, examples in (
        (text_drop[0], text_drop[1], [f"{items.ids[i]} (line {items.lines[i]})" for i in sorted(text_drop[0])]),
        (image_drop[0], image_drop[2], image_drop[1]),
    ):
        if not indices:
            continue
        mask = np.zeros(n_items, dtype=bool)
        mask[list(indices)] = True
        n_inter = int(mask[inter.items].sum()) if len(inter.items) else 0
        warn_counted(f"{what} (removed with their {n_inter} interactions)", len(indices), "drop", examples, items.file)
        drop |= mask

    keep_items = np.flatnonzero(~drop)
    new_index = np.full(n_items, -1, dtype=np.int64)
    new_index[keep_items] = np.arange(len(keep_items))
    keep_rows = ~drop[inter.items] if len(inter.items) else np.zeros(0, dtype=bool)
    item_idx = new_index[inter.items[keep_rows]]
    raw_users = [u for u, k in zip(inter.users, keep_rows) if k] if drop.any() else inter.users
    timestamps = inter.timestamps[keep_rows] if inter.timestamps is not None else None

    user_ids = sorted(set(raw_users), key=_natural_key)
    if len(user_ids) < n_users_before:
        lost = sorted(set(inter.users) - set(user_ids), key=_natural_key)
        warn_counted("users with no interaction left after dropping items (removed)", len(lost), "drop", lost, inter.file)
    user_index = {u: k for k, u in enumerate(user_ids)}
    user_idx = np.fromiter((user_index[u] for u in raw_users), dtype=np.int64, count=len(raw_users))

    n_kept = len(keep_items)
    codes = user_idx * max(n_kept, 1) + item_idx
    unique_codes, counts = np.unique(codes, return_counts=True)
    repeated = unique_codes[counts > 1]
    if len(repeated):
        examples = [f"user {user_ids[c // n_kept]} item {items.ids[keep_items[c % n_kept]]}" for c in repeated[:6]]
        warn_counted(
            "repeated user-item pairs (merged into one interaction, latest timestamp kept)",
            int(len(repeated)), "merge", examples, inter.file,
        )  # fmt: skip

    catalog = Catalog(
        item_ids=[items.ids[i] for i in keep_items],
        texts=[items.texts[i] for i in keep_items],
        attributes={k: [v[i] for i in keep_items] for k, v in items.attributes.items()},
        images=[items.images[i] for i in keep_items],
    )
    interactions = Interactions.from_pairs(user_idx, item_idx, len(user_ids), n_kept, timestamps=timestamps)
    return Dataset(
        name=name,
        catalog=catalog,
        interactions=interactions,
        split=make_split(interactions, split, seed=split_seed),
        user_ids=user_ids,
    )


# --------------------------------------------------------------------------------------------
# Atomic files (RecBole / MMRec style)
# --------------------------------------------------------------------------------------------


def _atomic_rows(path: Path) -> Iterator[tuple[int, list[str]]]:
    """(line number, cells) of a tab-separated file; blank lines hold no data and are skipped."""
    # utf-8-sig: a byte-order mark must not become part of the first field's name.
    # newline="\n": only LF ends a row (CRLF is stripped below), so a stray CR inside a
    # text does not shift the line numbers that errors report.
    with open(path, encoding="utf-8-sig", newline="\n") as handle:
        for line_no, raw in enumerate(handle, start=1):
            raw = raw.rstrip("\r\n")
            if raw == "" and line_no > 1:
                continue
            yield line_no, raw.split("\t")


def _atomic_header(path: Path, cells: list[str] | None) -> list[tuple[str, str]]:
    if not cells or cells == [""]:
        raise DataFormatError("empty file: expected a header such as 'item_id:token<TAB>text:token_seq'", file=path, line=1)
    fields = []
    for cell in cells:
        name, sep, kind = cell.strip().partition(":")
        if not sep or not name:
            raise DataFormatError(
                f"header field {cell!r} is not 'name:type' (types: {', '.join(ATOMIC_TYPES)})", file=path, line=1, field=cell
            )
        if kind not in ATOMIC_TYPES:
            expected = ", ".join(ATOMIC_TYPES)
            raise DataFormatError(f"unknown type {kind!r}; expected one of {expected}", file=path, line=1, field=name)
        if name in (f[0] for f in fields):
            raise DataFormatError("field appears twice in the header", file=path, line=1, field=name)
        fields.append((name, kind))
    return fields


def _require_field(fields: list[tuple[str, str]], name: str, path: Path, hint: str) -> int:
    names = [f[0] for f in fields]
    if name not in names:
        raise DataFormatError(f"header has no field {name!r} (fields: {', '.join(names)}){hint}", file=path, line=1, field=name)
    return names.index(name)


def _check_width(cells: list[str], fields: list[tuple[str, str]], path: Path, line: int) -> None:
    if len(cells) == len(fields):
        return
    if len(cells) < len(fields):
        missing = fields[len(cells)][0]
        raise DataFormatError(
            f"row has {len(cells)} tab-separated values, the header has {len(fields)} (no value for {missing!r})",
            file=path, line=line, field=missing,
        )  # fmt: skip
    raise DataFormatError(
        f"row has {len(cells)} tab-separated values, the header has {len(fields)} (extra value {cells[len(fields)]!r})",
        file=path, line=line, field=f"column {len(fields) + 1}",
    )  # fmt: skip


def _atomic_value(value: str, kind: str, path: Path, line: int, name: str) -> Any:
    """Attribute value of an atomic cell. Empty cells are None (token_seq: []).

    ``float`` cells written as integer literals (``1995``) load as ``int`` so integer
    attributes survive a write/read round trip.
    """
    if kind == "token":
        return value if value != "" else None
    if kind == "token_seq":
        return value.split()
    if kind == "float":
        if value.strip() == "":
            return None
        if _INT_LITERAL.fullmatch(value.strip()):
            return int(value)
        return _parse_float(value, path, line, name)
    return [_parse_float(v, path, line, name) for v in value.split()]  # float_seq


def _pick_atomic_name(folder: Path, name: str | None) -> str:
    if name is not None:
        return name
    inter_stems = sorted(p.stem for p in folder.glob("*.inter"))
    with_items = [s for s in inter_stems if (folder / f"{s}.item").is_file()]
    candidates = with_items or inter_stems
    if not candidates:
        raise ValueError(f"{folder} holds no NAME.inter file: not a folder in the atomic format")
    if len(candidates) > 1:
        raise ValueError(
            f"{folder} holds several datasets ({', '.join(candidates)}); keep one NAME.inter/NAME.item pair per "
            "folder (in Python, pass name= to choose one)"
        )
    return candidates[0]


def is_atomic_folder(folder: str | Path) -> bool:
    """True when ``folder`` holds at least one ``NAME.inter`` file."""
    folder = Path(folder)
    return folder.is_dir() and any(folder.glob("*.inter"))


def load_atomic(
    folder: str | Path,
    image_dir: str | Path | None = None,
    missing_images: str = "placeholder",
    empty_texts: str = "error",
    *,
    name: str | None = None,
    user_field: str = "user_id",
    item_field: str = "item_id",
    text_field: str = "text",
    rating_field: str = "rating",
    timestamp_field: str = "timestamp",
    min_rating: float | None = None,
    split: str = "ratio",
    split_seed: int = 0,
) -> Dataset:
    """Load a dataset in RecBole/MMRec atomic format plus an image folder.

    Files (tab-separated, UTF-8, header of typed fields ``name:type`` with type one of
    ``token``, ``token_seq``, ``float``, ``float_seq``):

    - ``NAME.inter``: ``user_id:token  item_id:token  [rating:float]  [timestamp:float]``;
      other columns are checked against their type and ignored.
    - ``NAME.item``: ``item_id:token  text:token_seq  [attribute columns...]``; every other
      column becomes a catalog attribute (``token`` -> str, ``token_seq`` -> list[str],
      ``float`` -> int or float, ``float_seq`` -> list[float]; empty cell -> None / []).
    - ``images/<item_id>.png|jpg|jpeg|webp|bmp|gif`` (or ``image_dir``), kept at their own
      size (decoded on first use; the encoders resize).

    ``NAME`` is the single ``*.inter`` stem with a matching ``.item`` (or ``name``). Policies
    for missing/corrupt images and empty texts are described in the module docstring.
    ``min_rating`` keeps only interactions rated at least that much (needs a rating field);
    by default every listed interaction counts. The split is ``ratio`` (80/10/10 per user)
    or ``loo`` (leave-one-out, by timestamp when there is one), seeded by ``split_seed``.
    """
    _check_common(missing_images, split, empty_texts, EMPTY_TEXT_POLICIES)
    folder = Path(folder)
    if not folder.is_dir():
        raise ValueError(f"no such folder: {folder}")
    name = _pick_atomic_name(folder, name)
    inter_path, item_path = folder / f"{name}.inter", folder / f"{name}.item"
    for path in (inter_path, item_path):
        if not path.is_file():
            raise DataFormatError(f"missing file {path.name} (the atomic format needs {name}.inter and {name}.item)", file=path)

    items = _read_atomic_items(item_path, item_field, text_field)
    text_drop = _empty_text_policy(items, empty_texts)
    _images_by_id(items, Path(image_dir) if image_dir is not None else folder / "images")
    image_drop = _image_policy(items, missing_images)
    inter = _read_atomic_inter(inter_path, items, user_field, item_field, rating_field, timestamp_field, min_rating)
    return _assemble(
        name, items, inter, text_drop=text_drop, image_drop=image_drop,
        split=split, split_seed=split_seed,
    )  # fmt: skip


def _read_atomic_items(path: Path, item_field: str, text_field: str) -> _Items:
    rows = _atomic_rows(path)
    fields = _atomic_header(path, next(rows, (1, None))[1])
    id_col = _require_field(fields, item_field, path, "")
    text_col = _require_field(fields, text_field, path, "; name the text column 'text' (in Python, pass text_field= to read another)")
    items = _Items(file=path, ids=[], texts=[], lines=[], text_field=text_field)
    attr_cols = [(k, n, t) for k, (n, t) in enumerate(fields) if k not in (id_col, text_col)]
    items.attributes = {n: [] for _, n, _ in attr_cols}
    seen: dict[str, int] = {}
    for line, cells in rows:
        _check_width(cells, fields, path, line)
        item_id = cells[id_col]
        if item_id.strip() == "":
            raise DataFormatError("empty item id", file=path, line=line, field=item_field)
        if item_id in seen:
            message = f"item id {item_id!r} already defined on line {seen[item_id]}"
            raise DataFormatError(message, file=path, line=line, field=item_field)
        seen[item_id] = line
        items.ids.append(item_id)
        items.texts.append(cells[text_col])
        items.lines.append(line)
        for k, attr, kind in attr_cols:
            items.attributes[attr].append(_atomic_value(cells[k], kind, path, line, attr))
    return items


def _read_atomic_inter(
    path: Path,
    items: _Items,
    user_field: str,
    item_field: str,
    rating_field: str,
    timestamp_field: str,
    min_rating: float | None,
) -> _Inter:
    rows = _atomic_rows(path)
    fields = _atomic_header(path, next(rows, (1, None))[1])
    names = [f[0] for f in fields]
    user_col = _require_field(fields, user_field, path, "; name the user column 'user_id' (in Python, pass user_field= to read another)")
    item_col = _require_field(fields, item_field, path, "; name the item column 'item_id' (in Python, pass item_field= to read another)")
    rating_col = names.index(rating_field) if rating_field in names else None
    time_col = names.index(timestamp_field) if timestamp_field in names else None
    if min_rating is not None and rating_col is None:
        raise DataFormatError(f"min_rating={min_rating} needs a rating field", file=path, line=1, field=rating_field)
    # Other typed float columns are checked too: a malformed number anywhere is bad input.
    other_float = [k for k, (_, kind) in enumerate(fields) if kind in ("float", "float_seq") and k not in (rating_col, time_col)]
    return _collect_inter(
        path, rows, items,
        lambda cells, line: _check_width(cells, fields, path, line),
        user_col, item_col, rating_col, time_col, min_rating,
        user_field, item_field, rating_field, timestamp_field,
        extra_check=(
            (lambda cells, line: [_atomic_value(cells[k], fields[k][1], path, line, fields[k][0]) for k in other_float])
            if other_float else None
        ),
    )  # fmt: skip


def _collect_inter(
    path: Path,
    rows: Iterator[tuple[int, list[str]]],
    items: _Items,
    check_width: Callable[[list[str], int], None],
    user_col: int,
    item_col: int,
    rating_col: int | None,
    time_col: int | None,
    min_rating: float | None,
    user_field: str,
    item_field: str,
    rating_field: str,
    timestamp_field: str,
    extra_check: Callable[[list[str], int], Any] | None = None,
) -> _Inter:
    """Rows -> raw user ids, item indices (unknown ids raise), optional timestamps."""
    index = {item_id: i for i, item_id in enumerate(items.ids)}
    users: list[str] = []
    item_idx: list[int] = []
    stamps: list[float] = []
    for line, cells in rows:
        check_width(cells, line)
        user, item = cells[user_col], cells[item_col]
        if user.strip() == "":
            raise DataFormatError("empty user id", file=path, line=line, field=user_field)
        i = index.get(item)
        if i is None:
            raise DataFormatError(f"unknown item id {item!r} (not in {items.file.name})", file=path, line=line, field=item_field)
        if time_col is not None:
            stamp = _parse_float(cells[time_col], path, line, timestamp_field)
        if rating_col is not None:
            rating = _parse_float(cells[rating_col], path, line, rating_field)
        if extra_check is not None:
            extra_check(cells, line)
        if min_rating is not None and rating < min_rating:
            continue
        users.append(user)
        item_idx.append(i)
        if time_col is not None:
            stamps.append(stamp)
    return _Inter(
        file=path,
        users=users,
        items=np.asarray(item_idx, dtype=np.int64),
        timestamps=np.asarray(stamps, dtype=np.float64) if time_col is not None else None,
    )


# --------------------------------------------------------------------------------------------
# CSV files (generic, and ML-100K posters)
# --------------------------------------------------------------------------------------------


def _csv_rows(path: Path, delimiter: str = ",") -> tuple[list[str], Iterator[tuple[int, list[str]]]]:
    """Header and (first line of the record, cells) of a CSV file; blank records are skipped."""
    # newline="\n" (not ""): rows and quoted fields are read the same way, but a lone CR inside
    # a quoted text no longer counts as a line, so line numbers match `grep -n`.
    handle = open(path, encoding="utf-8-sig", newline="\n")
    reader = csv.reader(handle, delimiter=delimiter)
    try:
        header = next(reader)
    except StopIteration:
        handle.close()
        raise DataFormatError("empty file: expected a header row", file=path, line=1) from None
    except csv.Error as exc:
        handle.close()
        raise DataFormatError(f"unreadable CSV header ({exc})", file=path, line=1) from None

    def rows() -> Iterator[tuple[int, list[str]]]:
        with handle:
            start = reader.line_num + 1
            while True:
                try:
                    cells = next(reader)
                except StopIteration:
                    return
                except csv.Error as exc:
                    raise DataFormatError(f"malformed CSV ({exc})", file=path, line=start) from None
                if cells:
                    yield start, cells
                start = reader.line_num + 1

    return header, rows()


def _csv_column(header: list[str], column: str, path: Path, argument: str = "") -> int:
    """Index of ``column`` in a CSV header; ``argument`` is the Python parameter that names another."""
    if column not in header:
        hint = f"; in Python, pass {argument}= to read another column" if argument else ""
        raise DataFormatError(
            f"header has no column {column!r} (columns: {', '.join(header)}){hint}",
            file=path, line=1, field=column,
        )  # fmt: skip
    return header.index(column)


def _csv_width_check(header: list[str], path: Path):
    def check(cells: list[str], line: int) -> None:
        if len(cells) == len(header):
            return
        if len(cells) < len(header):
            missing = header[len(cells)]
            raise DataFormatError(
                f"row has {len(cells)} values, the header has {len(header)} (no value for {missing!r})",
                file=path, line=line, field=missing,
            )  # fmt: skip
        raise DataFormatError(
            f"row has {len(cells)} values, the header has {len(header)} (extra value {cells[len(header)]!r})",
            file=path, line=line, field=f"column {len(header) + 1}",
        )  # fmt: skip

    return check


def load_csv(
    interactions_csv: str | Path,
    items_csv: str | Path,
    user_col: str = "user_id",
    item_col: str = "item_id",
    text_col: str = "text",
    image_col: str | None = None,
    image_dir: str | Path | None = None,
    timestamp_col: str | None = None,
    *,
    rating_col: str | None = None,
    min_rating: float | None = None,
    attribute_cols: Sequence[str] | None = None,
    missing_images: str = "placeholder",
    empty_texts: str = "error",
    delimiter: str = ",",
    name: str | None = None,
    split: str = "ratio",
    split_seed: int = 0,
) -> Dataset:
    """Load interactions and items from two CSV files with headers (same policies as atomic).

    Images come from ``image_col`` (a path per item, relative to ``image_dir`` when given,
    else to the items CSV's folder; an empty cell is a missing image) or, without
    ``image_col``, from ``image_dir/<item_id>.png|jpg|...``. ``attribute_cols`` (default:
    every other column of the items CSV) become string attributes. ``timestamp_col`` orders
    the leave-one-out split; ``min_rating`` (with ``rating_col``) filters interactions.
    """
    _check_common(missing_images, split, empty_texts, EMPTY_TEXT_POLICIES)
    if image_col is None and image_dir is None:
        raise ValueError("load_csv needs image_col (a path per item) or image_dir (files named <item_id>.png|jpg)")
    if min_rating is not None and rating_col is None:
        raise ValueError("min_rating needs rating_col")
    items_path, inter_path = Path(items_csv), Path(interactions_csv)
    for path in (items_path, inter_path):
        if not path.is_file():
            raise DataFormatError("file not found", file=path)

    header, rows = _csv_rows(items_path, delimiter)
    id_k = _csv_column(header, item_col, items_path, "item_col")
    text_k = _csv_column(header, text_col, items_path, "text_col")
    image_k = _csv_column(header, image_col, items_path, "image_col") if image_col is not None else None
    if attribute_cols is None:
        attribute_cols = [c for k, c in enumerate(header) if k not in (id_k, text_k, image_k)]
    attr_ks = [(c, _csv_column(header, c, items_path, "attribute_cols")) for c in attribute_cols]
    items = _Items(file=items_path, ids=[], texts=[], lines=[], text_field=text_col, image_field=image_col or "image")
    items.attributes = {c: [] for c, _ in attr_ks}
    image_cells: list[str] = []
    check = _csv_width_check(header, items_path)
    seen: dict[str, int] = {}
    for line, cells in rows:
        check(cells, line)
        item_id = cells[id_k]
        if item_id.strip() == "":
            raise DataFormatError("empty item id", file=items_path, line=line, field=item_col)
        if item_id in seen:
            message = f"item id {item_id!r} already defined on line {seen[item_id]}"
            raise DataFormatError(message, file=items_path, line=line, field=item_col)
        seen[item_id] = line
        items.ids.append(item_id)
        items.texts.append(cells[text_k])
        items.lines.append(line)
        for c, k in attr_ks:
            items.attributes[c].append(cells[k] if cells[k] != "" else None)
        if image_k is not None:
            image_cells.append(cells[image_k])
    text_drop = _empty_text_policy(items, empty_texts)

    if image_k is None:
        _images_by_id(items, Path(image_dir))
    else:
        base = Path(image_dir) if image_dir is not None else items_path.parent
        items.expected = [str(base / cell) if cell else "(empty cell)" for cell in image_cells]
        items.images = [(base / cell) if cell and (base / cell).is_file() else None for cell in image_cells]
    image_drop = _image_policy(items, missing_images)

    header, rows = _csv_rows(inter_path, delimiter)
    user_k = _csv_column(header, user_col, inter_path, "user_col")
    item_k = _csv_column(header, item_col, inter_path, "item_col")
    time_k = _csv_column(header, timestamp_col, inter_path, "timestamp_col") if timestamp_col else None
    rating_k = _csv_column(header, rating_col, inter_path, "rating_col") if rating_col else None
    inter = _collect_inter(
        inter_path, rows, items, _csv_width_check(header, inter_path),
        user_k, item_k, rating_k, time_k, min_rating,
        user_col, item_col, rating_col or "rating", timestamp_col or "timestamp",
    )  # fmt: skip
    return _assemble(
        name or items_path.stem, items, inter, text_drop=text_drop,
        image_drop=image_drop, split=split, split_seed=split_seed,
    )  # fmt: skip


def is_ml100k_posters_folder(folder: str | Path) -> bool:
    """True when ``folder`` looks like the ML-100K posters folder (items.csv, ratings.csv, posters/)."""
    folder = Path(folder)
    return (folder / "items.csv").is_file() and (folder / "ratings.csv").is_file() and (folder / "posters").is_dir()


def load_ml100k_posters(
    folder: str | Path,
    min_rating: float | None = None,
    missing_images: str = "placeholder",
    empty_texts: str = "title",
    *,
    split: str = "ratio",
    split_seed: int = 0,
) -> Dataset:
    """Load MovieLens-100K with TMDB posters and plot overviews (Harper & Konstan 2015).

    Folder layout: ``items.csv`` (``movie_id,title,<19 genre flags>,year,overview,...``),
    ``ratings.csv`` (``user_id,movie_id,rating,unix_timestamp``), ``posters/<movie_id>.jpg``.

    - Rows of ``items.csv`` that repeat a ``movie_id`` are dropped when they are exact
      duplicates of the first row (the file has 55); a differing repeat raises.
    - The text is the overview; an empty overview (18 movies) becomes the title under the
      default ``empty_texts="title"`` policy, with one counted warning.
    - Missing posters (19 movies) follow ``missing_images`` (default placeholder, counted
      warning). Posters keep their own size (mostly about 92 x 138 px).
    - Attributes: ``title`` (str), ``year`` (int or None), ``genres`` (list of genre names,
      flag order, ``unknown`` for ``genre_unknown``), ``primary_genre`` (the first of them)
      and ``category`` (same as ``primary_genre``, so code written for toyshop's category runs
      unchanged), ``language`` (original language code).
    - Every rating counts as an interaction unless ``min_rating`` is given (e.g. 4 keeps
      ratings >= 4). Timestamps come from ``unix_timestamp``.
    """
    _check_common(missing_images, split, empty_texts, EMPTY_TEXT_POLICIES + ("title",))
    folder = Path(folder)
    if not is_ml100k_posters_folder(folder):
        raise ValueError(f"{folder} is not the ML-100K posters folder (needs items.csv, ratings.csv and posters/)")
    items_path = folder / "items.csv"
    header, rows = _csv_rows(items_path)
    needed = ["movie_id", "title", *ML100K_GENRES, "year", "overview"]
    cols = {c: _csv_column(header, c, items_path, "") for c in needed}
    lang_k = header.index("original_language") if "original_language" in header else None
    check = _csv_width_check(header, items_path)
    items = _Items(file=items_path, ids=[], texts=[], lines=[], text_field="overview", image_field="poster")
    titles: list[str] = []
    attrs: dict[str, list] = {"title": titles, "year": [], "genres": [], "primary_genre": [], "category": [], "language": []}
    first_row: dict[str, tuple[int, list[str]]] = {}
    for line, cells in rows:
        check(cells, line)
        movie_id = cells[cols["movie_id"]].strip()
        if not movie_id.isdigit():
            raise DataFormatError(f"expected an integer movie id, got {movie_id!r}", file=items_path, line=line, field="movie_id")
        if movie_id in first_row:
            first_line, first_cells = first_row[movie_id]
            if cells != first_cells:
                differing = next(header[k] for k in range(len(cells)) if cells[k] != first_cells[k])
                message = f"movie {movie_id} repeats line {first_line} with a different value"
                raise DataFormatError(message, file=items_path, line=line, field=differing)
            continue  # exact duplicate row: documented, nothing is lost
        first_row[movie_id] = (line, cells)
        genres = []
        for genre in ML100K_GENRES:
            flag = cells[cols[genre]].strip()
            if flag not in ("0", "1"):
                raise DataFormatError(f"genre flag must be 0 or 1, got {flag!r}", file=items_path, line=line, field=genre)
            if flag == "1":
                genres.append("unknown" if genre == "genre_unknown" else genre)
        year_cell = cells[cols["year"]].strip()
        if year_cell in ("", "nan", "NaN"):
            year = None
        elif _INT_LITERAL.fullmatch(year_cell) or re.fullmatch(r"\d+\.0*", year_cell):
            year = int(float(year_cell))
        else:
            raise DataFormatError(f"expected a year, got {year_cell!r}", file=items_path, line=line, field="year")
        title = cells[cols["title"]].strip()
        items.ids.append(movie_id)
        items.texts.append(cells[cols["overview"]].strip())
        items.lines.append(line)
        titles.append(title)
        attrs["year"].append(year)
        attrs["genres"].append(genres)
        primary = genres[0] if genres else "unknown"
        attrs["primary_genre"].append(primary)
        attrs["category"].append(primary)
        attrs["language"].append((cells[lang_k].strip() or None) if lang_k is not None else None)
    items.attributes = attrs
    text_drop = _empty_text_policy(items, empty_texts, fallback=titles)

    posters = _image_index(folder / "posters")
    items.images = [posters.get(movie_id) for movie_id in items.ids]
    items.expected = [str(folder / "posters" / f"{movie_id}.jpg") for movie_id in items.ids]
    image_drop = _image_policy(items, missing_images)

    ratings_path = folder / "ratings.csv"
    header, rows = _csv_rows(ratings_path)
    ks = [_csv_column(header, c, ratings_path, "") for c in ("user_id", "movie_id", "rating", "unix_timestamp")]
    inter = _collect_inter(
        ratings_path, rows, items, _csv_width_check(header, ratings_path),
        ks[0], ks[1], ks[2], ks[3], min_rating, "user_id", "movie_id", "rating", "unix_timestamp",
    )  # fmt: skip
    return _assemble(
        "ml100k-posters", items, inter, text_drop=text_drop, image_drop=image_drop,
        split=split, split_seed=split_seed,
    )  # fmt: skip


# --------------------------------------------------------------------------------------------
# Spec strings
# --------------------------------------------------------------------------------------------

_ACCEPTED_SPECS = (
    "'toyshop' (the synthetic shop, default settings)",
    "'toyshop:key=value,...' (e.g. toyshop:n_users=200,n_items=120,seed=1)",
    "a folder in the atomic format (NAME.inter + NAME.item + images/)",
    "the ML-100K posters folder (items.csv + ratings.csv + posters/)",
)


def _parse_value(text: str) -> Any:
    lowered = text.strip().lower()
    if lowered in ("true", "false"):
        return lowered == "true"
    if lowered in ("none", "null"):
        return None
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            pass
    return text.strip()


def _parse_options(options: str, spec: str) -> dict[str, Any]:
    parsed: dict[str, Any] = {}
    for part in filter(None, (p.strip() for p in options.split(","))):
        key, sep, value = part.partition("=")
        if not sep or not key.strip().isidentifier():
            raise ValueError(f"dataset spec {spec!r}: option {part!r} is not key=value")
        parsed[key.strip()] = _parse_value(value)
    return parsed


def load_dataset(spec: str | Path, *, split: str | None = None, split_seed: int = 0, **kwargs: Any) -> Dataset:
    """Load a dataset by spec (see ``_ACCEPTED_SPECS``); ``kwargs`` go to the chosen loader.

    ``split`` (``ratio`` 80/10/10 or ``loo``) re-splits the result; by default each source
    keeps its own default split (``ratio``, seed ``split_seed``). Toyshop options (from the
    spec or ``kwargs``) are checked by name and type: an unknown option or a wrong-typed value
    is a ValueError naming the spec and the option and listing the valid ones.
    """
    if split is not None:
        _check_choice("split", split, SPLIT_METHODS)
    text = str(spec)
    head, sep, options = text.partition(":")
    if head == "toyshop" and not Path(text).exists():
        try:
            toyshop = importlib.import_module("venomkit.data.toyshop")
        except ModuleNotFoundError as exc:
            if exc.name != "venomkit.data.toyshop":
                raise
            raise ValueError("dataset 'toyshop' needs venomkit.data.toyshop, which this installation lacks") from None
        params = _parse_options(options, text) if sep else {}
        overlap = set(params) & set(kwargs)
        if overlap:
            raise ValueError(f"dataset spec {text!r} and keyword arguments both set {', '.join(sorted(overlap))}")
        options = {**params, **kwargs}
        toyshop.config_from_options(options, where=f"dataset spec {text!r}")  # names a bad option
        dataset = toyshop.make(**options)
        if split is not None:
            dataset.split = make_split(dataset.interactions, split, seed=split_seed)
        return dataset
    path = Path(text).expanduser()
    if path.is_dir():
        extra = {"split": split or "ratio", "split_seed": split_seed}
        if is_atomic_folder(path):
            return load_atomic(path, **kwargs, **extra)
        if is_ml100k_posters_folder(path):
            return load_ml100k_posters(path, **kwargs, **extra)
        problem = f"folder {text!r} is neither in the atomic format nor the ML-100K posters folder"
    elif path.exists():
        problem = f"{text!r} is a file, not a folder"
    else:
        problem = f"unknown dataset {text!r} (no such folder)"
    raise ValueError(f"{problem}. Accepted: " + "; ".join(_ACCEPTED_SPECS))
