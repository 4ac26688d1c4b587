"""Token HotFlip, LLM rewrite and the joint attack on the tiny VBPR-shaped victim."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from venomkit.attacks.base import token_edit_ratio
from venomkit.attacks.targets import Knowledge
from venomkit.attacks.joint import JointAttack
from venomkit.attacks.llm_rewrite import LLMRewrite
from venomkit.attacks.token_hotflip import STOP_WORDS, TokenHotFlip, real_tokens
from venomkit.attacks.targets import TargetBatch

TARGETS = [24, 26, 27, 29]


def _run(attack, shop, knowledge=None):
    idx = torch.tensor(TARGETS)
    knowledge = knowledge or dataclasses.replace(shop["knowledge"], protected_words=[[shop["categories"][i]] for i in TARGETS])
    return attack(shop["victim"], TargetBatch(idx, shop["images"][idx], [shop["texts"][i] for i in TARGETS], knowledge=knowledge))


def test_hotflip_edits_within_budget_and_keeps_protected_words(shop):
    attack = TokenHotFlip(k=5, max_edit_ratio=0.5)
    result = _run(attack, shop)
    enc = shop["victim"].text_encoder
    changed = 0
    for target, adv in zip(TARGETS, result.adv_texts):
        clean = shop["texts"][target]
        assert token_edit_ratio(real_tokens(enc, clean), real_tokens(enc, adv)) <= 0.5
        assert shop["categories"][target] in adv.split()
        clean_words, adv_words = clean.split(), adv.split()
        assert len(clean_words) == len(adv_words)
        for cw, aw in zip(clean_words, adv_words):
            if cw in STOP_WORDS:
                assert aw == cw
        changed += adv != clean
    assert changed > 0
    d = result.diagnostics
    assert (d["objective_after"] <= d["objective_before"] + 1e-6).all()
    assert (d["objective_after"] < d["objective_before"])[d["edits"] > 0].all()
    assert result.adv_images is None


def test_hotflip_fluency_constraint_holds_on_the_saved_texts_and_binds(shop):
    """fluency_lm: every edited text stays within max_log_prob_drop of the original under the LM; without it some do not."""
    from venomkit.attacks.token_hotflip import fluency_judge

    judge = fluency_judge("zoo:toyshop-lm", "cpu")
    drops = {}
    for lm in (None, "zoo:toyshop-lm"):
        result = _run(TokenHotFlip(k=5, max_edit_ratio=0.5, fluency_lm=lm, max_log_prob_drop=3.0), shop)
        clean = [shop["texts"][t] for t in TARGETS]
        drops[lm] = (judge.rewrite_log_prob(clean, clean) - judge.rewrite_log_prob(clean, result.adv_texts)).tolist()
        assert sum(a != c for a, c in zip(result.adv_texts, clean)) > 0, "the attack still edits"
    assert max(drops[None]) > 3.0, "unconstrained HotFlip makes an edit the constraint forbids (else this test shows nothing)"
    assert max(drops["zoo:toyshop-lm"]) <= 3.0 + 1e-6


def test_hotflip_bad_arguments():
    for kwargs, word in [({"max_edit_ratio": 0}, "max_edit_ratio"), ({"max_edit_ratio": 1.5}, "max_edit_ratio"), ({"n_candidates": 0}, "n_candidates"), ({"keep_stopwords": "x"}, "keep_stopwords"),
                         ({"max_log_prob_drop": -1.0}, "max_log_prob_drop"), ({"max_log_prob_drop": float("nan")}, "max_log_prob_drop")]:
        with pytest.raises(ValueError, match=word):
            TokenHotFlip(**kwargs)


class FakeRewriter:
    """Deterministic 'LM': swaps one word for a popular-style word, and one far-off rewrite."""

    def rewrite(self, texts, n, style_examples, temperature, seed):
        words = style_examples[0].split()
        out = []
        for text in texts:
            base = text.split()
            cands = [" ".join(base[:-2] + [w] + base[-1:]) for w in words[:n - 1]]
            cands.append("leather leather leather leather")  # dissimilar: must be rejected by the threshold
            out.append(cands[:n])
        return out


def test_llm_rewrite_keeps_best_similar_candidate(shop):
    attack = LLMRewrite(k=5, min_similarity=0.7, rewriter=FakeRewriter(), n_candidates=6)
    result = _run(attack, shop)
    d = result.diagnostics
    assert (d["similarity"] >= 0.7 - 1e-6).all()
    assert (d["objective_after"] <= d["objective_before"]).all()
    sims = attack.similarity(shop["victim"], [shop["texts"][i] for i in TARGETS], result.adv_texts)
    assert (sims >= 0.7 - 1e-5).all()
    assert all(t != "leather leather leather leather" for t in result.adv_texts)


def test_llm_rewrite_needs_texts_and_valid_rewriter(shop):
    with pytest.raises(ValueError, match="rewriter"):
        LLMRewrite(rewriter=object())
    with pytest.raises(ValueError, match="min_similarity"):
        LLMRewrite(min_similarity=2)
    with pytest.raises(ValueError, match="texts"):
        _run(LLMRewrite(rewriter=FakeRewriter()), shop, knowledge=Knowledge(popularity=shop["knowledge"].popularity))


@pytest.mark.parametrize("align", [0.0, 2.0])
def test_joint_attack_budget_and_progress(shop, align):
    attack = JointAttack(k=5, steps=4, flip_every=2, align_weight=align, objective="soft", max_edit_ratio=0.5)
    result = _run(attack, shop)
    clean = shop["images"][torch.tensor(TARGETS)]
    assert (result.adv_images - clean).abs().max() <= 8 / 255 + 1e-6
    assert (result.diagnostics["score_after"] > result.diagnostics["score_before"]).all()
    if align:
        assert result.diagnostics["alignment"].abs().sum() > 0


def test_joint_rejects_keep_best():
    with pytest.raises(ValueError, match="keep_best"):
        JointAttack(keep_best=True)
