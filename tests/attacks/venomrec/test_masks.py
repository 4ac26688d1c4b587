"""Cross-modal masks: the text -> image attention block picks the expected tokens and patches."""

from __future__ import annotations

import pytest
import torch

from venomkit.attacks.venomrec.masks import attention_scores, pixel_mask, select, top_share
from venomkit.victims.mllm.ranker import MLLMRanker, RankerOutput


class _ConstructedRanker:
    """A ranker whose forward returns hand-made attention maps over a known token layout.

    Sequence (T = 12): 2 prefix tokens, 4 image tokens (a 2 x 2 grid), 4 text tokens, 2 question
    tokens. In layer 0 text token 2 (position 8) attends to image token 3 (position 5); in layer 1
    text token 0 (position 6) attends to image token 1 (position 3). Everything else is uniform noise.
    """

    def __call__(self, histories, images, texts, output_attentions=False):
        b, t = len(texts), 12
        image_mask = torch.zeros(b, t, dtype=torch.bool)
        image_mask[:, 2:6] = True
        text_mask = torch.zeros(b, t, dtype=torch.bool)
        text_mask[:, 6:10] = True
        layers = []
        for layer, (query, key) in enumerate(((8, 5), (6, 3))):
            att = torch.full((b, 2, t, t), 0.01)
            att[:, :, query, key] = 1.0 if layer == 0 else 0.8
            layers.append(att)
        return RankerOutput(scores=torch.zeros(b), logits=torch.zeros(b, 4), attentions=tuple(layers), image_mask=image_mask,
                            last_index=torch.full((b,), t - 1), image_grids=[(2, 2)] * b, text_mask=text_mask)


def test_attention_block_selects_the_linked_token_and_patch():
    tokens, patches = attention_scores(_ConstructedRanker(), torch.zeros(1, 3, 8, 8), ["a b c d"])
    masks = select(tokens, patches, rho_t=0.25, rho_v=0.25)  # one of four each
    assert masks.tokens[0].tolist() == [False, False, True, False]  # layer 0's link is the stronger one
    assert masks.patches[0].tolist() == [False, False, False, True]
    tokens, patches = attention_scores(_ConstructedRanker(), torch.zeros(1, 3, 8, 8), ["a b c d"], layers=[1])
    masks = select(tokens, patches, rho_t=0.25, rho_v=0.25)
    assert masks.tokens[0].tolist() == [True, False, False, False] and masks.patches[0].tolist() == [False, True, False, False]
    with pytest.raises(ValueError, match="layer 5 does not exist"):
        attention_scores(_ConstructedRanker(), torch.zeros(1, 3, 8, 8), ["a b c d"], layers=[5])


def test_top_share_counts_and_ties():
    assert top_share(torch.tensor([0.1, 0.9, 0.5, 0.9]), 0.5).tolist() == [False, True, False, True]
    assert top_share(torch.tensor([3.0, 1.0, 2.0]), 0.01).tolist() == [True, False, False]  # at least one
    assert top_share(torch.tensor([1.0, float("-inf"), 2.0]), 1.0).sum() == 3
    assert top_share(torch.zeros(0), 0.5).numel() == 0


@pytest.fixture(scope="module")
def zoo_ranker():
    return MLLMRanker.load("zoo:toyshop-vlm")  # 64 px input, 8 px patches: an 8 x 8 grid


def test_pixel_mask_of_a_square_photo_is_the_patch_blocks(zoo_ranker):
    chosen = torch.zeros(64, dtype=torch.bool)
    chosen[[0, 9, 63]] = True
    mask = pixel_mask(zoo_ranker, chosen, 64, 64)[0]
    expected = torch.zeros(64, 64)
    for k in (0, 9, 63):
        r, c = divmod(k, 8)
        expected[r * 8 : (r + 1) * 8, c * 8 : (c + 1) * 8] = 1
    assert torch.equal(mask, expected)


def test_pixel_mask_of_a_native_photo_follows_resize_and_crop(zoo_ranker):
    # 300 x 450: shortest side to 64 -> 64 x 96, centre crop 64 x 64 (16 columns cut each side = 75 photo pixels)
    everything = pixel_mask(zoo_ranker, torch.ones(64, dtype=torch.bool), 300, 450)[0]
    assert everything[:, :75].sum() == 0 and everything[:, 375:].sum() == 0 and everything[:, 75:375].all()
    first = torch.zeros(64, dtype=torch.bool)
    first[0] = True
    cell = pixel_mask(zoo_ranker, first, 300, 450)[0]
    rows, cols = torch.nonzero(cell, as_tuple=True)
    assert rows.min() == 0 and abs(int(rows.max()) - 36) <= 1 and int(cols.min()) == 75 and abs(int(cols.max()) - 112) <= 1
