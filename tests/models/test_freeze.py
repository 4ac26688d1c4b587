"""``venomkit.models.freeze``: permanent freezing and the attack contract's restoring freeze."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from venomkit.models.freeze import freeze, frozen_eval


def _model() -> nn.Module:
    return nn.Sequential(nn.Linear(3, 4), nn.BatchNorm1d(4), nn.Dropout(0.5), nn.Linear(4, 2))


def test_freeze_is_eval_without_parameter_gradients_and_returns_the_module():
    model = _model().train()
    assert freeze(model) is model
    assert not any(m.training for m in model.modules())
    assert not any(p.requires_grad for p in model.parameters())
    x = torch.randn(5, 3, requires_grad=True)
    model(x).sum().backward()
    assert x.grad is not None  # still differentiable with respect to the input


def test_frozen_eval_restores_each_mode_and_flag_also_on_error():
    model = _model().train()
    model[1].eval()  # a submodule with its own mode
    model[3].weight.requires_grad_(False)  # a parameter with its own flag
    modes = [m.training for m in model.modules()]
    flags = [p.requires_grad for p in model.parameters()]
    with frozen_eval(model, None, model):
        assert not any(m.training for m in model.modules())
        assert not any(p.requires_grad for p in model.parameters())
    assert [m.training for m in model.modules()] == modes
    assert [p.requires_grad for p in model.parameters()] == flags
    with pytest.raises(RuntimeError):
        with frozen_eval(model):
            raise RuntimeError("boom")
    assert [m.training for m in model.modules()] == modes and [p.requires_grad for p in model.parameters()] == flags


def test_attacks_base_still_exports_frozen_eval():
    from venomkit.attacks import base

    assert base.frozen_eval is frozen_eval
