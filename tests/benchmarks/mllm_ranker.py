"""Benchmark: ranking candidate lists with the MLLM ranker's user-prefix KV cache vs plain forwards.

    python tests/benchmarks/mllm_ranker.py                                  # zoo:toyshop-vlm, CPU, 5 users x 100 candidates, 8 titles
    python tests/benchmarks/mllm_ranker.py --history 8 32                   # longer histories: a longer shared prefix
    python tests/benchmarks/mllm_ranker.py --shape 7b --device cuda --layers 32
    python tests/benchmarks/mllm_ranker.py --shape 7b-smoke --layers 1 --users 1 --candidates 4 --repeats 1

VenomRec (arXiv 2602.06409) ranks each user's 99 sampled negatives + 1 target with the MLLM
ranker (:class:`venomkit.victims.mllm.MLLMRanker`). Three ways to score the same candidates,
timed in one run with alternating repetitions (the order rotates every repetition; the median
seconds per user over ``--repeats`` is reported):

- ``per pair``: one plain forward per (user, candidate) pair (batch 1);
- ``plain``: ``score_candidates(use_cache=False)``: whole prompts in batches of ``--batch-size``;
- ``cached``: ``score_candidates()``: the user prefix ``USER: history: ... candidate:`` once,
  then candidate suffixes ``<image> text Would the user like it? ASSISTANT:`` in batches of
  ``--batch-size`` on its keys/values.

The table also gives the prompt's token counts, P (prefix) and S (suffix, mean), and the
ceiling (P + S) / S of ``cached / plain``: the cache removes the prefix's tokens from every
candidate's forward, the suffix (image tokens + text) must still run in full, and the
vision tower runs per candidate in both. ``max |diff|`` is the largest difference between
the cached and plain scores measured (they are equal by construction up to float rounding).

Models. ``--shape zoo`` (default): ``--model`` (``zoo:toyshop-vlm``), loaded with
``MLLMRanker.load``. ``--shape 7b``: LLaVA-1.5-7B shapes with random weights, built on
``--device`` in ``--dtype`` (bfloat16 by default off the CPU): CLIP ViT-L/14-336 vision tower
(hidden 1024, 24 layers, 16 heads, 336 px -> 576 image tokens, feature layer -2), the
two-layer GELU projector, a Llama decoder (hidden 4096, 32 heads, intermediate 11008, vocab
32064) with ``--layers`` decoder layers (32 in the real model; fewer to fit or finish: the
table says how many) and ``--vision-layers`` vision layers; the zoo tokenizer (the ids it
produces are < 32064). ``--shape 7b-smoke``: the same code with every width divided by 16
(hidden 256, 2 heads of 128; vision hidden 64; still 576 image tokens and vocab 32064), to
exercise the 7B path on a CPU in seconds; its numbers are not 7B numbers.

Not a pytest test: a script (tests/benchmarks/test_gpu_paths_on_cpu.py runs its ``7b-smoke`` path small).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # run from a checkout without install

import numpy as np
import torch

TARGET_RATIO = 3.0
SEVEN_B = dict(
    hidden=4096, heads=32, intermediate=11008, vocab=32064,
    vision_hidden=1024, vision_heads=16, vision_intermediate=4096, projection=768, image=336, patch=14,
)  # fmt: skip


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--shape", choices=("zoo", "7b", "7b-smoke"), default="zoo")
    parser.add_argument("--model", default="zoo:toyshop-vlm", help="--shape zoo: what MLLMRanker.load reads")
    parser.add_argument("--layers", type=int, default=32, help="--shape 7b/7b-smoke: decoder layers built")
    parser.add_argument("--vision-layers", type=int, default=24, help="--shape 7b/7b-smoke: CLIP vision layers built")
    parser.add_argument("--device", default="cpu", help="cpu, cuda, cuda:1, ...")
    parser.add_argument("--dtype", choices=("float32", "bfloat16", "float16"), default=None,
                        help="default: float32 on cpu, bfloat16 elsewhere")  # fmt: skip
    parser.add_argument("--attn", default=None, help="attention implementation (default: eager on cpu, sdpa elsewhere)")
    parser.add_argument("--users", type=int, default=5)
    parser.add_argument("--candidates", type=int, default=100, help="per user (VenomRec: 99 negatives + the target)")
    parser.add_argument("--history", type=int, nargs="+", default=[8], help="history lengths (titles) to measure")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=3, help="timed repetitions per method (median reported)")
    parser.add_argument("--no-per-pair", action="store_true", help="leave out the one-forward-per-pair method")
    parser.add_argument("--image-size", type=int, default=64, help="toyshop photo size (the ranker resizes in torch)")
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads (0: torch's default)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    for name in ("layers", "vision_layers", "users", "candidates", "batch_size", "repeats", "image_size"):
        if getattr(args, name) < 1:
            parser.error(f"--{name.replace('_', '-')} must be >= 1, got {getattr(args, name)}")
    if min(args.history) < 0:
        parser.error(f"--history lengths must be >= 0, got {args.history}")
    return args


def build_llava_7b_shaped(layers: int, vision_layers: int, device: torch.device, dtype: torch.dtype, attn: str,
                          max_history: int, divisor: int = 1):  # fmt: skip
    """An :class:`MLLMRanker` around a random-weight LLaVA-1.5-7B-shaped model (widths / ``divisor``)."""
    from transformers import (
        AutoTokenizer,
        CLIPImageProcessor,
        CLIPVisionConfig,
        LlamaConfig,
        LlavaConfig,
        LlavaForConditionalGeneration,
        LlavaProcessor,
    )

    from venomkit.encoders.preprocess import OPENAI_CLIP_MEAN, OPENAI_CLIP_STD
    from venomkit.models.resolve import resolve_model
    from venomkit.victims.mllm.ranker import MLLMRanker

    s = SEVEN_B
    tokenizer = AutoTokenizer.from_pretrained(str(resolve_model("zoo:toyshop-vlm")))
    tokenizer.model_max_length = 4096  # LLaVA-1.5's context; 576 image tokens exceed the zoo's 512
    vision = CLIPVisionConfig(
        hidden_size=s["vision_hidden"] // divisor, intermediate_size=s["vision_intermediate"] // divisor,
        num_hidden_layers=vision_layers, num_attention_heads=max(1, s["vision_heads"] // divisor),
        image_size=s["image"], patch_size=s["patch"], projection_dim=s["projection"] // divisor, hidden_act="quick_gelu",
    )  # fmt: skip
    text = LlamaConfig(
        vocab_size=s["vocab"], hidden_size=s["hidden"] // divisor, intermediate_size=s["intermediate"] // divisor,
        num_hidden_layers=layers, num_attention_heads=s["heads"] // divisor, num_key_value_heads=s["heads"] // divisor,
        max_position_embeddings=4096, bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id, tie_word_embeddings=False,
    )  # fmt: skip
    config = LlavaConfig(
        vision_config=vision, text_config=text, image_token_index=tokenizer.convert_tokens_to_ids(tokenizer.image_token),
        vision_feature_select_strategy="default", vision_feature_layer=-2, projector_hidden_act="gelu",
        image_seq_length=(s["image"] // s["patch"]) ** 2, tie_word_embeddings=False,
    )  # fmt: skip
    with torch.device(device):
        model = LlavaForConditionalGeneration._from_config(config, dtype=dtype, attn_implementation=attn)
    processor = LlavaProcessor(
        image_processor=CLIPImageProcessor(
            size={"shortest_edge": s["image"]}, crop_size={"height": s["image"], "width": s["image"]},
            image_mean=list(OPENAI_CLIP_MEAN), image_std=list(OPENAI_CLIP_STD),
        ),
        tokenizer=tokenizer, patch_size=s["patch"], vision_feature_select_strategy="default",
        num_additional_image_tokens=1, image_token=tokenizer.image_token,
    )  # fmt: skip
    return MLLMRanker(model.eval(), processor, spec=f"llava-1.5-7b shapes / {divisor}", max_history=max_history)


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def describe(ranker) -> str:
    text = ranker.model.config.text_config
    vision = ranker.model.config.vision_config
    params = sum(p.numel() for p in ranker.model.parameters()) / 1e6
    return (
        f"{ranker.spec}: {type(ranker.model).__name__}, {params:.0f}M parameters; decoder {text.num_hidden_layers} layers, "
        f"hidden {text.hidden_size}, {text.num_attention_heads} heads, intermediate {text.intermediate_size}, vocab "
        f"{text.vocab_size}; vision {vision.num_hidden_layers} layers, hidden {vision.hidden_size}, "
        f"{ranker.n_image_tokens} image tokens"
    )


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    from venomkit.data import toyshop
    from venomkit.victims.mllm.ranker import MLLMRanker
    from venomkit.zoo.vlm import item_titles

    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    dtype = getattr(torch, args.dtype or ("float32" if device.type == "cpu" else "bfloat16"))
    attn = args.attn or ("eager" if device.type == "cpu" else "sdpa")
    max_history = max(args.history)
    if args.shape == "zoo":
        ranker = MLLMRanker.load(args.model, device=device, dtype=dtype, attn_implementation=attn, max_history=max_history)
    else:
        divisor = 1 if args.shape == "7b" else 16
        ranker = build_llava_7b_shaped(args.layers, args.vision_layers, device, dtype, attn, max_history, divisor)

    n_items = max(200, args.candidates + max_history)
    dataset = toyshop.make(n_users=20, n_items=n_items, image_size=args.image_size, seed=args.seed)
    titles = item_titles(dataset.catalog)
    rng = np.random.default_rng(args.seed)
    users = []
    for _ in range(args.users):
        items = rng.choice(n_items, size=args.candidates + max_history, replace=False)
        candidates, history = items[: args.candidates], items[args.candidates :]
        images = dataset.catalog.image_batch(candidates.tolist()).to(device)
        users.append(([titles[i] for i in history], images, [dataset.catalog.texts[i] for i in candidates]))

    methods = {
        "per pair": dict(batch_size=1, use_cache=False),
        "plain": dict(batch_size=args.batch_size, use_cache=False),
        "cached": dict(batch_size=args.batch_size, use_cache=True),
    }
    if args.no_per_pair:
        methods.pop("per pair")

    print(describe(ranker))
    print(
        f"device {device} {str(dtype).removeprefix('torch.')} attention {attn}, torch threads {torch.get_num_threads()}; "
        f"{args.users} users x {args.candidates} candidates, batch {args.batch_size}, median of {args.repeats} "
        f"alternating repetitions"
    )
    header = (
        f"{'history':>7s} | {'P':>4s} | {'S mean':>6s} | {'(P+S)/S':>7s} | {'method':>8s} | {'s / user':>8s} | "
        f"{'cand. / s':>9s} | {'vs plain':>8s} | {'vs per pair':>11s} | max |diff|"
    )
    print(header)
    print("-" * len(header))
    ratios = []
    for length in args.history:
        rows = [(h[-length:] if length else [], im, tx) for h, im, tx in users]
        prompts = ranker.prompts([rows[0][0]] * args.candidates, rows[0][2])
        prefix = len(ranker.prefix_ids(ranker.split_prompt(prompts[0])[0]))
        n_image = ranker.image_inputs(rows[0][1][:1]).n_tokens[0]
        suffix = float(np.mean([len(ranker.suffix_ids(ranker.split_prompt(p)[1], n_image)) for p in prompts]))

        def run(options: dict) -> list[torch.Tensor]:
            with torch.no_grad():
                out = [ranker.score_candidates(h, im, tx, **options) for h, im, tx in rows]
            synchronize(device)
            return out

        scores = {name: run(options) for name, options in methods.items()}  # warm-up, and the scores compared
        diff = max(float((c - p).abs().max()) for c, p in zip(scores["cached"], scores["plain"]))
        scale = max(float(p.abs().max()) for p in scores["plain"])  # what diff is measured against
        seconds: dict[str, list[float]] = {name: [] for name in methods}
        names = list(methods)
        for rep in range(args.repeats):
            for name in names[rep % len(names) :] + names[: rep % len(names)]:
                start = time.perf_counter()
                run(methods[name])
                seconds[name].append((time.perf_counter() - start) / args.users)
        median = {name: statistics.median(v) for name, v in seconds.items()}
        for name in names:
            per_pair = f"{median['per pair'] / median[name]:10.2f}x" if "per pair" in median else f"{'-':>11s}"
            print(
                f"{length:7d} | {prefix:4d} | {suffix:6.1f} | {(prefix + suffix) / suffix:7.2f} | {name:>8s} | "
                f"{median[name]:8.3f} | {args.candidates / median[name]:9.1f} | {median['plain'] / median[name]:7.2f}x | "
                f"{per_pair} | {f'{diff:.1e}' if name == 'cached' else '-'}"
            )
        relative = f"{diff / scale:.1e} of it" if scale > 0 else "not relative: every plain score is 0"
        print(f"{'':7s}   max |score| (plain) {scale:.2f}: cached - plain is {relative}")
        ratios.append((length, median["plain"] / median["cached"], median.get("per pair", float("nan")) / median["cached"]))
    print()
    for length, vs_plain, vs_pair in ratios:
        per_pair = "" if np.isnan(vs_pair) else f" and {vs_pair:.2f}x one forward per pair"
        print(f"history {length}: cached is {vs_plain:.2f}x plain batched forwards{per_pair} (target >= {TARGET_RATIO:.0f}x)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
