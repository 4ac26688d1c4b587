"""MLLMRanker on the second family: a tiny random Qwen2-VL built in code, saved, loaded by folder.

Checks that the ranker matches what ``Qwen2VLProcessor`` + ``Qwen2VLForConditionalGeneration``
do themselves (image-token expansion from ``image_grid_thw``, multimodal RoPE positions,
answer logits), that pixel gradients reach photos of any size, and that the KV-cached
ranking equals the plain forwards.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from venomkit.victims.mllm.families import Qwen2VLFamily
from mllm_helpers import MERGE, PLACEHOLDER, TEXTS, TITLES, tiny_qwen2vl_folder

from venomkit.victims.mllm.ranker import MLLMRanker


@pytest.fixture(scope="module")
def qwen_folder(tmp_path_factory):
    return tiny_qwen2vl_folder(tmp_path_factory.mktemp("tiny-qwen2-vl"))


@pytest.fixture(scope="module")
def ranker(qwen_folder):
    return MLLMRanker.load(qwen_folder)


def _photos(seed: int = 0) -> list[torch.Tensor]:
    """Three photos of different sizes -> merged grids 2x2, 4x3, 3x5 (after smart_resize)."""
    g = torch.Generator().manual_seed(seed)
    return [torch.rand(3, h, w, generator=g) for h, w in ((32, 32), (60, 47), (50, 80))]


def test_loads_as_qwen2_vl_and_tokenises_like_its_processor(qwen_folder, ranker):
    from transformers import AutoProcessor

    assert type(ranker.model).__name__ == "Qwen2VLForConditionalGeneration"
    assert isinstance(ranker.family, Qwen2VLFamily) and ranker.image_placeholder == PLACEHOLDER
    assert ranker.n_image_tokens is None  # follows each photo's size
    processor = AutoProcessor.from_pretrained(qwen_folder)
    photos = _photos()
    prompts = ranker.prompts([TITLES, TITLES[:1], []], TEXTS)
    uint8 = [(p * 255).round().to(torch.uint8) for p in photos]
    enc = processor(text=prompts, images=[u.permute(1, 2, 0).numpy() for u in uint8], return_tensors="pt", padding=True)
    inputs = ranker.image_inputs([u.float() / 255 for u in uint8])
    assert torch.equal(inputs.model_kwargs["image_grid_thw"], enc["image_grid_thw"])
    expected = (enc["image_grid_thw"].prod(-1) // MERGE**2).tolist()
    assert inputs.n_tokens == expected == [4, 12, 15]
    assert inputs.grids == [(2, 2), (4, 3), (3, 5)]
    ours, mask = ranker.tokenize(prompts, inputs.n_tokens)
    assert torch.equal(ours, enc["input_ids"]) and torch.equal(mask, enc["attention_mask"])
    assert (ours == ranker.image_token_id).sum(1).tolist() == expected
    with pytest.raises(ValueError, match="image_tokens"):
        ranker.tokenize(prompts)


def test_positions_and_logits_equal_the_models_own_forward(qwen_folder, ranker):
    """Our tokens + 3-D RoPE positions give the logits the model computes from the processor's inputs."""
    from transformers import AutoProcessor

    processor = AutoProcessor.from_pretrained(qwen_folder)
    photos = _photos(1)
    histories = [TITLES, TITLES[:2], TITLES[3:]]
    prompts = ranker.prompts(histories, TEXTS)
    enc = processor(text=prompts, images=[np.zeros((p.shape[1], p.shape[2], 3), np.uint8) for p in photos],
                    return_tensors="pt", padding=True)  # fmt: skip
    inputs = ranker.image_inputs(photos)
    core = ranker.model.model
    ours = ranker.family.position_ids(core, enc["input_ids"], enc["attention_mask"], inputs)
    theirs, _ = core.get_rope_index(
        enc["input_ids"], enc["mm_token_type_ids"], enc["image_grid_thw"], attention_mask=enc["attention_mask"]
    )
    assert torch.equal(ours, theirs)
    # an image's tokens share (row, col) positions: the sequences use fewer positions than tokens
    assert (ours.amax(dim=(0, 2)) + 1 < enc["attention_mask"].sum(1)).all()
    with torch.no_grad():
        out = ranker(histories, photos, TEXTS)
        model_out = ranker.model(
            input_ids=enc["input_ids"], attention_mask=enc["attention_mask"], mm_token_type_ids=enc["mm_token_type_ids"],
            image_grid_thw=enc["image_grid_thw"], pixel_values=inputs.model_kwargs["pixel_values"],
        )  # fmt: skip
    last = enc["attention_mask"].sum(1) - 1
    reference = model_out.logits[torch.arange(3), last].float()
    assert torch.allclose(out.logits, reference, atol=1e-5)
    assert torch.allclose(out.scores, reference[:, ranker.yes_id] - reference[:, ranker.no_id], atol=1e-5)


def test_pixel_gradients_reach_photos_of_any_size(ranker):
    photos = [p.requires_grad_(True) for p in _photos(2)]
    scores = ranker.score([TITLES, TITLES[:1], []], photos, TEXTS)
    assert scores.shape == (3,) and torch.isfinite(scores).all()
    scores.sum().backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 and torch.isfinite(p.grad).all() for p in photos)
    with torch.no_grad():
        alone = torch.stack([ranker.score([h], [p], [t])[0] for h, p, t in zip([TITLES, TITLES[:1], []], photos, TEXTS)])
    assert torch.allclose(alone, scores.detach(), atol=1e-5)
    batch = torch.rand(2, 3, 40, 40, requires_grad=True)
    ranker.score([TITLES, TITLES], batch, TEXTS[:2]).sum().backward()
    assert batch.grad.abs().sum() > 0


def test_kv_cache_scores_equal_plain_forwards(ranker):
    """Different photo sizes (so different suffix lengths and RoPE grids), uneven last batch."""
    g = torch.Generator().manual_seed(3)
    sizes = [(32, 32), (60, 47), (50, 80), (20, 70), (64, 64)]
    photos = [torch.rand(3, h, w, generator=g) for h, w in sizes]
    texts = [TEXTS[k % 3] * (1 + k % 2) for k in range(5)]
    with torch.no_grad():
        plain = ranker.score_candidates(TITLES, photos, texts, batch_size=2, use_cache=False)
        single = torch.stack([ranker.score([TITLES], [p], [t])[0] for p, t in zip(photos, texts)])
        for batch_size in (1, 2, 5):
            cached = ranker.score_candidates(TITLES, photos, texts, batch_size=batch_size)
            assert torch.allclose(cached, plain, atol=1e-4), batch_size
    assert torch.allclose(single, plain, atol=1e-4)
    assert plain.std() > 1e-3  # the candidates really are told apart


def test_patch_attention_on_the_merged_grid(ranker):
    photos = _photos(4)
    maps = ranker.patch_attention([TITLES] * 3, photos, TEXTS)
    assert [tuple(m.shape) for m in maps] == [(2, 2), (4, 3), (3, 5)]
    assert all((m >= 0).all() and m.sum() <= 1 + 1e-5 for m in maps)
    same = ranker.patch_attention([TITLES] * 2, torch.rand(2, 3, 48, 32), TEXTS[:2])
    assert same.shape == (2, 3, 2)
