"""train_victim and ``venomkit train`` end to end on the tiny shop (tiny encoders, seconds)."""

from __future__ import annotations

import argparse
import json

import pytest
import torch
from victim_helpers import TinyImageEncoder, TinyTextEncoder

from venomkit.victims.checkpoint import load_victim
from venomkit.victims.pipeline import add_train_arguments, cli_train, train_victim


def test_train_victim_reports_test_cold_and_baseline(tiny_dataset):
    victim, metrics = train_victim(
        "vbpr", tiny_dataset, TinyImageEncoder(8), TinyTextEncoder(8),
        epochs=4, lr=0.02, batch_size=64, device="cpu", progress=False, embed_dim=4,
    )
    assert victim.config.visual_dim == 8 and victim.config.image_encoder == "test:tiny-image-8"
    for block in ("test", "popularity"):
        assert "recall@20" in (metrics[block] if block == "test" else metrics[block]["test"])
    assert set(k for k in metrics["test"] if "@" in k) >= {f"{m}@{k}" for m in ("recall", "ndcg") for k in (10, 20, 50) if k <= 45}
    if metrics["n_cold_test"]:
        assert 0.0 <= metrics["cold"]["recall@20"] <= 1.0
    assert metrics["train"]["epochs_run"] <= 4
    json.dumps(metrics)  # JSON-ready


def test_train_victim_argument_errors(tiny_dataset):
    with pytest.raises(ValueError, match="unknown victim kind"):
        train_victim("bpr-mf", tiny_dataset, None, None)
    with pytest.raises(ValueError, match="reads no content"):
        train_victim("lightgcn", tiny_dataset, "resnet18", None)
    with pytest.raises(ValueError, match="reads content"):
        train_victim("vbpr", tiny_dataset, None, None)


def test_cli_train_writes_a_loadable_checkpoint(tiny_dataset, tmp_path, monkeypatch):
    import venomkit.data.loaders as loaders
    import venomkit.encoders.loading as loading

    monkeypatch.setattr(loaders, "load_dataset", lambda spec, **kw: tiny_dataset)
    monkeypatch.setattr(loading, "load_image_encoder", lambda spec, device="cpu": TinyImageEncoder(8))
    monkeypatch.setattr(loading, "load_text_encoder", lambda spec, device="cpu": TinyTextEncoder(8))
    parser = add_train_arguments(argparse.ArgumentParser())
    out = tmp_path / "mmgcn"
    args = parser.parse_args(
        ["--data", "tiny", "--victim", "mmgcn", "--out", str(out), "--epochs", "2", "--batch-size", "128",
         "--embed-dim", "4", "--latent-dim", "6", "--device", "cpu", "--quiet",
         "--image-encoder", "tiny-image", "--text-encoder", "tiny-text"]
    )
    assert args.no_progress  # --quiet, as in venomkit run / attack / demo (--no-progress is the older spelling)
    assert cli_train(args) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["kind"] == "mmgcn" and "recall@20" in metrics["test"] and "ndcg@20" in metrics["test"]
    victim = load_victim(out)  # encoders reloaded by spec through the (patched) loaders
    assert victim.image_encoder is not None and victim.graph_edges.shape[1] == tiny_dataset.split.train.nnz
    with torch.no_grad():
        assert torch.isfinite(victim.scores()).all()
    bad = parser.parse_args(["--data", "tiny", "--victim", "vbpr", "--out", str(tmp_path / "x"), "--layers", "3"])
    with pytest.raises(ValueError, match="--layers"):
        cli_train(bad)


def test_the_cli_table_entry_points_at_the_pipeline_command():
    # venomkit/cli.py wires `venomkit train` to venomkit.victims.pipeline directly.
    from venomkit.cli import COMMANDS
    from venomkit.victims import pipeline

    command = COMMANDS["train"]
    assert (command.module, command.add_arguments, command.run) == ("venomkit.victims.pipeline", "add_train_arguments", "cli_train")
    parser = pipeline.add_train_arguments(argparse.ArgumentParser())
    args = parser.parse_args(["--data", "toyshop", "--victim", "lightgcn", "--out", "x"])
    assert args.lr is None and args.image_encoder == "zoo:toyshop-clip" and callable(pipeline.cli_train)
