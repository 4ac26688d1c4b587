"""VenomRec (arXiv 2602.06409) on raw content: poison a multimodal-LLM ranker's fine-tuning.

* ``exposure.py`` -- Exposure Alignment: fused item representations, exposure, the high-exposure region;
* ``masks.py`` -- cross-modal attention masks over text tokens and image patches;
* ``attack.py`` -- Cross-modal Interactive Perturbation (:class:`VenomRec`), coupled pixel and token edits;
* ``baselines.py`` -- DirectBoosting, RandomInjection, PopularItemMimicking, ShadowCast;
* ``poisoning.py`` -- compromised users, poisoned rows, ER@K.

A whole comparison (edits, poisoned fine-tunes, ER@K, utility) is a poisoning run:
:mod:`venomkit.runs.poisoning`, ``venomkit attack venomrec`` or ``attacks/venomrec.yaml``.
"""
