"""Tiny fixtures of the MLLM-ranker tests: a toyshop and a random tiny LLaVA folder, built in code."""

from __future__ import annotations

from pathlib import Path

import torch

from venomkit.victims.mllm.ranker import NO, YES, build_ranking_prompt


def tiny_shop(n_users: int = 20, n_items: int = 30, seed: int = 1):
    """A toyshop of ``n_users`` x ``n_items`` with 32 px images (about 8 interactions per user)."""
    from venomkit.data.toyshop import make

    return make(n_users=n_users, n_items=n_items, image_size=32, interactions_per_user=8, seed=seed)


def tiny_vlm_folder(folder: Path, dataset) -> Path:
    """A random tiny LLaVA (32 px, 8 px patches, 2 text layers of width 32) + processor, saved to ``folder``."""
    from transformers import LlavaForConditionalGeneration

    from venomkit.zoo.tokenizer import train_zoo_tokenizer
    from venomkit.zoo.vlm import VLMTrainConfig, build_processor, model_config

    tok = train_zoo_tokenizer(dataset, vocab_size=400, seed=0)
    cfg = VLMTrainConfig(
        image_size=32, patch_size=8, vision_hidden_size=16, vision_layers=1, vision_intermediate_size=32,
        vision_heads=2, hidden_size=32, num_layers=2, intermediate_size=64, num_heads=2, max_history=3,
    )  # fmt: skip
    torch.manual_seed(0)
    LlavaForConditionalGeneration(model_config(tok, cfg)).save_pretrained(folder)
    build_processor(tok, cfg).save_pretrained(folder)
    return folder


TITLES = ["Plain red cotton t-shirt", "Blue striped ceramic mug", "Green wool hat", "Black leather watch"]
TEXTS = ["A red tee for warm weekends.", "A blue mug with stripes, dishwasher safe and large.", "A green hat."]
QWEN_TOKENS = ["<|endoftext|>", "<|vision_start|>", "<|vision_end|>", "<|image_pad|>", "<|video_pad|>"]
PLACEHOLDER = "<|vision_start|><|image_pad|><|vision_end|>"
PATCH, MERGE = 8, 2  # 16 px per merged token


def _tokenizer():
    """A byte-level BPE tokenizer with Qwen2-VL's special tokens (no BOS, like Qwen2's)."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    backend = Tokenizer(models.BPE())
    backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    backend.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=400, min_frequency=1, special_tokens=QWEN_TOKENS,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False,
    )  # fmt: skip
    corpus = [build_ranking_prompt(TITLES[k:], t, PLACEHOLDER) + a for k in range(3) for t in TEXTS for a in (YES, NO)]
    backend.train_from_iterator(corpus * 5, trainer)
    return PreTrainedTokenizerFast(
        tokenizer_object=backend, pad_token="<|endoftext|>", eos_token="<|endoftext|>", padding_side="right"
    )


def tiny_qwen2vl_folder(folder: Path) -> Path:
    """Tiny Qwen2-VL (1 vision block, 2 decoder layers, hidden 32) + Qwen2VLProcessor, via save_pretrained."""
    from transformers import (
        Qwen2VLConfig,
        Qwen2VLForConditionalGeneration,
        Qwen2VLImageProcessor,
        Qwen2VLProcessor,
        Qwen2VLVideoProcessor,
    )

    tok = _tokenizer()
    ids = {t: tok.convert_tokens_to_ids(t) for t in QWEN_TOKENS}
    sizes = dict(patch_size=PATCH, merge_size=MERGE, temporal_patch_size=2)
    processor = Qwen2VLProcessor(
        image_processor=Qwen2VLImageProcessor(size={"shortest_edge": 16 * 16, "longest_edge": 64 * 64}, **sizes),
        video_processor=Qwen2VLVideoProcessor(**sizes),
        tokenizer=tok,
    )
    config = Qwen2VLConfig(
        text_config=dict(
            vocab_size=len(tok), hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2,
            num_key_value_heads=1, max_position_embeddings=512, bos_token_id=None,
            eos_token_id=ids["<|endoftext|>"], pad_token_id=ids["<|endoftext|>"],
            rope_parameters={"rope_type": "default", "mrope_section": [2, 3, 3], "rope_theta": 10000.0},
            initializer_range=0.2,  # scores of order 1, so a wrong position moves them well past the tolerance
        ),
        vision_config=dict(
            depth=1, embed_dim=32, hidden_size=32, num_heads=2, mlp_ratio=2, patch_size=PATCH,
            spatial_merge_size=MERGE, temporal_patch_size=2, initializer_range=0.2,
        ),
        image_token_id=ids["<|image_pad|>"], video_token_id=ids["<|video_pad|>"],
        vision_start_token_id=ids["<|vision_start|>"], vision_end_token_id=ids["<|vision_end|>"],
    )  # fmt: skip
    torch.manual_seed(0)
    Qwen2VLForConditionalGeneration(config).save_pretrained(folder)
    processor.save_pretrained(folder)
    return folder
