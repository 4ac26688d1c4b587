"""MLLMVictim: the scoring contract on the zoo's LLaVA ranker, and the pixel attacks through it."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from venomkit.victims.mllm.ranker import MLLMRanker
from venomkit.victims.mllm.victim import MLLMVictim
from venomkit.victims.scoring import TargetScorer
from venomkit.attacks.targets import TargetBatch


@pytest.fixture(scope="module")
def dataset():
    from venomkit.data.toyshop import make

    return make(n_users=30, n_items=40, image_size=64, interactions_per_user=6, seed=2)


@pytest.fixture(scope="module")
def victim(dataset):
    ranker = MLLMRanker.load("zoo:toyshop-vlm")
    return MLLMVictim.from_dataset(ranker, dataset, n_users=4, n_negatives=12, seed=0, objective_users=3)


def _cold_targets(dataset, n):
    pop = dataset.split.train.popularity()
    return [int(i) for i in np.argsort(pop, kind="stable")[:n]]


def test_is_a_target_scorer_with_its_users(victim):
    assert isinstance(victim, TargetScorer)
    assert victim.default_users().tolist() == victim.users[:3].tolist()
    with pytest.raises(ValueError, match="no candidate list"):
        victim.target_scores(torch.tensor([10_000]), None, None, torch.tensor([0]))


def test_target_scores_are_the_rankers_scores_per_user_and_target(victim, dataset):
    items = torch.tensor(_cold_targets(dataset, 2))
    users = victim.users[:2]
    got = victim.target_scores(users, None, None, items)  # (2 users, 2 targets)
    for r, u in enumerate(users.tolist()):
        history = victim.history_titles[u]
        for c, t in enumerate(items.tolist()):
            one = victim.ranker.score([history], dataset.catalog.image_batch([t]), [dataset.catalog.texts[t]])
            assert torch.allclose(got[r, c], one[0], atol=1e-4)


def test_thresholds_are_the_kth_best_negative_score(victim, dataset):
    items = torch.tensor(_cold_targets(dataset, 2))
    k = 3
    thr, weight = victim.rank_thresholds(victim.users[:2], items, k, dataset.split.train.matrix)
    for r, u in enumerate(victim.users[:2].tolist()):
        negatives = victim.lists[r].negatives
        scores = victim.ranker.score_candidates(
            victim.history_titles[u], dataset.catalog.image_batch(negatives.tolist()), [dataset.catalog.texts[i] for i in negatives]
        )
        for c, t in enumerate(items.tolist()):
            others = sorted(scores[torch.as_tensor(negatives != t)].tolist(), reverse=True)
            assert thr[r, c].item() == pytest.approx(others[k - 1], abs=1e-4)
    assert set(weight.unique().tolist()) <= {0.0, 1.0}


def test_pgd_on_pixels_raises_the_rankers_scores_within_budget(victim, dataset):
    from venomkit.attacks.pgd import PGD

    items = _cold_targets(dataset, 2)
    images = dataset.catalog.image_batch(items)
    texts = [dataset.catalog.texts[i] for i in items]
    eps = 8 / 255
    result = PGD(eps=eps, steps=4, k=5, seed=0)(victim, TargetBatch(items, images, texts))
    assert (result.adv_images - images).abs().max() <= eps + 1e-6
    assert result.adv_texts == texts  # pixels only
    gain = result.diagnostics["score_after"] - result.diagnostics["score_before"]
    assert gain.mean() > 0, gain
    # the diagnostics are the ranker's own mean scores over the objective users
    after = victim.target_scores(victim.default_users(), result.adv_images, texts, torch.tensor(items)).mean(0)
    assert torch.allclose(after, result.diagnostics["score_after"], atol=1e-4)


def test_text_embeddings_replace_exactly_the_candidate_text(victim, dataset):
    ranker = victim.ranker
    items = _cold_targets(dataset, 2)
    texts = [dataset.catalog.texts[i] for i in items]
    images = dataset.catalog.image_batch(items)
    history = [victim.history_titles[int(victim.users[0])]] * 2
    table = victim.text_tokens.token_embedding
    embeddings = [table(torch.tensor(ranker.text_ids(t))).detach().requires_grad_(True) for t in texts]
    plain = ranker(history, images, texts)
    replaced = ranker(history, images, texts, text_embeddings=embeddings)
    assert torch.equal(plain.scores, replaced.scores)
    assert plain.text_mask.sum(1).tolist() == [len(ranker.text_ids(t)) for t in texts]
    replaced.scores.sum().backward()
    assert all(e.grad is not None and e.grad.abs().sum() > 0 for e in embeddings)
    tokens = victim.text_tokens
    assert tokens.decode(tokens.tokenize(texts)) == [" ".join(t.split()) for t in texts]


def test_hotflip_edits_the_rankers_own_tokens_within_budget(victim, dataset):
    from venomkit.attacks.token_hotflip import TokenHotFlip
    from venomkit.eval.text_edits import text_edit_ratio

    items = _cold_targets(dataset, 2)
    images = dataset.catalog.image_batch(items)
    texts = [dataset.catalog.texts[i] for i in items]
    attack = TokenHotFlip(max_edit_ratio=0.1, n_candidates=4, k=5)
    result = attack(victim, TargetBatch(items, images, texts))
    assert result.adv_images is None
    changed = [a != c for a, c in zip(result.adv_texts, texts)]
    assert any(changed)
    for clean, adv in zip(texts, result.adv_texts):
        assert text_edit_ratio(victim.text_tokens, clean, adv) <= 0.1 + 1e-9
    # a flip is kept only when it lowers the promotion objective on the ranker itself
    before, after = result.diagnostics["objective_before"], result.diagnostics["objective_after"]
    for k, c in enumerate(changed):
        assert after[k] < before[k] if c else after[k] == before[k]


def test_token_edits_never_insert_the_prompts_answer_or_role_words(victim, dataset):
    from venomkit.attacks.targets import Knowledge
    from venomkit.attacks.token_hotflip import TextBudgetConfig, TextFlipper

    tokens = victim.text_tokens
    reserved = tokens.reserved_token_ids
    ranker = victim.ranker
    assert {ranker.yes_id, ranker.no_id} <= reserved
    decoded = {ranker.tokenizer.decode([t]).strip() for t in reserved}
    assert {"yes", "no", "ASSISTANT"} <= decoded and "user" not in decoded  # roles as the prompt spells them only
    texts = [dataset.catalog.texts[i] for i in _cold_targets(dataset, 2)]
    guarded = TextFlipper(tokens, texts, TextBudgetConfig(), Knowledge(), torch.device("cpu"))
    assert not set(guarded.candidate_ids.tolist()) & reserved
    # what the filter removes, and only that: allowing prompt words gives the reserved word tokens back
    opened = TextFlipper(tokens, texts, TextBudgetConfig(allow_prompt_words=True), Knowledge(), torch.device("cpu"))
    extra = set(opened.candidate_ids.tolist()) - set(guarded.candidate_ids.tolist())
    assert extra and extra <= reserved and ranker.yes_id in extra
    with pytest.raises(ValueError, match="allow_prompt_words"):
        TextBudgetConfig(allow_prompt_words="yes").check_text_budget()


def test_attacks_that_need_feature_tables_say_so(victim, dataset):
    from venomkit.attacks.expa import EXPA
    from venomkit.attacks.targets import Knowledge

    items = _cold_targets(dataset, 1)
    images = dataset.catalog.image_batch(items)
    texts = [dataset.catalog.texts[i] for i in items]
    knowledge = Knowledge(popularity=dataset.split.train.popularity())
    with pytest.raises(ValueError, match="no feature tables"):
        EXPA(steps=1)(victim, TargetBatch(items, images, texts, knowledge=knowledge))
