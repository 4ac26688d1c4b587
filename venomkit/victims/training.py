"""BPR training (Rendle et al., UAI 2009) with early stopping, and the hooks adversarial
training plugs into.

One epoch visits every training interaction (u, i) once, in a seeded random order, pairs it
with a negative item j drawn uniformly from the items u did not interact with in training
(rejection sampling, vectorised), and takes Adam steps on batches of these triples. The loss
of a batch is ``victim.training_loss(users, pos, neg)`` -- plain BPR, or AMR's adversarial
BPR -- unless ``batch_loss`` replaces it (UAT / UAT-MC pass theirs). Every ``eval_every``
epochs the model is scored on the validation interactions (full-sort Recall@20, training
items masked); training stops after ``patience`` evaluations without improvement and the
best state is restored.

The hooks:

* ``batch_loss(victim, users, pos, neg) -> scalar``: the loss of one batch (LongTensors (B,)).
* ``on_epoch_end(victim, epoch, record)``: called after each epoch with that epoch's record
  (``loss``, ``seconds``, and validation metrics when evaluated); return ``True`` to stop.
* Training starts from the victim's current parameters: hand in a loaded checkpoint to
  fine-tune it (UAT-MC starts from a normally trained model).

The BPR loss itself (``bpr_loss``, ``bpr_from_embeddings``) lives next to ``Victim`` in
``venomkit.victims.base`` (``Victim.training_loss`` uses it) and is importable from here too.
"""

from __future__ import annotations

import contextlib
import math
import time
import warnings
from dataclasses import dataclass, field
from typing import Any, Callable, Iterator

import numpy as np
import torch

from venomkit.config import check_int, check_number
from venomkit.progress import progress as progress_bar
from venomkit.victims.base import Victim, bpr_from_embeddings, bpr_loss

BatchLoss = Callable[[Victim, torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]
EpochHook = Callable[[Victim, int, dict], Any]

__all__ = [
    "BatchLoss", "EpochHook", "NegativeSampler", "TrainResult", "bpr_batches", "bpr_from_embeddings", "bpr_loss",
    "evaluate_embeddings", "evaluate_victim", "train_bpr", "validation_metrics",
]


class NegativeSampler:
    """Uniform negatives excluding each user's training items, drawn without Python loops.

    Draws all candidates at once and redraws only the collisions (a user's training item),
    found by binary search in the sorted keys ``user * n_items + item``.
    """

    def __init__(self, train: Any, rng: np.random.Generator) -> None:
        matrix = getattr(train, "matrix", train).tocsr()
        self.n_items = matrix.shape[1]
        degree = np.diff(matrix.indptr)
        if degree.max(initial=0) >= self.n_items:
            full = np.flatnonzero(degree >= self.n_items)
            raise ValueError(f"users {full[:5].tolist()} interacted with every item: no negative exists for them")
        rows = np.repeat(np.arange(matrix.shape[0], dtype=np.int64), degree)
        self.keys = np.sort(rows * self.n_items + matrix.indices.astype(np.int64))
        self.rng = rng

    def sample(self, users: np.ndarray) -> np.ndarray:
        users = np.asarray(users, dtype=np.int64)
        neg = self.rng.integers(0, self.n_items, size=len(users))
        todo = np.arange(len(users))
        while todo.size:
            keys = users[todo] * self.n_items + neg[todo]
            pos = np.searchsorted(self.keys, keys)
            pos = np.minimum(pos, len(self.keys) - 1)
            clash = self.keys[pos] == keys if len(self.keys) else np.zeros(len(todo), bool)
            todo = todo[clash]
            neg[todo] = self.rng.integers(0, self.n_items, size=todo.size)
        return neg


def bpr_batches(train: Any, batch_size: int, rng: np.random.Generator, sampler: NegativeSampler | None = None) -> Iterator[tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """One epoch of (users, pos, neg) int64 arrays: every training pair once, shuffled."""
    coo = getattr(train, "matrix", train).tocoo()
    users = coo.row.astype(np.int64)
    items = coo.col.astype(np.int64)
    sampler = sampler or NegativeSampler(train, rng)
    order = rng.permutation(len(users))
    for start in range(0, len(order), batch_size):
        idx = order[start : start + batch_size]
        u = users[idx]
        yield u, items[idx], sampler.sample(u)


@dataclass
class TrainResult:
    """What ``train_bpr`` did: best epoch and its validation metrics, and a per-epoch history."""

    best_epoch: int
    best_valid: dict[str, float]
    epochs_run: int
    stopped_early: bool
    seconds: float
    history: list[dict] = field(default_factory=list)

    def to_dict(self) -> dict:
        return {
            "best_epoch": self.best_epoch,
            "best_valid": self.best_valid,
            "epochs_run": self.epochs_run,
            "stopped_early": self.stopped_early,
            "seconds": self.seconds,
            "history": self.history,
        }


@contextlib.contextmanager
def deterministic_algorithms() -> Iterator[None]:
    """``torch.use_deterministic_algorithms(True)`` for the block, restored afterwards.

    With several CPU threads the backward pass of embedding lookups and ``index_add`` sums
    in thread order, so two trainings with one seed differ in the last bits (measured: VBPR
    on toyshop, 2 threads). The deterministic kernels cost nothing measurable here (5 epochs
    of VBPR / MMGCN on toyshop: 2.5-3.1 s either way). ``warn_only``: an op without a
    deterministic kernel (some CUDA ones) warns instead of failing.
    """
    enabled, warn_only = torch.are_deterministic_algorithms_enabled(), torch.is_deterministic_algorithms_warn_only_enabled()
    torch.use_deterministic_algorithms(True, warn_only=True)
    try:
        yield
    finally:
        torch.use_deterministic_algorithms(enabled, warn_only=warn_only)


@torch.no_grad()
def validation_metrics(victim: Victim, split: Any, ks: tuple[int, ...] = (20,), block_size: int = 4096) -> dict[str, float]:
    """Full-sort metrics on ``split.valid`` with ``split.train`` masked; the model's mode is restored."""
    from venomkit.eval.ranking import ranking_metrics  # lazy: eval is another module

    was_training = victim.training
    victim.eval()
    try:
        user_emb, item_emb = victim()
        return ranking_metrics(user_emb, item_emb, split.train, split.valid, ks=ks, block_size=block_size)
    finally:
        victim.train(was_training)


def train_bpr(
    victim: Victim,
    split: Any,
    *,
    epochs: int = 200,
    lr: float = 1e-3,
    batch_size: int = 2048,
    weight_decay: float = 0.0,
    patience: int | None = 10,
    eval_every: int = 1,
    seed: int = 0,
    batch_loss: BatchLoss | None = None,
    on_epoch_end: EpochHook | None = None,
    select_metric: str = "recall@20",
    eval_block_size: int = 4096,
    progress: bool = True,
) -> TrainResult:
    """Train ``victim`` with BPR on ``split.train``, early-stopping on ``split.valid``.

    Args:
        victim: any ``Victim``, trained in place from its current parameters (its frozen
            encoders are not trained).
        split: a ``Split`` (train / valid / test ``Interactions``) over the victim's users/items.
        epochs: maximum number of epochs.
        lr, weight_decay: Adam's (the victim's ``reg_weight`` is the BPR L2 term).
        batch_size: triples per step.
        patience: stop after this many evaluations without a better ``select_metric``
            (None or 0: never stop early). Without validation interactions there is no
            early stopping and the last state is kept.
        eval_every: evaluate every this many epochs (and after the last).
        seed: seeds the shuffling, the negatives and torch's RNG; with deterministic kernels
            (:func:`deterministic_algorithms`) the same seed gives the same weights, bit for bit.
        batch_loss: replaces ``victim.training_loss`` (see the module docstring).
        on_epoch_end: hook called after each epoch; returning True stops training.
        select_metric: validation metric to maximise (a key of ``ranking_metrics``).
        progress: progress over epochs (``venomkit.progress``: a bar on a terminal, log lines
            every few seconds otherwise; silenced by ``set_quiet``).

    Returns:
        A ``TrainResult``; the victim holds the best state, in eval mode.
    """
    check_int("epochs", epochs)
    check_int("batch_size", batch_size)
    check_int("eval_every", eval_every)
    check_int("patience", patience, 0, optional=True)
    check_number("lr", lr, 0, low_open=True)
    check_number("weight_decay", weight_decay, 0)
    train = split.train
    if tuple(train.matrix.shape) != (victim.n_users, victim.n_items):
        raise ValueError(f"split is {tuple(train.matrix.shape)} users x items, the victim {(victim.n_users, victim.n_items)}")
    if train.nnz == 0:
        raise ValueError("split.train has no interactions")
    has_valid = split.valid is not None and split.valid.nnz > 0
    if not has_valid:
        warnings.warn("split.valid is empty: no early stopping, the last epoch's model is kept", stacklevel=2)
    k_select = int(select_metric.split("@")[1]) if "@" in select_metric else 20

    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    sampler = NegativeSampler(train, rng)
    device = victim.device
    params = victim.model_parameters()
    optimizer = torch.optim.Adam(params, lr=lr, weight_decay=weight_decay)
    loss_fn: BatchLoss = batch_loss if batch_loss is not None else (lambda v, u, p, n: v.training_loss(u, p, n))

    best_score = -math.inf
    best_state: dict[str, torch.Tensor] | None = None
    best_epoch, best_valid = 0, {}
    bad_evals = 0
    history: list[dict] = []
    stopped = False
    t_start = time.perf_counter()
    bar = progress_bar(range(1, epochs + 1), desc=f"train {victim.kind}", unit="epoch", enabled=progress)
    with deterministic_algorithms():
        for epoch in bar:
            victim.train()
            t0 = time.perf_counter()
            total, count = 0.0, 0
            for u, p, n in bpr_batches(train, batch_size, rng, sampler):
                users = torch.from_numpy(u).to(device)
                pos = torch.from_numpy(p).to(device)
                neg = torch.from_numpy(n).to(device)
                loss = loss_fn(victim, users, pos, neg)
                if not torch.isfinite(loss):
                    raise FloatingPointError(f"{victim.kind}: training loss became {float(loss)} at epoch {epoch}; lower lr")
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
                total += float(loss.detach()) * len(u)
                count += len(u)
            record: dict[str, Any] = {"epoch": epoch, "loss": total / count, "seconds": time.perf_counter() - t0}
            if has_valid and (epoch % eval_every == 0 or epoch == epochs):
                metrics = validation_metrics(victim, split, ks=(k_select,), block_size=eval_block_size)
                record.update({f"valid_{k}": v for k, v in metrics.items() if k != "n_users"})
                score = metrics[select_metric]
                if score > best_score:
                    best_score, best_epoch, best_valid = score, epoch, metrics
                    best_state = {k: v.detach().clone() for k, v in victim.state_dict().items()}
                    bad_evals = 0
                else:
                    bad_evals += 1
                if patience and bad_evals >= patience:
                    stopped = True
            history.append(record)
            bar.set_postfix(loss=f"{record['loss']:.4f}", **({select_metric: f"{best_score:.4f}"} if has_valid else {}))
            if on_epoch_end is not None and on_epoch_end(victim, epoch, record) is True:
                stopped = True
            if stopped:
                break
    bar.close()
    if best_state is not None:
        victim.load_state_dict(best_state)
    else:
        best_epoch = history[-1]["epoch"]
    victim.eval()
    return TrainResult(
        best_epoch=best_epoch,
        best_valid=best_valid,
        epochs_run=len(history),
        stopped_early=stopped,
        seconds=time.perf_counter() - t_start,
        history=history,
    )


@torch.no_grad()
def evaluate_victim(
    victim: Victim, split: Any, ks: tuple[int, ...] = (10, 20, 50), cold_max_interactions: int = 5, block_size: int = 4096
) -> dict[str, Any]:
    """Test metrics of a trained victim (clean features): see :func:`evaluate_embeddings`."""
    was_training = victim.training
    victim.eval()
    try:
        user_emb, item_emb = victim()
    finally:
        victim.train(was_training)
    return evaluate_embeddings(user_emb, item_emb, split, ks, cold_max_interactions, block_size)


@torch.no_grad()
def evaluate_embeddings(
    user_emb: torch.Tensor,
    item_emb: torch.Tensor,
    split: Any,
    ks: tuple[int, ...] = (10, 20, 50),
    cold_max_interactions: int = 5,
    block_size: int = 4096,
) -> dict[str, Any]:
    """Recall/NDCG/Precision/Hit@K on ``split.test`` for scores ``user_emb @ item_emb.T``.

    Items seen in train or valid are masked. ``cold`` holds the same metrics on the test
    interactions of cold items only (at most ``cold_max_interactions`` training
    interactions, ``interactions.cold_items``), averaged over users with a cold test item --
    the figure on which content-aware victims should beat ID-only ones. A block is left out
    when it has no test interaction; Ks above the number of items are left out.
    """
    import scipy.sparse as sp

    from venomkit.data.interactions import cold_items
    from venomkit.eval.ranking import ranking_metrics

    seen = split.train.matrix + split.valid.matrix
    # A catalog smaller than the largest K cannot fill that list: report the Ks that fit.
    ks = tuple(k for k in ks if k <= item_emb.shape[0]) or (item_emb.shape[0],)
    out: dict[str, Any] = {}
    test = split.test.matrix.tocsr()
    if test.nnz:
        out["test"] = ranking_metrics(user_emb, item_emb, seen, test, ks=ks, block_size=block_size)
    cold = cold_items(split.train, cold_max_interactions)
    keep = np.zeros(test.shape[1], dtype=np.float32)
    keep[cold] = 1.0
    cold_test = (test @ sp.diags(keep)).tocsr()
    cold_test.eliminate_zeros()
    out["n_cold_items"] = int(len(cold))
    out["cold_max_interactions"] = int(cold_max_interactions)
    out["n_cold_test"] = int(cold_test.nnz)
    if cold_test.nnz:
        out["cold"] = ranking_metrics(user_emb, item_emb, seen, cold_test, ks=ks, block_size=block_size)
    return out
