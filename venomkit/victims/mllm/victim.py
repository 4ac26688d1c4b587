"""The MLLM ranker as a victim the attacks can score: a ranker bound to a shop's users.

VenomRec (arXiv 2602.06409) measures a target's exposure by putting the target into each test
user's candidate list in place of the held-out item (99 sampled negatives + the target) and
asking the ranker for ``logit(yes) - logit(no)`` of every candidate given the user's history.
:class:`MLLMVictim` holds exactly that: the ranker (:class:`~venomkit.victims.mllm.ranker.MLLMRanker`),
each evaluated user's history (item titles, :func:`~venomkit.victims.mllm.candidates.sample_history`)
and negatives (:func:`~venomkit.victims.mllm.candidates.sampled_candidates`), and the catalog for
the clean content. It implements the scoring contract (:mod:`venomkit.victims.scoring`), so the
attacks written for feature victims run on it unchanged:

* ``target_scores(users, images, texts, item_index)`` (U', B): one prompt per (user, target) with
  the target's raw image (B, 3, H, W) in [0, 1] and text, differentiable in the pixels (a
  forward pass per pair: the cost that makes ``default_users`` a sample);
* ``rank_thresholds(users, item_index, k, train)``: the K-th best clean score among the user's
  99 negatives (the target must pass it to enter the top K of its list), weight 0 for a user
  who already interacted with the target;
* ``default_users()``: the first ``objective_users`` evaluated users (seeded order);
* ``text_tokens``: the language model's tokens of the candidate text
  (:class:`~venomkit.victims.mllm.text_tokens.CandidateTextTokens`), so HotFlip edits texts in
  the ranker's own vocabulary.

Example::

    ranker = MLLMRanker.load("zoo:toyshop-vlm")
    victim = MLLMVictim.from_dataset(ranker, dataset, n_users=50)
    result = PGD(eps=8 / 255, k=10)(victim, images, texts, item_index)
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from venomkit.config import check_int
from venomkit.victims.mllm.candidates import CandidateList, evaluation_users, item_titles
from venomkit.victims.mllm.ranker import MLLMRanker
from venomkit.victims.mllm.text_tokens import CandidateTextTokens
from venomkit.victims.scoring import Images, TargetScorer, TokenTexts


class MLLMVictim(nn.Module, TargetScorer):
    """An :class:`MLLMRanker` over fixed users' histories and candidate negatives (module docstring).

    Args:
        ranker: the ranker (its weights are what the attacks query; never trained here).
        catalog: the shop's catalog (``texts``, ``image_batch``/``image_list``, titles).
        lists: the evaluated users' candidate lists (``CandidateList``: user, held-out positive,
            negatives); the positive is what a target replaces.
        histories: per listed user, the item indices shown as its history.
        objective_users: how many of the listed users an objective averages over by default.
    """

    modalities = ("visual", "text")

    def __init__(self, ranker: MLLMRanker, catalog, lists: Sequence[CandidateList], histories: Sequence[Sequence[int]],
                 *, n_users: int, objective_users: int = 16) -> None:
        super().__init__()
        if len(lists) != len(histories):
            raise ValueError(f"{len(lists)} candidate lists for {len(histories)} histories")
        if not lists:
            raise ValueError("an MLLMVictim needs at least one evaluated user")
        check_int("objective_users", objective_users, 1)
        self.ranker = ranker
        self.catalog = catalog
        self.lists = list(lists)
        self.titles = item_titles(catalog)
        self.history_titles = {cl.user: [self.titles[i] for i in h] for cl, h in zip(self.lists, histories)}
        self._row = {cl.user: r for r, cl in enumerate(self.lists)}
        self._n_users = int(n_users)
        self.objective_users = objective_users
        self._list_scores: dict[int, torch.Tensor] = {}
        self._text_tokens: CandidateTextTokens | None = None

    @classmethod
    def from_dataset(cls, ranker: MLLMRanker, dataset, *, n_users: int = 100, n_negatives: int = 99, seed: int = 0,
                     split: str = "test", objective_users: int = 16) -> "MLLMVictim":
        """VenomRec's evaluation users of ``dataset``: seeded lists and histories of training items."""
        lists, histories = evaluation_users(dataset, n_users=n_users, max_history=ranker.max_history, n_negatives=n_negatives,
                                            split=split, seed=seed)
        return cls(ranker, dataset.catalog, lists, histories, n_users=dataset.n_users, objective_users=objective_users)

    @property
    def n_users(self) -> int:
        return self._n_users

    @property
    def n_items(self) -> int:
        return len(self.titles)

    @property
    def users(self) -> torch.Tensor:
        """(L,) the evaluated users, in list order."""
        return torch.tensor([cl.user for cl in self.lists], dtype=torch.long)

    def default_users(self) -> torch.Tensor:
        return self.users[: self.objective_users]

    def _histories(self, users: torch.Tensor | None) -> list[list[str]]:
        users = self.users if users is None else users
        missing = [int(u) for u in users.tolist() if int(u) not in self._row]
        if missing:
            raise ValueError(f"users {missing[:5]} have no candidate list in this MLLMVictim (its users: MLLMVictim.users)")
        return [self.history_titles[int(u)] for u in users.tolist()]

    # ------------------------------------------------------ scoring contract
    def target_scores(self, users: torch.Tensor | None, images: Images | None, texts: Sequence[str] | None,
                      item_index: torch.Tensor) -> torch.Tensor:
        """(U', B) ranker scores; ``images`` / ``texts`` None mean the catalog's clean content."""
        histories = self._histories(users)
        items = item_index.tolist()
        if images is None:
            images = self.catalog.image_batch(items)
        embeddings = None
        if isinstance(texts, TokenTexts):  # a token attack's differentiable embeddings (text_tokens space)
            embeddings, texts = self.text_tokens.row_embeddings(texts), texts.texts
        if texts is None:
            texts = [self.catalog.texts[i] for i in items]
        b, n = len(items), len(histories)
        if isinstance(images, torch.Tensor):
            rows_images: torch.Tensor | list[torch.Tensor] = images.repeat(n, 1, 1, 1)
        else:
            rows_images = [im for _ in range(n) for im in images]
        rows_histories = [h for h in histories for _ in range(b)]
        rows_texts = [t for _ in range(n) for t in texts]
        rows_embeddings = None if embeddings is None else [e for _ in range(n) for e in embeddings]
        return self.ranker(rows_histories, rows_images, rows_texts, text_embeddings=rows_embeddings).scores.view(n, b)

    @property
    def text_tokens(self) -> CandidateTextTokens:
        """The ranker's candidate-text tokens (what HotFlip and VenomRec's token edits change)."""
        if self._text_tokens is None:
            self._text_tokens = CandidateTextTokens(self.ranker)
        return self._text_tokens

    def rank_thresholds(self, users: torch.Tensor | None, item_index: torch.Tensor, k: int, train=None) -> tuple[torch.Tensor, torch.Tensor]:
        """K-th best clean score among each user's negatives (the target excluded); weight 0 where seen."""
        users = self.users if users is None else users
        self._histories(users)  # checks every user has a list
        device = item_index.device
        thresholds, weights = [], []
        for u in users.tolist():
            negatives = self.lists[self._row[int(u)]].negatives
            scores = self._clean_negative_scores(int(u))
            row_thr, row_w = [], []
            for t in item_index.tolist():
                others = scores[torch.as_tensor(negatives != t)]
                kk = min(k, len(others))
                row_thr.append(others.topk(kk).values[-1] if kk > 0 else torch.tensor(float("-inf")))
                row_w.append(0.0 if (train is not None and train[int(u), int(t)] != 0) or kk == 0 else 1.0)
            thresholds.append(torch.stack(row_thr))
            weights.append(torch.tensor(row_w))
        thr = torch.stack(thresholds).to(device).float()
        weight = torch.stack(weights).to(device)
        return torch.where(torch.isfinite(thr), thr, torch.zeros_like(thr)), weight

    def clean_list_scores(self, user: int) -> torch.Tensor:
        """(1 + n_negatives,) clean scores of ``user``'s list (held-out item first), computed once."""
        if user not in self._list_scores:
            items = self.lists[self._row[user]].items.tolist()
            with torch.no_grad():
                scores = self.ranker.score_candidates(
                    self.history_titles[user], self.catalog.image_batch(items), [self.catalog.texts[i] for i in items]
                )
            self._list_scores[user] = scores.detach().float().cpu()
        return self._list_scores[user]

    def _clean_negative_scores(self, user: int) -> torch.Tensor:
        """(n_negatives,) clean scores of ``user``'s negatives (no gradient)."""
        return self.clean_list_scores(user)[1:]
