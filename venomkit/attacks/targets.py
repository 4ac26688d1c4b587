"""What an attack is given: the targets' raw content and what the adversary knows.

:class:`TargetBatch` is the one object an attack receives (``attack(victim, batch)``), passes to
its ``perturb`` and ``build_objective``, and slices per same-size group or per target: the B
targets' item indices, their clean images (B, 3, H, W) in [0, 1] or a list of B (3, H_i, W_i)
at their own sizes, their texts, the users the objective is about, and :class:`Knowledge`.
A new attack input (a history, a mask) is a new field here, not a new positional argument in
every attack.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Callable, Sequence

import numpy as np
import scipy.sparse as sp
import torch


@dataclass
class Knowledge:
    """What the adversary knows about the shop besides the model (all optional).

    Attributes:
        train: the users x items training interactions (CSR, binary). Used to mask items a
            user has already seen when computing rank thresholds, as full-sort ranking does.
        popularity: interactions per item (I,), e.g. a public best-seller list; EXPA, TAaMR
            and the LLM rewrite pick their popular "hook" items from it.
        texts: every item's description (I,), for style examples of popular items.
        images: a callable ``indices -> list of (3, H_i, W_i)`` giving catalog images at their
            own size (``Catalog.image_list``; TAaMR's popular class is the classifier's
            majority vote over popular items' images).
        protected_words: per target, words the text attacks must not edit (category names).
    """

    train: sp.csr_matrix | None = None
    popularity: np.ndarray | None = None
    texts: Sequence[str] | None = None
    images: Callable[[Sequence[int]], Sequence[torch.Tensor]] | None = None
    protected_words: Sequence[Sequence[str]] | None = None

    def popular_items(self, n: int) -> np.ndarray:
        """The ``n`` most popular item indices (ties by index); ValueError without popularity."""
        if self.popularity is None:
            raise ValueError("this attack needs item popularity: pass Knowledge(popularity=...)")
        order = np.lexsort((np.arange(len(self.popularity)), -np.asarray(self.popularity)))
        return order[:n]

    def subset(self, rows: Sequence[int]) -> "Knowledge":
        """The same knowledge for a subset of the targets (per-target fields sliced)."""
        words = None if self.protected_words is None else [self.protected_words[r] for r in rows]
        return Knowledge(self.train, self.popularity, self.texts, self.images, words)


@dataclass
class TargetBatch:
    """B targets of one attack call (validated at construction; ValueError naming the field).

    Attributes:
        item_index: (B,) long, distinct catalog indices of the targets.
        images: (B, 3, H, W) float in [0, 1], or a list of B (3, H_i, W_i) at their own sizes, or None.
        texts: B strings, or None.
        users: (U',) long, the users whose scores the objective raises; None: the victim's
            default (every user for a feature victim; ``TargetScorer.default_users``).
        knowledge: what the adversary knows (:class:`Knowledge`); per-target fields have B entries.

    Shape:
        Inside ``perturb`` / ``build_objective`` the batch is one same-size group: ``images``
        is a (G, 3, H, W) tensor and every per-target field has G entries.

    Example::

        batch = TargetBatch(torch.tensor([3, 7]), images=catalog.image_list([3, 7]), texts=[...])
        result = PGD(eps=8 / 255)(victim, batch)
    """

    item_index: torch.Tensor
    images: torch.Tensor | list[torch.Tensor] | None = None
    texts: list[str] | None = None
    users: torch.Tensor | None = None
    knowledge: Knowledge = field(default_factory=Knowledge)

    def __post_init__(self) -> None:
        self.item_index = torch.as_tensor(self.item_index, dtype=torch.long).reshape(-1)
        b = self.item_index.numel()
        if b == 0:
            raise ValueError("item_index is empty: pass at least one target")
        if len(set(self.item_index.tolist())) != b:
            raise ValueError("item_index has repeated targets; each target must appear once")
        if self.images is not None:
            self.images = _check_images(self.images, b)
        if self.texts is not None:
            self.texts = list(self.texts)
            if len(self.texts) != b or not all(isinstance(t, str) for t in self.texts):
                raise ValueError(f"texts must be {b} strings, one per target")
        if self.users is not None:
            self.users = torch.as_tensor(self.users, dtype=torch.long).reshape(-1)
            if self.users.numel() == 0:
                raise ValueError("users is empty: pass None for the victim's default users")
        if self.knowledge is None:
            self.knowledge = Knowledge()
        if not isinstance(self.knowledge, Knowledge):
            raise ValueError(f"knowledge must be a Knowledge, got {type(self.knowledge).__name__}")
        if self.knowledge.protected_words is not None and len(self.knowledge.protected_words) != b:
            raise ValueError(f"knowledge.protected_words must have one entry per target ({b})")

    def __len__(self) -> int:
        return self.item_index.numel()

    def to(self, device: torch.device | str) -> "TargetBatch":
        """The same batch with its tensors on ``device`` (images detached)."""
        images = self.images
        if isinstance(images, torch.Tensor):
            images = images.detach().to(device)
        elif images is not None:
            images = [im.detach().to(device) for im in images]
        users = None if self.users is None else self.users.to(device)
        return replace(self, item_index=self.item_index.to(device), images=images, users=users)

    def subset(self, rows: Sequence[int], images: torch.Tensor | None = None) -> "TargetBatch":
        """Targets ``rows`` of this batch; ``images`` replaces their images (a same-size group's tensor)."""
        if images is None and self.images is not None:
            images = self.images[list(rows)] if isinstance(self.images, torch.Tensor) else [self.images[r] for r in rows]
        return TargetBatch(
            self.item_index[list(rows)],
            images,
            None if self.texts is None else [self.texts[r] for r in rows],
            self.users,
            self.knowledge.subset(rows),
        )

    def with_users(self, users: torch.Tensor | None) -> "TargetBatch":
        return replace(self, users=users)


def _check_images(images: torch.Tensor | Sequence[torch.Tensor], b: int) -> torch.Tensor | list[torch.Tensor]:
    """(B, 3, H, W) or a list of B (3, H_i, W_i), float in [0, 1]; ValueError otherwise."""
    if isinstance(images, torch.Tensor):
        if images.dim() != 4 or images.shape[1] != 3 or images.shape[0] != b:
            raise ValueError(f"images must have shape (B={b}, 3, H, W) or be a list of B (3, H, W) tensors, got {tuple(images.shape)}")
        items = list(images)
    else:
        images = list(images)
        items = images
        if len(items) != b or any(not isinstance(im, torch.Tensor) or im.dim() != 3 or im.shape[0] != 3 for im in items):
            raise ValueError(f"images must be a list of B={b} tensors (3, H, W), one per target")
    for im in items:
        if not torch.is_floating_point(im) or im.min() < 0 or im.max() > 1:
            raise ValueError("images must be float tensors in [0, 1]")
    return images
