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


def get_attack(name: str) -> type:
    """The attack class registered as ``name`` (ValueError listing the valid names)."""
    key = name.strip().lower().replace("-", "_")
    if key not in _REGISTRY:
        raise ValueError(f"unknown attack {name!r}; valid attacks: {', '.join(ATTACK_NAMES)}")
    module, cls = _REGISTRY[key]
    return getattr(importlib.import_module(module), cls)


__all__ = ["ATTACK_NAMES", "get_attack"]
