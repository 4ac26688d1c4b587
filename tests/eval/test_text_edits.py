"""``venomkit.eval.text_edits``: one Levenshtein, real tokens without start/end/padding ids."""

from __future__ import annotations

import pytest
import torch

from venomkit.encoders.base import TextEncoder
from venomkit.eval.text_edits import (
    edit_ratio,
    levenshtein,
    real_token_mask,
    real_tokens,
    text_edit_ratio,
    token_edit_ratio,
)

# 20 real tokens in open_clip's BPE (one token per word); the edits swap two of them.
CLEAN = "a soft red cotton shirt with blue stripes for warm summer days and a round collar from the town shop"
ADV = CLEAN.replace("red", "green").replace("warm", "cold")


@pytest.fixture(scope="module")
def clip_text():
    from venomkit.encoders.loading import load_text_encoder
    from venomkit.zoo import available

    if "toyshop-clip" not in available():
        pytest.skip("zoo:toyshop-clip is not built (venomkit zoo build --only toyshop-clip)")
    return load_text_encoder("zoo:toyshop-clip")


def test_levenshtein_and_token_edit_ratio():
    assert levenshtein("kitten", "sitting") == 3
    assert levenshtein([], [1, 2]) == 2 and levenshtein([1, 2, 3], [1, 2, 3]) == 0
    assert token_edit_ratio([1, 2, 3, 4], [1, 9, 3, 4]) == pytest.approx(0.25)
    assert token_edit_ratio([1, 2], [1, 2, 3, 4]) == pytest.approx(1.0)  # over the CLEAN length
    assert token_edit_ratio([], []) == 0.0 and token_edit_ratio([], [1]) == float("inf")
    assert edit_ratio([1, 2], [1, 2, 3, 4]) == pytest.approx(0.5)  # the stealth ratio: over the longer length


def test_two_substitutions_in_twenty_tokens_are_a_tenth_with_the_real_clip_tokenizer(clip_text):
    assert len(real_tokens(clip_text, CLEAN)) == 20 and len(real_tokens(clip_text, ADV)) == 20
    assert clip_text.tokenize([CLEAN]).shape[1] == 77  # padded: the ratio must not divide by 77
    assert text_edit_ratio(clip_text, CLEAN, ADV) == pytest.approx(0.10)
    assert text_edit_ratio(clip_text, CLEAN, CLEAN) == 0.0


def test_real_tokens_drop_start_end_and_padding_even_when_padding_is_a_real_id(clip_text):
    ids = clip_text.tokenize(["a red mug!"])
    mask = real_token_mask(clip_text, ids)
    real = ids[0][mask[0]].tolist()
    assert ids[0, 0] == clip_text.tokenizer.sot_token_id and clip_text.eot_token_id not in real
    assert real == real_tokens(clip_text, "a red mug!") and len(real) == 4  # "a", "red", "mug", "!"
    assert int(mask.sum()) == 4  # the zero padding after the end id ("!" in CLIP's BPE) is not counted


class WordEncoder(TextEncoder):
    """Word-level ids: 0 padding, 1 start, 2 end (all decode to nothing), then WORDS; no eot_token_id."""

    WORDS = ["", "", "", "red", "blue", "mug", "cup"]

    def __init__(self):
        super().__init__()
        self.spec, self.output_dim = "test:words", 2
        self.embedding = torch.nn.Embedding(len(self.WORDS), 2)

    def tokenize(self, texts):
        rows = [[1] + [self.WORDS.index(w) for w in t.split()] + [2] for t in texts]
        width = max(len(r) for r in rows) + 2
        return torch.tensor([r + [0] * (width - len(r)) for r in rows])

    def decode(self, token_ids):
        return [" ".join(self.WORDS[t] for t in row.tolist() if self.WORDS[t]) for row in token_ids]

    @property
    def token_embedding(self):
        return self.embedding

    def forward_embeddings(self, embeddings, token_ids):
        return embeddings.mean(1)


def test_encoders_without_an_end_id_use_the_tokens_that_decode_to_nothing():
    enc = WordEncoder()
    assert real_tokens(enc, "red mug") == [3, 5]
    assert real_token_mask(enc, torch.tensor([[1, 3, 5, 2, 0]])).tolist() == [[False, True, True, False, False]]
    assert text_edit_ratio(enc, "red mug", "blue mug") == pytest.approx(0.5)
    with pytest.raises(ValueError, match=r"\(N, L\)"):
        real_token_mask(enc, torch.tensor([3, 5]))


def test_old_import_paths_still_work():
    from venomkit.attacks.base import token_edit_ratio as from_attacks
    from venomkit.attacks.token_hotflip import real_tokens as from_hotflip
    from venomkit.eval.stealth import edit_ratio as from_stealth

    assert from_attacks is token_edit_ratio and from_hotflip is real_tokens and from_stealth is edit_ratio
