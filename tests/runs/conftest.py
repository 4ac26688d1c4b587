"""Fixtures of the run-engine tests: a shared victim cache (each victim is trained once)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))  # run_helpers (pytest runs with --import-mode=importlib)


@pytest.fixture(scope="session", autouse=True)
def cache_dir(tmp_path_factory):
    """Every run of the session (and every subprocess a test starts) uses one fresh cache, never the user's."""
    folder = tmp_path_factory.mktemp("venomkit-cache")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("VENOMKIT_CACHE", str(folder))
        yield folder
