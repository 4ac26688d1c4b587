"""The victim interface: a recommender that scores items from features of their raw content.

Every victim is a ``Victim`` (an ``nn.Module``) with

* ``modalities``: which content features it reads, a subset of ``("visual", "text")``
  (LightGCN reads none), always in that order;
* ``forward(features) -> (user_emb (U, d), item_emb (I, d))``: the model, differentiable in
  the per-item feature tables ``features[m]`` of shape (I, D_m). Scores are
  ``user_emb @ item_emb.T``; biases are folded into extra columns so every victim is a dot
  product (this is what lets full-sort evaluation be one matmul per user block);
* ``item_representations(images, texts, item_index)``: the threat model of a real shop --
  replace the content of items ``item_index`` with raw ``images`` (B, 3, H, W) in [0, 1]
  and ``texts``, re-encode them through the victim's own encoders, and return the new
  (user_emb, item_emb), differentiable with respect to the pixels.

Victims hold their frozen content encoders (``image_encoder``, ``text_encoder``), loaded by
name, and a buffer of the clean catalog's features. A checkpoint is a folder with
``config.json`` and ``model.safetensors``; encoders are stored by their spec, never pickled:
``state_dict()`` leaves the encoders out, and ``load_state_dict`` does not expect them.
"""

from __future__ import annotations

import dataclasses
from abc import abstractmethod
from dataclasses import dataclass
from typing import Any, ClassVar, Iterator, Mapping, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from venomkit.config import check_int, check_number
from venomkit.encoders.base import ImageEncoder, Images, TextEncoder, encode_images
from venomkit.models.freeze import freeze
from venomkit.victims.scoring import TargetScorer, TokenTexts

Features = Mapping[str, torch.Tensor]

MODALITIES: tuple[str, ...] = ("visual", "text")
"""Every content modality, in the one order used everywhere (never swapped)."""

_ENCODER_ATTRS = ("image_encoder", "text_encoder")


@dataclass
class VictimConfig:
    """Fields every victim shares (subclasses add their own; all validated at construction).

    Attributes:
        n_users, n_items: sizes of the user and item index spaces (>= 1).
        embed_dim: width of the ID embeddings (>= 1).
        visual_dim, text_dim: widths of the visual / text feature tables; 0 means the victim
            does not read that modality. They must equal the encoders' ``output_dim``.
        image_encoder, text_encoder: specs the encoders are loaded from (``zoo:NAME``, a
            folder, a model id), stored so a checkpoint can reload them; ``None`` when unknown.
        reg_weight: weight of the victim's L2 term in the BPR loss (``Victim.reg_loss``; >= 0).
    """

    n_users: int
    n_items: int
    embed_dim: int = 64
    visual_dim: int = 0
    text_dim: int = 0
    image_encoder: str | None = None
    text_encoder: str | None = None
    reg_weight: float = 1e-4

    def __post_init__(self) -> None:
        for name in ("n_users", "n_items", "embed_dim"):
            _check_int(self, name, minimum=1)
        for name in ("visual_dim", "text_dim"):
            _check_int(self, name, minimum=0)
        _check_float(self, "reg_weight", minimum=0.0)
        for name in ("image_encoder", "text_encoder"):
            value = getattr(self, name)
            if value is not None and (not isinstance(value, str) or not value):
                raise ValueError(f"{type(self).__name__}.{name} must be a non-empty string or None, got {value!r}")

    @property
    def modalities(self) -> tuple[str, ...]:
        """The modalities with a non-zero feature width, in canonical order."""
        return tuple(m for m in MODALITIES if self.feature_dim(m) > 0)

    def feature_dim(self, modality: str) -> int:
        if modality == "visual":
            return self.visual_dim
        if modality == "text":
            return self.text_dim
        raise ValueError(f"unknown modality {modality!r}; expected one of {MODALITIES}")

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, values: Mapping[str, Any]) -> "VictimConfig":
        """Build from a JSON dict; an unknown or missing field is a ValueError naming it."""
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ValueError(f"{cls.__name__}: unknown field(s) {unknown}; known fields are {sorted(known)}")
        required = {f.name for f in dataclasses.fields(cls) if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING}  # type: ignore[misc]
        missing = sorted(required - set(values))
        if missing:
            raise ValueError(f"{cls.__name__}: missing field(s) {missing}")
        kwargs = {}
        for f in dataclasses.fields(cls):
            if f.name in values:
                value = values[f.name]
                # JSON has no tuples: restore them where the field default is one.
                if isinstance(value, list) and isinstance(f.default, tuple):
                    value = tuple(value)
                kwargs[f.name] = value
        return cls(**kwargs)


def scores_of_targets(user_emb: torch.Tensor, item_emb: torch.Tensor, users: torch.Tensor | None, item_index: torch.Tensor) -> torch.Tensor:
    """(U', B) = user_emb[users] @ item_emb[item_index].T (every user when ``users`` is None)."""
    if users is not None:
        user_emb = user_emb[users]
    return user_emb @ item_emb[item_index].T


def _check_int(cfg: object, name: str, minimum: int) -> None:
    check_int(f"{type(cfg).__name__}.{name}", getattr(cfg, name), minimum)


def _check_float(cfg: object, name: str, minimum: float | None = None, maximum: float | None = None, strict_min: bool = False) -> None:
    setattr(cfg, name, check_number(f"{type(cfg).__name__}.{name}", getattr(cfg, name), minimum, maximum, low_open=strict_min))


class Victim(nn.Module, TargetScorer):
    """Base class of the recommenders venomkit attacks and hardens (see module docstring).

    Subclasses set ``kind`` and ``config_class``, call ``super().__init__(config)`` and
    implement ``forward``. The base holds the clean feature tables as buffers
    ``features_visual`` (I, visual_dim) and ``features_text`` (I, text_dim) -- saved in the
    checkpoint so loading needs no re-extraction -- and the frozen encoders.
    """

    kind: ClassVar[str]
    config_class: ClassVar[type[VictimConfig]] = VictimConfig
    modalities: tuple[str, ...] = ()
    items_independent: ClassVar[bool] = False
    """True when item ``i``'s representation depends on item ``i``'s features only (VBPR, AMR):
    several targets' content can then be replaced in one forward pass without touching each
    other. False (the safe default) for graph victims, whose propagation couples items."""

    image_encoder: ImageEncoder | None
    text_encoder: TextEncoder | None

    def __init__(self, config: VictimConfig) -> None:
        super().__init__()
        if not isinstance(config, self.config_class):
            raise TypeError(f"{type(self).__name__} takes a {self.config_class.__name__}, got {type(config).__name__}")
        self.config = config
        self.modalities = config.modalities
        self.image_encoder = None
        self.text_encoder = None
        for m in self.modalities:
            self.register_buffer(f"features_{m}", torch.zeros(config.n_items, config.feature_dim(m)))

    # ----------------------------------------------------------------- model
    @abstractmethod
    def forward(self, features: Features | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """(user_emb (U, d), item_emb (I, d)); ``features`` defaults to the clean catalog's."""

    @property
    def n_users(self) -> int:
        return self.config.n_users

    @property
    def n_items(self) -> int:
        return self.config.n_items

    @property
    def device(self) -> torch.device:
        for tensor in self.parameters():
            return tensor.device
        for tensor in self.buffers():
            return tensor.device
        return torch.device("cpu")

    def resolve_features(self, features: Features | None) -> dict[str, torch.Tensor]:
        """The clean tables with any given modality replaced; shapes checked. Keys in canonical order."""
        clean = self.clean_features()
        if features is None:
            return clean
        unknown = set(features) - set(self.modalities)
        if unknown:
            raise ValueError(f"{self.kind} reads modalities {self.modalities}; got features for {sorted(unknown)}")
        out = {}
        for m in self.modalities:
            table = features.get(m, clean[m])
            if table.shape != clean[m].shape:
                raise ValueError(f"{self.kind}: features[{m!r}] must have shape {tuple(clean[m].shape)}, got {tuple(table.shape)}")
            out[m] = table
        return out

    def scores(self, users: torch.Tensor | None = None, features: Features | None = None) -> torch.Tensor:
        """Scores (U', I) of ``users`` (all when None) for every item: ``user_emb @ item_emb.T``."""
        user_emb, item_emb = self(features)
        if users is not None:
            user_emb = user_emb[users]
        return user_emb @ item_emb.T

    def full_sort(
        self,
        k: int,
        exclude: Any = None,
        users: torch.Tensor | None = None,
        block_size: int = 4096,
        features: Features | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Top-``k`` (scores, item indices), each (U', k), with ``exclude`` (the training
        interactions, (U, I) sparse) masked; see ``venomkit.eval.ranking.full_sort_topk``."""
        from venomkit.eval.ranking import full_sort_topk  # lazy: eval depends on nothing here

        with torch.no_grad():
            user_emb, item_emb = self(features)
        return full_sort_topk(user_emb, item_emb, k, exclude=exclude, users=users, block_size=block_size)

    def reg_loss(
        self, users: torch.Tensor, pos: torch.Tensor, neg: torch.Tensor, user_emb: torch.Tensor, item_emb: torch.Tensor
    ) -> torch.Tensor:
        """L2 regulariser of a BPR batch: ``reg_weight * (|u|^2 + |i|^2 + |j|^2) / 2``, batch mean.

        ``users``, ``pos``, ``neg`` are the batch's indices (B,); ``user_emb`` (U, d) and
        ``item_emb`` (I, d) the ``forward`` outputs the BPR loss was computed from. Applied
        here to the batch's output rows, as MMRec does for VBPR; subclasses override it with
        their authors' term (MMGCN regularises its ID embeddings and preferences).
        """
        sq = user_emb[users].pow(2).sum(1) + item_emb[pos].pow(2).sum(1) + item_emb[neg].pow(2).sum(1)
        return self.config.reg_weight * 0.5 * sq.mean()

    def training_loss(self, users: torch.Tensor, pos: torch.Tensor, neg: torch.Tensor) -> torch.Tensor:
        """The loss ``train_bpr`` minimises when no ``batch_loss`` is given (plain BPR here)."""
        return bpr_loss(self, users, pos, neg)

    def feature_projections(self) -> dict[str, torch.Tensor] | None:
        """Per-modality maps (D_m, k) into one space shared by the modalities, or None.

        The cross-modal gradient alignment of UAT-MC compares a visual and a textual gradient;
        when the feature widths differ, it compares them after these maps (the victim's first
        linear layer on each modality). None when the victim has no such layer.
        """
        return None

    # ------------------------------------------------------------- features
    def clean_features(self) -> dict[str, torch.Tensor]:
        """The per-modality (I, D_m) feature tables of the clean catalog (buffers)."""
        return {m: getattr(self, f"features_{m}") for m in self.modalities}

    def set_clean_features(self, features: Features) -> None:
        """Store the clean feature tables (I, D_m), one per modality the victim reads."""
        missing = [m for m in self.modalities if m not in features]
        if missing:
            raise ValueError(f"{self.kind} reads {self.modalities}: missing features for {missing}")
        for m in self.modalities:
            table = torch.as_tensor(features[m]).detach()
            expected = (self.n_items, self.config.feature_dim(m))
            if tuple(table.shape) != expected:
                raise ValueError(f"{self.kind}: clean features[{m!r}] must have shape {expected}, got {tuple(table.shape)}")
            if not torch.isfinite(table).all():
                raise ValueError(f"{self.kind}: clean features[{m!r}] contain NaN or inf")
            buf = getattr(self, f"features_{m}")
            buf.copy_(table.to(buf.device, buf.dtype))

    def attach_encoders(self, image_encoder: ImageEncoder | None = None, text_encoder: TextEncoder | None = None) -> None:
        """Attach frozen content encoders; their widths must match the config's feature widths."""
        for modality, attr, enc in (("visual", "image_encoder", image_encoder), ("text", "text_encoder", text_encoder)):
            if enc is None:
                continue
            if modality not in self.modalities:
                raise ValueError(f"{self.kind} does not read {modality} features; do not pass an {attr}")
            expected = self.config.feature_dim(modality)
            if getattr(enc, "output_dim", None) != expected:
                raise ValueError(
                    f"{attr} {getattr(enc, 'spec', '?')!r} gives {getattr(enc, 'output_dim', '?')}-d features; "
                    f"this {self.kind} was built for {expected}-d {modality} features"
                )
            setattr(self, attr, freeze(enc).to(self.device))
            spec_field = attr
            if getattr(self.config, spec_field) is None and getattr(enc, "spec", None):
                setattr(self.config, spec_field, enc.spec)

    def encoders(self) -> Iterator[nn.Module]:
        for attr in _ENCODER_ATTRS:
            enc = getattr(self, attr, None)
            if enc is not None:
                yield enc

    def model_parameters(self) -> list[nn.Parameter]:
        """The trainable parameters: everything except the frozen encoders."""
        return [p for name, p in self.named_parameters() if not _is_encoder_key(name)]

    def train(self, mode: bool = True) -> "Victim":
        # Encoders stay in eval mode: their BatchNorm/dropout must not change with training.
        super().train(mode)
        for enc in self.encoders():
            enc.eval()
        return self

    # ------------------------------------------------------------ raw content
    def encode_content(
        self, images: Images | None, texts: Sequence[str] | TokenTexts | None, modalities: Sequence[str] | None = None
    ) -> dict[str, torch.Tensor]:
        """Raw content -> features per modality through the victim's own encoders.

        ``images``: (B, 3, H, W) or a list of B (3, H_i, W_i) photos at their own sizes in
        [0, 1] (the encoder resizes; differentiable with respect to the native pixels).
        ``texts``: B strings, or :class:`~venomkit.victims.scoring.TokenTexts` (token ids and
        their differentiable embeddings, for first-order token attacks). ``modalities``: encode
        only these (default: every modality the victim reads).
        """
        out: dict[str, torch.Tensor] = {}
        wanted = self.modalities if modalities is None else [m for m in self.modalities if m in modalities]
        if "visual" in wanted:
            if images is None or self.image_encoder is None:
                raise ValueError(f"{self.kind} reads images: pass images and load an image encoder")
            out["visual"] = encode_images(self.image_encoder, images)
        if "text" in wanted:
            if texts is None or self.text_encoder is None:
                raise ValueError(f"{self.kind} reads texts: pass texts and load a text encoder")
            if isinstance(texts, TokenTexts):
                out["text"] = self.text_encoder.forward_embeddings(texts.embeddings, texts.ids)
            else:
                out["text"] = self.text_encoder(list(texts))
        return out

    def features_with(self, item_index: torch.Tensor, new_rows: Features) -> dict[str, torch.Tensor]:
        """The clean feature tables with rows ``item_index`` replaced (differentiably)."""
        features = dict(self.clean_features())
        for m, rows in new_rows.items():
            table = features[m].clone()
            table[item_index] = rows.to(table.dtype)
            features[m] = table
        return features

    def item_representations(
        self, images: Images | None, texts: Sequence[str] | TokenTexts | None, item_index: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Re-encode raw content of items ``item_index`` and run the model: (user_emb, item_emb)."""
        return self(self.features_with(item_index, self.encode_content(images, texts)))

    # ------------------------------------------------------ scoring contract
    @property
    def text_tokens(self) -> TextEncoder | None:
        """The text encoder: the token space HotFlip edits this victim's texts in."""
        return self.text_encoder if "text" in self.modalities else None

    def target_scores(
        self, users: torch.Tensor | None, images: Images | None, texts: Sequence[str] | TokenTexts | None, item_index: torch.Tensor
    ) -> torch.Tensor:
        """(U', B) dot-product scores of the targets re-encoded from raw content (:mod:`venomkit.victims.scoring`)."""
        user_emb, item_emb = self.item_representations(images, texts, item_index) if self.modalities else self()
        return scores_of_targets(user_emb, item_emb, users, item_index)

    def rank_thresholds(
        self, users: torch.Tensor | None, item_index: torch.Tensor, k: int, train: Any = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Full-sort thresholds: the K-th best clean score among the items a user has not seen.

        ``train`` (users x items CSR) masks seen items as full-sort ranking does. When target
        ``t`` is itself in a user's clean top K, the threshold is the (K+1)-th score (the K-th
        OTHER item). Users who interacted with ``t``, or have fewer than K unseen items, get
        weight 0. Returns (threshold (U', B), weight (U', B)), no gradient.
        """
        with torch.no_grad():
            user_emb, item_emb = self()
            if users is not None:
                user_emb = user_emb[users]
            scores = user_emb @ item_emb.T  # (U', I)
            seen = None
            if train is not None:
                if train.shape != (self.n_users, self.n_items):
                    raise ValueError(f"knowledge.train has shape {train.shape}, the victim has {self.n_users} users x {self.n_items} items")
                rows = train if users is None else train[users.cpu().numpy()]
                seen = torch.from_numpy(np.asarray(rows.todense()) > 0).to(scores.device)
                scores = scores.masked_fill(seen, float("-inf"))
            k = min(k, scores.shape[1] - 1)
            vals, idx = scores.topk(k + 1, dim=1)  # (U', K+1)
            in_top = (idx[:, :k].unsqueeze(-1) == item_index.view(1, 1, -1)).any(1)  # (U', B)
            thr = torch.where(in_top, vals[:, k : k + 1], vals[:, k - 1 : k])
            weight = torch.ones_like(thr) if seen is None else (~seen[:, item_index]).float()
            weight = weight * torch.isfinite(thr).float()
            return torch.where(torch.isfinite(thr), thr, torch.zeros_like(thr)), weight

    # ------------------------------------------------------------- state
    def state_dict(self, *args: Any, **kwargs: Any) -> dict[str, Any]:  # type: ignore[override]
        """The model's tensors without the encoders (they are reloaded from their specs)."""
        sd = super().state_dict(*args, **kwargs)
        prefix = kwargs.get("prefix", "")
        for key in [k for k in sd if k.startswith(prefix) and _is_encoder_key(k[len(prefix):])]:
            del sd[key]
        return sd

    def load_state_dict(self, state_dict: Mapping[str, Any], strict: bool = True, assign: bool = False) -> Any:
        """Load model tensors; encoder tensors are neither expected nor accepted."""
        self._prepare_load(state_dict)
        result = super().load_state_dict(state_dict, strict=False, assign=assign)
        missing = [k for k in result.missing_keys if not _is_encoder_key(k)]
        unexpected = list(result.unexpected_keys)
        if strict and (missing or unexpected):
            raise RuntimeError(f"{self.kind}: state does not match the model: missing {missing}, unexpected {unexpected}")
        return result

    def _prepare_load(self, state_dict: Mapping[str, Any]) -> None:
        """Hook for victims whose buffer shapes depend on the data (graph edges)."""


def bpr_from_embeddings(
    user_emb: torch.Tensor, item_emb: torch.Tensor, users: torch.Tensor, pos: torch.Tensor, neg: torch.Tensor
) -> torch.Tensor:
    """Mean BPR loss ``-log sigmoid(s(u, i) - s(u, j))`` over the batch (a scalar >= 0).

    ``user_emb`` (U, d) and ``item_emb`` (I, d) score by dot products; ``users``, ``pos``,
    ``neg`` are the batch's LongTensors (B,). Rendle et al., UAI 2009.
    """
    u = user_emb[users]
    diff = (u * item_emb[pos]).sum(1) - (u * item_emb[neg]).sum(1)
    return -F.logsigmoid(diff).mean()


def bpr_loss(
    victim: Victim,
    users: torch.Tensor,
    pos: torch.Tensor,
    neg: torch.Tensor,
    features: Features | None = None,
    reg: bool = True,
) -> torch.Tensor:
    """BPR loss of a batch (users, pos, neg: LongTensors (B,)) under ``features``; a scalar.

    ``features`` (``{m: (I, D_m)}``) replaces the clean feature tables (default: clean);
    ``reg`` adds the victim's L2 term ``victim.reg_loss``.
    """
    user_emb, item_emb = victim(features)
    loss = bpr_from_embeddings(user_emb, item_emb, users, pos, neg)
    if reg:
        loss = loss + victim.reg_loss(users, pos, neg, user_emb, item_emb)
    return loss


def _is_encoder_key(name: str) -> bool:
    return any(name == attr or name.startswith(attr + ".") for attr in _ENCODER_ATTRS)
