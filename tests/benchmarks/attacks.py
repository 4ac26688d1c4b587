"""Benchmark: PGD on 64 targets batched in one tensor vs a per-target loop (as published code runs).

    python tests/benchmarks/attacks.py                    # CPU, zoo:toyshop-clip if built, else a tiny ResNet CLIP
    python tests/benchmarks/attacks.py --device cuda --arch ViT-B-32   # GPU, random ViT-B/32 weights

Both runs use the same VBPR victim (random weights over the encoder's features) and the same
PGD config, with per-target seeds. Targets: >= 3x on CPU, >= 20x on a GPU.

"Same results" is checked twice. In float32 (the timed runs) the figures of the two runs are
printed: batched convolutions and matrix products sum in another order than single ones, and
PGD's sign() turns a rounding difference on a near-zero gradient into a full step, so a few
pixels may differ. In float64 (``--check-targets`` targets, not timed) rounding is ~1e-16 and
the batched attack must give the per-target loop's images exactly (max |diff| < 1e-6): that is
the test that no target leaks into another's objective. The script exits 1 if it does not.
"""

from __future__ import annotations

import argparse
import sys
import time

import torch


def build_encoders(arch: str | None, device: str):
    """(image_encoder, text_encoder, image_size, description)."""
    if arch is None:
        try:
            from venomkit.encoders.loading import load_encoders

            image, text = load_encoders("zoo:toyshop-clip", device=device)
            return image, text, 64, "zoo:toyshop-clip"
        except Exception as exc:  # noqa: BLE001 -- any failure means "not built here": fall back
            print(f"zoo:toyshop-clip not available ({type(exc).__name__}: {exc}); using a tiny ResNet CLIP", file=sys.stderr)
    import open_clip

    from venomkit.encoders.openclip import OpenClipImageEncoder, OpenClipTextEncoder, OpenClipBundle  # noqa: F401

    if arch is None:
        cfg = {
            "embed_dim": 64,
            "vision_cfg": {"image_size": 64, "layers": [1, 1, 1, 1], "width": 32, "head_width": 32},
            "text_cfg": {"context_length": 77, "vocab_size": 49408, "width": 64, "heads": 2, "layers": 2},
        }
        model = open_clip.CLIP(**cfg)
        size, what = 64, "tiny ResNet CLIP (random weights)"
    else:
        model = open_clip.create_model(arch, pretrained=None)
        size, what = model.visual.image_size[0] if isinstance(model.visual.image_size, tuple) else model.visual.image_size, f"{arch} (random weights)"
    model = model.to(device).eval()
    image, text = _wrap(model, size, device)
    return image, text, size, what


def _wrap(model, size, device):
    """Minimal ImageEncoder/TextEncoder around an open_clip model (normalisation in torch)."""
    import open_clip

    from venomkit.encoders.base import ImageEncoder, TextEncoder

    mean = torch.tensor(open_clip.OPENAI_DATASET_MEAN, device=device).view(1, 3, 1, 1)
    std = torch.tensor(open_clip.OPENAI_DATASET_STD, device=device).view(1, 3, 1, 1)
    tokenizer = open_clip.get_tokenizer("RN50")

    class Img(ImageEncoder):
        def __init__(self):
            super().__init__()
            self.model, self.spec, self.output_dim = model, "bench", model.text_projection.shape[1] if hasattr(model, "text_projection") else 64

        def forward(self, images):
            x = torch.nn.functional.interpolate(images, size=(size, size), mode="bilinear", align_corners=False)
            return self.model.encode_image((x - mean) / std)

    class Txt(TextEncoder):
        def __init__(self):
            super().__init__()
            self.model, self.spec = model, "bench"
            self.output_dim = Img().output_dim

        def tokenize(self, texts):
            return tokenizer(texts)

        def decode(self, ids):
            return [open_clip.decode(r).replace("<start_of_text>", "").split("<end_of_text>")[0].strip() for r in ids]

        @property
        def token_embedding(self):
            return self.model.token_embedding

        def forward_embeddings(self, emb, ids):
            return self.model.encode_text(ids.to(emb.device))

    return Img(), Txt()


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--arch", default=None, help="open_clip architecture with random weights, e.g. ViT-B-32")
    parser.add_argument("--targets", type=int, default=64)
    parser.add_argument("--items", type=int, default=600)
    parser.add_argument("--users", type=int, default=1000)
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--check-targets", type=int, default=8, help="targets of the float64 equality check (default 8)")
    args = parser.parse_args(argv)
    if args.device == "cpu":
        torch.set_num_threads(max(1, torch.get_num_threads()))
    torch.manual_seed(0)
    from venomkit.attacks.pgd import PGD
    from venomkit.attacks.targets import TargetBatch
    from venomkit.victims.vbpr import VBPR, VBPRConfig

    image_enc, _text_enc, size, what = build_encoders(args.arch, args.device)
    dim = image_enc.output_dim
    victim = VBPR(VBPRConfig(n_users=args.users, n_items=args.items, embed_dim=32, visual_dim=dim, text_dim=0, init_std=0.3)).to(args.device)
    victim.attach_encoders(image_enc, None)
    images = torch.rand(args.targets, 3, size, size, device=args.device)
    with torch.no_grad():
        clean = torch.randn(args.items, dim, device=args.device)
        victim.set_clean_features({"visual": clean})
    targets = torch.arange(args.targets) * (args.items // args.targets)
    attack = PGD(steps=args.steps, k=50)

    def sync():
        if args.device.startswith("cuda"):
            torch.cuda.synchronize()

    attack(victim, TargetBatch(targets[:2], images[:2]))  # warm-up
    sync()
    t0 = time.perf_counter()
    batched = attack(victim, TargetBatch(targets, images))
    sync()
    t_batched = time.perf_counter() - t0
    t0 = time.perf_counter()
    singles = [attack(victim, TargetBatch(targets[b : b + 1], images[b : b + 1])) for b in range(args.targets)]
    sync()
    t_loop = time.perf_counter() - t0
    print(f"encoder: {what}; device {args.device}; {args.targets} targets, {args.steps} PGD steps, {args.users} users x {args.items} items")
    print(f"batched: {t_batched:.2f} s   per-target loop: {t_loop:.2f} s   ratio: {t_loop / t_batched:.1f}x")
    print("float32 (timed runs): " + _compare(batched, singles)[0])

    # float64: rounding no longer reaches sign(), so any difference would be a real coupling.
    n = min(args.check_targets, args.targets)
    victim.double()  # converts the attached image encoder too (a submodule)
    victim.set_clean_features({"visual": clean.double()})
    images64 = images[:n].double()
    batched64 = attack(victim, TargetBatch(targets[:n], images64))
    singles64 = [attack(victim, TargetBatch(targets[b : b + 1], images64[b : b + 1])) for b in range(n)]
    line, max_diff64 = _compare(batched64, singles64)
    print(f"float64 ({n} targets, not timed): " + line)
    ok = max_diff64 < 1e-6
    if not ok:
        print("MISMATCH: the batched attack differs from the per-target loop in float64", file=sys.stderr)
    return 0 if ok else 1


def _compare(batched, singles) -> tuple[str, float]:
    """Differences between a batched AttackResult and per-target ones: (one line, max |image diff|)."""
    loop_images = torch.cat([s.adv_images for s in singles])
    diff = (loop_images - batched.adv_images).abs()
    score_loop = torch.cat([s.diagnostics["score_after"] for s in singles])
    score_diff = (score_loop - batched.diagnostics["score_after"]).abs()
    gain = (score_loop - torch.cat([s.diagnostics["score_before"] for s in singles])).abs().mean()
    line = (
        f"max |image diff| {diff.max().item():.2e}, pixels differing by > 0.5/255 {(diff > 0.5 / 255).float().mean().item():.2%}, "
        f"max |score diff| {score_diff.max().item():.2e} (mean score gain {gain.item():.3f})"
    )
    return line, diff.max().item()


if __name__ == "__main__":
    sys.exit(main())
