"""Benchmark: PGD on photos at their own size (1166 x 1750) against the same photos pre-resized.

    python tests/benchmarks/native_resolution.py                       # zoo:toyshop-clip (64 px input), CPU
    python tests/benchmarks/native_resolution.py --arch ViT-B-32       # an open_clip ViT-B/32 (224 px, random weights)
    python tests/benchmarks/native_resolution.py --device cuda --arch ViT-B-32

Two variants of one attack (PGD L-inf 8/255, 10 steps, 16 targets, one batch), each in a fresh
subprocess so its peak memory is its own:

* **native**: the 16 photos at 1166 x 1750; the perturbation lives on the native pixels and the
  gradient flows through the encoder's resize (antialiased bicubic, shorter side to the input size,
  centre crop) -- what venomkit does;
* **pre-resized**: the same photos already brought to the encoder's input (resize + crop done once,
  outside the attack): the encoder's input is the same size, so the difference is what running the
  resize and the projection at native size costs.

The victim is a VBPR (random weights, 500 users, 100 items) over the encoder's image features.
Printed: seconds of the attack, peak resident memory of the process, and the ratio native /
pre-resized (target: at most 2x).
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time

import numpy as np
import torch

WIDTH, HEIGHT = 1166, 1750


def photos(n: int, seed: int = 0) -> list[torch.Tensor]:
    """``n`` photo-like (3, HEIGHT, WIDTH) images in [0, 1]: gradients, sharp shapes, noise."""
    out = []
    for k in range(n):
        rng = np.random.default_rng(seed + k)
        y, x = np.mgrid[0:HEIGHT, 0:WIDTH].astype(np.float32)
        img = np.stack([x / WIDTH, y / HEIGHT, 0.5 + 0.5 * np.sin((x + y) / 40)], axis=0) * rng.uniform(0.4, 1.0, (3, 1, 1))
        for _ in range(6):
            cx, cy, r = rng.integers(0, WIDTH), rng.integers(0, HEIGHT), rng.integers(60, 400)
            img[:, (x - cx) ** 2 + (y - cy) ** 2 < r**2] = rng.uniform(0, 1, (3, 1))
        img += rng.normal(0, 0.02, img.shape).astype(np.float32)
        out.append(torch.from_numpy(np.clip(img, 0, 1).astype(np.float32)))
    return out


def encoder(arch: str | None, device: str):
    from venomkit.encoders.loading import load_image_encoder

    if arch is None:
        return load_image_encoder("zoo:toyshop-clip", device)
    return load_image_encoder(arch, device)  # an open_clip architecture name: random weights (a warning says so)


def run_variant(variant: str, arch: str | None, device: str, targets: int, steps: int) -> dict:
    from venomkit.attacks.pgd import PGD
    from venomkit.attacks.targets import TargetBatch
    from venomkit.victims.vbpr import VBPR, VBPRConfig

    torch.manual_seed(0)
    enc = encoder(arch, device)
    images = photos(targets)
    if variant == "pre-resized":
        with torch.no_grad():
            images = [enc.preprocess.resize_crop(im[None])[0] for im in images]
    n_items = 100
    victim = VBPR(VBPRConfig(n_users=500, n_items=n_items, embed_dim=32, visual_dim=enc.output_dim))
    with torch.no_grad():
        features = torch.randn(n_items, enc.output_dim) * 0.5
        features[:targets] = enc(torch.stack(images).to(device)).cpu()
        victim.set_clean_features({"visual": features})
    victim.attach_encoders(enc)
    victim.to(device).eval()
    attack = PGD(steps=steps, objective="sigmoid", temperature=0.3)
    baseline = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    if device.startswith("cuda"):
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    t0 = time.perf_counter()
    result = attack(victim, TargetBatch(torch.arange(targets), [im.to(device) for im in images]))
    if device.startswith("cuda"):
        torch.cuda.synchronize()
    seconds = time.perf_counter() - t0
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    out = {"variant": variant, "seconds": seconds, "peak_rss_mib": peak, "rss_before_attack_mib": baseline,
           "input": list(images[0].shape), "gain": float((result.diagnostics["score_after"] - result.diagnostics["score_before"]).mean())}
    if device.startswith("cuda"):
        out["cuda_peak_mib"] = torch.cuda.max_memory_allocated() / 2**20
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--arch", default=None, help="open_clip architecture with random weights (default: zoo:toyshop-clip)")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--targets", type=int, default=16)
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--variant", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.variant:
        print(json.dumps(run_variant(args.variant, args.arch, args.device, args.targets, args.steps)))
        return 0
    rows = {}
    for variant in ("native", "pre-resized"):
        command = [sys.executable, __file__, "--variant", variant, "--device", args.device, "--targets", str(args.targets), "--steps", str(args.steps)]
        if args.arch:
            command += ["--arch", args.arch]
        done = subprocess.run(command, capture_output=True, text=True)
        if done.returncode != 0:
            raise SystemExit(done.stderr[-2000:])
        rows[variant] = json.loads(done.stdout.strip().splitlines()[-1])
    what = args.arch or "zoo:toyshop-clip"
    print(f"PGD L-inf 8/255, {args.steps} steps, {args.targets} photos of {WIDTH} x {HEIGHT}, encoder {what}, {args.device}, torch threads {torch.get_num_threads()}")
    print("| variant | attack input | seconds | peak RSS (MiB) | RSS before the attack (MiB) |")
    print("|---|---|---:|---:|---:|")
    for r in rows.values():
        shape = "x".join(str(s) for s in r["input"][1:][::-1])
        cuda = f" (CUDA peak {r['cuda_peak_mib']:.0f} MiB)" if "cuda_peak_mib" in r else ""
        print(f"| {r['variant']} | {shape} | {r['seconds']:.2f} | {r['peak_rss_mib']:.0f}{cuda} | {r['rss_before_attack_mib']:.0f} |")
    ratio = rows["native"]["seconds"] / rows["pre-resized"]["seconds"]
    print(f"ratio native / pre-resized: {ratio:.2f}x (target <= 2x)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
