"""The multimodal-LLM ranker victim (VenomRec, arXiv 2602.06409): a vision-language model asked
whether a user would like a candidate item (image + text), scored by ``logit(yes) - logit(no)``.

* ``ranker.py``: the model wrapper (prompts, differentiable pixels, attention maps, scores);
* ``candidates.py``: histories, sampled negatives, 99+1 candidate lists, full-catalogue lists;
* ``finetune.py``: TALLRec-style fine-tuning (LoRA or full, balanced yes/no loss), with hooks
  for VenomRec's poisoned rows (``extra_rows``) and ``exclude_users``;
* ``evaluate.py``: HR/NDCG/Recall@K on held-out data, popularity and random on the same lists;
* ``checkpoint.py``: adapter (or full-model) folders + ``ranker.json``, and their loader.
"""

from venomkit.victims.mllm.candidates import (
    CandidateList, full_catalogue_candidates, item_titles, sample_history, sample_negative, sampled_candidates,
)  # fmt: skip
from venomkit.victims.mllm.checkpoint import (
    RankerCheckpoint, RankerCheckpointError, is_ranker_checkpoint, load_ranker, save_ranker,
)  # fmt: skip
from venomkit.victims.mllm.evaluate import evaluate_ranker, full_catalogue_metrics, rank_metrics, topk_metrics
from venomkit.victims.mllm.finetune import FinetuneConfig, FinetuneResult, TrainingRow, finetune
from venomkit.victims.mllm.ranker import DEFAULT_VLM, NO, YES, MLLMRanker, RankerOutput, build_ranking_prompt

__all__ = [
    "CandidateList", "DEFAULT_VLM", "FinetuneConfig", "FinetuneResult", "MLLMRanker", "NO", "RankerCheckpoint",
    "RankerCheckpointError", "RankerOutput", "TrainingRow", "YES", "build_ranking_prompt", "evaluate_ranker", "finetune",
    "full_catalogue_candidates", "full_catalogue_metrics", "is_ranker_checkpoint", "item_titles", "load_ranker",
    "rank_metrics", "sample_history", "sample_negative", "sampled_candidates", "save_ranker", "topk_metrics",
]  # fmt: skip
