"""Toyshop item attributes and fresh renderings of their descriptions: the zoo's text training data.

``toyshop-lm`` learns to rewrite descriptions from pairs of renderings of the same item, and the
zoo's tokenizer (``venomkit.zoo.tokenizer``, shared by ``toyshop-lm`` and ``toyshop-vlm``) trains
on extra renderings so that wording the catalog happens not to use still gets whole-word tokens.
Both read them from here; the renderings come from toyshop's own description generator
(:func:`venomkit.data.toyshop.describe`).
"""

from __future__ import annotations

import numpy as np

from venomkit.data.toyshop import describe

ATTRIBUTES = ("category", "colour", "pattern", "material", "brand")
"""The catalog attributes a toyshop description is rendered from."""


def item_attributes(dataset) -> list[dict[str, str]]:
    """Per item, the toyshop attributes ``describe`` needs: {attribute: value} dicts, one per item.

    ValueError naming the missing attributes when the catalog lacks them.
    """
    attrs = dataset.catalog.attributes
    missing = [k for k in ATTRIBUTES if k not in attrs]
    if missing:
        raise ValueError(
            f"toyshop-lm trains on toyshop's description generator; dataset {dataset.name!r} lacks the "
            f"attributes {missing} (build it on toyshop data)"
        )
    return [{k: str(attrs[k][i]) for k in ATTRIBUTES} for i in range(dataset.n_items)]


def describe_item(a: dict[str, str], rng: np.random.Generator) -> str:
    """One toyshop description of an item with attributes ``a`` (template choices from ``rng``)."""
    return describe(a["category"], a["colour"], a["pattern"], a["material"], brand=a["brand"], rng=rng)
