"""toyshop-vlm: its config and a fast build that loads like llava-hf.

Candidate lists and the HR@K protocol are the ranker's own: tests/victims/mllm/test_candidates.py
and test_evaluate.py.
"""

from __future__ import annotations

import pytest
import torch

from venomkit.zoo.vlm import VLMTrainConfig


@pytest.fixture(scope="module")
def dataset():
    from venomkit.data.toyshop import make

    return make(n_users=20, n_items=30, image_size=32, interactions_per_user=8, seed=1)


def test_config_validation():
    with pytest.raises(ValueError, match="patch_size"):
        VLMTrainConfig(image_size=60, patch_size=8)
    with pytest.raises(ValueError, match="text_drop"):
        VLMTrainConfig(text_drop=1.0)
    with pytest.raises(ValueError, match="steps"):
        VLMTrainConfig(steps=0)
    with pytest.raises(ValueError, match="match_steps"):
        VLMTrainConfig(match_steps=-1)
    with pytest.raises(ValueError, match="match_schedule must be one of cosine, constant"):
        VLMTrainConfig(match_schedule="linear")


def test_matching_learning_rate_schedules():
    """Both schedules warm up alike; cosine decays to 5% of lr at the end, constant holds lr."""
    from venomkit.zoo.vlm import match_lr

    cosine = VLMTrainConfig(match_steps=100, warmup=10, lr=1e-3)
    constant = VLMTrainConfig(match_steps=100, warmup=10, lr=1e-3, match_schedule="constant")
    assert [match_lr(s, cosine) for s in range(10)] == pytest.approx([match_lr(s, constant) for s in range(10)])
    assert match_lr(9, constant) == pytest.approx(1e-3) and match_lr(99, constant) == pytest.approx(1e-3)
    assert match_lr(99, cosine) < 0.1 * 1e-3


def test_matching_rows_count_the_shared_attribute_values(dataset):
    """The matching stage's targets equal a naive recount from the catalogue's attributes,
    never list the candidate, and spread over [0, 1]."""
    import numpy as np

    from venomkit.zoo.vlm import MATCH_ATTRIBUTES, matching_rows

    attrs = dataset.catalog.attributes
    codes = np.stack([np.unique(np.asarray(attrs[a]), return_inverse=True)[1] for a in MATCH_ATTRIBUTES], axis=1)
    candidates, lists, shares = matching_rows(np.random.default_rng(0), codes, 200, 5)
    assert shares.shape == (200, 4) and all(len(row) == 5 and c not in row for c, row in zip(candidates, lists))
    for c, row, got in zip(candidates, lists, shares):
        naive = [sum(attrs[a][i] == attrs[a][c] for i in row) / 5 for a in MATCH_ATTRIBUTES]
        assert got.tolist() == pytest.approx(naive)
    assert shares.min() == 0.0 and shares.max() == 1.0


def test_fast_build_loads_through_auto_classes(dataset, tmp_path):
    from transformers import AutoModelForImageTextToText, AutoProcessor

    from venomkit.victims.mllm.ranker import MLLMRanker

    torch.set_num_threads(1)
    cfg = VLMTrainConfig(
        image_size=32, vision_hidden_size=16, vision_layers=1, vision_intermediate_size=32, hidden_size=32,
        num_layers=1, intermediate_size=64, caption_steps=2, caption_batch_size=4, match_steps=2, steps=4, batch_size=4, warmup=1,
        eval_users=4, n_negatives=10, max_history=3,
    )  # fmt: skip
    figures = vlm_build(tmp_path / "vlm", dataset, cfg)
    assert 0.0 <= figures["hr@10"] <= 1.0 and figures["eval_users"] > 0
    assert figures["first_match_mse"] > 0 and figures["final_match_mse"] > 0
    assert figures["attention_layers"] == 1 and figures["patch_attention_grid"] == [4, 4]
    assert figures["pixel_grad_nonzero_share"] > 0
    processor = AutoProcessor.from_pretrained(tmp_path / "vlm")
    assert processor.image_token == "<image>" and processor.patch_size == 8
    assert AutoModelForImageTextToText.from_pretrained(tmp_path / "vlm").dtype == torch.float16
    ranker = MLLMRanker.load(tmp_path / "vlm")
    images = dataset.catalog.image_batch([0, 1]).requires_grad_(True)
    ranker.score([["a"], ["b"]], images, dataset.catalog.texts[:2]).sum().backward()
    assert images.grad.abs().sum() > 0


def vlm_build(out, dataset, cfg):
    from venomkit.zoo import vlm

    return vlm.build(out, dataset, seed=0, config=cfg)
