"""Fixtures of the victim tests (helpers live in victim_helpers.py)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))  # pytest runs with --import-mode=importlib

from victim_helpers import TinyImageEncoder, TinyTextEncoder, make_tiny_dataset  # noqa: E402

from venomkit.data.dataset import Dataset  # noqa: E402


@pytest.fixture(autouse=True)
def _one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="session")
def tiny_dataset() -> Dataset:
    return make_tiny_dataset()


@pytest.fixture
def encoders() -> tuple[TinyImageEncoder, TinyTextEncoder]:
    return TinyImageEncoder(8), TinyTextEncoder(8)


