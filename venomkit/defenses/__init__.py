"""Defenses of multimodal recommenders and the tools that judge them.

* ``uat_mc``: UAT and UAT-MC adversarial training (arXiv 2605.06238), ``adversarial_train``.
* ``gradient_mismatch``: the paper's section 3 analysis (Eq. 6 contributions, Eq. 7 Jaccard).
* ``feature_attack``: the paper's feature-space FGSM / PGD promotion attack, for comparison.
* ``judgement``: w/o AT vs UAT vs UAT-MC under raw-content and feature-space attacks (Table 2).
* ``cli``: ``venomkit defend uat-mc|uat|judge|mismatch``.
"""
