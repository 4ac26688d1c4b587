"""Raw-input promotion attacks on a shared contract (see ``base.py``) and their registry.

``ATTACKS`` maps a recipe/CLI name to its class; :func:`get_attack` resolves a name with a
clear error listing the valid ones. Heavy modules load on first use.
"""

from __future__ import annotations

import importlib

_REGISTRY = {
    "fgsm": ("venomkit.attacks.fgsm", "FGSM"),
    "pgd": ("venomkit.attacks.pgd", "PGD"),
    "insa": ("venomkit.attacks.insa", "INSA"),
    "expa": ("venomkit.attacks.expa", "EXPA"),
    "taamr": ("venomkit.attacks.taamr", "TAaMR"),
    "token_hotflip": ("venomkit.attacks.token_hotflip", "TokenHotFlip"),
    "llm_rewrite": ("venomkit.attacks.llm_rewrite", "LLMRewrite"),
    "joint": ("venomkit.attacks.joint", "JointAttack"),
    "auv_fusion": ("venomkit.attacks.auv_fusion", "AUVFusion"),
    # The UAT-MC paper's feature-space attacks (perturb feature rows, not content), for judgements.
    "feature_fgsm": ("venomkit.attacks.feature", "FeatureFGSM"),
    "feature_pgd": ("venomkit.attacks.feature", "FeaturePGD"),
}

ATTACK_NAMES = tuple(_REGISTRY)
"""Attacks a run recipe runs against feature victims (VBPR, AMR, MMGCN, ...): the demo runs them all."""

# VenomRec (arXiv 2602.06409) and its baselines edit content for the multimodal-LLM ranker and
# are measured after a poisoned fine-tune (venomkit.runs.poisoning), not by the HR@K engine.
_POISONING = {
    "venomrec": ("venomkit.attacks.venomrec.attack", "VenomRec"),
    "direct_boosting": ("venomkit.attacks.venomrec.baselines", "DirectBoosting"),
    "random_injection": ("venomkit.attacks.venomrec.baselines", "RandomInjection"),
    "popular_item_mimicking": ("venomkit.attacks.venomrec.baselines", "PopularItemMimicking"),
    "shadowcast": ("venomkit.attacks.venomrec.baselines", "ShadowCast"),
}
POISONING_ATTACK_NAMES = tuple(_POISONING)
"""Content attacks of a poisoning run (``attacks/venomrec.yaml``): victim = an MLLM ranker."""
_REGISTRY.update(_POISONING)


def get_attack(name: str) -> type:
    """The attack class registered as ``name`` (ValueError listing the valid names)."""
    key = name.strip().lower().replace("-", "_")
    if key not in _REGISTRY:
        raise ValueError(f"unknown attack {name!r}; valid attacks: {', '.join(ATTACK_NAMES + POISONING_ATTACK_NAMES)}")
    module, cls = _REGISTRY[key]
    return getattr(importlib.import_module(module), cls)


__all__ = ["ATTACK_NAMES", "POISONING_ATTACK_NAMES", "get_attack"]
