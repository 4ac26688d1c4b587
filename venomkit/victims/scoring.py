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
* ``text_tokens``: the token space a token attack edits the victim's texts in (``tokenize``,
  ``decode``, ``token_embedding``): a feature victim's text encoder, the MLLM ranker's
  candidate-text tokens; None for a victim that reads no text. ``target_scores`` also takes
  texts as :class:`TokenTexts` (ids and differentiable embeddings in that space), which is how
  HotFlip reads the gradient with respect to each token;
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
from dataclasses import dataclass
from typing import Sequence

import scipy.sparse as sp
import torch

Images = torch.Tensor | Sequence[torch.Tensor]


@dataclass
class TokenTexts:
    """B texts given as tokens of the victim's ``text_tokens`` space, for first-order token attacks.

    Attributes:
        ids: (B, L) long token ids (padded as ``text_tokens.tokenize`` pads).
        embeddings: (B, L, d) their input embeddings (the table's rows, made differentiable).
        texts: the B strings the ids spell (kept in step by the attack).
    """

    ids: torch.Tensor
    embeddings: torch.Tensor
    texts: list[str]

    def __post_init__(self) -> None:
        if self.ids.dim() != 2 or self.embeddings.shape[:2] != self.ids.shape or len(self.texts) != self.ids.shape[0]:
            raise ValueError(
                f"TokenTexts needs ids (B, L), embeddings (B, L, d) and B texts; got {tuple(self.ids.shape)}, "
                f"{tuple(self.embeddings.shape)} and {len(self.texts)} texts"
            )

    def __len__(self) -> int:
        return len(self.texts)


class TargetScorer(ABC):
    """A victim as the attacks see it (module docstring). ``modalities``: what content it reads."""

    modalities: tuple[str, ...]

    @abstractmethod
    def target_scores(
        self, users: torch.Tensor | None, images: Images | None, texts: Sequence[str] | TokenTexts | None, item_index: torch.Tensor
    ) -> torch.Tensor:
        """(U', B) scores of targets ``item_index`` (B,) with their content replaced, for ``users`` (U',)."""

    @property
    def text_tokens(self):
        """The token space of the victim's texts (``tokenize``/``decode``/``token_embedding``), or None."""
        return None

    def default_users(self) -> torch.Tensor | None:
        """The users of an objective when none are given (None: every user)."""
        return None

    @abstractmethod
    def rank_thresholds(
        self, users: torch.Tensor | None, item_index: torch.Tensor, k: int, train: sp.csr_matrix | None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """(threshold (U', B), weight (U', B)) from the CLEAN victim, no gradient."""
