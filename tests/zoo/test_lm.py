"""toyshop-lm: rewrite pairs, the quality metric, and a fast build that loads like a hub LM."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from venomkit.zoo.lm import (
    LMTrainConfig,
    evaluate_rewrites,
    names_word,
    rewrite_example,
)


def _items():
    base = {"category": "mug", "colour": "blue", "pattern": "striped", "material": "ceramic", "brand": "Lumen"}
    return [base, {**base, "brand": "Orbit"}]


def test_config_validation():
    with pytest.raises(ValueError, match="hidden_size"):
        LMTrainConfig(hidden_size=130, num_heads=4)
    with pytest.raises(ValueError, match="style_prob"):
        LMTrainConfig(style_prob=1.5)
    with pytest.raises(ValueError, match="steps"):
        LMTrainConfig(steps=0)


def test_pairs_keep_attributes_and_examples_share_the_target_template():
    rng = np.random.default_rng(0)
    items = _items()
    for _ in range(20):
        prompt, target = rewrite_example(items, 0, rng, style_prob=1.0)
        assert names_word(target, "mug") and names_word(target, "blue") and "Lumen" in target
        lines = prompt.splitlines()
        assert lines[-1] == "Rewrite:" and lines[-2].startswith("Rewrite: ")
        examples = [line[len("Example: ") :] for line in lines[:-2]]
        assert 1 <= len(examples) <= 2
        # The example is item 1 (same attributes, other brand) in the target's template.
        for example in examples:
            assert example.replace("Orbit", "Lumen") == target
    prompt, _ = rewrite_example(items, 0, rng, style_prob=0.0)
    assert not prompt.startswith("Example:")


def test_names_word_matches_whole_words():
    assert names_word("A Red t-shirt.", "t-shirt") and names_word("A Red t-shirt.", "red")
    assert not names_word("a redwood chair", "red") and not names_word("a chat", "hat")
    assert not names_word("an over-shirt", "shirt")


class _FakeRewriter:
    def __init__(self, outputs):
        self.outputs = outputs

    def rewrite(self, texts, n, style_examples=None, temperature=1.0, seed=0):
        return [[self.outputs[k % len(self.outputs)]] * n for k in range(len(texts))]


class _FakeCatalog:
    def __init__(self):
        self.texts = ["a blue mug", "a red hat"]
        self.attributes = {"category": ["mug", "hat"], "colour": ["blue", "red"]}


class _FakeDataset:
    catalog = _FakeCatalog()


def test_evaluate_rewrites_counts_category_and_colour():
    good = evaluate_rewrites(_FakeRewriter(["blue mug, lovely", "red hat!"]), _FakeDataset, [0, 1], n=2, temperature=1, seed=0)
    assert good["keeps_category_and_colour"] == 1.0 and good["n_rewrites"] == 4
    half = evaluate_rewrites(
        _FakeRewriter(["a blue mug", "a green hat"]), _FakeDataset, [0, 1], n=1, temperature=1, seed=0, style_items=[0]
    )
    assert half["plain_keeps_category_and_colour"] == 0.5 and half["style_keeps_colour"] == 0.5
    assert half["plain_keeps_category"] == 1.0 and half["keeps_category_and_colour"] == 0.5


def test_fast_build_writes_a_transformers_folder(tmp_path):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from venomkit.data.toyshop import make
    from venomkit.generators.llm_text import LLMRewriter
    from venomkit.zoo import lm

    torch.set_num_threads(1)
    dataset = make(n_users=20, n_items=30, image_size=32, interactions_per_user=8, seed=1)
    cfg = LMTrainConfig(hidden_size=32, num_layers=1, intermediate_size=64, steps=6, batch_size=4, warmup=2, eval_items=2, eval_samples=1)
    figures = lm.build(tmp_path / "lm", dataset, seed=0, config=cfg)
    assert 0.0 <= figures["keeps_category_and_colour"] <= 1.0 and figures["n_rewrites"] == 4
    assert figures["heldout_items"] == 3 and figures["dtype"] == "float16"
    model = AutoModelForCausalLM.from_pretrained(tmp_path / "lm")
    assert model.dtype == torch.float16
    tok = AutoTokenizer.from_pretrained(tmp_path / "lm")
    assert tok.pad_token == "<pad>" and tok.image_token == "<image>"
    assert len(LLMRewriter(tmp_path / "lm", max_new_tokens=5).rewrite(["a blue mug"], n=2)[0]) == 2
