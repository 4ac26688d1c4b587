"""Victim recommenders scoring items from features of their raw content.

VBPR, AMR, MMGCN and LightGCN (one per file), BPR training with early stopping and
adversarial-training hooks (``training``), the feature-space adversary shared by AMR and
UAT-MC (``feature_adversary``), checkpoints without pickle (``checkpoint``) and
``train_victim`` / ``venomkit train`` (``pipeline``).
"""

from venomkit.victims.amr import AMR, AMRConfig
from venomkit.victims.base import MODALITIES, Victim, VictimConfig, bpr_loss
from venomkit.victims.checkpoint import VICTIMS, load_victim, register_victim, save_victim
from venomkit.victims.feature_adversary import (
    FeatureAdversaryConfig,
    adversarial_bpr_loss,
    alignment_cosine,
    fgm_feature_perturbation,
)
from venomkit.victims.lightgcn import LightGCN, LightGCNConfig
from venomkit.victims.mmgcn import MMGCN, MMGCNConfig
from venomkit.victims.pipeline import train_victim
from venomkit.victims.training import TrainResult, evaluate_victim, train_bpr
from venomkit.victims.vbpr import VBPR, VBPRConfig

__all__ = [
    "AMR", "AMRConfig", "FeatureAdversaryConfig", "LightGCN", "LightGCNConfig", "MMGCN", "MMGCNConfig",
    "MODALITIES", "TrainResult", "VBPR", "VBPRConfig", "VICTIMS", "Victim", "VictimConfig",
    "adversarial_bpr_loss", "alignment_cosine", "bpr_loss", "evaluate_victim", "fgm_feature_perturbation",
    "load_victim", "register_victim", "save_victim", "train_bpr", "train_victim",
]
