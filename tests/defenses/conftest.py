"""Fixtures of the defense tests (helpers, tiny encoders and the tiny shop: defense_helpers.py)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))  # pytest runs with --import-mode=importlib

from defense_helpers import SMALL, build_victim, make_shop

from venomkit.data.dataset import Dataset


@pytest.fixture(autouse=True)
def _one_thread(one_thread):
    """Every test here runs on one torch thread (tests/conftest.py)."""


@pytest.fixture(scope="session")
def shop() -> Dataset:
    return make_shop()


@pytest.fixture(scope="session")
def trained(shop):
    """Normally trained VBPR and MMGCN on the tiny shop (state dicts; copy before changing)."""
    from venomkit.victims.training import train_bpr

    out = {}
    for kind in ("vbpr", "mmgcn"):
        victim = build_victim(kind, shop, **SMALL[kind])
        train_bpr(victim, shop.split, epochs=30, lr=0.01, batch_size=128, patience=None, eval_every=30, progress=False)
        out[kind] = {k: v.clone() for k, v in victim.state_dict().items()}
    return out


