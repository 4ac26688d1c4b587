"""Metric collectors, registered by name (the idea of RecBole's ``evaluator/collector.py``).

The engine attacks a batch of targets, saves the adversarial content, reads it back and hands
the collectors one :class:`AttackedBatch`: everything that may be measured about those targets,
with the costly parts (re-encoded features) computed once, on first use. Each collector says
what it ``needs`` (images, texts, perturbed feature rows, a CLIP, the victim's text encoder)
and returns named columns, one value per target. A run lists collectors by name
(``metrics.collectors``); a collector whose needs a setting does not meet (SSIM for a text
attack) is left out of that setting. A new attack adds no code here, and a new metric is one
class with ``@register``.

Every image figure is computed on the files the run saved (8-bit PNG, or what the shop's
pipeline served, see ``venomkit.runs.shop``), image by image at each image's own size.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property
from typing import Any, Callable, ClassVar, Sequence

import numpy as np
import torch
import torch.nn.functional as F

COLLECTORS: dict[str, type["Collector"]] = {}


def register(name: str) -> Callable[[type["Collector"]], type["Collector"]]:
    """Class decorator adding a collector to :data:`COLLECTORS` under ``name``."""

    def wrap(cls: type["Collector"]) -> type["Collector"]:
        cls.name = name
        COLLECTORS[name] = cls
        return cls

    return wrap


@dataclass(eq=False)
class AttackedBatch:
    """What the collectors may read about B attacked targets (lazy, cached properties).

    Attributes:
        victim: the victim that scores the targets (eval mode).
        targets: item indices (B,).
        train: users x items training interactions (CSR): seen items are masked in rankings.
        ks: the K of HR@K.
        clean_texts: the targets' catalog texts.
        adv_texts: the adversarial texts, or None when the attack leaves texts alone.
        clean_images / adv_images: per target (3, H, W) in [0, 1] as saved (and served by the
            shop), or None when the attack leaves images alone.
        adv_rows: perturbed feature rows ``{m: (B, D_m)}`` of a feature-space attack (no content).
        diagnostics: the attack's per-target diagnostics ``{name: (B,)}``.
        stealth_clip: ``(image_encoder, text_encoder)`` of the ``clip_*`` figures, or None.
    """

    victim: Any
    targets: list[int]
    train: Any
    ks: Sequence[int]
    clean_texts: list[str]
    adv_texts: list[str] | None = None
    clean_images: list[torch.Tensor] | None = None
    adv_images: list[torch.Tensor] | None = None
    adv_rows: dict[str, torch.Tensor] | None = None
    diagnostics: dict[str, torch.Tensor] = field(default_factory=dict)
    stealth_clip: tuple[Any, Any] | None = None

    # -- what a collector can need ---------------------------------------------------------
    def has(self, need: str) -> bool:
        victim = self.victim
        return {
            "images": self.adv_images is not None,
            "texts": self.adv_texts is not None,
            "rows": self.adv_rows is not None,
            "image_encoder": getattr(victim, "image_encoder", None) is not None,
            "text_encoder": getattr(victim, "text_encoder", None) is not None,
            "stealth_clip": self.stealth_clip is not None,
        }[need]

    @property
    def size(self) -> int:
        return len(self.targets)

    @property
    def device(self) -> torch.device:
        return self.victim.device

    # -- shared, computed once --------------------------------------------------------------
    def encode_images(self, encoder: Any, images: list[torch.Tensor]) -> torch.Tensor:
        """(B, D) features of per-target images at their own sizes (one encoder call per size)."""
        from venomkit.encoders.base import encode_images

        with torch.no_grad():
            return encode_images(encoder, [im.to(self.device) for im in images])

    @cached_property
    def adv_features(self) -> dict[str, torch.Tensor]:
        """The targets' feature rows ``{m: (B, D_m)}`` the victim reads after the attack.

        Raw-content attacks: the saved adversarial content re-encoded by the victim's own
        encoders; a modality the attack leaves alone keeps the victim's clean catalog rows
        (exactly what the "before" ranking reads). Feature attacks: the perturbed rows.
        """
        if self.adv_rows is not None:
            return dict(self.adv_rows)
        victim = self.victim
        index = torch.as_tensor(self.targets, device=self.device)
        out = {m: table[index] for m, table in victim.clean_features().items()}
        with torch.no_grad():
            if "visual" in victim.modalities and self.adv_images is not None:
                out["visual"] = self.encode_images(victim.image_encoder, self.adv_images)
            if "text" in victim.modalities and self.adv_texts is not None:
                out["text"] = victim.text_encoder(list(self.adv_texts))
        return out

    @cached_property
    def clean_features(self) -> dict[str, torch.Tensor]:
        """The rows the attack started from: the clean content re-encoded (raw attacks) or the
        victim's clean feature table (feature attacks)."""
        victim = self.victim
        if self.adv_rows is not None:
            index = torch.as_tensor(self.targets, device=self.device)
            return {m: t[index] for m, t in victim.clean_features().items()}
        out: dict[str, torch.Tensor] = {}
        with torch.no_grad():
            if "visual" in victim.modalities and self.clean_images is not None:
                out["visual"] = self.encode_images(victim.image_encoder, self.clean_images)
            if "text" in victim.modalities:
                out["text"] = victim.text_encoder(list(self.clean_texts))
        return out


class Collector:
    """A family of result columns. ``needs`` lists :meth:`AttackedBatch.has` keys."""

    name: ClassVar[str] = ""
    needs: ClassVar[tuple[str, ...]] = ()

    def applies(self, batch: AttackedBatch) -> bool:
        return all(batch.has(n) for n in self.needs)

    def collect(self, batch: AttackedBatch) -> dict[str, np.ndarray]:
        """Columns ``{name: (B,) values}`` for the batch's targets."""
        raise NotImplementedError


def _numpy(t: torch.Tensor) -> np.ndarray:
    return t.detach().double().cpu().numpy().reshape(-1)


@register("ranking")
class RankingCollector(Collector):
    """HR@K, mean and median rank before and after, RI, per target (``venomkit.eval.ranking``).

    "Before" ranks the clean catalog; "after" replaces ONLY this target's feature rows with its
    adversarial ones, so a target's figures are those of an attack on it alone. Users who
    interacted with the target in training are left out, and every user's training items are
    masked, as full-sort evaluation does.
    """

    def collect(self, batch: AttackedBatch) -> dict[str, np.ndarray]:
        from venomkit.eval.ranking import evaluate_targets, relative_improvement

        victim, ks = batch.victim, list(batch.ks)
        with torch.no_grad():
            user_emb, item_emb = victim()
            before = evaluate_targets(user_emb, item_emb, batch.targets, batch.train, ks=ks)
            if getattr(victim, "items_independent", False):
                # One pass for the whole batch, bit for bit the per-target figures (target_ranks).
                index = torch.as_tensor(batch.targets, device=batch.device)
                _, adv_table = victim(victim.features_with(index, batch.adv_features))
                after = evaluate_targets(user_emb, item_emb, batch.targets, batch.train, ks=ks, target_table=adv_table)
            else:
                after_rows: list[dict[str, torch.Tensor]] = []
                for b, t in enumerate(batch.targets):
                    index = torch.tensor([t], device=batch.device)
                    rows = {m: f[b : b + 1] for m, f in batch.adv_features.items()}
                    u, i = victim(victim.features_with(index, rows))
                    after_rows.append(evaluate_targets(u, i, [t], batch.train, ks=ks))
                after = {key: torch.cat([r[key].reshape(-1) for r in after_rows]) for key in after_rows[0]}
        out: dict[str, np.ndarray] = {}
        for k in ks:
            out[f"hr@{k}_before"] = _numpy(before[f"hr@{k}"])
            out[f"hr@{k}_after"] = _numpy(after[f"hr@{k}"])
        for stat in ("mean_rank", "median_rank"):
            out[f"{stat}_before"] = _numpy(before[stat])
            out[f"{stat}_after"] = _numpy(after[stat])
        k_ri = 50 if 50 in ks else max(ks)
        out[f"ri@{k_ri}"] = np.asarray(relative_improvement(out[f"hr@{k_ri}_before"], out[f"hr@{k_ri}_after"]), dtype=float)
        out["n_users"] = _numpy(before["n_eligible"])
        return out


@register("image_stealth")
class ImageStealthCollector(Collector):
    """SSIM (Gaussian 11x11, sigma 1.5, data_range 1 = skimage ``gaussian_weights=True,
    use_sample_covariance=False``), PSNR, L-inf and L2 of each saved adversarial image against
    the clean one, at the image's own size."""

    needs = ("images",)

    def collect(self, batch: AttackedBatch) -> dict[str, np.ndarray]:
        from venomkit.eval import stealth

        cols: dict[str, list[float]] = {"ssim": [], "psnr": [], "linf": [], "l2": []}
        for clean, adv in zip(batch.clean_images or [], batch.adv_images or []):
            if clean.shape != adv.shape:
                raise ValueError(f"clean image {tuple(clean.shape)} and adversarial image {tuple(adv.shape)} differ in size")
            c, a = clean[None].double(), adv[None].double()
            cols["ssim"].append(float(stealth.ssim(c, a)))
            cols["psnr"].append(float(stealth.psnr(c, a)))
            cols["linf"].append(float(stealth.linf(c, a)))
            cols["l2"].append(float(stealth.l2(c, a)))
        return {k: np.asarray(v, dtype=float) for k, v in cols.items()}


@register("victim_encoder")
class VictimEncoderCollector(Collector):
    """``victim_image_sim``: cosine of the victim's own image features of the adversarial and
    the clean image (how far the attack moved what the victim sees)."""

    needs = ("images", "image_encoder")

    def collect(self, batch: AttackedBatch) -> dict[str, np.ndarray]:
        if "visual" not in batch.adv_features or "visual" not in batch.clean_features:
            return {}
        return {"victim_image_sim": _numpy(F.cosine_similarity(batch.clean_features["visual"], batch.adv_features["visual"], dim=1))}


@register("clip")
class ClipCollector(Collector):
    """CLIP stealth: ``clip_image_sim`` (adversarial vs clean image), ``clip_text_sim_clean`` and
    ``clip_text_sim_adv`` (each image vs the item's clean text), from a CLIP only: the run's
    ``metrics.stealth_clip`` or the victim's encoders when they are one open_clip model."""

    needs = ("images", "stealth_clip")

    def collect(self, batch: AttackedBatch) -> dict[str, np.ndarray]:
        image_encoder, text_encoder = batch.stealth_clip  # type: ignore[misc]
        with torch.no_grad():
            own = getattr(batch.victim, "image_encoder", None) is image_encoder
            f_clean = batch.clean_features["visual"] if own and "visual" in batch.clean_features else batch.encode_images(image_encoder, batch.clean_images)  # type: ignore[arg-type]
            adv_raw = batch.adv_rows is None
            f_adv = batch.adv_features["visual"] if own and adv_raw and "visual" in batch.adv_features else batch.encode_images(image_encoder, batch.adv_images)  # type: ignore[arg-type]
            f_text = text_encoder(list(batch.clean_texts))
        return {
            "clip_image_sim": _numpy(F.cosine_similarity(f_clean, f_adv, dim=1)),
            "clip_text_sim_clean": _numpy(F.cosine_similarity(f_clean, f_text, dim=1)),
            "clip_text_sim_adv": _numpy(F.cosine_similarity(f_adv, f_text, dim=1)),
        }


@register("text_stealth")
class TextStealthCollector(Collector):
    """``text_sim``: cosine of the victim text encoder's features of the adversarial and the
    clean text; ``text_edit_ratio``: token Levenshtein distance / clean length on the REAL
    tokens of the victim's tokenizer (no start, end or padding ids)."""

    needs = ("texts", "text_encoder")

    def collect(self, batch: AttackedBatch) -> dict[str, np.ndarray]:
        from venomkit.eval.text_edits import text_edit_ratio

        encoder = batch.victim.text_encoder
        with torch.no_grad():
            sim = F.cosine_similarity(encoder(list(batch.clean_texts)), encoder(list(batch.adv_texts or [])), dim=1)
        ratios = [text_edit_ratio(encoder, c, a) for c, a in zip(batch.clean_texts, batch.adv_texts or [])]
        return {"text_sim": _numpy(sim), "text_edit_ratio": np.asarray(ratios, dtype=float)}


@register("feature_shift")
class FeatureShiftCollector(Collector):
    """``shift_<m>`` = ||f_adv - f_clean|| / ||f_clean|| per modality the attack changed, in the
    unit of adversarial training's budget (UAT-MC's eps is a ratio of the row norm)."""

    def collect(self, batch: AttackedBatch) -> dict[str, np.ndarray]:
        changed = set(batch.adv_rows) if batch.adv_rows is not None else set()
        if batch.adv_rows is None:
            if batch.adv_images is not None:
                changed.add("visual")
            if batch.adv_texts is not None:
                changed.add("text")
        out = {}
        for m in ("visual", "text"):
            if m in changed and m in batch.adv_features and m in batch.clean_features:
                clean, adv = batch.clean_features[m], batch.adv_features[m]
                out[f"shift_{m}"] = _numpy((adv - clean).norm(dim=1) / clean.norm(dim=1).clamp_min(1e-12))
        return out


@register("diagnostics")
class DiagnosticsCollector(Collector):
    """The attack's own per-target diagnostics (objective before/after, scores, edits), as ``diag_<name>``."""

    def collect(self, batch: AttackedBatch) -> dict[str, np.ndarray]:
        return {f"diag_{k}": _numpy(v) for k, v in batch.diagnostics.items()}


def collect_rows(names: Sequence[str], batch: AttackedBatch) -> list[dict[str, float]]:
    """Run the named collectors that apply to ``batch``; one dict of columns per target."""
    rows: list[dict[str, float]] = [{} for _ in batch.targets]
    for name in names:
        collector = COLLECTORS[name]()
        if not collector.applies(batch):
            continue
        for column, values in collector.collect(batch).items():
            values = np.asarray(values).reshape(-1)
            if len(values) != batch.size:
                raise RuntimeError(f"collector {name!r} gave {len(values)} values of {column!r} for {batch.size} targets")
            for row, value in zip(rows, values):
                row[column] = float(value)
    return rows
