"""User-prefix KV-cache reuse: cached candidate scores equal plain forwards (zoo:toyshop-vlm, LLaVA).

The Qwen2-VL counterpart (3-D RoPE positions with the cache) is in test_qwen2_vl.py.
"""

from __future__ import annotations

import pytest
import torch

from venomkit.victims.mllm.kv_cache import PrefixCache, cache_argument
from venomkit.victims.mllm.ranker import MLLMRanker

TITLES = ["Plain red cotton t-shirt", "Blue striped ceramic mug", "Green wool hat", "Black leather watch",
          "Orange checked wood watch", "Plain black cotton umbrella", "Plain green cotton t-shirt", "Green checked metal bottle"]  # fmt: skip
TEXTS = ["A red tee for warm weekends.", "A blue mug with stripes, dishwasher safe, holds a large coffee.", "A green hat.",
         "Plain black cotton umbrella | Maple Row. An elegant black umbrella for rainy days.", "Watch."]  # fmt: skip


def _zoo_ranker() -> MLLMRanker:
    from venomkit.zoo import available

    if "toyshop-vlm" not in available():
        pytest.skip("zoo:toyshop-vlm is not built (venomkit zoo build --only toyshop-vlm)")
    return MLLMRanker.load("zoo:toyshop-vlm")


@pytest.fixture(scope="module")
def ranker() -> MLLMRanker:
    return _zoo_ranker()


def _candidates(n: int, seed: int = 0) -> tuple[torch.Tensor, list[str]]:
    g = torch.Generator().manual_seed(seed)
    return torch.rand(n, 3, 64, 64, generator=g), [TEXTS[k % len(TEXTS)] for k in range(n)]


def test_kv_cache_scores_equal_plain_forwards(ranker):
    images, texts = _candidates(7)
    with torch.no_grad():
        plain = ranker.score_candidates(TITLES, images, texts, batch_size=3, use_cache=False)
        single = torch.stack([ranker.score([TITLES], images[k : k + 1], [t])[0] for k, t in enumerate(texts)])
        for batch_size in (1, 3, 7, 64):
            cached = ranker.score_candidates(TITLES, images, texts, batch_size=batch_size)
            assert cached.shape == (7,)
            assert torch.allclose(cached, plain, atol=1e-4), (batch_size, (cached - plain).abs().max())
    assert torch.allclose(single, plain, atol=1e-4)
    assert plain.std() > 0.05  # the trained ranker tells the candidates apart


def test_kv_cache_with_empty_history_and_photos_of_other_sizes(ranker):
    g = torch.Generator().manual_seed(1)
    photos = [torch.rand(3, 90, 60, generator=g), torch.rand(3, 64, 64, generator=g), torch.rand(3, 40, 120, generator=g)]
    with torch.no_grad():
        for history in ([], TITLES * 2):  # none / longer than max_history (cut to the last 8)
            plain = ranker.score_candidates(history, photos, TEXTS[:3], use_cache=False)
            cached = ranker.score_candidates(history, photos, TEXTS[:3], batch_size=2)
            assert torch.allclose(cached, plain, atol=1e-4)


def test_the_prefix_runs_once_per_candidate_list(ranker, monkeypatch):
    built = []
    original = PrefixCache.build.__func__

    def counting(cls, *args, **kwargs):
        built.append(args[1].shape)
        return original(cls, *args, **kwargs)

    monkeypatch.setattr(PrefixCache, "build", classmethod(counting))
    images, texts = _candidates(5)
    with torch.no_grad():
        ranker.score_candidates(TITLES, images, texts, batch_size=2)  # three batches
    prefix, _ = ranker.split_prompt(ranker.prompts([TITLES], texts[:1])[0])
    assert built == [torch.Size([1, len(ranker.prefix_ids(prefix))])]
    assert prefix.endswith("candidate: ") and prefix.startswith("USER: history: ")


def test_prefix_cache_is_reusable_and_untouched(ranker):
    core = ranker.model.model
    assert cache_argument(core) == "cache"  # transformers 5.24 (past_key_values: deprecated alias)
    ids = torch.tensor([ranker.prefix_ids("USER: history: Green wool hat candidate: ")])
    with torch.no_grad():
        cached = PrefixCache.build(core, ids)
        keys = [k.clone() for k, _ in cached.layers]
        images, texts = _candidates(2)
        first = ranker.score_cached(["Green wool hat"], images, texts)
        cache = cached.for_batch(3)
        assert cache.get_seq_length() == ids.shape[1] and cache.layers[0].keys.shape[0] == 3
        core(input_ids=torch.ones(3, 4, dtype=torch.long), attention_mask=torch.ones(3, ids.shape[1] + 4), cache=cache)
        assert cache.get_seq_length() == ids.shape[1] + 4
    assert all(torch.equal(k, c) for k, (c, _) in zip(keys, cached.layers))
    assert len(cached.layers) == core.config.text_config.num_hidden_layers and torch.isfinite(first).all()
    with pytest.raises(ValueError, match=r"\(1, P\)"):
        PrefixCache.build(core, ids.expand(2, -1))
    with pytest.raises(ValueError, match="batch"):
        cached.for_batch(0)


def test_cached_path_is_differentiable_like_the_plain_one(ranker):
    images, texts = _candidates(3, seed=2)
    plain_images = images.clone().requires_grad_(True)
    cached_images = images.clone().requires_grad_(True)
    ranker.score([TITLES] * 3, plain_images, texts).sum().backward()
    ranker.score_cached(TITLES, cached_images, texts, batch_size=2).sum().backward()
    assert plain_images.grad.abs().sum() > 0
    assert torch.allclose(cached_images.grad, plain_images.grad, atol=1e-5, rtol=1e-3)


@pytest.mark.parametrize("replace_attribute", [False, True], ids=["lora-in-place", "peft-model-attribute"])
def test_lora_wrapped_models_keep_both_paths_equal(replace_attribute):
    from peft import LoraConfig, get_peft_model

    from venomkit.victims.mllm.finetune import peft_wrapping

    ranker = _zoo_ranker()
    torch.manual_seed(0)
    config = LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj", "down_proj"], init_lora_weights=False)
    images, texts = _candidates(4, seed=3)
    with torch.no_grad():
        before = ranker.score_candidates(TITLES, images, texts, use_cache=False)
    with peft_wrapping():  # as finetune wraps: without peft's FutureWarning
        peft_model = get_peft_model(ranker.model, config)
    if replace_attribute:
        ranker.model = peft_model
    with torch.no_grad():
        plain = ranker.score_candidates(TITLES, images, texts, use_cache=False)
        cached = ranker.score_candidates(TITLES, images, texts, batch_size=3)
    assert (plain - before).abs().max() > 1e-3  # the LoRA layers are really in the forward
    assert torch.allclose(cached, plain, atol=1e-4)
    ranker.score([TITLES] * 2, images[:2], texts[:2]).sum().backward()
    lora = [p for n, p in peft_model.named_parameters() if "lora_" in n]
    assert lora and all(p.grad is not None for p in lora) and any(p.grad.abs().sum() > 0 for p in lora)
