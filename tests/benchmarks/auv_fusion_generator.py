"""Benchmark: one forward + backward img2img pass of AUV-Fusion's generator (time and peak memory).

    python tests/benchmarks/auv_fusion_generator.py                  # zoo:toyshop-sd, 64 px, CPU, float32
    python tests/benchmarks/auv_fusion_generator.py --device cuda    # SD-1.5-shaped, random weights, 512 px, float16

The pass is what an AUV-Fusion optimisation step costs: ``DiffusionImg2Img.run`` on a batch of
images with a 20-step DDIM schedule at strength 0.5 (10 UNet steps), a latent ``delta``
(requires grad) injected at the first step run (full-schedule step 10, as in the public port:
``run_step_index(20, 0.5, 10) == 0``), then ``loss.backward()`` on the images (a stand-in for the
hybrid CLIP + SSIM + alignment loss). One warm-up pass, then the best of ``--repeats`` timed
passes. Gradient checkpointing variants:

* ``none``: every step's UNet activations kept for the backward pass;
* ``step``: ``checkpoint_steps=True`` (each denoising step recomputed; ``torch.utils.checkpoint``);
* ``block``: ``enable_gradient_checkpointing()`` (each UNet block recomputed, diffusers' own);
* ``step+vae`` / ``block+vae``: the same plus the VAE encoder's and decoder's blocks
  (``enable_gradient_checkpointing(vae=True)``), whose activations at 512 px are large.

Models:

* ``toyshop`` (default on CPU): ``zoo:toyshop-sd`` (trained, 64 px working size), float32. Each
  variant runs in a fresh subprocess so that its peak resident memory (``ru_maxrss``) is its own;
  "peak above model" is the peak RSS minus the RSS once the model is loaded. One torch thread
  by default (``--threads``): on the shared 2-core machine a second thread mostly spin-waits
  (measured: 12 s instead of 0.2 s for batch 1 while other jobs ran).
* ``sd15`` (default on CUDA): Stable Diffusion 1.5's shapes built from configs with RANDOM weights
  (no download): ``UNet2DConditionModel`` (block_out_channels 320/640/1280/1280, 2 layers per
  block, cross_attention_dim 768, attention_head_dim 8), ``AutoencoderKL`` (128/256/512/512,
  2 layers per block, 4 latent channels, scaling 0.18215), ``CLIPTextModel`` (12 layers, width
  768, 12 heads, quick_gelu), SD's DDIM scheduler and CLIP tokenizer; 512 px, float16. The
  variants share one process; CUDA peak memory (``max_memory_allocated``) is reset before each,
  and "peak above model" subtracts the memory allocated once the model is on the GPU.

Time and memory are also given per image (the pass's figure divided by the batch). Random
weights time like trained ones; gradients are only checked to be finite.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # run from a checkout without install (the CPU variants are subprocesses)

import torch

VARIANTS = ("none", "step", "block", "step+vae", "block+vae")
DTYPES = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}


def build_sd15(device: str, dtype: torch.dtype):
    """A DiffusionImg2Img with SD 1.5's component shapes and random weights, built on ``device``."""
    from diffusers import AutoencoderKL, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTokenizer

    from venomkit.generators.diffusion import DiffusionImg2Img
    from venomkit.models.resolve import resolve_model
    from venomkit.zoo import sd

    # SD 1.5's tokenizer: the zoo checkpoint's tokenizer/ folder holds the same CLIP BPE (49,408 ids)
    tokenizer = CLIPTokenizer.from_pretrained(str(resolve_model("zoo:toyshop-sd") / "tokenizer"))
    torch.manual_seed(0)
    with torch.device(device):
        unet = UNet2DConditionModel(
            sample_size=64,
            in_channels=4,
            out_channels=4,
            down_block_types=("CrossAttnDownBlock2D",) * 3 + ("DownBlock2D",),
            up_block_types=("UpBlock2D",) + ("CrossAttnUpBlock2D",) * 3,
            block_out_channels=(320, 640, 1280, 1280),
            layers_per_block=2,
            cross_attention_dim=768,
            attention_head_dim=8,
            norm_num_groups=32,
        )
        vae = AutoencoderKL(
            in_channels=3,
            out_channels=3,
            down_block_types=("DownEncoderBlock2D",) * 4,
            up_block_types=("UpDecoderBlock2D",) * 4,
            block_out_channels=(128, 256, 512, 512),
            layers_per_block=2,
            latent_channels=4,
            norm_num_groups=32,
            sample_size=512,
            scaling_factor=0.18215,
        )
        text_encoder = CLIPTextModel(
            CLIPTextConfig(
                vocab_size=len(tokenizer),
                hidden_size=768,
                intermediate_size=3072,
                num_hidden_layers=12,
                num_attention_heads=12,
                max_position_embeddings=77,
                hidden_act="quick_gelu",
                projection_dim=768,
                bos_token_id=tokenizer.bos_token_id,
                eos_token_id=tokenizer.eos_token_id,
                pad_token_id=tokenizer.pad_token_id,
            )
        )
    model = DiffusionImg2Img(vae, unet, text_encoder, tokenizer, sd.make_scheduler(), source="random SD-1.5 shapes")
    return model.to(device=device, dtype=dtype)


def load(model_name: str, device: str, dtype: torch.dtype):
    from venomkit.generators.diffusion import DiffusionImg2Img

    if model_name == "sd15":
        return build_sd15(device, dtype)
    return DiffusionImg2Img.from_pretrained("zoo:toyshop-sd", device=device, dtype=dtype)


def params(model) -> str:
    """Parameter counts in millions, e.g. "UNet 859.5M, VAE 83.7M, text 123.1M" for SD 1.5's shapes."""
    count = {name: sum(p.numel() for p in getattr(model, part).parameters()) / 1e6 for name, part in
             (("UNet", "unet"), ("VAE", "vae"), ("text", "text_encoder"))}  # fmt: skip
    return ", ".join(f"{name} {n:.1f}M" for name, n in count.items())


def set_variant(model, variant: str) -> bool:
    """Set the per-block checkpointing of ``variant`` on ``model``; returns ``checkpoint_steps``."""
    model.disable_gradient_checkpointing()
    if variant.startswith("block") or variant.endswith("vae"):
        model.enable_gradient_checkpointing(vae=variant.endswith("vae"))
        if variant == "step+vae":
            model.unet.disable_gradient_checkpointing()  # only the VAE's blocks, the UNet per step
    return variant.startswith("step")


def one_pass(model, images: torch.Tensor, checkpoint_steps: bool) -> bool:
    """Forward + backward of AUV-Fusion's pass; True when the gradient of delta is finite."""
    from venomkit.generators.diffusion import run_step_index

    batch, _, height, width = images.shape
    delta = torch.zeros(model.latent_shape(batch, height, width), device=model.device, requires_grad=True)
    out = model.run(
        images,
        ["a photo of a product"] * batch,
        strength=0.5,
        num_steps=20,
        delta=delta,
        eta=1.0,
        inject_step=run_step_index(20, 0.5, 10),
        seed=list(range(batch)),
        checkpoint_steps=checkpoint_steps,
    )
    out.images.square().mean().backward()
    return bool(torch.isfinite(delta.grad).all())


def timed(model, images: torch.Tensor, checkpoint_steps: bool, repeats: int) -> tuple[float, bool]:
    cuda = images.device.type == "cuda"
    one_pass(model, images, checkpoint_steps)  # warm-up (kernels, allocator, cuDNN choices)
    best, finite = float("inf"), True
    for _ in range(repeats):
        if cuda:
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        finite &= one_pass(model, images, checkpoint_steps)
        if cuda:
            torch.cuda.synchronize()
        best = min(best, time.perf_counter() - t0)
    return best, finite


def rss_mib() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * resource.getpagesize() / 2**20


def run_cpu_variant(args, variant: str, batch: int) -> dict:
    """One (variant, batch) in this process (a fresh subprocess): peak RSS is its own."""
    model = load(args.model, args.device, DTYPES[args.dtype])
    images = torch.rand(batch, 3, args.size, args.size, generator=torch.Generator().manual_seed(0)).to(args.device)
    steps = set_variant(model, variant)
    before = rss_mib()
    seconds, finite = timed(model, images, steps, args.repeats)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return {"variant": variant, "batch": batch, "seconds": seconds, "peak_mib": peak, "above_model_mib": peak - before, "finite": finite,
            "params": params(model)}  # fmt: skip


def run_cuda(args) -> list[dict]:
    """Every (variant, batch) in this process: CUDA peak memory is reset before each."""
    model = load(args.model, args.device, DTYPES[args.dtype])
    torch.cuda.synchronize()
    weights = torch.cuda.memory_allocated() / 2**20
    rows = [{"params": params(model)}]
    for batch in args.batches:
        images = torch.rand(batch, 3, args.size, args.size, generator=torch.Generator().manual_seed(0)).to(args.device)
        for variant in args.variants:
            steps = set_variant(model, variant)
            torch.cuda.empty_cache()
            torch.cuda.reset_peak_memory_stats()
            try:
                seconds, finite = timed(model, images, steps, args.repeats)
            except torch.cuda.OutOfMemoryError:
                rows.append({"variant": variant, "batch": batch, "seconds": float("nan"), "peak_mib": float("nan"),
                             "above_model_mib": float("nan"), "finite": "OOM"})  # fmt: skip
                continue
            peak = torch.cuda.max_memory_allocated() / 2**20
            rows.append({"variant": variant, "batch": batch, "seconds": seconds, "peak_mib": peak, "above_model_mib": peak - weights, "finite": finite})
    return rows


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu", help="cpu (default) or cuda")
    parser.add_argument("--model", choices=("toyshop", "sd15"), default=None, help="default: toyshop on CPU, sd15 on CUDA")
    parser.add_argument("--size", type=int, default=None, help="image side in pixels (default: 64 toyshop, 512 sd15)")
    parser.add_argument("--dtype", choices=tuple(DTYPES), default=None, help="default: float32 on CPU, float16 on CUDA")
    parser.add_argument("--batches", type=int, nargs="+", default=None, help="default: 1 8 on CPU, 1 4 on CUDA")
    parser.add_argument("--variants", nargs="+", choices=VARIANTS, default=None, help="default: none step block on CPU, all on CUDA")
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--threads", type=int, default=1, help="torch threads on CPU (default 1: on a shared CPU a second thread mostly spin-waits)")
    parser.add_argument("--child", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    cuda = args.device.startswith("cuda")
    args.model = args.model or ("sd15" if cuda else "toyshop")
    args.size = args.size or (512 if args.model == "sd15" else 64)
    args.dtype = args.dtype or ("float16" if cuda else "float32")
    args.batches = args.batches or ([1, 4] if cuda else [1, 8])
    args.variants = args.variants or (list(VARIANTS) if cuda else ["none", "step", "block"])
    return args


def main(argv=None) -> int:
    args = parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.child:
        variant, batch = args.child.split(":")
        print(json.dumps(run_cpu_variant(args, variant, int(batch))))
        return 0
    if args.device.startswith("cuda"):
        if not torch.cuda.is_available():
            print("no CUDA device here: run with --device cpu (the default), or where a GPU is lent", file=sys.stderr)
            return 0
        rows = run_cuda(args)
        where = torch.cuda.get_device_name()
        memory = "CUDA peak allocated"
    else:
        rows = []
        for batch in args.batches:
            for variant in args.variants:
                command = [sys.executable, __file__, "--child", f"{variant}:{batch}", "--device", args.device, "--model", args.model,
                           "--size", str(args.size), "--dtype", args.dtype, "--repeats", str(args.repeats)]  # fmt: skip
                if args.threads:
                    command += ["--threads", str(args.threads)]
                done = subprocess.run(command, capture_output=True, text=True)
                if done.returncode != 0:
                    raise SystemExit(done.stderr[-3000:])
                rows.append(json.loads(done.stdout.strip().splitlines()[-1]))
        where = f"CPU, torch threads {args.threads}"
        memory = "peak RSS"
    model = "zoo:toyshop-sd" if args.model == "toyshop" else "SD-1.5 shapes, random weights"
    model += f" ({rows[0]['params']})"
    rows = [r for r in rows if "variant" in r]
    print(
        f"AUV-Fusion generator pass: {model}, {args.size} px, {args.dtype}, {where}; 20-step DDIM schedule at strength 0.5 "
        f"(10 UNet steps), delta injected at the first step run, forward + backward; best of {args.repeats} after a warm-up"
    )
    print(f"| checkpointing | batch | s / pass | s / image | {memory} (MiB) | peak above model (MiB) | above model / image (MiB) | grad finite |")
    print("|---|---:|---:|---:|---:|---:|---:|---|")
    for r in rows:
        b = r["batch"]
        print(
            f"| {r['variant']} | {b} | {r['seconds']:.3f} | {r['seconds'] / b:.3f} | {r['peak_mib']:.0f} | "
            f"{r['above_model_mib']:.0f} | {r['above_model_mib'] / b:.0f} | {r['finite']} |"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
