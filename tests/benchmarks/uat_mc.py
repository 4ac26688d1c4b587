"""Benchmark: one UAT-MC epoch vs one plain BPR epoch on the same data, in one run.

    python tests/benchmarks/uat_mc.py [--data toyshop] [--victims vbpr,mmgcn] [--epochs 3] [--dim 64]

Both runs start from the same victim state and visit the same triples (same seed). Feature
tables are random (I, dim) rows -- the cost of training does not depend on what the features
mean, and this keeps the benchmark free of the zoo. The time of an epoch is the training
loop alone (``train_bpr``'s per-epoch ``seconds``, validation excluded); the median over
``--epochs`` epochs is reported. The paper claims UAT-MC costs the same order as plain
adversarial training; the target here is UAT-MC / BPR <= 2.5 (UAT is printed too).

A second table splits one training batch into its parts: a forward pass alone, a plain BPR
step (forward + backward), the inner maximisation of UAT (one forward, one backward to the
features and the parameters) and of UAT-MC (the same with ``create_graph=True``, plus the
backward of the alignment cosine through that backward pass: a Hessian-vector product).
UAT-MC's step is UAT's plus that product, so ``UAT ratio + HVP / BPR step`` is the cost of the
exact method. Any exact Hessian-vector product needs a Jacobian-vector product through the
model and a vector-Jacobian product back (Pearlmutter 1994), each about a forward pass
without weight gradients: ``HVP / forward`` near 2 means the product is at that floor.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # run from a checkout without install

import torch

TARGET_RATIO = 2.5


def _victim(kind: str, dataset, dim: int, latent_dim: int | None = None, seed: int = 0):
    from venomkit.victims.pipeline import build_victim

    torch.manual_seed(seed)
    extra = {"latent_dim": latent_dim} if kind == "mmgcn" and latent_dim is not None else {}
    victim = build_victim(kind, dataset.n_users, dataset.n_items, train=dataset.split.train, visual_dim=dim, text_dim=dim, embed_dim=64, **extra)
    g = torch.Generator().manual_seed(seed)
    victim.set_clean_features({m: torch.randn(dataset.n_items, dim, generator=g) for m in ("visual", "text")})
    return victim


def _epoch_seconds(kind: str, dataset, dim: int, latent_dim: int | None, epochs: int, batch_loss=None) -> float:
    from venomkit.victims.training import train_bpr

    victim = _victim(kind, dataset, dim, latent_dim)
    result = train_bpr(victim, dataset.split, epochs=epochs, batch_size=2048, patience=None, eval_every=epochs, seed=0, batch_loss=batch_loss, progress=False)
    return statistics.median(r["seconds"] for r in result.history)


def _median_ms(fn, repeats: int = 15) -> float:
    for _ in range(3):
        fn()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times) * 1000


def _batch_parts(kind: str, dataset, dim: int, latent_dim: int | None, batch_size: int = 2048) -> dict[str, float]:
    """Milliseconds of the parts of one training batch (median of repeats, same batch)."""
    import numpy as np

    from venomkit.defenses.uat_mc import UATConfig
    from venomkit.victims.feature_adversary import adversarial_feature_deltas
    from venomkit.victims.training import NegativeSampler, bpr_loss

    victim = _victim(kind, dataset, dim, latent_dim).train()
    rng = np.random.default_rng(0)
    users, items = dataset.split.train.pairs()
    idx = rng.choice(len(users), size=min(batch_size, len(users)), replace=False)
    neg = NegativeSampler(dataset.split.train, rng).sample(users[idx])
    u, p, n = (torch.from_numpy(a) for a in (users[idx], items[idx], neg))

    def forward() -> None:
        bpr_loss(victim, u, p, n)

    def plain_step() -> None:
        victim.zero_grad(set_to_none=True)
        bpr_loss(victim, u, p, n).backward()

    def inner(method: str):
        adversary = UATConfig(method=method).adversary()
        return lambda: adversarial_feature_deltas(victim, u, p, n, adversary, reuse_clean_pass=True)

    return {
        "forward": _median_ms(forward),
        "bpr_step": _median_ms(plain_step),
        "inner_uat": _median_ms(inner("uat")),
        "inner_uat_mc": _median_ms(inner("uat_mc")),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default="toyshop", help="dataset spec (default toyshop)")
    parser.add_argument("--victims", default="vbpr,mmgcn")
    parser.add_argument("--epochs", type=int, default=3, help="epochs per run; the median epoch is reported")
    parser.add_argument("--dim", type=int, default=64, help="width of the random feature tables (toyshop-clip: 64)")
    parser.add_argument("--latent-dim", type=int, default=None, help="MMGCN's latent_dim (default: MMGCNConfig's, as trained by `venomkit train` and the judge)")
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)

    from venomkit.data.loaders import load_dataset
    from venomkit.defenses.uat_mc import UATConfig, UATLoss

    dataset = load_dataset(args.data)
    latent = args.latent_dim if args.latent_dim is not None else "default"
    print(f"{dataset.name}: {dataset.n_users} users, {dataset.n_items} items, {dataset.split.train.nnz} training pairs, features 2 x {args.dim}, MMGCN latent_dim {latent}")
    worst = 0.0
    parts: dict[str, dict[str, float]] = {}
    for kind in [k.strip() for k in args.victims.split(",") if k.strip()]:
        plain = _epoch_seconds(kind, dataset, args.dim, args.latent_dim, args.epochs)
        uat = _epoch_seconds(kind, dataset, args.dim, args.latent_dim, args.epochs, UATLoss(UATConfig(method="uat")))
        uat_mc = _epoch_seconds(kind, dataset, args.dim, args.latent_dim, args.epochs, UATLoss(UATConfig(method="uat_mc")))
        ratio = uat_mc / plain
        worst = max(worst, ratio)
        print(f"{kind:6s} BPR {plain:7.3f} s/epoch | UAT {uat:7.3f} s ({uat / plain:4.2f}x) | UAT-MC {uat_mc:7.3f} s ({ratio:4.2f}x BPR, {uat_mc / uat:4.2f}x UAT)")
        parts[kind] = _batch_parts(kind, dataset, args.dim, args.latent_dim)
    print("\none batch of 2048, ms (median):")
    print(f"{'victim':6s} | {'forward':>7s} | {'BPR step':>8s} | {'UAT inner':>9s} | {'UAT-MC inner':>12s} | {'alignment (HVP)':>15s} | HVP / BPR step | HVP / forward")
    for kind, t in parts.items():
        hvp = t["inner_uat_mc"] - t["inner_uat"]
        print(
            f"{kind:6s} | {t['forward']:7.2f} | {t['bpr_step']:8.2f} | {t['inner_uat']:9.2f} | {t['inner_uat_mc']:12.2f} | "
            f"{hvp:15.2f} | {hvp / t['bpr_step']:14.2f} | {hvp / t['forward']:.2f}"
        )
    verdict = "meets" if worst <= TARGET_RATIO else "MISSES"
    print()
    print(f"worst UAT-MC / BPR ratio {worst:.2f} {verdict} the target <= {TARGET_RATIO}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
