"""Fixtures of the victim tests (helpers live in victim_helpers.py)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))  # pytest runs with --import-mode=importlib

from victim_helpers import TinyImageEncoder, TinyTextEncoder, make_tiny_dataset  # noqa: E402

from venomkit.data.dataset import Dataset  # noqa: E402


@pytest.fixture(autouse=True)
def _one_thread(one_thread):
    """Every test here runs on one torch thread (tests/conftest.py)."""


@pytest.fixture(scope="session")
def tiny_dataset() -> Dataset:
    return make_tiny_dataset()


@pytest.fixture
def encoders() -> tuple[TinyImageEncoder, TinyTextEncoder]:
    return TinyImageEncoder(8), TinyTextEncoder(8)


