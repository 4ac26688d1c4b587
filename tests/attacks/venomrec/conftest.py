"""Fixtures of the VenomRec tests: the tiny MLLM fixtures of tests/victims (mllm_helpers.py)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "victims"))  # mllm_helpers (pytest runs with --import-mode=importlib)


@pytest.fixture(autouse=True)
def _one_thread(one_thread):
    """Every test here runs on one torch thread (tests/conftest.py)."""
