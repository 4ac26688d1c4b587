"""Freezing modules: for good after loading (:func:`freeze`), or for the span of an attack (:func:`frozen_eval`).

A frozen module is in eval mode (BatchNorm uses its running statistics, dropout is off) and its
parameters have ``requires_grad=False``: it stays differentiable with respect to its INPUTS
(pixels, token embeddings, latents), which is what attacks need, while no optimiser step and no
parameter gradient touches it. Loaded encoders and generators are frozen for good; an attack
freezes the victim only while it runs and gives every module back its previous state.
"""

from __future__ import annotations

import contextlib
from typing import Iterator, TypeVar

from torch import nn

ModuleT = TypeVar("ModuleT", bound=nn.Module)


def freeze(module: ModuleT) -> ModuleT:
    """Put ``module`` in eval mode with every parameter's ``requires_grad`` False, for good; returns it."""
    module.eval()
    module.requires_grad_(False)
    return module


@contextlib.contextmanager
def frozen_eval(*modules: nn.Module | None) -> Iterator[None]:
    """Freeze ``modules`` (None entries are skipped) inside the block; restore every mode and flag after.

    Each submodule gets back its own ``training`` flag and each parameter its own
    ``requires_grad``, also when the block raises. Modules sharing submodules or parameters
    are handled once.
    """
    modes: list[tuple[nn.Module, bool]] = []
    grads: list[tuple[nn.Parameter, bool]] = []
    seen: set[int] = set()
    for module in modules:
        if module is None:
            continue
        for sub in module.modules():
            if id(sub) not in seen:
                seen.add(id(sub))
                modes.append((sub, sub.training))
        for p in module.parameters():
            if id(p) not in seen:
                seen.add(id(p))
                grads.append((p, p.requires_grad))
    try:
        for module in modules:
            if module is not None:
                module.eval()
        for p, _ in grads:
            p.requires_grad_(False)
        yield
    finally:
        for sub, mode in modes:
            sub.training = mode
        for p, flag in grads:
            p.requires_grad_(flag)


__all__ = ["freeze", "frozen_eval"]
