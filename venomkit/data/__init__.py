"""Data model: raw-content catalogs, implicit-feedback interactions, splits and loaders.

``venomkit.data.toyshop`` (the synthetic shop) is imported lazily, on first use.
"""

from __future__ import annotations

import importlib
from typing import Any

from venomkit.data.catalog import Catalog, load_image_file, save_png
from venomkit.data.dataset import Dataset, make_split
from venomkit.data.errors import DataFormatError, DataWarning, warn_counted
from venomkit.data.interactions import (
    Interactions,
    Split,
    cold_items,
    leave_one_out_split,
    ratio_split,
    select_cold_targets,
)
from venomkit.data.export import write_atomic
from venomkit.data.loaders import load_atomic, load_csv, load_dataset, load_ml100k_posters

__all__ = [
    "Catalog",
    "load_image_file",
    "save_png",
    "Dataset",
    "make_split",
    "DataFormatError",
    "DataWarning",
    "warn_counted",
    "Interactions",
    "Split",
    "cold_items",
    "leave_one_out_split",
    "ratio_split",
    "select_cold_targets",
    "load_atomic",
    "load_csv",
    "load_dataset",
    "load_ml100k_posters",
    "write_atomic",
    "toyshop",
]


def __getattr__(name: str) -> Any:
    # toyshop draws images procedurally; importing it only when asked keeps `import venomkit.data` light.
    if name == "toyshop":
        return importlib.import_module("venomkit.data.toyshop")
    raise AttributeError(f"module 'venomkit.data' has no attribute {name!r}")
