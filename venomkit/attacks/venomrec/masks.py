"""Where to edit: VenomRec's cross-modal masks over a target's text tokens and image patches.

VenomRec (arXiv 2602.06409, Sec. 4.2) edits only the parts of the target that the ranker links
across modalities. With the ranker's eager attention maps ``A_l`` (layer l, heads averaged) on
the target's no-history prompt, the text -> image block ``C = mean_{l in layers} A_l[text, image]``
(L_text, N_patches) scores

    token t:  s_t = sum_p C[t, p]      (how much the token reads the image)
    patch p:  s_p = sum_t C[t, p]      (how much the text reads the patch)

(text tokens follow the image in the prompt, so under causal attention they are the side that
attends). The top ``rho_t`` share of the tokens and the top ``rho_v`` share of the patches are
selected (at least one each). Options: ``saliency`` -- the same scores from gradient norms of
the attack objective (per-token embedding gradient norm; per-patch sum of |pixel gradient| over
the patch's pixels); ``random`` -- a seeded random choice of the same sizes (an ablation).

A patch mask becomes a pixel mask of the photo at its own size through the family's
``token_index_map`` (which token cell each photo pixel lands on after the processor's resize and
crop); pixels the model never sees are never selected.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

import torch

from venomkit.victims.mllm.ranker import MLLMRanker


@dataclass
class CrossModalMasks:
    """Per target: which text tokens and which image patches may be edited.

    Attributes:
        tokens: B bool tensors (L_b,), over the candidate text's tokens (``ranker.text_ids``).
        patches: B bool tensors (rows_b * cols_b,), over the image's token grid (row-major).
        token_scores, patch_scores: the scores the masks were chosen from (same shapes).
    """

    tokens: list[torch.Tensor]
    patches: list[torch.Tensor]
    token_scores: list[torch.Tensor]
    patch_scores: list[torch.Tensor]


def top_share(scores: torch.Tensor, share: float) -> torch.Tensor:
    """Bool mask of the ``ceil(share * n)`` highest scores (at least 1 when n > 0; ties by index)."""
    n = scores.numel()
    mask = torch.zeros(n, dtype=torch.bool)
    if n == 0:
        return mask
    k = max(1, min(n, math.ceil(share * n)))
    order = torch.argsort(-scores.detach().float().cpu(), stable=True)
    mask[order[:k]] = True
    return mask


def attention_scores(
    ranker: MLLMRanker, images: torch.Tensor | Sequence[torch.Tensor], texts: Sequence[str], layers: Sequence[int] | None = None
) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
    """(token scores B x (L_b,), patch scores B x (N_b,)) from the text -> image attention block."""
    with torch.no_grad():
        out = ranker([[] for _ in texts], images, list(texts), output_attentions=True)
    if not out.attentions:
        raise RuntimeError("the ranker returned no attention maps: load it with attn_implementation='eager'")
    chosen = range(len(out.attentions)) if layers is None else list(layers)
    for layer in chosen:
        if not -len(out.attentions) <= layer < len(out.attentions):
            raise ValueError(f"attention layer {layer} does not exist: the language model has {len(out.attentions)} layers")
    maps = torch.stack([out.attentions[layer].float().mean(1) for layer in chosen]).mean(0)  # (B, T, T)
    token_scores, patch_scores = [], []
    for b, (rows, cols) in enumerate(out.image_grids):
        image_positions = torch.nonzero(out.image_mask[b]).view(-1)[-rows * cols :]  # the grid's tokens
        text_positions = torch.nonzero(out.text_mask[b]).view(-1)
        block = maps[b][text_positions][:, image_positions]  # (L_b, N_b)
        token_scores.append(block.sum(1).cpu())
        patch_scores.append(block.sum(0).cpu())
    return token_scores, patch_scores


def random_scores(lengths: Sequence[int], patches: Sequence[int], seeds: Sequence[int]) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
    """Seeded uniform scores of the same shapes (the random-mask ablation)."""
    tokens, cells = [], []
    for n_tokens, n_patches, seed in zip(lengths, patches, seeds):
        g = torch.Generator().manual_seed(int(seed))
        tokens.append(torch.rand(n_tokens, generator=g))
        cells.append(torch.rand(n_patches, generator=g))
    return tokens, cells


def select(token_scores: list[torch.Tensor], patch_scores: list[torch.Tensor], rho_t: float, rho_v: float) -> CrossModalMasks:
    """The top ``rho_t`` tokens and ``rho_v`` patches of each target."""
    return CrossModalMasks(
        [top_share(s, rho_t) for s in token_scores], [top_share(s, rho_v) for s in patch_scores], token_scores, patch_scores
    )


def pixel_mask(ranker: MLLMRanker, patch_mask: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """(1, H, W) float {0, 1}: the photo's pixels that land on the selected patches."""
    index = ranker.family.token_index_map(height, width)  # (H, W), -1 outside
    if patch_mask.numel() <= int(index.max()):
        raise ValueError(f"a patch mask of {patch_mask.numel()} cells for an image grid of {int(index.max()) + 1}")
    selected = torch.cat([patch_mask.cpu(), torch.zeros(1, dtype=torch.bool)])  # index -1 -> the appended False
    return selected[index].float().unsqueeze(0)


def patch_scores_from_pixels(ranker: MLLMRanker, pixel_grad: torch.Tensor, n_patches: int) -> torch.Tensor:
    """(N,) sum of |gradient| over each patch's pixels, from a (3, H, W) pixel gradient (saliency)."""
    index = ranker.family.token_index_map(*pixel_grad.shape[-2:]).view(-1)
    magnitude = pixel_grad.detach().abs().sum(0).view(-1).cpu()
    keep = index >= 0
    return torch.zeros(n_patches).index_add_(0, index[keep], magnitude[keep])
