"""AUV-Fusion (arXiv 2507.22880): user-guided latent injection into Stable Diffusion.

* ``user_model``    the attacker's dual-view GCN (LightGCN + a kNN item-item visual GCN)
* ``perturbation``  the MLP from a user group's preference to a latent perturbation
* ``attack``        the attack: groups, injection, the hybrid loss, amortised / per-image modes
"""

from venomkit.attacks.auv_fusion.attack import AUVFusion, AUVFusionConfig, PrepareContext

__all__ = ["AUVFusion", "AUVFusionConfig", "PrepareContext"]
