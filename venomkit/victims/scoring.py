"""The scoring contract every victim implements, whatever its scores are made of.

An attack needs two things from a victim, and nothing else:

* ``target_scores(users, images, texts, item_index) -> (U', B)``: the scores of B targets for
  U' users after the targets' raw content is replaced by ``images`` (B, 3, H, W) in [0, 1] (or a
  list of B (3, H_i, W_i)) and ``texts`` (B strings), differentiable with respect to the pixels;
  ``users`` None means every user;
* ``rank_thresholds(users, item_index, k, train) -> (threshold (U', B), weight (U', B))``: per
  user and target, the clean score the target must pass to enter the user's top ``k`` (the
  K-th best score among the items the user is ranked over, the target excluded), and a 0/1
  weight leaving out users who already interacted with the target (or have nothing to pass);
* ``default_users() -> (U',) or None``: whom an objective is computed over when the caller names
  nobody: None (every user) for a feature victim, whose scores for all users are one matmul; a
  seeded sample for the MLLM ranker, whose score costs a forward pass per (user, item).

A feature-table victim (:class:`venomkit.victims.base.Victim`: VBPR, AMR, MMGCN, LightGCN) scores
by a dot product and ranks over the full catalogue; the multimodal-LLM ranker
(:class:`venomkit.victims.mllm.victim.MLLMVictim`) scores ``logit(yes) - logit(no)`` of a prompt
and ranks each user's candidate list (VenomRec's 99 sampled items + 1). Objectives written
against this contract (:mod:`venomkit.attacks.objectives`: PGD's promotion hinge, INSA) run on
both; objectives that read feature tables (EXPA) say so when given a victim without them.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Sequence

import scipy.sparse as sp
import torch

Images = torch.Tensor | Sequence[torch.Tensor]


class TargetScorer(ABC):
    """A victim as the attacks see it (module docstring). ``modalities``: what content it reads."""

    modalities: tuple[str, ...]

    @abstractmethod
    def target_scores(
        self, users: torch.Tensor | None, images: Images | None, texts: Sequence[str] | None, item_index: torch.Tensor
    ) -> torch.Tensor:
        """(U', B) scores of targets ``item_index`` (B,) with their content replaced, for ``users`` (U',)."""

    def default_users(self) -> torch.Tensor | None:
        """The users of an objective when none are given (None: every user)."""
        return None

    @abstractmethod
    def rank_thresholds(
        self, users: torch.Tensor | None, item_index: torch.Tensor, k: int, train: sp.csr_matrix | None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """(threshold (U', B), weight (U', B)) from the CLEAN victim, no gradient."""
