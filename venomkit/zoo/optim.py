"""The optimiser step every zoo trainer takes (captions, matching, ranking, language modelling)."""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np
import torch


def optimiser_step(opt: torch.optim.Optimizer, loss: torch.Tensor, parameters: Iterable[torch.nn.Parameter], losses: list[float],
                   bar, step: int, label: str = "loss") -> None:
    """Back-propagate ``loss``, clip the gradient norm of ``parameters`` to 1, step ``opt``;
    append the loss to ``losses`` and, every 20 steps, show its last-20 mean on the progress ``bar``."""
    opt.zero_grad(set_to_none=True)
    loss.backward()
    torch.nn.utils.clip_grad_norm_(parameters, 1.0)
    opt.step()
    losses.append(loss.item())
    if step % 20 == 0:
        bar.set_postfix(**{label: f"{np.mean(losses[-20:]):.4f}"})
