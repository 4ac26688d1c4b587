"""AUV-Fusion: user-guided latent injection into Stable Diffusion for adversarial product images.

"AUV-Fusion" (arXiv 2507.22880) makes a cold item's photo attractive to the users it should
reach while the diffusion prior keeps it natural. Per target item ``t``:

1. **User preference** (``user_model.DualViewGCN``, trained on the training interactions and
   a PUBLIC image encoder's features -- the attacker never reads a victim's weights): the
   target's *group* is the ``group_size`` users who score the target's visual neighbours
   highest ("those who like items that look like it"), and ``e_group`` their mean preference.
2. **Perturbation** (``perturbation.PerturbationMLP``): ``delta = MLP(e_group, z_0)``, shaped
   like the SD latent of the photo at the generator's working size.
3. **Injection** (``venomkit.generators.diffusion``): an img2img DDIM pass at ``strength``
   with ``z~_t = z_t + eta * delta`` at one step (``inject_at``, an index of the full
   ``num_steps`` schedule; default the first step the pass runs), decoded to the adversarial
   photo (brought back to the photo's own size by adding the change to the native pixels;
   with ``reference: uninjected``, venomkit's option, the change is the injected pass minus the
   same pass without injection, so the generator's own reconstruction error is not part of it).
4. **Hybrid loss** (Eq. 9 of the paper), minimised with respect to delta (per image) or the
   MLP's weights (across training items):

       L = l1 * (1 - cos(C(x_adv), C(x)))            L_CLIP: stay what the photo shows (public CLIP C)
         + l2 * (1 - SSIM(x_adv, x))                 L_SSIM: stay close pixel-wise (Gaussian SSIM)
         + l3 * (1 - cos(W C(x_adv), p_group))       L_align: look like what the group likes,
                                                     in the user model's visual space (W, p_group:
                                                     the group's visual preference e_u_vis)
         + l4 * L_promo                              optional (venomkit's, not the paper's):
                                                     INSA's objective on the attacker's own
                                                     recommender, over the group only:
                                                     -log mean_{u in group} exp(s_sur(u, t))
                                                     (``promotion_model: surrogate``, needs a
                                                     ``surrogate_victim``; ``user_model``: the
                                                     dual-view GCN's own scores, the space
                                                     L_align is measured in)

Modes: ``amortised`` (the paper: the MLP is trained across ``mlp_items`` training items that
are never an evaluated target; a new target costs one MLP forward and one pass),
``refined`` (the MLP's delta refined by ``refine_steps`` Adam steps per image) and
``per_image`` (the public port's method: delta from zero by ``image_steps`` Adam steps per
image, no MLP). The paper's ablations are config switches: ``align_weight: 0`` (no alignment
loss), ``eta: 0`` (no injection: plain img2img), ``visual_view: false`` (no visual GCN
view), ``mode: per_image`` (no MLP).

The attacker-side models (user model, MLP) are trained once per run by :meth:`AUVFusion.prepare`
(the run engine calls it in the main process and caches the result by content hash).
"""

from __future__ import annotations

import json
import logging
import math
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, ClassVar, Literal

import numpy as np
import torch
import torch.nn.functional as F

from venomkit.attacks.base import Attack, AttackConfig, PrepareContext, check_budget, target_generator
from venomkit.attacks.auv_fusion.perturbation import PerturbationMLP
from venomkit.attacks.auv_fusion.user_model import DualViewConfig, DualViewGCN, nearest_items
from venomkit.config import check_int, check_number

logger = logging.getLogger(__name__)


@dataclass
class AUVFusionConfig(AttackConfig):
    """AUV-Fusion's settings; defaults follow the paper and its public port where they say.

    Generator (SD 1.5 in the paper; ``zoo:toyshop-sd`` offline):
        generator: a Stable Diffusion spec (``zoo:toyshop-sd``, a diffusers folder, a cached hub id).
        num_steps: DDIM steps of the full schedule (port: 20).
        strength: img2img strength: the pass runs the last ``int(num_steps * strength)`` steps.
        inject_at: index of the FULL schedule at which delta is injected (port: 10 of 20);
            None: the first step the pass runs.
        eta: injection scale (port: 1; 0 = plain img2img, the "w/o injection" ablation).
        guidance_scale: classifier-free guidance (1: off).
        prompt: ``empty`` (the real encoded empty prompt) or ``text`` (the item's description).
        working_size: shorter side the pass runs at (None: the checkpoint's own size).
        reference: what the pass's change is measured from (``DiffusionImg2Img.run_native``):
            ``photo`` (the paper: the adversarial photo is the pass's output) or ``uninjected``
            (venomkit's, not the paper's: the photo plus the injected pass minus the same pass
            without injection, so a generator that cannot reconstruct the photo costs no
            stealth by itself; one more pass, without gradient).
    Attacker's knowledge:
        encoder: the public image encoder (CLIP) of L_CLIP, L_align and the kNN graph.
        embed_dim, gcn_layers, knn_k, knn_layers, visual_view: the dual-view GCN.
        user_epochs, user_lr: its BPR training.
        group_size: users per target group.
    Perturbation:
        mode: ``amortised``, ``refined`` or ``per_image`` (module docstring).
        mlp_items, mlp_max_interactions, mlp_epochs, mlp_batch, mlp_lr, mlp_grid, mlp_hidden,
            delta_scale: the amortised MLP and its training set (items with at most
            ``mlp_max_interactions`` training interactions, never an evaluated target).
        refine_steps, image_steps, image_lr: per-image Adam on delta (refined / per_image).
    Loss:
        clip_weight (l1), ssim_weight (l2), align_weight (l3), promotion_weight (l4;
            venomkit's addition, not in the paper),
        promotion_model: whose scores L_promo raises: ``surrogate`` (the attacker's own
            recommender, a ``surrogate_victim``: a VBPR of another seed in README's runs) or
            ``user_model`` (the dual-view GCN itself, re-scoring the target with the photo's
            new features through its visual view; needs ``visual_view``): there the
            promotion and the alignment read the same visual projection W.
        align_to: L_align's direction: ``visual_preference`` (the group's mean e_u_vis) or
            ``preference`` (its mean e_u = e_u_id + e_u_vis, the issue's e_group; the user
            model scores a target by e_u . (e_i_id + e_i_vis), so this is the direction its
            score of the target rises along).
        eps: optional L-inf cap on the final photo's change (None: the loss alone bounds it).
    """

    generator: str = "zoo:toyshop-sd"
    num_steps: int = 20
    strength: float = 0.3
    inject_at: int | None = None
    eta: float = 1.0
    guidance_scale: float = 1.0
    prompt: Literal["empty", "text"] = "empty"
    working_size: int | None = None
    reference: Literal["photo", "uninjected"] = "photo"
    encoder: str = "zoo:toyshop-clip"
    embed_dim: int = 64
    gcn_layers: int = 2
    knn_k: int = 10
    knn_layers: int = 1
    visual_view: bool = True
    user_epochs: int = 60
    user_lr: float = 0.01
    group_size: int = 50
    mode: Literal["amortised", "refined", "per_image"] = "amortised"
    mlp_items: int = 256
    mlp_max_interactions: int = 20
    mlp_epochs: int = 4
    mlp_batch: int = 16
    mlp_lr: float = 3e-3
    mlp_grid: int = 8
    mlp_hidden: int = 256
    delta_scale: float = 2.0
    refine_steps: int = 10
    image_steps: int = 30
    image_lr: float = 0.05
    clip_weight: float = 1.0
    ssim_weight: float = 1.0
    align_weight: float = 1.0
    promotion_weight: float = 0.0
    promotion_model: Literal["surrogate", "user_model"] = "surrogate"
    align_to: Literal["visual_preference", "preference"] = "visual_preference"
    eps: float | None = None

    def __post_init__(self) -> None:
        super().__post_init__()
        for name in ("num_steps", "embed_dim", "knn_k", "user_epochs", "group_size", "mlp_items", "mlp_epochs", "mlp_batch",
                     "mlp_grid", "mlp_hidden", "image_steps"):
            check_int(name, getattr(self, name), 1)
        for name in ("gcn_layers", "knn_layers", "refine_steps"):
            check_int(name, getattr(self, name), 0)
        for name in ("user_lr", "mlp_lr", "image_lr", "delta_scale"):
            check_number(name, getattr(self, name), 0, low_open=True)
        for name in ("eta", "clip_weight", "ssim_weight", "align_weight", "promotion_weight", "guidance_scale"):
            check_number(name, getattr(self, name), 0)
        check_number("strength", self.strength, 0, 1, low_open=True)
        if self.inject_at is not None:
            from venomkit.generators.diffusion import run_step_index

            try:
                run_step_index(self.num_steps, self.strength, self.inject_at)
            except ValueError as exc:
                raise ValueError(f"inject_at: {exc}") from None
        if self.mode not in ("amortised", "refined", "per_image"):
            raise ValueError(f"mode must be amortised, refined or per_image, got {self.mode!r}")
        if self.prompt not in ("empty", "text"):
            raise ValueError(f"prompt must be empty or text, got {self.prompt!r}")
        if self.working_size is not None:
            check_int("working_size", self.working_size, 1)
        if self.reference not in ("photo", "uninjected"):
            raise ValueError(f"reference must be photo or uninjected, got {self.reference!r}")
        if self.align_to not in ("visual_preference", "preference"):
            raise ValueError(f"align_to must be visual_preference or preference, got {self.align_to!r}")
        if self.align_to == "preference" and not self.visual_view:
            raise ValueError("align_to: preference aligns in the user model's visual space; it needs visual_view: true")
        if self.promotion_model not in ("surrogate", "user_model"):
            raise ValueError(f"promotion_model must be surrogate or user_model, got {self.promotion_model!r}")
        if self.promotion_model == "user_model" and not self.visual_view:
            raise ValueError("promotion_model: user_model scores the photo through the user model's visual view; "
                             "it needs visual_view: true")
        if self.eps is not None:
            check_budget(self.eps)

    @property
    def norm(self) -> str:
        """The base class caps the final photo in L-inf when ``eps`` is set."""
        return "linf"


class AUVFusion(Attack):
    """AUV-Fusion (module docstring). Victim-independent: the same photos for every victim."""

    name: ClassVar[str] = "auv_fusion"
    config_class: ClassVar[type[AttackConfig]] = AUVFusionConfig
    perturbs: ClassVar[tuple[str, ...]] = ("visual",)
    victim_independent: ClassVar[bool] = True

    def __init__(self, config: Any = None, *, surrogate: Any = None, device: str = "cpu", **overrides: Any) -> None:
        super().__init__(config, surrogate=surrogate, **overrides)
        cfg: AUVFusionConfig = self.config  # type: ignore[assignment]
        from venomkit.victims.base import Victim

        if cfg.promotion_weight > 0 and cfg.promotion_model == "surrogate" and not isinstance(surrogate, Victim):
            raise ValueError("promotion_weight > 0 needs the attacker's own recommender: give the attack a surrogate_victim "
                             "(AUV-Fusion never reads the victim's weights), or set promotion_model: user_model")
        self.device = device
        self._generator: Any = None
        self._encoder: Any = None
        self.user_model: DualViewGCN | None = None
        self.mlp: PerturbationMLP | None = None
        self.prepared: dict[str, Any] = {}

    @classmethod
    def from_config(cls, config: AUVFusionConfig, *, surrogate: Any = None, device: str = "cpu") -> "AUVFusion":
        return cls(config, surrogate=surrogate, device=device)

    # -- models the attack loads by spec ----------------------------------------------------
    @property
    def generator(self) -> Any:
        if self._generator is None:
            from venomkit.generators.diffusion import DiffusionImg2Img

            self._generator = DiffusionImg2Img.from_pretrained(self.config.generator, device=self.device)
        return self._generator

    @property
    def encoder(self) -> Any:
        """The attacker's public image encoder (frozen)."""
        if self._encoder is None:
            from venomkit.encoders.loading import load_image_encoder

            self._encoder = load_image_encoder(self.config.encoder, self.device)
        return self._encoder

    # -- preparation: the user model and the MLP --------------------------------------------
    def prepare(self, ctx: PrepareContext) -> None:
        """Train (or load from ``ctx.folder``) the dual-view GCN and, unless per-image, the MLP."""
        folder = Path(ctx.folder)
        if (folder / "prepared.json").is_file():
            self._load(folder, ctx.dataset)
            return
        cfg: AUVFusionConfig = self.config  # type: ignore[assignment]
        shared = folder.parent / "user_models" / self.user_model_key()  # ablations that keep the user model share it
        t0 = time.perf_counter()
        if (shared / "user_model.safetensors").is_file():
            self.user_model = self._load_user_model(shared / "user_model.safetensors", ctx.dataset)
            logger.info("auv_fusion: the user model was trained before in this run (same user-model settings), loaded")
        else:
            self.user_model = self._train_user_model(ctx.dataset, self._catalog_features(ctx.dataset))
            self._save_user_model(shared / "user_model.safetensors")
        info: dict[str, Any] = {"user_model": self.user_model_figures(ctx.dataset), "seconds": {"user_model": time.perf_counter() - t0}}
        if cfg.mode != "per_image":
            items = self.mlp_training_items(ctx.dataset, ctx.targets)
            t0 = time.perf_counter()
            self.mlp, info["mlp"] = self._train_mlp(ctx.dataset, items)
            info["seconds"]["mlp"] = time.perf_counter() - t0
        self._save(folder, info)
        self.prepared = info

    PER_TARGET_FIELDS: ClassVar[tuple[str, ...]] = ("refine_steps", "image_steps", "image_lr")
    """Settings of the per-target Adam steps only: :meth:`prepare` never reads them."""

    @classmethod
    def prepare_settings(cls, config: AttackConfig) -> dict[str, Any]:
        """The config without :attr:`PER_TARGET_FIELDS`, and ``mode`` reduced to whether an MLP
        is trained: ``amortised`` and ``refined`` attacks that differ only in refinement share
        one MLP (the refined rows then differ from the MLP alone by the refinement only)."""
        settings = {k: v for k, v in super().prepare_settings(config).items() if k not in cls.PER_TARGET_FIELDS}
        settings["mode"] = "per_image" if config.mode == "per_image" else "mlp"
        return settings

    USER_MODEL_FIELDS: ClassVar[tuple[str, ...]] = ("encoder", "embed_dim", "gcn_layers", "knn_k", "knn_layers", "visual_view",
                                                    "user_epochs", "user_lr", "seed")

    def user_model_key(self) -> str:
        """A hash of the settings the user model depends on (AUV-Fusion's ablations of the
        loss, the injection or the MLP train the same user model: it is trained once per run)."""
        import hashlib

        fields = {name: getattr(self.config, name) for name in self.USER_MODEL_FIELDS}
        return hashlib.sha256(json.dumps(fields, sort_keys=True, default=str).encode()).hexdigest()[:16]

    def _catalog_features(self, dataset: Any) -> torch.Tensor:
        from venomkit.encoders.features import extract_image_features

        return extract_image_features(self.encoder, dataset.catalog, progress=None)

    def _user_model_config(self, dataset: Any, visual_dim: int) -> DualViewConfig:
        cfg: AUVFusionConfig = self.config  # type: ignore[assignment]
        return DualViewConfig(n_users=dataset.n_users, n_items=dataset.n_items, embed_dim=cfg.embed_dim, visual_dim=visual_dim,
                              n_layers=cfg.gcn_layers, knn_k=cfg.knn_k, knn_layers=cfg.knn_layers, visual_view=cfg.visual_view, reg_weight=1e-4)

    def _train_user_model(self, dataset: Any, features: torch.Tensor) -> DualViewGCN:
        from venomkit.victims.training import train_bpr

        cfg: AUVFusionConfig = self.config  # type: ignore[assignment]
        torch.manual_seed(cfg.seed)
        model = DualViewGCN(self._user_model_config(dataset, features.shape[1]), train=dataset.split.train)
        if cfg.visual_view:
            model.set_clean_features({"visual": features})
            model.set_knn_graph()
        logger.info("auv_fusion: training the dual-view GCN user model (%d users, %d items)", dataset.n_users, dataset.n_items)
        train_bpr(model, dataset.split, epochs=cfg.user_epochs, lr=cfg.user_lr, batch_size=2048, patience=10, seed=cfg.seed)
        model.features_visual_all = features  # the attacker's features of every item (neighbours of a target)
        return model.eval()

    def user_model_figures(self, dataset: Any) -> dict[str, float]:
        """Validation Recall/NDCG@20 of the user model (how well the attacker models users)."""
        from venomkit.victims.training import validation_metrics

        return {k: float(v) for k, v in validation_metrics(self.user_model, dataset.split, ks=(20,)).items()}

    def mlp_training_items(self, dataset: Any, targets: list[int]) -> list[int]:
        """The MLP's training items: items with at most ``mlp_max_interactions`` training
        interactions and a photo, never an evaluated target, ``mlp_items`` of them drawn with the seed."""
        cfg: AUVFusionConfig = self.config  # type: ignore[assignment]
        pop = dataset.split.train.popularity()
        excluded = set(int(t) for t in targets)
        pool = [i for i in range(dataset.n_items) if pop[i] <= cfg.mlp_max_interactions and i not in excluded and dataset.catalog.has_image(i)]
        if not pool:
            raise ValueError(f"auv_fusion: no item other than the targets has at most {cfg.mlp_max_interactions} training interactions "
                             "and a photo to train the perturbation MLP on; raise mlp_max_interactions")
        rng = np.random.default_rng(cfg.seed + 101)
        return sorted(rng.choice(pool, size=min(cfg.mlp_items, len(pool)), replace=False).tolist())

    # -- per target: group, preference -------------------------------------------------------
    def groups(self, images: torch.Tensor, item_index: torch.Tensor, train: Any) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """``(e_group (B, d), p_group (B, d), group (B, N))``: the mean full preference, the
        alignment direction and the user indices of each target's group (module docstring).

        The alignment direction (``align_to``) is the group's mean visual preference e_u_vis
        (``visual_preference``) or its whole preference e_group = mean(e_u_id + e_u_vis)
        (``preference``: the direction the user model's score of the target rises along);
        without the visual view, the mean encoder feature of what the group bought."""
        cfg: AUVFusionConfig = self.config  # type: ignore[assignment]
        model = self.user_model
        with torch.no_grad():
            visual = self.encoder(images)
            neighbours = nearest_items(visual.cpu(), model.features_visual_all, cfg.knn_k).to(model.device)
            exclude = None
            if train is not None:
                matrix = getattr(train, "matrix", train)
                exclude = (matrix[:, item_index.cpu().numpy()].toarray() > 0).T
            group = model.target_group(neighbours, cfg.group_size, exclude)
            users, _ = model()
            e_group = users[group].mean(1)
            if cfg.align_to == "preference":  # the config refuses it without the visual view
                p_group = e_group
            elif cfg.visual_view:
                u_vis, _ = model.visual_view()
                p_group = u_vis[group].mean(1)
            else:
                p_group = self._feature_profile(group, train)
        return e_group, p_group, group

    def _feature_profile(self, group: torch.Tensor, train: Any) -> torch.Tensor:
        """Without the visual view: the group's visual profile in the encoder's space (the mean
        feature of the items its users bought)."""
        matrix = getattr(train, "matrix", train).tocsr()
        feats = self.user_model.features_visual_all
        out = []
        for users in group.cpu().numpy():
            items = np.unique(matrix[users].indices)
            out.append(feats[items].mean(0) if len(items) else feats.mean(0))
        return torch.stack(out)

    # -- the pass and the loss ---------------------------------------------------------------
    def inject_step(self) -> int:
        """Index among the img2img timesteps of the injection (``inject_at`` of the full schedule)."""
        from venomkit.generators.diffusion import run_step_index

        cfg: AUVFusionConfig = self.config  # type: ignore[assignment]
        return 0 if cfg.inject_at is None else run_step_index(cfg.num_steps, cfg.strength, cfg.inject_at)

    def working_images(self, images: torch.Tensor) -> torch.Tensor:
        """(B, 3, H, W) photos resized to the pass's working size (the generator's, shorter side
        ``working_size``); the photos themselves when they are at it already."""
        size = self.generator.working_size_for(images.shape[2], images.shape[3], self.config.working_size)
        if size == tuple(images.shape[2:]):
            return images
        from venomkit.encoders.preprocess import resize_images

        return resize_images(images, size, "bicubic")

    def clean_latents(self, images: torch.Tensor) -> torch.Tensor:
        """The SD latents z_0 (B, C, h, w) of the photos at the working size (no gradient)."""
        with torch.no_grad():
            return self.generator.encode_images(self.working_images(images))

    def generate(self, images: torch.Tensor, delta: torch.Tensor, texts: list[str] | None, seeds: list[int],
                 plain: list[torch.Tensor] | None = None) -> torch.Tensor:
        """The adversarial photos (B, 3, H, W) of one same-size group at their own size,
        differentiable in delta (B, C, h, w at the working size): the pass runs at the working
        size and its change is added to the native photo (``DiffusionImg2Img.run_native``;
        ``reference: uninjected``: only the change the injection made, against the pass
        without injection, ``plain`` when :meth:`plain_passes` made it already)."""
        cfg: AUVFusionConfig = self.config  # type: ignore[assignment]
        return self.generator.run_native(
            images, self._prompts(texts), delta=delta, eta=cfg.eta, inject_step=self.inject_step(), reference=cfg.reference,
            plain=plain, **self._pass_settings(seeds),
        ).images

    def plain_passes(self, images: torch.Tensor, texts: list[str] | None, seeds: list[int]) -> list[torch.Tensor] | None:
        """With ``reference: uninjected``, the pass without injection of these photos (one
        tensor per working size, no gradient), which depends on the photos, prompts and seeds
        only: computed once per image and reused by every Adam step and MLP epoch
        (:meth:`generate`'s ``plain``). None with ``reference: photo``."""
        if self.config.reference != "uninjected":
            return None
        with torch.no_grad():
            out = self.generator.run_native(images, self._prompts(texts), **self._pass_settings(seeds))
        return [p.output.images for p in out.passes]

    def _prompts(self, texts: list[str] | None) -> list[str] | None:
        return texts if self.config.prompt == "text" else None

    def _pass_settings(self, seeds: list[int]) -> dict[str, Any]:
        cfg: AUVFusionConfig = self.config  # type: ignore[assignment]
        return {"working_size": cfg.working_size, "strength": cfg.strength, "num_steps": cfg.num_steps,
                "guidance_scale": cfg.guidance_scale, "seed": seeds}

    def loss(self, adv: torch.Tensor, clean: torch.Tensor, p_group: torch.Tensor, item_index: torch.Tensor | None = None,
             group: torch.Tensor | None = None) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """The hybrid loss per image (B,) and its terms (module docstring)."""
        from venomkit.eval.stealth import ssim

        cfg: AUVFusionConfig = self.config  # type: ignore[assignment]
        f_adv = self.encoder(adv)
        with torch.no_grad():
            f_clean = self.encoder(clean)
        terms = {
            "l_clip": 1 - F.cosine_similarity(f_adv, f_clean, dim=1),
            "l_ssim": 1 - ssim(adv, clean),
        }
        terms["l_align"] = self._alignment(f_adv, p_group)
        total = cfg.clip_weight * terms["l_clip"] + cfg.ssim_weight * terms["l_ssim"] + cfg.align_weight * terms["l_align"]
        if cfg.promotion_weight > 0 and item_index is not None and group is not None:
            terms["l_promo"] = self._promotion(adv, item_index, group)
            total = total + cfg.promotion_weight * terms["l_promo"]
        return total, terms

    def _alignment(self, features: torch.Tensor, p_group: torch.Tensor) -> torch.Tensor:
        """L_align (B,): 1 - cosine of the photos' encoder features (B, D), in the user model's
        visual space (or the encoder's, without the visual view), and the group preference (B, d)."""
        space = self.user_model.project(features) if self.config.visual_view else features
        return 1 - F.cosine_similarity(space, p_group.to(space), dim=1)

    def _promotion(self, adv: torch.Tensor, item_index: torch.Tensor, group: torch.Tensor) -> torch.Tensor:
        """INSA's objective restricted to the target's group, on the attacker's own recommender
        (:meth:`promotion_scorer`): ``-log mean_{u in group} exp(s(u, t))`` with the adversarial
        photo re-encoded by that model's encoder (B,). Never saturates (unlike a top-K hinge far
        from the top)."""
        from venomkit.attacks.base import Forward

        model, encoder = self.promotion_scorer()
        feats = {m: f[item_index] for m, f in model.clean_features().items()}
        feats["visual"] = encoder(adv)
        scores = Forward(model, item_index, feats, images=adv).target_scores(None)  # (U, B)
        in_group = scores.T.gather(1, group.to(scores.device))  # (B, N)
        return -(torch.logsumexp(in_group, dim=1) - math.log(in_group.shape[1]))

    def promotion_scorer(self) -> tuple[Any, Any] | None:
        """(recommender, its image encoder) whose group scores L_promo raises and the
        diagnostics report: the ``surrogate_victim`` with its own encoder, or (``promotion_model:
        user_model``) the dual-view GCN with the attacker's public encoder it was trained on.
        None when there is none (no surrogate victim given)."""
        from venomkit.victims.base import Victim

        if self.config.promotion_model == "user_model":
            return self.user_model, self.encoder
        if isinstance(self.surrogate, Victim):
            return self.surrogate, self.surrogate.image_encoder
        return None

    # -- the attack --------------------------------------------------------------------------
    def perturb(self, model, batch):
        images, texts, item_index, knowledge = batch.images, batch.texts, batch.item_index, batch.knowledge
        if self.user_model is None:
            raise RuntimeError("auv_fusion: call prepare(...) first (the run engine does), to train the user model and the MLP")
        cfg: AUVFusionConfig = self.config  # type: ignore[assignment]
        images = images.to(self.device)
        e_group, p_group, group = self.groups(images, item_index, knowledge.train)
        seeds = [int(target_generator(cfg.seed, int(t)).initial_seed()) for t in item_index.tolist()]
        delta0 = None
        if cfg.mode != "per_image":
            with torch.no_grad():
                delta0 = self.mlp(e_group, self.clean_latents(images))
        steps = {"amortised": 0, "refined": cfg.refine_steps, "per_image": cfg.image_steps}[cfg.mode]
        plain = self.plain_passes(images, texts, seeds)
        delta = self.optimise_delta(images, texts, p_group, seeds, delta0, steps, item_index, group, plain)
        with torch.no_grad():
            adv = self.generate(images, delta, texts, seeds, plain)
            _, terms = self.loss(adv, images, p_group, item_index, group)
            diag = {k: v.detach() for k, v in terms.items()}
            diag["delta_norm"] = delta.detach().flatten(1).norm(dim=1)
            # where the alignment term started, and (with an own recommender) what the group's
            # surrogate scores did, also when no loss term asks for them: the ablations' evidence
            diag["l_align_clean"] = self._alignment(self.encoder(images), p_group)
            adv = adv.clamp(0, 1)
            if self.promotion_scorer() is not None:
                diag["group_score_clean"] = -self._promotion(images, item_index, group)
                diag["group_score_adv"] = -self._promotion(adv, item_index, group)
        return adv, None, diag

    def optimise_delta(self, images, texts, p_group, seeds, delta0, steps, item_index=None, group=None, plain=None) -> torch.Tensor:
        """Adam on delta for ``steps`` steps (per_image / refined); delta0 (or zero) when 0 steps.
        ``plain``: :meth:`plain_passes` of these photos (computed here when None and needed)."""
        cfg: AUVFusionConfig = self.config  # type: ignore[assignment]
        shape = self.generator.latent_shape(images.shape[0], *self.generator.working_size_for(images.shape[2], images.shape[3], cfg.working_size))
        delta = (delta0.clone() if delta0 is not None else torch.zeros(shape, device=images.device)).detach()
        if steps == 0:
            return delta
        delta.requires_grad_(True)
        opt = torch.optim.Adam([delta], lr=cfg.image_lr)
        if plain is None:
            plain = self.plain_passes(images, texts, seeds)
        from venomkit.progress import progress

        for _ in progress(range(steps), desc="auv_fusion per-image steps", unit="step", leave=False):
            adv = self.generate(images, delta, texts, seeds, plain)
            loss, _ = self.loss(adv, images, p_group, item_index, group)
            opt.zero_grad()
            loss.sum().backward()
            opt.step()
        return delta.detach()

    # -- training the MLP across items -------------------------------------------------------
    def _train_mlp(self, dataset: Any, items: list[int]) -> tuple[PerturbationMLP, dict[str, Any]]:
        from venomkit.progress import progress

        cfg: AUVFusionConfig = self.config  # type: ignore[assignment]
        torch.manual_seed(cfg.seed + 7)
        gen = self.generator
        mlp = PerturbationMLP(cfg.embed_dim, gen.latent_channels, cfg.mlp_grid, cfg.mlp_hidden, scale=cfg.delta_scale).to(self.device)
        opt = torch.optim.Adam(mlp.parameters(), lr=cfg.mlp_lr)
        rng = np.random.default_rng(cfg.seed + 13)
        catalog = dataset.catalog
        # Same-size groups of training photos (toyshop: one size); preferences computed once.
        by_size: dict[tuple[int, int], list[int]] = {}
        for i in items:
            by_size.setdefault(tuple(catalog.image_size(i)), []).append(i)
        prefs: dict[int, tuple[torch.Tensor, torch.Tensor, torch.Tensor]] = {}
        for size_items in by_size.values():
            for s in range(0, len(size_items), 64):
                chunk = size_items[s : s + 64]
                e, p, g = self.groups(torch.stack(catalog.image_list(chunk)).to(self.device), torch.tensor(chunk), dataset.split.train)
                prefs.update({i: (e[k], p[k], g[k]) for k, i in enumerate(chunk)})
        plain: dict[int, list[torch.Tensor] | None] = {}  # batch -> its pass without injection (reference: uninjected)
        history = []
        logger.info("auv_fusion: training the perturbation MLP on %d items x %d epochs", len(items), cfg.mlp_epochs)
        bar = progress(total=cfg.mlp_epochs * len(items), desc="auv_fusion MLP", unit="item")
        for epoch in range(cfg.mlp_epochs):
            total, count = 0.0, 0
            batches = [g[s : s + cfg.mlp_batch] for g in by_size.values() for s in range(0, len(g), cfg.mlp_batch)]
            for b in rng.permutation(len(batches)):
                batch = batches[b]
                images = torch.stack(catalog.image_list(batch)).to(self.device)
                e = torch.stack([prefs[i][0] for i in batch])
                p = torch.stack([prefs[i][1] for i in batch])
                g = torch.stack([prefs[i][2] for i in batch])
                seeds = [int(target_generator(cfg.seed, i).initial_seed()) for i in batch]
                texts = [catalog.texts[i] for i in batch]
                if b not in plain:
                    plain[b] = self.plain_passes(images, texts, seeds)
                delta = mlp(e, self.clean_latents(images))
                adv = self.generate(images, delta, texts, seeds, plain[b])
                loss, _ = self.loss(adv, images, p, torch.tensor(batch, device=self.device), g)
                opt.zero_grad()
                loss.mean().backward()
                opt.step()
                total += float(loss.detach().sum())
                count += len(batch)
                bar.update(len(batch))
            history.append({"epoch": epoch + 1, "loss": total / max(count, 1)})
            bar.set_postfix(loss=f"{history[-1]['loss']:.4f}")
        bar.close()
        return mlp.eval(), {"items": items, "history": history}

    # -- state on disk -----------------------------------------------------------------------
    def _user_model_tensors(self) -> dict[str, torch.Tensor]:
        tensors = {f"user.{k}": v.detach().cpu().contiguous() for k, v in self.user_model.state_dict().items()}
        tensors["user_features"] = self.user_model.features_visual_all.detach().cpu().contiguous()
        return tensors

    def _save_user_model(self, path: Path) -> None:
        from safetensors.torch import save

        from venomkit.atomic import write_bytes

        write_bytes(path, save(self._user_model_tensors()))

    def _load_user_model(self, path: Path, dataset: Any) -> DualViewGCN:
        from safetensors.torch import load_file

        tensors = load_file(str(path))
        features = tensors["user_features"]
        model = DualViewGCN(self._user_model_config(dataset, features.shape[1]), train=dataset.split.train)
        model.load_state_dict({k[5:]: v for k, v in tensors.items() if k.startswith("user.")})
        model.features_visual_all = features
        return model.to(self.device).eval()

    def _save(self, folder: Path, info: dict[str, Any]) -> None:
        from safetensors.torch import save

        from venomkit.atomic import write_bytes, write_json

        tensors = self._user_model_tensors()
        if self.mlp is not None:
            tensors.update({f"mlp.{k}": v.detach().cpu().contiguous() for k, v in self.mlp.state_dict().items()})
        write_bytes(folder / "attacker.safetensors", save(tensors))
        write_json(folder / "prepared.json", {"config": asdict(self.config), **info})

    def _load(self, folder: Path, dataset: Any) -> None:
        from safetensors.torch import load_file

        cfg: AUVFusionConfig = self.config  # type: ignore[assignment]
        self.user_model = self._load_user_model(folder / "attacker.safetensors", dataset)
        tensors = load_file(str(folder / "attacker.safetensors"))
        if cfg.mode != "per_image":
            gen = self.generator
            mlp = PerturbationMLP(cfg.embed_dim, gen.latent_channels, cfg.mlp_grid, cfg.mlp_hidden, scale=cfg.delta_scale)
            mlp.load_state_dict({k[4:]: v for k, v in tensors.items() if k.startswith("mlp.")})
            self.mlp = mlp.to(self.device).eval()
        self.prepared = json.loads((folder / "prepared.json").read_text())
