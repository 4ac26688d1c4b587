"""Feature-space adversary: FGM / PGD perturbations of item feature rows, with optional
cross-modal gradient alignment.

This is the inner maximisation of adversarial training on content features:

* AMR (Tang et al., "Adversarial Training Towards Robust Multimedia Recommender System",
  TKDE 2020): ``delta = eps * g / ||g||`` with ``g`` the gradient of the BPR loss with respect
  to the visual feature row of each item (FGM), then train on
  ``L_BPR(clean) + lambda_adv * L_BPR(features + delta)``.
* UAT / UAT-MC (arXiv 2605.06238): the same on the visual AND textual rows of the batch's
  positive and negative items; UAT-MC maximises
  ``L_BPR + lambda_align * cos(g_visual, g_text)``, where the cosine between the two
  modalities' loss gradients is computed with ``create_graph=True`` so that the term has a
  gradient with respect to the features for every victim (the published code forgets this
  for MMGCN, which makes the term a constant).

Budget: per item row, ``||delta_{i,m}||_2 <= eps_m * ||f_{i,m}||_2`` (``eps_ratio``, the
UAT-MC convention) or ``<= eps_m`` (``eps_abs``, AMR's). Perturbations are returned per
modality BY NAME; the modality order ``("visual", "text")`` is never swapped, and widths may
differ between modalities.

Note on VBPR: its BPR gradient with respect to an item's features is a scalar times a fixed
vector per (user, item) pair, so the cosine of one pair's two gradients does not depend on
the features; the alignment term moves the perturbation only for items that appear in several
pairs of the batch (the usual case) -- and for nonlinear victims (MMGCN) always.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Mapping, NamedTuple, Sequence

import torch

from venomkit.config import check_int
from venomkit.victims.base import MODALITIES, Victim, _check_float, _check_int, bpr_from_embeddings, bpr_loss

LossFn = Callable[[dict[str, torch.Tensor]], torch.Tensor]


def _per_modality(value: float | Mapping[str, float] | None, modalities: Sequence[str], name: str) -> dict[str, float] | None:
    if value is None:
        return None
    if isinstance(value, Mapping):
        missing = [m for m in modalities if m not in value]
        if missing:
            raise ValueError(f"{name} has no value for modalities {missing}")
        out = {m: float(value[m]) for m in modalities}
    else:
        out = {m: float(value) for m in modalities}
    for m, v in out.items():
        if not v >= 0 or v != v or v == float("inf"):
            raise ValueError(f"{name}[{m!r}] must be a finite number >= 0, got {v}")
    return out


def _row_normalize(x: torch.Tensor) -> torch.Tensor:
    norm = x.norm(dim=1, keepdim=True)
    return torch.where(norm > 0, x / norm.clamp_min(1e-30), torch.zeros_like(x))


def _project_rows(delta: torch.Tensor, radius: torch.Tensor) -> torch.Tensor:
    norm = delta.norm(dim=1, keepdim=True)
    factor = torch.where(norm > radius, radius / norm.clamp_min(1e-30), torch.ones_like(norm))
    return delta * factor


def _grad(loss: torch.Tensor, leaves: list[torch.Tensor], extra: Sequence[torch.Tensor], **kwargs) -> tuple[torch.Tensor | None, ...]:
    """``autograd.grad`` of ``loss`` by ``leaves`` (each must be used) and ``extra`` (may be unused)."""
    grads = torch.autograd.grad(loss, [*leaves, *extra], allow_unused=bool(extra), **kwargs)
    unused = [i for i, g in enumerate(grads[: len(leaves)]) if g is None]
    if unused:
        raise ValueError("loss_fn does not depend on the perturbed feature rows it was given")
    return grads


def _append_detached(out: list | None, grads: Sequence[torch.Tensor | None]) -> None:
    if out is not None:
        out.extend(None if g is None else g.detach() for g in grads)


def alignment_cosine(
    grad_visual: torch.Tensor,
    grad_text: torch.Tensor,
    projections: Mapping[str, torch.Tensor] | None = None,
    reduction: str = "mean",
) -> torch.Tensor:
    """Cosine between each item's visual and text loss gradients, reduced over items.

    ``grad_visual`` (B, D_v) and ``grad_text`` (B, D_t) are rows of the same B items.
    With ``projections`` ({"visual": (D_v, k), "text": (D_t, k)}) each gradient is first
    mapped into a shared k-dim space (the victim's first linear layer on each modality);
    without them the widths must be equal. Rows where either gradient is zero count as 0.
    ``reduction``: "mean" (the BPR loss is a batch mean, so this keeps ``lambda_align``
    independent of the batch size) or "sum".
    """
    if projections is not None:
        grad_visual = grad_visual @ projections["visual"]
        grad_text = grad_text @ projections["text"]
    if grad_visual.shape != grad_text.shape:
        raise ValueError(
            f"cross-modal alignment compares gradients of equal width; visual is {tuple(grad_visual.shape)}, "
            f"text is {tuple(grad_text.shape)} (pass align_projections, e.g. victim.feature_projections())"
        )
    dot = (grad_visual * grad_text).sum(1)
    denom = grad_visual.norm(dim=1) * grad_text.norm(dim=1)
    cos = torch.where(denom > 0, dot / denom.clamp_min(1e-30), torch.zeros_like(dot))
    if reduction == "mean":
        return cos.mean()
    if reduction == "sum":
        return cos.sum()
    raise ValueError(f"reduction must be 'mean' or 'sum', got {reduction!r}")


def fgm_feature_perturbation(
    loss_fn: LossFn,
    features: Mapping[str, torch.Tensor],
    *,
    eps_ratio: float | Mapping[str, float] | None = None,
    eps_abs: float | Mapping[str, float] | None = None,
    modalities: Sequence[str] | None = None,
    steps: int = 1,
    step_size: float | None = None,
    align_weight: float = 0.0,
    align_projections: Mapping[str, torch.Tensor] | None = None,
    align_reduction: str = "mean",
    random_start: bool = False,
    generator: torch.Generator | None = None,
    stats: dict | None = None,
    retain_graph: bool = False,
    first_loss_params: Sequence[torch.Tensor] = (),
    first_loss_grads: list[torch.Tensor | None] | None = None,
) -> dict[str, torch.Tensor]:
    """Worst-case feature perturbations (FGM for ``steps=1``, else PGD) within a per-row L2 ball.

    Args:
        loss_fn: maps the perturbed rows ``{m: (B, D_m)}`` (every key of ``features``; only
            ``modalities`` are perturbed) to the scalar loss to MAXIMISE (e.g. the BPR loss of
            the batch with these rows substituted into the feature tables).
        features: clean rows ``{m: (B, D_m)}`` of the B items being perturbed.
        eps_ratio: radius as a fraction of each row's L2 norm (float, or one per modality).
        eps_abs: absolute radius (float, or one per modality). Exactly one of the two.
        modalities: the modalities to perturb (default: every key of ``features``), in any
            order -- deltas are matched by name.
        steps: 1 = FGM (``delta = eps * g/||g||``); > 1 = PGD with projection after each step.
        step_size: step length as a fraction of each row's radius; default 1 for FGM and
            2.5 / steps for PGD (Madry et al.).
        align_weight: lambda of UAT-MC's alignment term ``cos(g_visual, g_text)`` added to the
            objective (needs both "visual" and "text" in ``modalities``); 0 disables it.
        align_projections: maps for :func:`alignment_cosine` when the widths differ.
        align_reduction: "mean" or "sum" of the per-item cosines.
        random_start: start PGD from a uniform random point in the ball.
        generator: torch generator for ``random_start``.
        stats: if a dict is given, filled with the last step's ``loss`` and ``align_cos``.
        retain_graph: keep ``loss_fn``'s graph after the gradient (a caller that reuses the
            first, unperturbed forward pass for its clean loss needs this).
        first_loss_params: more tensors (a model's parameters) to differentiate the FIRST
            evaluation of ``loss_fn`` by, in the same backward pass as the features; their
            gradients (detached; None where unused) are appended to ``first_loss_grads``. For
            FGM from zero the first evaluation is the clean loss, so a caller that trains on it
            gets its parameter gradient without a second backward pass through the model.

    Returns:
        ``{m: delta (B, D_m)}`` for each perturbed modality, detached, with
        ``||delta[i]|| <= radius[i]`` (FGM reaches the radius wherever the gradient is non-zero).
    """
    names = list(features)
    mods = tuple(names) if modalities is None else tuple(modalities)
    if not mods:
        raise ValueError("modalities: nothing to perturb")
    for m in mods:
        if m not in features:
            raise ValueError(f"modalities: {m!r} has no feature rows (got {names})")
    if len(set(mods)) != len(mods):
        raise ValueError(f"modalities must not repeat, got {mods}")
    if (eps_ratio is None) == (eps_abs is None):
        raise ValueError("give exactly one of eps_ratio and eps_abs")
    ratio = _per_modality(eps_ratio, mods, "eps_ratio")
    absolute = _per_modality(eps_abs, mods, "eps_abs")
    check_int("steps", steps, 1)
    alpha = (1.0 if steps == 1 else 2.5 / steps) if step_size is None else float(step_size)
    if not alpha > 0:
        raise ValueError(f"step_size must be > 0, got {step_size}")
    first_loss_params = list(first_loss_params)
    if first_loss_params and first_loss_grads is None:
        raise ValueError("first_loss_params needs a list first_loss_grads to append their gradients to")
    align_weight = float(align_weight)
    if align_weight != 0.0 and not ("visual" in mods and "text" in mods):
        raise ValueError(f"align_weight needs both 'visual' and 'text' among the perturbed modalities, got {mods}")

    clean = {m: t.detach() for m, t in features.items()}
    radius = {}
    for m in mods:
        rows = clean[m]
        if rows.dim() != 2:
            raise ValueError(f"features[{m!r}] must be (B, D), got shape {tuple(rows.shape)}")
        if ratio is not None:
            radius[m] = ratio[m] * rows.norm(dim=1, keepdim=True)
        else:
            radius[m] = torch.full((rows.shape[0], 1), absolute[m], device=rows.device, dtype=rows.dtype)  # type: ignore[index]

    delta = {m: torch.zeros_like(clean[m]) for m in mods}
    if random_start:
        for m in mods:
            noise = torch.rand(clean[m].shape, generator=generator, device="cpu", dtype=clean[m].dtype).to(clean[m].device)
            delta[m] = _project_rows((noise * 2 - 1) * radius[m], radius[m])

    for step_index in range(steps):
        with torch.enable_grad():
            leaves = {m: (clean[m] + delta[m]).requires_grad_(True) for m in mods}
            inputs = {m: leaves.get(m, clean[m]) for m in names}
            loss = loss_fn(inputs)
            if loss.dim() != 0:
                raise ValueError(f"loss_fn must return a scalar, got shape {tuple(loss.shape)}")
            order = list(mods)
            extra = first_loss_params if step_index == 0 else []
            if align_weight != 0.0:
                # create_graph=True: the cosine must stay a function of the features, or its
                # gradient (and so its effect on the perturbation) is zero.
                first_all = _grad(loss, [leaves[m] for m in order], extra, create_graph=True)
                first = dict(zip(order, first_all))
                _append_detached(first_loss_grads, first_all[len(order):])
                # Drop the parameter gradients' graph before the Hessian-vector product: the
                # cosine does not depend on it, and holding it keeps its buffers alive.
                del first_all
                cos = alignment_cosine(first["visual"], first["text"], align_projections, align_reduction)
                # d(loss + w cos)/dx = g + w d cos/dx: reuse g rather than backpropagating the loss twice.
                second = torch.autograd.grad(cos, [leaves[m] for m in order], retain_graph=retain_graph, allow_unused=True)
                grads = tuple(
                    first[m].detach() + (align_weight * d if d is not None else 0.0) for m, d in zip(order, second)
                )
                if stats is not None:
                    stats["align_cos"] = float(cos.detach())
            else:
                grads = _grad(loss, [leaves[m] for m in order], extra, retain_graph=retain_graph)
                _append_detached(first_loss_grads, grads[len(order):])
                grads = grads[: len(order)]
        if stats is not None:
            stats["loss"] = float(loss.detach())
        for m, g in zip(order, grads):
            step = alpha * radius[m] * _row_normalize(g.detach())
            delta[m] = _project_rows(delta[m] + step, radius[m])
    return {m: delta[m].detach() for m in mods}


@dataclass
class FeatureAdversaryConfig:
    """Adversarial training on content features (AMR, UAT, UAT-MC share this form).

    Attributes:
        modalities: which features the adversary perturbs; AMR uses ("visual",), UAT and
            UAT-MC ("visual", "text"). Kept in canonical order.
        eps: radius per row -- a fraction of the row's L2 norm when ``eps_mode="ratio"``
            (UAT-MC, default 0.1), an absolute L2 radius when ``eps_mode="abs"`` (AMR).
        adv_weight: weight of the adversarial BPR term (AMR's lambda, UAT-MC's beta).
        steps, step_size, random_start: FGM (steps=1) or PGD inner maximisation.
        align_weight: UAT-MC's lambda_align (0 = plain UAT / AMR).
        align_reduction: "mean" or "sum" of the per-item cosines.
    """

    modalities: tuple[str, ...] = ("visual", "text")
    eps: float = 0.1
    eps_mode: str = "ratio"
    adv_weight: float = 1.0
    steps: int = 1
    step_size: float | None = None
    random_start: bool = False
    align_weight: float = 0.0
    align_reduction: str = "mean"

    def __post_init__(self) -> None:
        mods = tuple(self.modalities)
        if not mods or any(m not in MODALITIES for m in mods) or len(set(mods)) != len(mods):
            raise ValueError(f"{type(self).__name__}.modalities must be distinct names from {MODALITIES}, got {self.modalities!r}")
        self.modalities = tuple(m for m in MODALITIES if m in mods)
        _check_float(self, "eps", minimum=0.0)
        if self.eps_mode not in ("ratio", "abs"):
            raise ValueError(f"{type(self).__name__}.eps_mode must be 'ratio' or 'abs', got {self.eps_mode!r}")
        _check_float(self, "adv_weight", minimum=0.0)
        _check_int(self, "steps", minimum=1)
        if self.step_size is not None:
            _check_float(self, "step_size", minimum=0.0, strict_min=True)
        if not isinstance(self.random_start, bool):
            raise ValueError(f"{type(self).__name__}.random_start must be true or false")
        _check_float(self, "align_weight", minimum=0.0)
        if self.align_weight > 0 and self.modalities != ("visual", "text"):
            raise ValueError(f"{type(self).__name__}.align_weight > 0 needs modalities ('visual', 'text')")
        if self.align_reduction not in ("mean", "sum"):
            raise ValueError(f"{type(self).__name__}.align_reduction must be 'mean' or 'sum', got {self.align_reduction!r}")


def batch_item_rows(victim: Victim, pos: torch.Tensor, neg: torch.Tensor) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """The distinct items of a BPR batch (K,) and their clean feature rows ``{m: (K, D_m)}``.

    Distinct items, so that each row is perturbed once even when an item is both a positive
    and a negative in the batch.
    """
    items = torch.unique(torch.cat([pos, neg]))
    table = victim.clean_features()
    return items, {m: table[m][items] for m in victim.modalities}


class BatchAdversary(NamedTuple):
    """What the inner maximisation of one BPR batch produced (:func:`adversarial_feature_deltas`).

    Attributes:
        items: the batch's distinct items (K,).
        rows: their clean feature rows ``{m: (K, D_m)}``.
        deltas: the perturbations ``{m: (K, D_m)}`` of the perturbed modalities.
        clean_forward: ``(user_emb, item_emb)`` of the unperturbed forward pass, graph kept,
            when it was reused (FGM from zero with ``reuse_clean_pass``); else None.
        clean_loss: the clean BPR loss (detached) of that pass; else None.
        params: the victim's trainable parameters when the clean pass was reused; else None.
        clean_param_grads: the clean loss's gradient by each of ``params`` (None where unused).
    """

    items: torch.Tensor
    rows: dict[str, torch.Tensor]
    deltas: dict[str, torch.Tensor]
    clean_forward: tuple[torch.Tensor, torch.Tensor] | None = None
    clean_loss: torch.Tensor | None = None
    params: list[torch.Tensor] | None = None
    clean_param_grads: list[torch.Tensor | None] | None = None


def adversarial_feature_deltas(
    victim: Victim,
    users: torch.Tensor,
    pos: torch.Tensor,
    neg: torch.Tensor,
    adversary: FeatureAdversaryConfig,
    stats: dict | None = None,
    reuse_clean_pass: bool = False,
) -> BatchAdversary:
    """Inner maximisation for one BPR batch.

    The objective is the batch's BPR loss (without the L2 term) with the perturbed rows
    substituted into the full feature tables, so graph victims propagate the change.

    With ``reuse_clean_pass`` and a single step from zero (FGM), the first evaluation of the
    objective IS the clean BPR loss: its forward outputs (graph kept), its value and its
    gradient by the victim's parameters -- taken in the same backward pass that gives the
    adversary its feature gradient -- are returned, so the caller's clean loss needs neither
    a second forward nor a second backward pass through the victim.
    """
    missing = [m for m in adversary.modalities if m not in victim.modalities]
    if missing:
        raise ValueError(f"the adversary perturbs {missing} but {victim.kind} reads only {victim.modalities}")
    items, rows = batch_item_rows(victim, pos, neg)
    reuse = reuse_clean_pass and adversary.steps == 1 and not adversary.random_start
    first: list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]] = []

    def loss_fn(perturbed: dict[str, torch.Tensor]) -> torch.Tensor:
        user_emb, item_emb = victim(victim.features_with(items, perturbed))
        loss = bpr_from_embeddings(user_emb, item_emb, users, pos, neg)
        if reuse and not first:
            first.append((user_emb, item_emb, loss.detach()))
        return loss

    projections = None
    if adversary.align_weight > 0 and rows["visual"].shape[1] != rows["text"].shape[1]:
        projections = victim.feature_projections()
        if projections is None:
            raise ValueError(f"{victim.kind}: visual and text widths differ and the victim has no feature_projections()")
        projections = {m: p.detach() for m, p in projections.items()}
    eps = {"eps_ratio": adversary.eps} if adversary.eps_mode == "ratio" else {"eps_abs": adversary.eps}
    params = [p for p in victim.model_parameters() if p.requires_grad] if reuse else []
    param_grads: list[torch.Tensor | None] = []
    deltas = fgm_feature_perturbation(
        loss_fn,
        rows,
        modalities=adversary.modalities,
        steps=adversary.steps,
        step_size=adversary.step_size,
        align_weight=adversary.align_weight,
        align_projections=projections,
        align_reduction=adversary.align_reduction,
        random_start=adversary.random_start,
        stats=stats,
        retain_graph=reuse,
        first_loss_params=params,
        first_loss_grads=param_grads,
        **eps,
    )
    if not first:
        return BatchAdversary(items, rows, deltas)
    user_emb, item_emb, clean_loss = first[0]
    return BatchAdversary(items, rows, deltas, (user_emb, item_emb), clean_loss, params, param_grads)


def loss_with_gradient(value: torch.Tensor, params: Sequence[torch.Tensor], grads: Sequence[torch.Tensor | None]) -> torch.Tensor:
    """A scalar equal to ``value`` whose gradient by ``params`` is ``grads`` (already computed).

    ``value + sum_p <p, g_p> - stop_gradient(sum_p <p, g_p>)``: backpropagating it adds
    exactly ``g_p`` to each ``p.grad`` (nothing for None) and nothing else.
    """
    value = value.detach()
    terms = [(p * g).sum() for p, g in zip(params, grads, strict=True) if g is not None]
    if not terms:
        return value
    surrogate = torch.stack(terms).sum()
    return value + (surrogate - surrogate.detach())


def adversarial_bpr_loss(
    victim: Victim,
    users: torch.Tensor,
    pos: torch.Tensor,
    neg: torch.Tensor,
    adversary: FeatureAdversaryConfig,
    stats: dict | None = None,
) -> torch.Tensor:
    """``L_BPR(clean) + reg + adv_weight * L_BPR(features + delta)`` for one batch (AMR Eq. 9; UAT).

    ``delta`` comes from :func:`adversarial_feature_deltas` and is a constant for the outer
    minimisation (the usual min-max approximation). For FGM the clean BPR term reuses the
    adversary's first forward AND backward pass (its parameter gradient was taken together
    with the feature gradient; :func:`loss_with_gradient`), so one training step costs two
    forward and two backward passes through the victim, plus UAT-MC's Hessian-vector
    product. Usable as ``train_bpr``'s ``batch_loss`` via
    ``functools.partial(adversarial_bpr_loss, adversary=cfg)``.
    """
    if adversary.adv_weight == 0.0 or adversary.eps == 0.0:
        return bpr_loss(victim, users, pos, neg)
    inner = adversarial_feature_deltas(victim, users, pos, neg, adversary, stats, reuse_clean_pass=True)
    if inner.clean_forward is not None:
        user_emb, item_emb = inner.clean_forward
        clean_bpr = loss_with_gradient(inner.clean_loss, inner.params, inner.clean_param_grads)
    else:
        user_emb, item_emb = victim()
        clean_bpr = bpr_from_embeddings(user_emb, item_emb, users, pos, neg)
    clean_loss = clean_bpr + victim.reg_loss(users, pos, neg, user_emb, item_emb)
    perturbed = {m: inner.rows[m] + inner.deltas[m] for m in inner.deltas}
    adv_loss = bpr_loss(victim, users, pos, neg, features=victim.features_with(inner.items, perturbed), reg=False)
    if stats is not None:
        stats["clean_loss"] = float(clean_loss.detach())
        stats["adv_loss"] = float(adv_loss.detach())
    return clean_loss + adversary.adv_weight * adv_loss
