"""Fixtures shared by every test package."""

from __future__ import annotations

import pytest
import torch


@pytest.fixture()
def one_thread():
    """Run a test on one torch thread: tiny models only add spin-waiting with a second one on a shared CPU."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
