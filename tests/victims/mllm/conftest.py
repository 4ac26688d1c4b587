"""Fixtures of the MLLM-ranker tests: the tiny toyshop and a random tiny LLaVA folder (mllm_helpers.py)."""

from __future__ import annotations

import pytest
from mllm_helpers import tiny_shop, tiny_vlm_folder


@pytest.fixture(scope="module")
def dataset():
    return tiny_shop()


@pytest.fixture(scope="module")
def folder(dataset, tmp_path_factory):
    return tiny_vlm_folder(tmp_path_factory.mktemp("tiny-vlm"), dataset)
