"""The attack contract: validated budgets, eval mode, a final projection, batched targets.

Every attack perturbs the RAW content of B target items at once -- images (B, 3, H, W) in
[0, 1] and/or texts -- and the victim re-encodes that content through its own encoders (the
threat model of a shop whose sellers control photos and descriptions, never feature vectors).

* The constructor takes a config dataclass (validated in ``__post_init__``: ValueError naming
  the field) or keyword overrides, and optionally a **surrogate** (a ``Victim`` or an
  ``ImageEncoder`` swapped into the victim) for grey-box attacks: the perturbation is
  optimised on the surrogate and then scored on the victim by re-encoding.
* ``attack(victim, batch)``: ``victim`` is anything implementing the scoring contract
  (:mod:`venomkit.victims.scoring`: a feature :class:`~venomkit.victims.base.Victim` or the
  MLLM ranker's ``MLLMVictim``), ``batch`` a :class:`~venomkit.attacks.targets.TargetBatch`
  (the targets' raw content, users and knowledge); ``perturb`` and ``build_objective`` receive
  one same-size group of it.
* ``__call__`` puts the victim and the surrogate in eval mode with frozen parameters and
  restores both afterwards, seeds every random choice per target (so a target's result does
  not depend on which batch it ran in), and -- Foolbox style -- the BASE class enforces the
  budget on whatever the subclass returns: projection to the L-inf or L2 ball around the clean
  image, then to [0, 1]; texts over their budget are reverted to the clean text.
* Targets must not interact: each target's objective depends on its own content only. For
  victims whose item row i depends only on item i's features (VBPR, AMR) replacing B rows at
  once is exact; graph victims (MMGCN, LightGCN-style propagation) couple items, so a batched
  run is an approximation there -- set ``batch_targets=False`` for exact per-target runs.

:class:`IterativeImageAttack` holds the one PGD-style loop (step, project) shared by FGSM,
PGD, INSA, EXPA and TAaMR, which differ only in objective, budget and schedule.
"""

from __future__ import annotations

import copy
import math
from abc import ABC, abstractmethod
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, ClassVar, Literal, Mapping, Sequence

import torch
from torch import nn

from venomkit.config import build_config, check_int, check_number, replace_config
from venomkit.encoders.base import ImageEncoder, group_by_size
from venomkit.eval.text_edits import token_edit_ratio  # the token budget's unit; importable from here too
from venomkit.models.freeze import frozen_eval  # the attack contract's freezing; importable from here too
from venomkit.attacks.targets import Knowledge, TargetBatch
from venomkit.progress import progress as progress_bar
from venomkit.victims.base import Victim, scores_of_targets
from venomkit.victims.scoring import TargetScorer, TokenTexts


# ----------------------------------------------------------------------------------------
# Budgets
# ----------------------------------------------------------------------------------------


def check_budget(eps: object, norm: str = "linf", name: str = "eps") -> float:
    """The one check of a perturbation budget: ``eps`` > 0, and <= 1 for an L-inf budget (a
    change of every pixel of a [0, 1] image by more than 1 is no budget). Returns it as a float."""
    if norm not in ("linf", "l2"):
        raise ValueError(f"norm must be 'linf' or 'l2', got {norm!r}")
    if norm == "linf":
        return check_number(name, eps, 0, 1, low_open=True, hint="an L-inf budget on [0, 1] images")
    return check_number(name, eps, 0, low_open=True, hint="an L2 budget")


def project(adv: torch.Tensor, clean: torch.Tensor, eps: float, norm: str) -> torch.Tensor:
    """Project ``adv`` (B, ...) to the ``norm`` ball of radius ``eps`` around ``clean``, then to [0, 1].

    L-inf: clip each pixel's change to [-eps, eps]. L2: rescale each target's change to
    L2 norm <= eps. Clipping to [0, 1] afterwards cannot leave either ball because ``clean``
    lies in [0, 1] (it only shrinks each coordinate's change). Returns a new tensor; see
    :func:`project_` for the in-place form.
    """
    return project_(adv.detach().clone(), clean, eps, norm)


def project_(adv: torch.Tensor, clean: torch.Tensor, eps: float, norm: str) -> torch.Tensor:
    """:func:`project` in place on ``adv`` (not part of any autograd graph); returns ``adv``.

    Every pass writes into ``adv``: on a batch of native photos (16 x 3 x 1750 x 1166, 392 MB)
    a fresh tensor costs more than the arithmetic (the allocator maps new pages each time:
    measured 0.4 s per fresh tensor against 0.02 s per in-place pass on the 2-core machine).
    The values are bit-identical to computing ``clean + clip(adv - clean)`` out of place.
    """
    delta = adv.sub_(clean)
    if norm == "linf":
        delta.clamp_(-eps, eps)
    elif norm == "l2":
        norms = delta.flatten(1).norm(dim=1).clamp_min(1e-12)
        factor = (eps / norms).clamp(max=1.0)
        delta.mul_(factor.view(-1, *([1] * (delta.dim() - 1))))
    else:
        raise ValueError(f"norm must be 'linf' or 'l2', got {norm!r}")
    return delta.add_(clean).clamp_(0.0, 1.0)


# ----------------------------------------------------------------------------------------
# Inputs, outputs
# ----------------------------------------------------------------------------------------


@dataclass
class PrepareContext:
    """What an attack that trains its own (attacker-side) models may read, and where it keeps them.

    An attack with such models (AUV-Fusion's user model and perturbation MLP) defines
    ``prepare(ctx: PrepareContext)``: train them, or load them when ``folder`` already holds
    them; the run engine calls it in the main process before any target is attacked.

    ``dataset`` gives the catalog (photos, texts) and ``split.train`` (the training
    interactions: what the paper's attacker knows); ``targets`` are the run's evaluated targets
    (never used for training); ``folder`` holds the trained state (written once, read by
    every process).
    """

    dataset: Any
    knowledge: Knowledge
    targets: list[int]
    folder: Path
    device: str = "cpu"


@dataclass
class AttackResult:
    """Output of an attack on B targets.

    ``adv_images`` (B, 3, H, W), or a list of B (3, H_i, W_i) when the input was a list, in
    [0, 1] within budget (None for text-only attacks),
    ``adv_texts`` (B strings; the clean texts for image-only attacks), ``diagnostics``
    name -> (B,) float tensor per target (scores before/after on the victim, objective...).
    """

    item_index: torch.Tensor
    adv_images: torch.Tensor | list[torch.Tensor] | None
    adv_texts: list[str] | None
    diagnostics: dict[str, torch.Tensor] = field(default_factory=dict)


class Forward:
    """One evaluation of a victim on perturbed content of the B targets.

    For a feature victim (:class:`~venomkit.victims.base.Victim`), ``features`` are the
    re-encoded per-modality rows (B, D_m) of the targets; a modality missing from them is
    encoded from ``images`` / ``texts`` by the victim's own encoder (``texts`` may be
    :class:`~venomkit.victims.scoring.TokenTexts`: token embeddings, for first-order token attacks). The embeddings
    ``(user_emb (U, d), item_emb (I, d))`` are computed on first use with those rows replacing
    the targets' clean rows. Any other victim (the MLLM ranker) is asked through the scoring
    contract, ``victim.target_scores(users, images, texts, item_index)``.
    """

    def __init__(self, model: TargetScorer, item_index: torch.Tensor, features: Mapping[str, torch.Tensor] | None = None,
                 images: torch.Tensor | None = None, texts: Sequence[str] | TokenTexts | None = None):
        self.model = model
        self.item_index = item_index
        self.images = images
        self.texts = texts if texts is None or isinstance(texts, TokenTexts) else list(texts)
        self._features = dict(features or {})
        self._emb: tuple[torch.Tensor, torch.Tensor] | None = None

    @property
    def features(self) -> dict[str, torch.Tensor]:
        """The targets' re-encoded rows per modality (feature victims only)."""
        if not isinstance(self.model, Victim):
            raise ValueError(f"{type(self.model).__name__} has no feature tables: this objective needs a feature victim (VBPR, AMR, MMGCN)")
        missing = [m for m in self.model.modalities if m not in self._features]
        if missing:
            self._features.update(self.model.encode_content(self.images, self.texts, missing))
        return self._features

    @property
    def embeddings(self) -> tuple[torch.Tensor, torch.Tensor]:
        if self._emb is None:
            model: Victim = self.model  # type: ignore[assignment]
            self._emb = model(model.features_with(self.item_index, self.features))
        return self._emb

    def target_scores(self, users: torch.Tensor | None) -> torch.Tensor:
        """Scores (U', B) of the targets for ``users`` (the victim's objective users when None)."""
        if not isinstance(self.model, Victim):
            return self.model.target_scores(users, self.images, self.texts, self.item_index)
        user_emb, item_emb = self.embeddings
        return scores_of_targets(user_emb, item_emb, users, self.item_index)


# ----------------------------------------------------------------------------------------
# Config and base class
# ----------------------------------------------------------------------------------------


@dataclass
class AttackConfig:
    """Settings every attack shares.

    Attributes:
        seed: seeds every random choice; target ``i`` draws from ``seed`` and its item index,
            so its result is the same alone or in any batch.
        batch_targets: optimise the B targets in one tensor (exact for item-independent
            victims such as VBPR; an approximation for graph victims) or one at a time.
    """

    seed: int = 0
    batch_targets: bool = True

    def __post_init__(self) -> None:
        check_int("seed", self.seed, 0)
        if not isinstance(self.batch_targets, bool):
            raise ValueError(f"batch_targets must be true or false, got {self.batch_targets!r}")


def victim_with_image_encoder(victim: Victim, encoder: ImageEncoder) -> Victim:
    """A shallow copy of ``victim`` whose image encoder is ``encoder`` (grey-box surrogate).

    The recommender's weights are shared; only the visual feature extractor differs, which
    is the AIP/TAaMR grey-box setting (the adversary knows the model, not the CNN weights).
    """
    old = getattr(victim, "image_encoder", None)
    if old is not None and getattr(old, "output_dim", None) not in (None, getattr(encoder, "output_dim", None)):
        raise ValueError(
            f"surrogate encoder output_dim {getattr(encoder, 'output_dim', None)} does not match the victim's "
            f"image encoder output_dim {old.output_dim}"
        )
    clone = copy.copy(victim)
    clone._modules = dict(victim._modules)  # nn.Module keeps submodules here; do not share the dict
    clone.image_encoder = encoder
    return clone


def target_generator(seed: int, item: int, device: torch.device | str = "cpu") -> torch.Generator:
    """The random generator of one target: depends only on the seed and the item index."""
    g = torch.Generator(device=device)
    g.manual_seed((int(seed) * 1_000_003 + int(item) * 7919 + 17) % (2**63 - 1))
    return g


class Attack(ABC):
    """Base of every attack (see the module docstring for the contract).

    Subclasses set ``name``, ``config_class``, ``perturbs`` (which modalities they change)
    and implement :meth:`perturb`. Image budgets come from ``config.eps`` and
    ``config.norm`` when the config has them.
    """

    name: ClassVar[str] = "attack"
    config_class: ClassVar[type[AttackConfig]] = AttackConfig
    perturbs: ClassVar[tuple[str, ...]] = ("visual",)

    def __init__(self, config: AttackConfig | Mapping[str, Any] | None = None, *, surrogate: Victim | ImageEncoder | None = None, **overrides: Any):
        if config is None or isinstance(config, Mapping):
            values = dict(config or {})
            values.update(overrides)
            config = build_config(self.config_class, values, where=self.name)
        elif isinstance(config, self.config_class):
            if overrides:
                config = replace_config(config, overrides, where=self.name)
        else:
            raise ValueError(f"config must be a {self.config_class.__name__} or a mapping, got {type(config).__name__}")
        if surrogate is not None and not isinstance(surrogate, (TargetScorer, ImageEncoder)):
            raise ValueError(f"surrogate must be a victim (Victim, MLLMVictim) or an ImageEncoder, got {type(surrogate).__name__}")
        self.config = config
        self.surrogate = surrogate

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.config})"

    @classmethod
    def prepare_settings(cls, config: AttackConfig) -> dict[str, Any]:
        """The settings the state an attack's optional ``prepare`` trains depends on (its config).

        The run engine keys that state by them: attacks of one run with equal prepare settings
        train it once. An attack whose config holds per-target settings that ``prepare`` never
        reads (AUV-Fusion's refinement steps) leaves them out here.
        """
        return asdict(config)

    @classmethod
    def from_config(cls, config: AttackConfig, *, surrogate: Victim | ImageEncoder | None = None, device: str = "cpu") -> "Attack":
        """The attack for a validated ``config``, with every model it needs loaded by spec.

        The run engine builds every attack this way; an attack that needs its own models
        (TAaMR's classifier) overrides this, so no runner knows any attack by name.
        """
        return cls(config, surrogate=surrogate)

    # -- the contract ---------------------------------------------------------------------

    def __call__(self, victim: TargetScorer, batch: TargetBatch) -> AttackResult:
        """Attack the targets of ``batch`` (:class:`~venomkit.attacks.targets.TargetBatch`) on ``victim``.

        Targets are attacked in groups of equal image size (one tensor per group: the victim's
        encoder resizes inside, so the perturbation lives on the native pixels); the result
        has the input's form (a tensor, or a list in target order). ``batch.users`` None means
        the victim's default users (every user for a feature victim). Returns the
        budget-projected adversarial content and per-target diagnostics:
        ``score_before``/``score_after`` (mean victim score over the users, re-encoded).
        """
        if not isinstance(victim, TargetScorer):
            raise ValueError(f"victim must implement venomkit's scoring contract (a Victim or an MLLMVictim), got {type(victim).__name__}")
        if not isinstance(batch, TargetBatch):
            raise ValueError(f"batch must be a TargetBatch (venomkit.attacks.targets), got {type(batch).__name__}")
        if "visual" in self.perturbs and batch.images is None:
            raise ValueError(f"{self.name} perturbs images: pass the targets' clean images")
        if "text" in self.perturbs and batch.texts is None:
            raise ValueError(f"{self.name} perturbs texts: pass the targets' clean texts")
        batch = batch.to(_device_of(victim))
        if batch.users is None:
            batch = batch.with_users(victim.default_users())
        b = len(batch)
        as_tensor = isinstance(batch.images, torch.Tensor)
        adv_images: list[torch.Tensor | None] = [None] * b
        adv_texts: list[str] | None = None if batch.texts is None else list(batch.texts)
        diag_rows: dict[str, torch.Tensor] = {}
        groups = [(list(range(b)), None)] if batch.images is None else group_by_size(list(batch.images))
        for rows, g_images in groups:
            g_adv, g_texts_adv, g_diag = self._attack_group(victim, batch.subset(rows, g_images))
            for k, r in enumerate(rows):
                if g_adv is not None:
                    adv_images[r] = g_adv[k]
                if g_texts_adv is not None and adv_texts is not None:
                    adv_texts[r] = g_texts_adv[k]
            for key, values in g_diag.items():
                diag_rows.setdefault(key, torch.full((b,), float("nan")))[rows] = values.detach().float().reshape(-1).cpu()
        out_images: torch.Tensor | list[torch.Tensor] | None = None
        if any(a is not None for a in adv_images):
            out_images = torch.stack(adv_images) if as_tensor else list(adv_images)  # type: ignore[arg-type]
        return AttackResult(batch.item_index.cpu(), out_images, adv_texts, diag_rows)

    def _attack_group(self, victim: TargetScorer, batch: TargetBatch) -> tuple[torch.Tensor | None, list[str] | None, dict[str, torch.Tensor]]:
        """Attack G targets whose images share one size (G, 3, H, W); budgets enforced here."""
        b = len(batch)
        model = self._attack_model(victim)
        images, texts = batch.images, batch.texts
        with frozen_eval(victim, model if model is not victim else None):
            with torch.no_grad():
                before = _mean_scores(victim, images, texts, batch.item_index, batch.users)
            if self.config.batch_targets or b == 1:
                adv_images, adv_texts, diag = self.perturb(model, batch)
            else:
                adv_images, adv_texts, diag = self._per_target(model, batch)
            adv_images = self._enforce_image_budget(adv_images, images)
            adv_texts, reverted = self._enforce_text_budget(victim, adv_texts, texts)
            with torch.no_grad():
                after = _mean_scores(victim, adv_images if adv_images is not None else images, adv_texts if adv_texts is not None else texts, batch.item_index, batch.users)
        diagnostics = {k: v.detach().float().reshape(b).cpu() for k, v in diag.items()}
        diagnostics["score_before"] = before.cpu()
        diagnostics["score_after"] = after.cpu()
        if reverted is not None:
            diagnostics["text_reverted"] = reverted.float()
        return adv_images, adv_texts, diagnostics

    @abstractmethod
    def perturb(self, model: TargetScorer, batch: TargetBatch) -> tuple[torch.Tensor | None, list[str] | None, dict[str, torch.Tensor]]:
        """Return (adversarial images or None, adversarial texts or None, diagnostics (G,) each).

        ``model`` is the victim (white-box) or the surrogate (grey-box), already in eval mode;
        ``batch`` is one same-size group (``batch.images`` a (G, 3, H, W) tensor or None).
        The base class projects the images to the budget afterwards.
        """

    # -- budget ---------------------------------------------------------------------------

    def _enforce_image_budget(self, adv: torch.Tensor | None, clean: torch.Tensor | None) -> torch.Tensor | None:
        if adv is None:
            return None
        if clean is None:
            raise RuntimeError(f"{self.name} returned images but none were given")
        if adv.shape != clean.shape:
            raise RuntimeError(f"{self.name} returned images of shape {tuple(adv.shape)}, expected {tuple(clean.shape)}")
        eps = getattr(self.config, "eps", None)
        norm = getattr(self.config, "norm", "linf")
        adv = adv.detach()
        if eps is None:
            return adv.clamp(0.0, 1.0)
        return project(adv, clean, float(eps), norm)

    def text_within_budget(self, victim: Victim, clean: str, adv: str) -> bool:
        """Whether ``adv`` respects this attack's text budget (subclasses with one override)."""
        return True

    def _enforce_text_budget(self, victim: Victim, adv: list[str] | None, clean: list[str] | None) -> tuple[list[str] | None, torch.Tensor | None]:
        if adv is None:
            return None, None
        if clean is None or len(adv) != len(clean):
            raise RuntimeError(f"{self.name} returned {len(adv)} texts for {0 if clean is None else len(clean)} targets")
        reverted = torch.tensor([not self.text_within_budget(victim, c, a) for c, a in zip(clean, adv)])
        out = [c if r else a for c, a, r in zip(clean, adv, reverted.tolist())]
        return out, reverted

    # -- helpers --------------------------------------------------------------------------

    def _attack_model(self, victim: TargetScorer) -> TargetScorer:
        if self.surrogate is None:
            return victim
        if isinstance(self.surrogate, TargetScorer):
            return self.surrogate
        return victim_with_image_encoder(victim, self.surrogate)

    def _per_target(self, model: TargetScorer, batch: TargetBatch):
        imgs: list[torch.Tensor] = []
        txts: list[str] = []
        diags: dict[str, list[torch.Tensor]] = {}
        got_images = got_texts = False
        for r in range(len(batch)):
            a_img, a_txt, d = self.perturb(model, batch.subset([r]))
            if a_img is not None:
                got_images = True
                imgs.append(a_img)
            if a_txt is not None:
                got_texts = True
                txts.extend(a_txt)
            for k, v in d.items():
                diags.setdefault(k, []).append(v.reshape(1))
        return (
            torch.cat(imgs) if got_images else None,
            txts if got_texts else None,
            {k: torch.cat(v) for k, v in diags.items()},
        )

    def fixed_features(self, model: Victim, images: torch.Tensor | None, texts: Sequence[str] | None) -> dict[str, torch.Tensor]:
        """Features of the modalities this attack does NOT perturb (encoded once, no grad)."""
        out: dict[str, torch.Tensor] = {}
        if not isinstance(model, Victim):
            return out  # the victim encodes its content itself (venomkit.victims.scoring)
        with torch.no_grad():
            if "visual" in model.modalities and "visual" not in self.perturbs and images is not None:
                out["visual"] = model.image_encoder(images)
            if "text" in model.modalities and "text" not in self.perturbs and texts is not None:
                out["text"] = model.text_encoder(list(texts))
        return out


def _device_of(module: nn.Module) -> torch.device:
    for p in module.parameters():
        return p.device
    for buf in module.buffers():
        return buf.device
    return torch.device("cpu")


def _mean_scores(victim: TargetScorer, images, texts, item_index, users) -> torch.Tensor:
    """Mean victim score of each target over ``users`` with its content re-encoded (B,)."""
    return victim.target_scores(users, images, texts, item_index).mean(0)


# ----------------------------------------------------------------------------------------
# The shared iterative pixel loop
# ----------------------------------------------------------------------------------------


@dataclass
class IterativeConfig(AttackConfig):
    """Budget and schedule of the shared PGD-style loop.

    Attributes:
        eps: perturbation budget (L-inf: per pixel in [0, 1] units; L2: per image).
        norm: ``linf`` or ``l2``.
        steps: gradient steps (1 with ``step_size = eps`` and no random start is FGSM).
        step_size: first step length; None means ``2.5 * eps / steps`` (Madry et al. 2018).
        schedule: ``constant``, ``cosine`` or ``linear`` decay of the step length.
        random_start: start from a uniform point in the L-inf ball (or the L2 ball).
        keep_best: return, per target, the iterate with the lowest objective seen.
    """

    eps: float = 8 / 255
    norm: Literal["linf", "l2"] = "linf"
    steps: int = 10
    step_size: float | None = None
    schedule: Literal["constant", "cosine", "linear"] = "constant"
    random_start: bool = True
    keep_best: bool = True

    def __post_init__(self) -> None:
        super().__post_init__()
        check_budget(self.eps, self.norm)
        check_int("steps", self.steps, 1)
        if self.step_size is not None:
            check_number("step_size", self.step_size, 0, low_open=True)
        if self.schedule not in ("constant", "cosine", "linear"):
            raise ValueError(f"schedule must be 'constant', 'cosine' or 'linear', got {self.schedule!r}")
        for name in ("random_start", "keep_best"):
            if not isinstance(getattr(self, name), bool):
                raise ValueError(f"{name} must be true or false, got {getattr(self, name)!r}")

    def step_length(self, t: int) -> float:
        """Step length at iteration ``t`` (0-based) under the schedule."""
        base = self.step_size if self.step_size is not None else 2.5 * self.eps / self.steps
        if self.schedule == "constant" or self.steps == 1:
            return base
        frac = t / (self.steps - 1)
        if self.schedule == "cosine":
            return base * 0.5 * (1 + math.cos(math.pi * frac)) + base * 0.05
        return base * (1 - frac) + base * 0.05


class IterativeImageAttack(Attack):
    """PGD-style loop over the targets' pixels: x <- Proj(x - a_t * dir(grad L(x))).

    ``dir`` is sign() for L-inf and grad/||grad||_2 for L2. Subclasses provide the objective
    through :meth:`build_objective`; ``L`` returns one loss per target (B,) to MINIMISE,
    summed for the backward pass (targets do not interact, so each image gets its own
    gradient).
    """

    config_class: ClassVar[type[AttackConfig]] = IterativeConfig
    perturbs: ClassVar[tuple[str, ...]] = ("visual",)

    @abstractmethod
    def build_objective(self, model: TargetScorer, batch: TargetBatch) -> Callable[[Forward], torch.Tensor]:
        """The per-target loss (G,) to minimise, prepared for these targets."""

    def loop_config(self) -> IterativeConfig:
        """The loop's budget and schedule (the config itself; FGSM derives a one-step loop)."""
        return self.config  # type: ignore[return-value]

    def perturb(self, model: TargetScorer, batch: TargetBatch):
        cfg = self.loop_config()
        objective = self.build_objective(model, batch)
        fixed = self.fixed_features(model, batch.images, batch.texts)

        def loss_fn(x: torch.Tensor) -> torch.Tensor:
            return objective(Forward(model, batch.item_index, fixed, images=x, texts=batch.texts))

        adv, best_loss, first_loss = pgd_loop(loss_fn, batch.images, cfg, batch.item_index, desc=f"{self.name} steps")
        return adv, None, {"objective_before": first_loss, "objective_after": best_loss}


def random_start(clean: torch.Tensor, eps: float, norm: str, seed: int, item_index: torch.Tensor) -> torch.Tensor:
    """A uniform start in the budget ball, drawn per target from its own generator."""
    noise = []
    for r, item in enumerate(item_index.tolist()):
        g = target_generator(seed, item)
        if norm == "linf":
            n = torch.rand(clean.shape[1:], generator=g) * 2 - 1
            n = n * eps
        else:
            n = torch.randn(clean.shape[1:], generator=g)
            radius = torch.rand((), generator=g) * eps
            n = n / n.norm().clamp_min(1e-12) * radius
        noise.append(n)
    return project_(torch.stack(noise).to(clean.device, clean.dtype).add_(clean), clean, eps, norm)


def pgd_loop(
    loss_fn: Callable[[torch.Tensor], torch.Tensor],
    clean: torch.Tensor,
    cfg: IterativeConfig,
    item_index: torch.Tensor,
    extra_step: Callable[[int], None] | None = None,
    desc: str = "attack steps",
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Run the shared loop; returns (adversarial (B,3,H,W), final/best loss (B,), clean loss (B,)).

    ``extra_step(t)`` runs after each pixel step (the joint attack alternates token flips).
    Progress over the steps of this batch of targets is reported as ``desc`` (``venomkit.progress``;
    silenced by ``set_quiet``).
    """
    with torch.no_grad():
        first_loss = loss_fn(clean).detach()
    x = random_start(clean, cfg.eps, cfg.norm, cfg.seed, item_index) if cfg.random_start else clean.clone()
    best = x.clone()
    best_loss = torch.full_like(first_loss, float("inf"))
    for t in progress_bar(range(cfg.steps), desc=f"{desc} ({item_index.numel()} targets)", unit="step", leave=False):
        x = x.detach().requires_grad_(True)
        loss = loss_fn(x)
        (grad,) = torch.autograd.grad(loss.sum(), x)
        grad = grad if grad.is_contiguous() else grad.contiguous()  # an expanded gradient cannot be written in place
        with torch.no_grad():
            x = x.detach()  # same storage: the step below updates it in place (no fresh native-size tensor)
            if cfg.keep_best:
                best_loss = _keep_improved(best, best_loss, x, loss.detach())
            if cfg.norm == "linf":
                direction = grad.sign_()
            else:
                direction = grad.div_(grad.flatten(1).norm(dim=1).clamp_min(1e-12).view(-1, *([1] * (grad.dim() - 1))))
            project_(x.sub_(direction.mul_(cfg.step_length(t))), clean, cfg.eps, cfg.norm)
        if extra_step is not None:
            extra_step(t)
    with torch.no_grad():
        final_loss = loss_fn(x).detach()
    if not cfg.keep_best:
        return x.detach(), final_loss, first_loss
    best_loss = _keep_improved(best, best_loss, x, final_loss)
    return best, best_loss, first_loss


def _keep_improved(best: torch.Tensor, best_loss: torch.Tensor, x: torch.Tensor, loss: torch.Tensor) -> torch.Tensor:
    """Copy into ``best`` the rows of ``x`` whose ``loss`` beats ``best_loss``; returns the new best losses.

    Row by row, in place: a masked assignment would gather the improved rows into a fresh
    native-size tensor first (see :func:`project_`).
    """
    better = loss < best_loss
    for row in better.nonzero().flatten().tolist():
        best[row].copy_(x[row])
    return torch.where(better, loss, best_loss)
