"""Benchmark: one UAT-MC epoch vs one plain BPR epoch on the same data, in one run.

    python tests/benchmarks/uat_mc.py [--data toyshop] [--victims vbpr,mmgcn] [--epochs 3] [--dim 64]

Both runs start from the same victim state and visit the same triples (same seed). Feature
tables are random (I, dim) rows -- the cost of training does not depend on what the features
mean, and this keeps the benchmark free of the zoo. The time of an epoch is the training
loop alone (``train_bpr``'s per-epoch ``seconds``, validation excluded); the median over
``--epochs`` epochs is reported. The paper claims UAT-MC costs the same order as plain
adversarial training; the target here is UAT-MC / BPR <= 2.5 (UAT is printed too).
"""

from __future__ import annotations

import argparse
import statistics
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # run from a checkout without install

import torch

TARGET_RATIO = 2.5


def _victim(kind: str, dataset, dim: int, seed: int = 0):
    from venomkit.victims.pipeline import build_victim

    torch.manual_seed(seed)
    extra = {"latent_dim": 64} if kind == "mmgcn" else {}
    victim = build_victim(kind, dataset.n_users, dataset.n_items, train=dataset.split.train, visual_dim=dim, text_dim=dim, embed_dim=64, **extra)
    g = torch.Generator().manual_seed(seed)
    victim.set_clean_features({m: torch.randn(dataset.n_items, dim, generator=g) for m in ("visual", "text")})
    return victim


def _epoch_seconds(kind: str, dataset, dim: int, epochs: int, batch_loss=None) -> float:
    from venomkit.victims.training import train_bpr

    victim = _victim(kind, dataset, dim)
    result = train_bpr(victim, dataset.split, epochs=epochs, batch_size=2048, patience=None, eval_every=epochs, seed=0, batch_loss=batch_loss, progress=False)
    return statistics.median(r["seconds"] for r in result.history)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default="toyshop", help="dataset spec (default toyshop)")
    parser.add_argument("--victims", default="vbpr,mmgcn")
    parser.add_argument("--epochs", type=int, default=3, help="epochs per run; the median epoch is reported")
    parser.add_argument("--dim", type=int, default=64, help="width of the random feature tables (toyshop-clip: 64)")
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)

    from venomkit.data.loaders import load_dataset
    from venomkit.defenses.uat_mc import UATConfig, UATLoss

    dataset = load_dataset(args.data)
    print(f"{dataset.name}: {dataset.n_users} users, {dataset.n_items} items, {dataset.split.train.nnz} training pairs, features 2 x {args.dim}")
    worst = 0.0
    for kind in [k.strip() for k in args.victims.split(",") if k.strip()]:
        plain = _epoch_seconds(kind, dataset, args.dim, args.epochs)
        uat = _epoch_seconds(kind, dataset, args.dim, args.epochs, UATLoss(UATConfig(method="uat")))
        uat_mc = _epoch_seconds(kind, dataset, args.dim, args.epochs, UATLoss(UATConfig(method="uat_mc")))
        ratio = uat_mc / plain
        worst = max(worst, ratio)
        print(f"{kind:6s} BPR {plain:7.3f} s/epoch | UAT {uat:7.3f} s ({uat / plain:4.2f}x) | UAT-MC {uat_mc:7.3f} s ({ratio:4.2f}x BPR, {uat_mc / uat:4.2f}x UAT)")
    verdict = "meets" if worst <= TARGET_RATIO else "MISSES"
    print(f"worst UAT-MC / BPR ratio {worst:.2f} {verdict} the target <= {TARGET_RATIO}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
