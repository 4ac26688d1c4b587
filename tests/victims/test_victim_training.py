"""BPR training: negative sampling, learning, determinism, early stopping and the hooks."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from victim_helpers import TinyImageEncoder, TinyTextEncoder, build

from venomkit.eval.ranking import ranking_metrics
from venomkit.victims.training import NegativeSampler, bpr_batches, bpr_loss, train_bpr, validation_metrics


def test_negative_sampler_never_returns_a_training_item(tiny_dataset):
    train = tiny_dataset.split.train
    sampler = NegativeSampler(train, np.random.default_rng(0))
    users = np.repeat(np.arange(train.n_users), 50)
    neg = sampler.sample(users)
    dense = train.matrix.toarray().astype(bool)
    assert not dense[users, neg].any()
    assert len(np.unique(neg)) > train.n_items // 2  # spread over the catalog, not a few items


def test_epoch_batches_cover_every_training_pair_once(tiny_dataset):
    train = tiny_dataset.split.train
    seen = [(u, i) for us, ps, _ in bpr_batches(train, 50, np.random.default_rng(1)) for u, i in zip(us, ps)]
    assert sorted(seen) == sorted(zip(*train.pairs()))


def _random_recall(dataset, k, trials=20):
    values = []
    for s in range(trials):
        g = torch.Generator().manual_seed(s)
        u, i = torch.randn(dataset.n_users, 4, generator=g), torch.randn(dataset.n_items, 4, generator=g)
        values.append(ranking_metrics(u, i, dataset.split.train, dataset.split.valid, ks=(k,))[f"recall@{k}"])
    return float(np.mean(values))


@pytest.mark.parametrize("kind", ["vbpr", "mmgcn", "lightgcn"])
def test_training_lowers_the_loss_and_beats_random(kind, tiny_dataset):
    encoders = (TinyImageEncoder(8), TinyTextEncoder(8)) if kind != "lightgcn" else (None, None)
    extra = {"latent_dim": 8} if kind == "mmgcn" else {}
    victim = build(kind, tiny_dataset, *encoders, embed_dim=8, **extra)
    result = train_bpr(victim, tiny_dataset.split, epochs=25, lr=0.02, batch_size=64, patience=None, progress=False)
    losses = [r["loss"] for r in result.history]
    assert losses[-1] < 0.7 * losses[0]
    recall = validation_metrics(victim, tiny_dataset.split, ks=(5,))["recall@5"]
    assert recall > 1.5 * _random_recall(tiny_dataset, 5)
    assert not victim.training


def test_training_is_deterministic_given_the_seed(tiny_dataset):
    states = []
    for _ in range(2):
        victim = build("vbpr", tiny_dataset, TinyImageEncoder(8), None, embed_dim=4, seed=3)
        train_bpr(victim, tiny_dataset.split, epochs=3, lr=0.01, batch_size=64, seed=7, progress=False)
        states.append(victim.state_dict())
    assert all(torch.equal(states[0][k], states[1][k]) for k in states[0])


def test_early_stopping_restores_the_best_state(tiny_dataset):
    victim = build("vbpr", tiny_dataset, TinyImageEncoder(8), None, embed_dim=4)
    # A huge learning rate makes validation recall wander, so the best epoch is not the last.
    result = train_bpr(victim, tiny_dataset.split, epochs=30, lr=0.3, batch_size=64, patience=3, progress=False)
    assert result.epochs_run <= 30
    final = validation_metrics(victim, tiny_dataset.split)["recall@20"]
    assert final == pytest.approx(result.best_valid["recall@20"])
    assert max(r.get("valid_recall@20", -1) for r in result.history) == pytest.approx(final)
    if result.stopped_early:
        assert result.epochs_run - result.best_epoch >= 3


def test_batch_loss_and_epoch_hooks(tiny_dataset):
    victim = build("vbpr", tiny_dataset, TinyImageEncoder(8), None, embed_dim=4)
    calls = {"batch": 0, "epochs": []}

    def my_loss(v, users, pos, neg):
        calls["batch"] += 1
        assert users.shape == pos.shape == neg.shape and users.dtype == torch.long
        return bpr_loss(v, users, pos, neg)

    def stop_after_two(v, epoch, record):
        calls["epochs"].append(record["epoch"])
        return epoch == 2

    result = train_bpr(victim, tiny_dataset.split, epochs=10, batch_size=100, batch_loss=my_loss, on_epoch_end=stop_after_two, progress=False)
    assert calls["epochs"] == [1, 2] and result.epochs_run == 2 and result.stopped_early
    n_batches = -(-tiny_dataset.split.train.nnz // 100)
    assert calls["batch"] == 2 * n_batches
    assert all("seconds" in r and "valid_recall@20" in r for r in result.history)


def test_train_bpr_validates_arguments(tiny_dataset):
    victim = build("vbpr", tiny_dataset, TinyImageEncoder(8), None, embed_dim=4)
    with pytest.raises(ValueError, match="epochs"):
        train_bpr(victim, tiny_dataset.split, epochs=0)
    with pytest.raises(ValueError, match="lr"):
        train_bpr(victim, tiny_dataset.split, lr=0.0)


def test_training_logs_its_epochs_when_output_is_not_a_terminal(tiny_dataset, caplog, monkeypatch):
    """Under CI or nohup the epochs are logged (``venomkit.progress``), not silent."""
    import logging

    import venomkit.progress as progress_module

    monkeypatch.setattr(progress_module, "_stderr_is_terminal", lambda: False)
    monkeypatch.setattr(progress_module, "_quiet", False)
    monkeypatch.delenv("VENOMKIT_QUIET", raising=False)
    monkeypatch.setenv("VENOMKIT_PROGRESS_SECONDS", "0")
    caplog.set_level(logging.INFO, logger="venomkit")
    victim = build("lightgcn", tiny_dataset)
    train_bpr(victim, tiny_dataset.split, epochs=2, lr=0.01, batch_size=128, patience=None)
    lines = [r.getMessage() for r in caplog.records if r.getMessage().startswith("train lightgcn: ")]
    assert lines[0].startswith("train lightgcn: 1/2 epochs (50%)") and "loss=" in lines[0]
    assert lines[-1].startswith("train lightgcn: 2/2 epochs (100%)") and "in all" in lines[-1]
    caplog.clear()
    progress_module.set_quiet(True)
    train_bpr(victim, tiny_dataset.split, epochs=1, lr=0.01, batch_size=128, patience=None)
    assert not [r for r in caplog.records if r.name == "venomkit"]


def test_training_is_bitwise_deterministic_with_several_threads():
    """Large enough batches that the CPU's embedding backward runs on 2 threads (it sums in thread
    order unless deterministic kernels are on: train_bpr turns them on)."""
    import scipy.sparse as sp

    from venomkit.data.interactions import Interactions, Split
    from venomkit.victims.vbpr import VBPR, VBPRConfig

    rng = np.random.default_rng(0)
    n_users, n_items = 3000, 800
    inter = Interactions(sp.csr_matrix((rng.random((n_users, n_items)) < 0.03).astype(np.float32)))
    split = Split(inter, inter, inter)
    features = {"visual": torch.from_numpy(rng.standard_normal((n_items, 32)).astype(np.float32))}
    threads = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        states = []
        for _ in range(2):
            torch.manual_seed(0)
            victim = VBPR(VBPRConfig(n_users=n_users, n_items=n_items, embed_dim=32, visual_dim=32))
            victim.set_clean_features(features)
            train_bpr(victim, split, epochs=2, lr=0.01, batch_size=8192, patience=None, seed=1, progress=False)
            states.append(victim.state_dict())
    finally:
        torch.set_num_threads(threads)
    assert all(torch.equal(states[0][k], states[1][k]) for k in states[0])
    assert not torch.are_deterministic_algorithms_enabled()  # restored after training
