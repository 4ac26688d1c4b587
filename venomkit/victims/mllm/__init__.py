"""The multimodal-LLM ranker victim (VenomRec, arXiv 2602.06409): a vision-language model asked
whether a user would like a candidate item (image + text), scored by ``logit(yes) - logit(no)``.

``ranker.py`` is the model wrapper (prompts, differentiable pixels, attention maps, scores).
"""

from venomkit.victims.mllm.ranker import DEFAULT_VLM, NO, YES, MLLMRanker, RankerOutput, build_ranking_prompt

__all__ = ["DEFAULT_VLM", "MLLMRanker", "NO", "RankerOutput", "YES", "build_ranking_prompt"]
