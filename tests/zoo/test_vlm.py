"""toyshop-vlm: candidate sampling, the HR@K protocol, and a fast build that loads like llava-hf."""

from __future__ import annotations

import pytest
import torch

from venomkit.zoo.vlm import VLMTrainConfig, evaluate_ranker, sampled_candidates


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


def test_candidates_are_held_out_positives_and_unseen_negatives(dataset):
    lists = sampled_candidates(dataset, n_users=10, n_negatives=10, seed=0)
    assert 0 < len(lists) <= 10
    for user, positive, negatives in lists:
        seen = set(dataset.interactions.items_of(user).tolist())
        assert positive in set(dataset.split.test.items_of(user).tolist())
        assert len(set(negatives.tolist())) == 10 and not seen & set(negatives.tolist())
    assert [u for u, _, _ in lists] == [u for u, _, _ in sampled_candidates(dataset, n_users=10, n_negatives=10, seed=0)]


class _OrderRanker:
    """Scores candidates by their position: the positive comes first in every list."""

    max_history = 3

    def __init__(self, sign: float):
        self.sign = sign

    def score_candidates(self, history, images, texts):
        return self.sign * -torch.arange(len(texts), dtype=torch.float32) if self.sign else torch.zeros(len(texts))


def test_hit_ratio_protocol(dataset):
    best = evaluate_ranker(_OrderRanker(1.0), dataset, n_users=10, n_negatives=10, k=3)
    worst = evaluate_ranker(_OrderRanker(-1.0), dataset, n_users=10, n_negatives=10, k=3)
    ties = evaluate_ranker(_OrderRanker(0.0), dataset, n_users=10, n_negatives=10, k=3)
    assert best["hr@3"] == 1.0 and best["ndcg@3"] == 1.0
    assert worst["hr@3"] == 0.0 and ties["hr@3"] == 0.0  # ties count against the positive
    assert best["random_hr@3"] == pytest.approx(3 / 11)


def test_fast_build_loads_through_auto_classes(dataset, tmp_path):
    from transformers import AutoModelForImageTextToText, AutoProcessor

    from venomkit.victims.mllm.ranker import MLLMRanker

    torch.set_num_threads(1)
    cfg = VLMTrainConfig(
        image_size=32, vision_hidden_size=16, vision_layers=1, vision_intermediate_size=32, hidden_size=32,
        num_layers=1, intermediate_size=64, caption_steps=2, caption_batch_size=4, steps=4, batch_size=4, warmup=1, eval_users=4, n_negatives=10, max_history=3,
    )  # fmt: skip
    figures = vlm_build(tmp_path / "vlm", dataset, cfg)
    assert 0.0 <= figures["hr@10"] <= 1.0 and figures["eval_users"] > 0
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


def test_too_few_items_for_the_candidate_lists_is_an_error(dataset):
    with pytest.raises(ValueError, match="negatives"):
        evaluate_ranker(_OrderRanker(1.0), dataset, n_users=5, n_negatives=99)
