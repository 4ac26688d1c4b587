"""Benchmark: masked full-sort top-K (venomkit.eval.ranking.full_sort_topk) against its floor.

The floor is one plain matmul + ``torch.topk`` per user block, with no masking at all, over
the same blocks in the same run; the ratio ``full_sort_topk / floor`` is the acceptance figure
(target: at most 1.3). full_sort_topk reuses one score buffer across blocks, which the plain
floor does not (on CPU every fresh block of scores costs page faults), so a second floor row
with the same reused buffer isolates the cost of excluding every user's training items. Peak memory is the peak resident-set growth while each method runs (CPU, sampled
from /proc) or ``torch.cuda.max_memory_allocated`` (CUDA).

    python tests/benchmarks/ranking.py                      # 40,000 x 23,000 x 64, top-50
    python tests/benchmarks/ranking.py --device cuda --users 200000

Not a pytest test: a script (pytest collects only the test_*.py files here).
"""

from __future__ import annotations

import argparse
import os
import resource
import sys
import threading
import time
from pathlib import Path

import numpy as np
import scipy.sparse as sp
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # run from a checkout without install
from venomkit.eval.ranking import full_sort_topk, target_ranks  # noqa: E402


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--users", type=int, default=40_000)
    parser.add_argument("--items", type=int, default=23_000)
    parser.add_argument("--dim", type=int, default=64)
    parser.add_argument("--k", type=int, default=50)
    parser.add_argument("--block-size", type=int, default=4096)
    parser.add_argument("--interactions", type=int, default=20, help="training items per user in the random mask")
    parser.add_argument("--device", default="cpu", help="cpu, cuda, cuda:1, ...")
    parser.add_argument("--repeats", type=int, default=3, help="timed runs per method (the minimum is reported)")
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--targets", type=int, default=0, help="also time target_ranks for this many target items (0: skip)")
    return parser.parse_args(argv)


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


class PeakMemory:
    """Peak memory growth of the code inside the ``with`` block, in MiB."""

    def __init__(self, device: torch.device) -> None:
        self.device = device
        self.peak_mib = float("nan")

    @staticmethod
    def _rss_bytes() -> int:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")

    def _sample(self) -> None:
        while not self._stop.is_set():
            self._peak = max(self._peak, self._rss_bytes())
            time.sleep(0.002)

    def __enter__(self) -> "PeakMemory":
        if self.device.type == "cuda":
            synchronize(self.device)
            torch.cuda.reset_peak_memory_stats(self.device)
            self._base = torch.cuda.memory_allocated(self.device)
        elif Path("/proc/self/statm").exists():
            self._base = self._peak = self._rss_bytes()
            self._stop = threading.Event()
            self._thread = threading.Thread(target=self._sample, daemon=True)
            self._thread.start()
        else:  # no /proc: fall back to the process-wide peak (kB on Linux, bytes on macOS)
            self._base = 0
        return self

    def __exit__(self, *exc) -> None:
        if self.device.type == "cuda":
            synchronize(self.device)
            self.peak_mib = (torch.cuda.max_memory_allocated(self.device) - self._base) / 2**20
        elif hasattr(self, "_thread"):
            self._stop.set()
            self._thread.join()
            self.peak_mib = (max(self._peak, self._rss_bytes()) - self._base) / 2**20
        else:
            scale = 1 if sys.platform == "darwin" else 1024
            self.peak_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * scale / 2**20


def floor_topk(user: torch.Tensor, item: torch.Tensor, k: int, block_size: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The floor: the same blocks, one plain matmul + topk each, nothing masked."""
    scores, index = [], []
    item_t = item.t()
    with torch.no_grad():
        for start in range(0, user.shape[0], block_size):
            s, i = torch.topk(torch.mm(user[start : start + block_size], item_t), k, dim=1)
            scores.append(s)
            index.append(i)
    return torch.cat(scores), torch.cat(index)


def floor_topk_buffered(user: torch.Tensor, item: torch.Tensor, k: int, block_size: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The floor with one reused score buffer (as full_sort_topk does): isolates the masking cost."""
    n = user.shape[0]
    scores = torch.empty(n, k, dtype=user.dtype, device=user.device)
    index = torch.empty(n, k, dtype=torch.long, device=user.device)
    buffer = torch.empty(min(block_size, n), item.shape[0], dtype=user.dtype, device=user.device)
    item_t = item.t()
    with torch.no_grad():
        for start in range(0, n, block_size):
            stop = min(start + block_size, n)
            block = torch.mm(user[start:stop], item_t, out=buffer[: stop - start])
            torch.topk(block, k, dim=1, out=(scores[start:stop], index[start:stop]))
    return scores, index


def random_train_mask(n_users: int, n_items: int, per_user: int, seed: int) -> sp.csr_matrix:
    rng = np.random.default_rng(seed)
    rows = np.repeat(np.arange(n_users), per_user)
    cols = rng.integers(0, n_items, size=rows.size)
    mask = sp.csr_matrix((np.ones(rows.size, np.float32), (rows, cols)), shape=(n_users, n_items))
    mask.sum_duplicates()
    mask.data[:] = 1.0
    return mask


def measure(fn, device: torch.device) -> tuple[float, float, object]:
    with PeakMemory(device) as mem:
        synchronize(device)
        t0 = time.perf_counter()
        out = fn()
        synchronize(device)
        elapsed = time.perf_counter() - t0
    return elapsed, mem.peak_mib, out


def timed_runs(fns: list, device: torch.device, repeats: int) -> tuple[list[list[float]], list[float], object]:
    """Run the methods in turn ``repeats`` times, so load drift on a shared machine hits all alike.

    Returns per-method run times, per-method peak memory and the last method's last result.
    """
    times: list[list[float]] = [[] for _ in fns]
    peaks = [0.0 for _ in fns]
    out = None
    for _ in range(repeats):
        for m, fn in enumerate(fns):
            out = None  # free the previous result before measuring again
            seconds, peak, out = measure(fn, device)
            times[m].append(seconds)
            peaks[m] = max(peaks[m], peak)
    return times, peaks, out


def check(user, item, mask, k, index) -> None:
    """The masked top-K of a few users equals a dense reference; no training item is listed."""
    rows = torch.tensor([0, 1, user.shape[0] // 2, user.shape[0] - 1])
    dense = torch.from_numpy(mask[rows.numpy()].toarray() > 0).to(item.device)
    ref = torch.topk((user[rows] @ item.t()).masked_fill(dense, float("-inf")), k).indices
    got = index[rows.to(index.device)]
    if not torch.equal(got.sort(1).values, ref.sort(1).values):
        raise AssertionError("full_sort_topk disagrees with the dense reference")
    listed = torch.zeros_like(dense).scatter_(1, got.clamp(min=0), True)
    if (listed & dense).any():
        raise AssertionError("a training item was recommended")


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.threads > 0:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    gen = torch.Generator().manual_seed(args.seed)
    user = torch.randn(args.users, args.dim, generator=gen).to(device)
    item = torch.randn(args.items, args.dim, generator=gen).to(device)
    mask = random_train_mask(args.users, args.items, args.interactions, args.seed)

    # Warm-up on one block each (allocator, BLAS threads, CUDA context).
    floor_topk(user[: args.block_size], item, args.k, args.block_size)
    full_sort_topk(user[: args.block_size], item, args.k, exclude=mask[: args.block_size], block_size=args.block_size)

    (floor_times, buffered_times, ours_times), (floor_mem, buffered_mem, ours_mem), (_, index) = timed_runs(
        [
            lambda: floor_topk(user, item, args.k, args.block_size),
            lambda: floor_topk_buffered(user, item, args.k, args.block_size),
            lambda: full_sort_topk(user, item, args.k, exclude=mask, block_size=args.block_size),
        ],
        device,
        args.repeats,
    )
    floor_s, buffered_s, ours_s = min(floor_times), min(buffered_times), min(ours_times)
    check(user, item, mask, args.k, index)

    n_blocks = -(-args.users // args.block_size)
    print(
        f"full-sort top-{args.k}: {args.users:,} users x {args.items:,} items x {args.dim} dims, "
        f"{mask.nnz:,} masked training interactions ({mask.nnz / args.users:.1f}/user), "
        f"block {args.block_size} ({n_blocks} blocks), device {device}, torch threads {torch.get_num_threads()}, "
        f"best of {args.repeats} alternating runs"
    )
    rows = [
        ("floor: matmul + topk (no mask)", floor_s, floor_mem),
        ("floor, one reused score buffer", buffered_s, buffered_mem),
        ("venomkit full_sort_topk (masked)", ours_s, ours_mem),
    ]
    print(f"{'method':<36} {'best (s)':>9} {'peak mem (MiB)':>15}  all runs (s)")
    for (name, seconds, mem), runs in zip(rows, (floor_times, buffered_times, ours_times)):
        print(f"{name:<36} {seconds:>9.3f} {mem:>15.1f}  {' '.join(f'{t:.2f}' for t in runs)}")
    ratio = ours_s / floor_s
    print(f"ratio full_sort_topk / floor: {ratio:.3f} (target <= 1.3: {'met' if ratio <= 1.3 else 'NOT met'})")
    print(f"masking cost alone, full_sort_topk / buffered floor: {ours_s / buffered_s:.3f}")
    if args.targets > 0:
        targets = torch.randperm(args.items, generator=gen)[: args.targets]
        seconds, peak, _ = measure(
            lambda: target_ranks(user, item, targets, exclude=mask, block_size=args.block_size), device
        )
        name = f"target_ranks ({args.targets} targets, masked)"
        print(f"{name:<36} {seconds:>9.3f} {peak:>15.1f}  (1 run)")
    print(f"score block alone: {args.block_size * args.items * 4 / 2**20:.1f} MiB; top-k output {args.users * args.k * 12 / 2**20:.1f} MiB")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
