"""Exposure Alignment (VenomRec, arXiv 2602.06409, Sec. 4.1): where the exposed items live.

VenomRec's first stage asks where, in the ranker's own joint space, the items that reach many
users' top-K sit, and moves the target there:

1. **Fused item representation** :func:`fused_representations` -- the ranker's last hidden states
   pooled (mean) over the item's image tokens and text tokens, read from a ranking prompt with
   no history (``history: none``), so the representation depends on the item alone:
   ``r(x, w) = mean_{t in image(x) U text(w)} h_L(t)``, (B, d), differentiable in the pixels
   (and in the text's token embeddings);
2. **Exposure** :func:`exposure_counts` -- for every evaluated user's candidate list (the held-out
   item + 99 sampled negatives, :class:`~venomkit.victims.mllm.victim.MLLMVictim`), the clean
   ranker's top K; ``exposure_i = #lists where i is in the top K / #lists holding i`` (a rate,
   since sampled lists hold each item a different number of times);
3. **High-exposure region** :func:`exposure_region` -- the exposure-weighted prototype of the
   ``n_items`` most exposed items, ``p = sum_i e_i r_i / sum_i e_i``;
4. **Direction** -- ``p - r(target)``: the alignment objective of the perturbation stage is
   ``1 - cos(r(x', w'), p)``.

Shapes: B targets, d the language model's hidden width, I catalog items.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np
import torch
import torch.nn.functional as F

from venomkit.config import check_int
from venomkit.progress import progress as progress_bar
from venomkit.victims.mllm.ranker import MLLMRanker


def fused_representations(
    ranker: MLLMRanker,
    images: torch.Tensor | Sequence[torch.Tensor],
    texts: Sequence[str],
    text_embeddings: Sequence[torch.Tensor] | None = None,
) -> torch.Tensor:
    """(B, d) mean of the last hidden states over each item's image and text tokens (no history)."""
    out = ranker([[] for _ in texts], images, list(texts), text_embeddings=text_embeddings, output_hidden_states=True)
    mask = (out.image_mask | out.text_mask).unsqueeze(-1).to(out.hidden.dtype)  # (B, T, 1)
    return ((out.hidden * mask).sum(1) / mask.sum(1).clamp_min(1.0)).float()


def exposure_counts(victim, k: int = 20, progress: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """(in_top_k (I,), appearances (I,)) over the victim's candidate lists, clean ranker scores."""
    check_int("k", k)
    in_top = np.zeros(victim.n_items, dtype=np.int64)
    seen = np.zeros(victim.n_items, dtype=np.int64)
    for cl in progress_bar(victim.lists, desc="exposure", unit="user", leave=False, enabled=progress):
        scores = victim.clean_list_scores(cl.user)  # (1 + n_negatives,), the list's items in order
        items = cl.items
        top = items[np.argsort(-scores.numpy(), kind="stable")[:k]]
        in_top[top] += 1
        seen[items] += 1
    return in_top, seen


@dataclass
class ExposureRegion:
    """The high-exposure region of the joint space.

    Attributes:
        exposure: (I,) exposure rate of every item (0 where an item is in no list).
        items: (M,) the most exposed items, most exposed first.
        weights: (M,) their exposure rates.
        prototype: (d,) the exposure-weighted mean of their fused representations.
        k: the K of "reaches the top K".
    """

    exposure: np.ndarray
    items: np.ndarray
    weights: np.ndarray
    prototype: torch.Tensor
    k: int

    def alignment_loss(self, fused: torch.Tensor) -> torch.Tensor:
        """(B,) ``1 - cos(r, p)`` for fused representations (B, d): 0 when on the prototype's ray."""
        return 1 - F.cosine_similarity(fused, self.prototype.to(fused.device).view(1, -1), dim=1)

    def direction(self, fused: torch.Tensor) -> torch.Tensor:
        """(B, d) ``p - r``: from each target towards the region."""
        return self.prototype.to(fused.device).view(1, -1) - fused


def exposure_region(victim, *, k: int = 20, n_items: int = 20, min_lists: int = 3, exclude: Sequence[int] = (),
                    batch_size: int = 16, progress: bool = True) -> ExposureRegion:
    """The region of the victim's most exposed items (module docstring, steps 2-3).

    ``min_lists``: an item must appear in at least that many candidate lists to be ranked by
    its rate (a rate over one or two lists is noise); ``exclude``: items never used (targets).
    """
    check_int("n_items", n_items)
    in_top, seen = exposure_counts(victim, k, progress=progress)
    rate = np.where(seen > 0, in_top / np.maximum(seen, 1), 0.0)
    eligible = np.flatnonzero(seen >= min_lists)
    eligible = eligible[~np.isin(eligible, np.asarray(list(exclude), dtype=np.int64))]
    if len(eligible) == 0:
        raise ValueError(f"no item appears in {min_lists} or more candidate lists; evaluate more users or lower min_lists")
    order = eligible[np.lexsort((eligible, -rate[eligible]))][:n_items]
    weights = rate[order]
    if weights.sum() <= 0:
        raise ValueError(f"none of the candidate lists' items reached a top {k}: the exposure region is empty")
    catalog = victim.catalog
    reps = []
    with torch.no_grad():
        for start in range(0, len(order), batch_size):
            chunk = order[start : start + batch_size].tolist()
            reps.append(fused_representations(victim.ranker, catalog.image_batch(chunk), [catalog.texts[i] for i in chunk]))
    reps_t = torch.cat(reps)  # (M, d)
    w = torch.as_tensor(weights, dtype=reps_t.dtype).view(-1, 1)
    prototype = (w * reps_t).sum(0) / w.sum()
    return ExposureRegion(rate, order, weights, prototype.detach().cpu(), k)
