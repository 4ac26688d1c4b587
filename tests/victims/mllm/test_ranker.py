"""MLLMRanker: a tiny random LLaVA built in code loads by folder / zoo name and scores raw pixels."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from venomkit.victims.mllm.ranker import (
    MLLMRanker,
    build_ranking_prompt,
    num_image_tokens,
)

TITLES = ["Plain red cotton t-shirt", "Blue striped ceramic mug", "Green wool hat", "Black leather watch"]
TEXTS = ["A red tee for warm weekends.", "A blue mug with stripes.", "A green hat with a classic band."]


@pytest.fixture(scope="module")
def vlm_folder(tmp_path_factory):
    """A tiny random LLaVA (32 px images, 8 px patches) + processor, written with save_pretrained."""
    from transformers import LlavaForConditionalGeneration

    from venomkit.victims.mllm.ranker import NO, YES
    from venomkit.zoo.tokenizer import catalog_corpus, train_tokenizer
    from venomkit.zoo.vlm import VLMTrainConfig, build_processor, model_config

    folder = tmp_path_factory.mktemp("tiny-vlm")
    prompts = [build_ranking_prompt(TITLES, t) + a for t in TEXTS for a in (YES, NO)]
    tok = train_tokenizer(catalog_corpus(TEXTS * 5, TITLES * 5, prompts), vocab_size=400)
    cfg = VLMTrainConfig(
        image_size=32, patch_size=8, vision_hidden_size=32, vision_layers=1, vision_intermediate_size=64,
        hidden_size=32, num_layers=2, intermediate_size=64, num_heads=2, vision_heads=2,
    )  # fmt: skip
    torch.manual_seed(0)
    LlavaForConditionalGeneration(model_config(tok, cfg)).save_pretrained(folder)
    build_processor(tok, cfg).save_pretrained(folder)
    return folder


@pytest.fixture(scope="module")
def ranker(vlm_folder):
    return MLLMRanker.load(vlm_folder)


def test_prompt():
    prompt = build_ranking_prompt(["a  b", "c"], "nice\nhat")
    assert prompt == "USER: history: a b; c candidate: <image> nice hat Would the user like it? ASSISTANT:"
    assert "history: none" in build_ranking_prompt([], "x")


def test_loads_through_auto_classes_and_expands_like_the_processor(vlm_folder, ranker):
    from transformers import AutoModelForImageTextToText, AutoProcessor

    assert type(AutoModelForImageTextToText.from_pretrained(vlm_folder)).__name__ == "LlavaForConditionalGeneration"
    processor = AutoProcessor.from_pretrained(vlm_folder)
    assert num_image_tokens(processor) == 16  # (32 / 8) ** 2 patches, CLS dropped
    prompts = ranker.prompts([TITLES], TEXTS[:1])
    ours, _ = ranker.tokenize(prompts)
    theirs = processor(text=prompts, images=[np.zeros((32, 32, 3), np.uint8)], return_tensors="pt").input_ids
    assert torch.equal(ours, theirs)
    assert ranker.yes_id != ranker.no_id


def test_scores_are_differentiable_in_pixels_and_batch_independent(ranker):
    images = torch.rand(3, 3, 32, 32, requires_grad=True)
    histories = [TITLES[:2], [], TITLES]
    scores = ranker.score(histories, images, TEXTS)
    assert scores.shape == (3,)
    scores.sum().backward()
    assert images.grad is not None and images.grad.abs().sum() > 0 and torch.isfinite(images.grad).all()
    with torch.no_grad():
        alone = torch.stack([ranker.score([h], images[k : k + 1], [t])[0] for k, (h, t) in enumerate(zip(histories, TEXTS))])
    assert torch.allclose(alone, scores.detach(), atol=1e-5)
    logits = ranker(histories, images, TEXTS).logits
    assert torch.allclose(logits[:, ranker.yes_id] - logits[:, ranker.no_id], scores.detach(), atol=1e-6)


def test_other_image_sizes_are_resized_in_torch(ranker):
    images = torch.rand(2, 3, 48, 48, requires_grad=True)
    ranker.score([TITLES, TITLES], images, TEXTS[:2]).sum().backward()
    assert images.grad.shape == images.shape and images.grad.abs().sum() > 0


def test_pixel_values_equal_the_processor_on_non_square_photos(ranker, vlm_folder):
    """The ranker's torch preprocessing is the processor's CLIPImageProcessor (floor crop), to one grey level."""
    from PIL import Image
    from transformers import AutoProcessor

    from venomkit.encoders.preprocess import OPENAI_CLIP_STD

    processor = AutoProcessor.from_pretrained(vlm_folder)
    rng = np.random.default_rng(0)
    smooth = np.kron(rng.integers(0, 256, (19, 13, 3)), np.ones((9, 9, 1))).astype(np.uint8)  # 171 x 117, blocky
    array = np.clip(smooth.astype(int) + rng.integers(-8, 9, smooth.shape), 0, 255).astype(np.uint8)
    expected = processor.image_processor(Image.fromarray(array), return_tensors="pt").pixel_values
    got = ranker.pixel_values(torch.from_numpy(array).permute(2, 0, 1)[None].float() / 255)
    assert got.shape == expected.shape == (1, 3, 32, 32)
    levels = (got - expected).abs() * torch.tensor(OPENAI_CLIP_STD).view(1, 3, 1, 1) * 255
    assert levels.max() <= 1.1 and levels.mean() <= 0.35


def test_photos_of_different_sizes_score_as_a_list(ranker):
    g = torch.Generator().manual_seed(0)
    images = [torch.rand(3, 90, 60, generator=g).requires_grad_(True), torch.rand(3, 32, 32, generator=g).requires_grad_(True)]
    scores = ranker.score([TITLES, TITLES[:1]], images, TEXTS[:2])
    scores.sum().backward()
    assert all(im.grad is not None and im.grad.abs().sum() > 0 for im in images)
    with torch.no_grad():
        alone = torch.stack([ranker.score([h], im[None], [t])[0] for h, im, t in zip([TITLES, TITLES[:1]], images, TEXTS)])
    assert torch.allclose(scores.detach(), alone, atol=1e-5)


def test_attention_maps(ranker):
    images = torch.rand(2, 3, 32, 32)
    out = ranker.attentions([TITLES, TITLES[:1]], images, TEXTS[:2])
    assert len(out.attentions) == 2
    batch, heads, length, _ = out.attentions[0].shape
    assert (batch, heads) == (2, 2) and out.image_mask.shape == (2, length)
    assert int(out.image_mask[0].sum()) == 16
    maps = ranker.patch_attention([TITLES, TITLES[:1]], images, TEXTS[:2])
    assert maps.shape == (2, 4, 4) and (maps >= 0).all() and (maps.sum((1, 2)) <= 1 + 1e-5).all()


def test_candidate_lists_and_errors(ranker, vlm_folder, monkeypatch):
    images = torch.rand(5, 3, 32, 32)
    scores = ranker.score_candidates(TITLES, images, [TEXTS[k % 3] for k in range(5)], batch_size=2)
    assert scores.shape == (5,)
    with pytest.raises(ValueError, match="histories"):
        ranker.score([TITLES], images[:2], TEXTS[:2])
    with pytest.raises(ValueError, match="images"):
        ranker.score([TITLES], images[0], TEXTS[:1])
    with pytest.raises(ValueError, match="exactly one"):
        ranker.tokenize(["no image here"])
    with pytest.raises(OSError, match="not in the Hugging Face cache"):
        MLLMRanker.load("llava-hf/llava-1.5-7b-hf-not-cached")
    monkeypatch.setenv("VENOMKIT_ZOO", str(vlm_folder.parent))
    assert MLLMRanker.load(f"zoo:{vlm_folder.name}").n_image_tokens == 16


def test_shipped_zoo_model_ranks_with_pixel_gradients():
    from venomkit.zoo import available

    if "toyshop-vlm" not in available():
        pytest.skip("zoo:toyshop-vlm is not built (venomkit zoo build --only toyshop-vlm)")
    ranker = MLLMRanker.load("zoo:toyshop-vlm")
    assert ranker.n_image_tokens == 64
    images = torch.rand(2, 3, 64, 64, requires_grad=True)
    scores = ranker.score([TITLES, TITLES[:1]], images, TEXTS[:2])
    scores.sum().backward()
    assert torch.isfinite(scores).all() and images.grad.abs().sum() > 0
    assert ranker.patch_attention([TITLES], images[:1].detach(), TEXTS[:1]).shape == (1, 8, 8)


def test_prompts_are_prefix_ids_plus_suffix_ids(ranker):
    """The one tokenisation both the plain and the KV-cached path use."""
    prompt = ranker.prompts([TITLES], TEXTS[:1])[0]
    prefix, suffix = ranker.split_prompt(prompt)
    assert prefix + suffix == prompt and suffix.startswith("<image> ") and prefix.endswith("candidate: ")
    ids, mask = ranker.tokenize([prompt])
    expected = ranker.prefix_ids(prefix) + ranker.suffix_ids(suffix, 16)
    assert ids[0].tolist() == expected and mask.all()
    assert ranker.prefix_ids(prefix)[0] == ranker.tokenizer.bos_token_id and ranker.tokenizer.bos_token_id not in expected[1:]
    with pytest.raises(ValueError, match="image token counts"):
        ranker.tokenize([prompt], [16, 16])


def test_unsupported_model_families_are_named(vlm_folder):
    from types import SimpleNamespace

    from transformers import AutoProcessor

    model = torch.nn.Linear(1, 1)
    model.config = SimpleNamespace(model_type="idefics2")
    with pytest.raises(ValueError, match=r"supports model_type \['llava', 'qwen2_vl'\], got 'idefics2'"):
        MLLMRanker(model, AutoProcessor.from_pretrained(vlm_folder))
