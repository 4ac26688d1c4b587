"""Run recipes: the nested schema of a run, the ONE recipe loader, overrides, validation.

A run recipe is a YAML mapping; every section maps onto a dataclass below and is validated
before any work starts. An unknown key names the key, its line in the file and the valid
keys; a wrong type names the field and the expected type::

    name: judge
    description: UAT / UAT-MC judged on raw-content attacks (Table 2 of arXiv 2605.06238)
    data: toyshop                      # or {spec: PATH, split: loo}
    victims:                           # trained in the run (a kind) or loaded (a checkpoint folder)
      - vbpr                           # shorthand for {kind: vbpr}
      - {kind: mmgcn, train: {epochs: 200}}
    defenses: [defenses/uat.yaml, defenses/uat_mc.yaml]   # each victim is also hardened by each
    attacks:                           # recipe files or registry names, with config overrides
      - attacks/pgd.yaml
      - {recipe: attacks/fgsm.yaml, config: {eps: 4/255}}
      - feature_pgd
    targets: {n: 20, max_interactions: 5, batch_size: 16}
    seed: 0
    metrics: {ks: [5, 10, 20, 50], stealth_clip: zoo:toyshop-clip}
    outputs: {tables: [judge]}
    shop_transform: png                # png | jpeg:Q | resize:S,jpeg:Q

The two single-purpose recipe forms of ``attacks/`` and ``defenses/`` stay valid and are read
by the same loader: ``{attack: NAME, description, config}`` configures one attack class and
``{defense: NAME, description, config}`` one defense; with command-line flags (``--victim``,
``--data``, ``--targets``) an attack recipe IS a run (:func:`load_run`).

Overrides ``key.sub=value`` address the nested schema (``targets.n=6``,
``attacks.pgd.config.steps=3``, ``victims.vbpr.train.epochs=5``; list entries by name or
index); for an attack or defense recipe a bare ``key=value`` sets its config. A bad override is
blamed on the command line, never on the file.
"""

from __future__ import annotations

import dataclasses
import re
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Mapping, Sequence

import yaml

from venomkit.config import check_int, check_int_list, coerce, config_fields, parse_overrides

RECIPE_SUFFIXES = (".yaml", ".yml")
VICTIM_KINDS = ("vbpr", "amr", "mmgcn", "lightgcn")
DEFAULT_CONTENT_ENCODER = "zoo:toyshop-clip"
_SAFE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.+\-]*")


class RecipeError(ValueError):
    """A recipe or override that cannot be read: one line naming file, line, field and what is expected."""


# ----------------------------------------------------------------------------------------
# Where a value came from (file and line, or the command line)
# ----------------------------------------------------------------------------------------

Path_ = tuple  # a key path: ("attacks", 1, "config", "steps")


@dataclass
class Source:
    """Line numbers of a parsed YAML file and the overrides applied on top of it."""

    file: str | None = None
    lines: dict[tuple, int] = field(default_factory=dict)
    overrides: dict[tuple, str] = field(default_factory=dict)

    def where(self, path: tuple) -> str:
        """``file:line`` of ``path`` (or of its nearest ancestor), or the override that set it."""
        for k in range(len(path), -1, -1):
            if path[:k] in self.overrides:
                origin = self.overrides[path[:k]]
                return f"command line: {origin}" if origin.startswith("--") else f"command line: override {origin!r}"
        for k in range(len(path), 0, -1):
            if path[:k] in self.lines:
                return f"{self.file}:{self.lines[path[:k]]}"
        return self.file or "recipe"

    def error(self, path: tuple, message: str) -> RecipeError:
        label = format_path(path)
        return RecipeError(f"{self.where(path)}: {label + ': ' if label else ''}{message}")


def format_path(path: Sequence[Any]) -> str:
    """``("attacks", 1, "config", "eps")`` -> ``attacks[1].config.eps``."""
    out = ""
    for part in path:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


def _line_map(node: yaml.Node, path: tuple, lines: dict[tuple, int], file: str) -> None:
    if isinstance(node, yaml.MappingNode):
        seen: dict[Any, int] = {}
        for key_node, value_node in node.value:
            key = key_node.value
            line = key_node.start_mark.line + 1
            if key in seen:
                raise RecipeError(f"{file}:{line}: {format_path(path + (key,))}: key appears twice (first on line {seen[key]})")
            seen[key] = line
            lines[path + (key,)] = line
            _line_map(value_node, path + (key,), lines, file)
    elif isinstance(node, yaml.SequenceNode):
        for i, item in enumerate(node.value):
            lines[path + (i,)] = item.start_mark.line + 1
            _line_map(item, path + (i,), lines, file)


def read_yaml(path: str | Path) -> tuple[Any, Source]:
    """Parse a YAML file; returns (data, Source with the line of every key and list entry)."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise RecipeError(f"recipe file not found: {path}") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise RecipeError(f"{path}: cannot read the recipe ({exc})") from None
    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"{path}:{mark.line + 1}" if mark is not None else str(path)
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise RecipeError(f"{where}: not valid YAML ({problem})") from None
    source = Source(file=str(path))
    if node is not None:
        _line_map(node, (), source.lines, str(path))
    return data, source


# ----------------------------------------------------------------------------------------
# The schema
# ----------------------------------------------------------------------------------------


@dataclass
class DataSpec:
    """The dataset: a ``load_dataset`` spec and the split.

    Attributes:
        spec: ``toyshop`` / ``toyshop:n_users=..``, a folder in the atomic format, or the
            ML-100K posters folder.
        split: ``ratio`` (80/10/10 per user), ``loo`` (leave-one-out), or None for the
            dataset's own default split.
        split_seed: seed of the split.
    """

    spec: str = "toyshop"
    split: Literal["ratio", "loo"] | None = None
    split_seed: int = 0

    SHORTHAND: typing.ClassVar[str] = "a dataset spec (toyshop, a folder)"

    @staticmethod
    def expand(value: str) -> dict[str, Any]:
        return {"spec": value}

    def __post_init__(self) -> None:
        if not self.spec:
            raise ValueError("spec must be a dataset spec such as toyshop or a folder")
        check_int("split_seed", self.split_seed, 0)


@dataclass
class TrainSpec:
    """Plain BPR training of a victim the run trains (``venomkit.victims.training.train_bpr``).

    ``lr`` None takes the victim's default (1e-3; LightGCN 1e-2); ``patience`` None never
    stops early; ``seed`` None takes the run's seed (an attacker's surrogate model is trained
    with another seed than the victim, e.g. ``train: {seed: 1}``).
    """

    epochs: int = 200
    lr: float | None = None
    batch_size: int = 2048
    patience: int | None = 10
    weight_decay: float = 0.0
    eval_every: int = 1
    seed: int | None = None

    def __post_init__(self) -> None:
        if self.seed is not None:
            check_int("seed", self.seed, 0)
        check_int("epochs", self.epochs, 1)
        check_int("batch_size", self.batch_size, 1)
        check_int("eval_every", self.eval_every, 1)
        if self.patience is not None:
            check_int("patience", self.patience, 0)
        if self.lr is not None and not self.lr > 0:
            raise ValueError(f"lr must be > 0, got {self.lr!r}")
        if self.weight_decay < 0:
            raise ValueError(f"weight_decay must be >= 0, got {self.weight_decay!r}")


@dataclass
class VictimSpec:
    """One victim: trained in the run (``kind``) or loaded (``checkpoint``), never both.

    Attributes:
        name: how tables and folders call it (default: the kind, or the checkpoint folder's name).
        kind: ``vbpr``, ``amr``, ``mmgcn`` or ``lightgcn``, trained on the run's data.
        checkpoint: a folder written by ``venomkit train`` (``config.json`` + ``model.safetensors``).
        image_encoder, text_encoder: encoder specs of a trained content victim (default
            ``zoo:toyshop-clip``; ``none`` leaves the modality out). A checkpoint brings its own.
        train: the BPR training settings.
        config: fields of the victim's config class (``embed_dim``, ``n_layers``, ``latent_dim``,
            ``reg_weight``, ...), checked against that class.
        given: the victim is an object handed to ``execute(..., victims={name: victim})`` in
            Python (identified by a hash of its weights), neither trained nor loaded.
        defend: harden this victim with each of the run's defenses (``false`` for a victim
            they cannot apply to, e.g. ID-only LightGCN under UAT-MC).
        attacked: ``false`` makes this victim the ATTACKER's model, not a target of attacks: it
            is built like any victim (on the training interactions only) and an attack names
            it as its ``surrogate_victim`` (grey-box: the attack optimises on it, the real
            victims score the result). It is never hardened.
    """

    name: str = ""
    kind: str | None = None
    checkpoint: str | None = None
    given: bool = False
    defend: bool = True
    attacked: bool = True
    image_encoder: str | None = None
    text_encoder: str | None = None
    train: TrainSpec = field(default_factory=TrainSpec)
    config: dict[str, Any] = field(default_factory=dict)

    SHORTHAND: typing.ClassVar[str] = "a victim kind (vbpr, amr, mmgcn, lightgcn) or a checkpoint folder"

    @staticmethod
    def expand(value: str) -> dict[str, Any]:
        return {"kind": value} if value in VICTIM_KINDS else {"checkpoint": value}

    def __post_init__(self) -> None:
        if self.given:
            if self.kind is not None or self.checkpoint is not None or not self.name:
                raise ValueError("a given victim has a name and neither kind nor checkpoint")
            return
        if (self.kind is None) == (self.checkpoint is None):
            raise ValueError("give exactly one of kind (train it) or checkpoint (load it)")
        if self.kind is not None and self.kind not in VICTIM_KINDS:
            raise ValueError(f"kind must be one of {', '.join(VICTIM_KINDS)}, got {self.kind!r}")
        if self.checkpoint is not None:
            for key in ("image_encoder", "text_encoder"):
                if getattr(self, key) is not None:
                    raise ValueError(f"{key} is set, but a checkpoint victim brings its own encoders")
            if self.config:
                raise ValueError("config is set, but a checkpoint victim brings its own config")
        if not self.name:
            self.name = self.kind if self.kind else Path(self.checkpoint).name  # type: ignore[arg-type]

    def encoders(self) -> tuple[str | None, str | None]:
        """(image, text) encoder specs of a trained victim, defaults applied (LightGCN reads none)."""
        if self.kind == "lightgcn":
            return None, None
        image = DEFAULT_CONTENT_ENCODER if self.image_encoder is None else self.image_encoder
        text = DEFAULT_CONTENT_ENCODER if self.text_encoder is None else self.text_encoder
        return (None if image.lower() == "none" else image), (None if text.lower() == "none" else text)


@dataclass
class DefenseSpec:
    """A defense every victim is also hardened with (fine-tuned from it): a recipe or a name.

    Attributes:
        name: label in tables and folders (default: the recipe's ``defense`` name).
        recipe: a defense recipe file (``defenses/uat_mc.yaml``).
        defense: a defense name (``uat``, ``uat_mc``) when there is no recipe.
        config: fields of the defense's config, applied over the recipe's.
    """

    name: str = ""
    recipe: str | None = None
    defense: str | None = None
    config: dict[str, Any] = field(default_factory=dict)

    SHORTHAND: typing.ClassVar[str] = "a defense recipe file (defenses/uat_mc.yaml) or a name (uat, uat_mc)"

    @staticmethod
    def expand(value: str) -> dict[str, Any]:
        return {"recipe": value} if value.endswith(RECIPE_SUFFIXES) else {"defense": value}

    def __post_init__(self) -> None:
        if (self.recipe is None) == (self.defense is None):
            raise ValueError("give exactly one of recipe (a defense recipe file) or defense (a name)")


@dataclass
class AttackSpec:
    """An attack: a recipe file or a registry name, with config overrides.

    Attributes:
        name: label in tables and folders (default: the recipe file's stem or the name).
        recipe: an attack recipe file (``attacks/pgd.yaml``).
        attack: a registry name (``pgd``, ``token_hotflip``, ``feature_pgd``, ...).
        config: fields of the attack's config, applied over the recipe's.
        surrogate: grey-box: an image encoder spec the attack optimises on instead of the
            victim's (the victim still scores the result).
        surrogate_victim: grey-box: the name of a run victim with ``attacked: false`` (the
            attacker's own recommender, trained on the training interactions) the attack
            optimises on; the victims still score the result.
    """

    name: str = ""
    recipe: str | None = None
    attack: str | None = None
    config: dict[str, Any] = field(default_factory=dict)
    surrogate: str | None = None
    surrogate_victim: str | None = None

    SHORTHAND: typing.ClassVar[str] = "an attack recipe file (attacks/pgd.yaml) or a registry name (pgd)"

    @staticmethod
    def expand(value: str) -> dict[str, Any]:
        return {"recipe": value} if value.endswith(RECIPE_SUFFIXES) else {"attack": value}

    def __post_init__(self) -> None:
        if (self.recipe is None) == (self.attack is None):
            raise ValueError("give exactly one of recipe (an attack recipe file) or attack (a registry name)")
        if self.surrogate is not None and self.surrogate_victim is not None:
            raise ValueError("give at most one of surrogate (an image encoder) or surrogate_victim (a run victim)")
        if not self.name:
            self.name = Path(self.recipe).stem if self.recipe else str(self.attack).replace("-", "_")


@dataclass
class TargetSpec:
    """The promotion targets: ``n`` cold items drawn with the run's seed, or explicit ``items``.

    Attributes:
        n: number of cold targets (ignored when ``items`` is given).
        max_interactions: an item is cold with at most this many training interactions.
        items: explicit target item ids (the dataset's own ids).
        batch_size: targets attacked in one tensor; batches are the unit of sharding and of
            resume, so results do not depend on the number of processes.
    """

    n: int = 50
    max_interactions: int = 5
    items: list[str] | None = None
    batch_size: int = 16

    def __post_init__(self) -> None:
        check_int("n", self.n, 1, hint="the number of cold targets to attack, e.g. 50")
        check_int("max_interactions", self.max_interactions, 0)
        check_int("batch_size", self.batch_size, 1)
        if self.items is not None:
            self.items = [str(i) for i in self.items]
            if not self.items:
                raise ValueError("items is empty: list target item ids or leave it out")
            if len(set(self.items)) != len(self.items):
                raise ValueError("items lists an item twice")


@dataclass
class MetricsSpec:
    """What every result row holds.

    Attributes:
        collectors: metric collectors by registered name (``venomkit.runs.collectors``);
            each one runs on the settings that give it what it needs.
        ks: the K of HR@K.
        stealth_clip: the CLIP (open_clip spec) of the ``clip_*`` stealth figures; None uses
            the victim's encoders when they are one CLIP, else leaves those columns out.
    """

    collectors: list[str] = field(
        default_factory=lambda: ["ranking", "image_stealth", "victim_encoder", "clip", "text_stealth", "feature_shift", "diagnostics"]
    )
    ks: list[int] = field(default_factory=lambda: [5, 10, 20, 50])
    stealth_clip: str | None = None

    def __post_init__(self) -> None:
        check_int_list("ks", self.ks)
        self.ks = sorted(set(self.ks))
        from venomkit.runs.collectors import COLLECTORS

        unknown = [c for c in self.collectors if c not in COLLECTORS]
        if unknown:
            raise ValueError(f"unknown collector(s) {unknown}; registered: {', '.join(COLLECTORS)}")


@dataclass
class OutputSpec:
    """What the run writes besides results.csv and summary.json.

    Attributes:
        grids: write ``<item>_grid.png`` (clean | adversarial | 10x difference) per image target.
        report: write ``report.html`` at the end.
        tables: extra tables (``judge``: the UAT-MC paper's Table 2 layout, ``table.md``/``table.csv``;
            ``promotion``: HR@K before / after / gain at every K of ``metrics.ks`` with budget and
            stealth per (victim, attack), ``promotion.md``/``.csv``, and ``frontier.png``: gain at
            the smallest K against mean SSIM, one line per method).
        report_targets: targets shown per setting in the report's image grids.
        save_format: ``png`` (the adversarial photo as an 8-bit PNG, always written), or
            ``jpeg:Q`` to also write a shop-ready ``<item>_adv.jpg`` at quality Q (the PNG
            stays what is scored, unless ``shop_transform`` says otherwise).
    """

    grids: bool = True
    report: bool = True
    tables: list[Literal["judge", "promotion"]] = field(default_factory=list)
    report_targets: int = 12
    save_format: str = "png"

    def __post_init__(self) -> None:
        check_int("report_targets", self.report_targets, 1)
        from venomkit.runs.shop import parse_save_format

        parse_save_format(self.save_format)


@dataclass
class RunRecipe:
    """A whole run: data x victims (x defenses) x attacks x targets, and what to measure.

    ``threads`` is the number of CPU threads each process attacks and measures with. Float32
    results depend on it (convolutions and matrix products split their sums by thread), so it
    is one of the run's settings: the default 1 keeps a run sharded over N processes equal to
    a single-process one; more threads in one process is faster and equally valid, but its
    rows are that thread count's (``accelerate launch`` gives each process one thread unless
    told otherwise).
    """

    name: str = "run"
    description: str = ""
    data: DataSpec = field(default_factory=DataSpec)
    victims: list[VictimSpec] = field(default_factory=list)
    defenses: list[DefenseSpec] = field(default_factory=list)
    attacks: list[AttackSpec] = field(default_factory=list)
    targets: TargetSpec = field(default_factory=TargetSpec)
    seed: int = 0
    metrics: MetricsSpec = field(default_factory=MetricsSpec)
    outputs: OutputSpec = field(default_factory=OutputSpec)
    shop_transform: str = "png"
    device: str = "cpu"
    threads: int = 1

    def __post_init__(self) -> None:
        check_int("threads", self.threads, 1)
        if not _SAFE_NAME.fullmatch(self.name):
            raise ValueError(f"name must be letters, digits, '_', '.', '-', '+', got {self.name!r}")
        check_int("seed", self.seed, 0)
        if not self.victims:
            raise ValueError("victims is empty: list at least one (a kind to train, or a checkpoint folder)")
        from venomkit.runs.shop import parse_shop_transform

        parse_shop_transform(self.shop_transform)


# ----------------------------------------------------------------------------------------
# Building dataclasses from nested data, with locations in errors
# ----------------------------------------------------------------------------------------


def _type_name(annotation: Any) -> str:
    origin = typing.get_origin(annotation)
    args = [a for a in typing.get_args(annotation) if a is not type(None)]
    if origin in (typing.Union, getattr(__import__("types"), "UnionType")):
        return " or ".join(_type_name(a) for a in args) + (" or null" if len(args) < len(typing.get_args(annotation)) else "")
    if origin is Literal:
        return "one of " + ", ".join(map(str, typing.get_args(annotation)))
    if origin in (list, tuple):
        return f"a list of {_type_name(args[0])}s" if args else "a list"
    if origin is dict:
        return "a mapping"
    if dataclasses.is_dataclass(annotation):
        return "a mapping"
    return {int: "an integer", float: "a number", str: "a string", bool: "true or false"}.get(annotation, str(annotation))


def build(cls: type, raw: Any, source: Source, path: tuple = ()) -> Any:
    """Dataclass ``cls`` from nested data ``raw`` (mappings, lists, strings), errors located.

    Shorthand strings are expanded by ``cls.expand``; nested dataclass fields and lists of
    dataclasses recurse; ``dict`` fields are kept as they are (checked later against the class
    they configure); scalars are coerced with :func:`venomkit.config.coerce`.
    """
    if isinstance(raw, str) and hasattr(cls, "expand"):
        raw = cls.expand(raw)
    if raw is None:
        raw = {}
    if not isinstance(raw, Mapping):
        shorthand = f" or {cls.SHORTHAND}" if hasattr(cls, "SHORTHAND") else ""
        raise source.error(path, f"expected a mapping{shorthand}, got {raw!r}")
    fields = config_fields(cls)
    unknown = [k for k in raw if k not in fields]
    if unknown:
        key = unknown[0]
        where = format_path(path) or "the top level"
        raise source.error(path + (key,), f"unknown key {key!r} in {where}; valid keys: {', '.join(fields)}")
    kwargs: dict[str, Any] = {}
    for name, value in raw.items():
        annotation = fields[name]
        kwargs[name] = _build_value(annotation, value, source, path + (name,))
    try:
        return cls(**kwargs)
    except (ValueError, TypeError) as exc:
        # Locate the field the message is about (a validation message starts with its name).
        field_name = next((k for k in raw if re.match(rf"(\w+\.)?{re.escape(str(k))}\b", str(exc))), None)
        if field_name is not None:
            message = re.sub(rf"^(\w+\.)?{re.escape(str(field_name))}\s*:?\s*", "", str(exc))
            raise source.error(path + (field_name,), message) from None
        raise source.error(path, str(exc)) from None


def _build_value(annotation: Any, value: Any, source: Source, path: tuple) -> Any:
    origin = typing.get_origin(annotation)
    args = typing.get_args(annotation)
    if dataclasses.is_dataclass(annotation):
        return build(annotation, value, source, path)
    if origin is list and args and dataclasses.is_dataclass(args[0]):
        if isinstance(value, (str, Mapping)):
            value = [value]
        if not isinstance(value, list):
            raise source.error(path, f"expected {_type_name(annotation)}, got {value!r}")
        return [build(args[0], item, source, path + (i,)) for i, item in enumerate(value)]
    if origin is dict:
        if value is None:
            return {}
        if not isinstance(value, Mapping):
            raise source.error(path, f"expected a mapping of settings, got {value!r}")
        return dict(value)
    try:
        return coerce(value, annotation, format_path(path))
    except ValueError:
        raise source.error(path, f"expected {_type_name(annotation)}, got {value!r}") from None


# ----------------------------------------------------------------------------------------
# Overrides
# ----------------------------------------------------------------------------------------


def _entry_names(section: str, entries: list[Any]) -> list[str]:
    """The default names of a list section's entries, as the dataclasses compute them."""
    names = []
    for entry in entries:
        spec_cls = {"victims": VictimSpec, "defenses": DefenseSpec, "attacks": AttackSpec}.get(section)
        data = spec_cls.expand(entry) if (spec_cls and isinstance(entry, str)) else entry
        if isinstance(data, Mapping) and data.get("name"):
            names.append(str(data["name"]))
        elif isinstance(data, Mapping) and section == "victims":
            names.append(str(data.get("kind") or Path(str(data.get("checkpoint", ""))).name))
        elif isinstance(data, Mapping) and section == "attacks":
            names.append(Path(str(data["recipe"])).stem if data.get("recipe") else str(data.get("attack", "")).replace("-", "_"))
        elif isinstance(data, Mapping) and section == "defenses":
            names.append(Path(str(data["recipe"])).stem if data.get("recipe") else str(data.get("defense", "")))
        else:
            names.append("")
    return names


def apply_override(raw: dict, item: str, source: Source, origin: str | None = None) -> None:
    """Set ``key.sub=value`` in the nested raw recipe ``raw`` (in place), recording its origin.

    List entries are addressed by name or index; a shorthand entry is expanded to a mapping
    first. An unknown key names the override and the valid keys at that level. ``origin`` is
    what the user typed (a flag, or a bare ``key=value``), quoted in errors.
    """
    origin = origin or item
    try:
        (key, value), = parse_overrides([item]).items()
    except ValueError:
        raise RecipeError(f"command line: override {origin!r} is not of the form key=value (e.g. targets.n=6)") from None
    parts = key.split(".")
    node: Any = raw
    cls: Any = RunRecipe
    path: tuple = ()
    for depth, part in enumerate(parts):
        last = depth == len(parts) - 1
        if isinstance(node, list):
            names = _entry_names(str(path[-1]) if path else "", node)
            if part.isdigit() and int(part) < len(node):
                index = int(part)
            elif part in names:
                index = names.index(part)
            else:
                raise RecipeError(f"command line: override {origin!r}: {format_path(path)} has no entry {part!r}; entries: {', '.join(names) or 'none'}")
            if isinstance(node[index], str):
                node[index] = cls.expand(node[index])
            node, path = node[index], path + (index,)
            if last:
                raise RecipeError(f"command line: override {origin!r}: give a key of entry {part!r}, e.g. {key}.config.KEY=VALUE")
            continue
        if not isinstance(node, dict):
            raise RecipeError(f"command line: override {origin!r}: {format_path(path)} is not a mapping")
        if cls is not None and dataclasses.is_dataclass(cls):
            fields = config_fields(cls)
            if part not in fields:
                raise RecipeError(f"command line: override {origin!r}: unknown key {part!r} in {format_path(path) or 'the top level'}; valid keys: {', '.join(fields)}")
            annotation = fields[part]
            container, args = typing.get_origin(annotation), typing.get_args(annotation)
            next_cls = annotation if dataclasses.is_dataclass(annotation) else (args[0] if container is list and args and dataclasses.is_dataclass(args[0]) else None)
        else:
            next_cls = None
        path = path + (part,)
        if last:
            if next_cls is not None and typing.get_origin(config_fields(cls)[part]) is list:
                value = _list_value(value)  # victims=vbpr,mmgcn replaces the whole list
            node[part] = value
            source.overrides[path] = origin
            return
        child = node.get(part)
        if child is None:
            child = [] if (cls is not None and next_cls is not None and typing.get_origin(config_fields(cls)[part]) is list) else {}
            node[part] = child
        elif isinstance(child, str) and next_cls is not None and hasattr(next_cls, "expand"):
            child = next_cls.expand(child)
            node[part] = child
        node, cls = child, next_cls


def _list_value(value: str) -> list[Any]:
    """``"a,b"`` or ``"[a, b]"`` -> ``["a", "b"]`` (entries in their shorthand form)."""
    text = value.strip()
    if text.startswith("["):
        try:
            parsed = yaml.safe_load(text)
        except yaml.YAMLError:
            raise RecipeError(f"command line: {value!r} is not a list such as [a, b]") from None
        return list(parsed or [])
    return [v.strip() for v in text.split(",") if v.strip()]


# ----------------------------------------------------------------------------------------
# Recipe files: run, attack, defense
# ----------------------------------------------------------------------------------------


POISONING_RUN_KEYS = ("name", "description", "recipe", "config", "data", "run")
"""Keys of a poisoning run recipe: ``recipe`` (the attack recipe), ``config`` (its overrides),
``data`` (a dataset spec) and ``run`` (:class:`~venomkit.runs.poisoning.PoisoningRunConfig` fields)."""


@dataclass
class RecipeFile:
    """A parsed recipe file: ``kind`` is ``run``, ``attack``, ``defense`` or ``poisoning``.

    For attack/defense recipes ``name`` is the registry name and ``config`` the settings;
    for a run recipe ``data`` is the whole nested mapping; a poisoning run recipe (a top-level
    ``recipe`` key: ``experiments/venomrec.yaml``) names a poisoning attack recipe, ``config``
    overrides its settings and ``data["run"]`` holds the run's (read by :mod:`venomkit.runs.poisoning`).
    """

    kind: str
    path: Path
    data: dict[str, Any]
    source: Source
    name: str = ""
    description: str = ""
    config: dict[str, Any] = field(default_factory=dict)


def read_recipe(path: str | Path) -> RecipeFile:
    """Read any recipe file; the kind is told by its top-level key (``attack``, ``defense``, ``recipe``: a poisoning run, or a run)."""
    path = Path(path)
    data, source = read_yaml(path)
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise RecipeError(f"{path}:1: a recipe is a mapping (a run, or {{attack: NAME, config: ...}}), got {type(data).__name__}")
    for kind in ("attack", "defense"):
        if kind in data:
            valid = (kind, "description", "config")
            unknown = [k for k in data if k not in valid]
            if unknown:
                raise source.error((unknown[0],), f"unknown key {unknown[0]!r} in an {kind} recipe; valid keys: {', '.join(valid)}")
            if not isinstance(data[kind], str) or not data[kind]:
                raise source.error((kind,), f"{kind} must be the registry name of what this recipe configures")
            config = data.get("config") or {}
            if not isinstance(config, dict):
                raise source.error(("config",), f"config must be a mapping of settings, got {config!r}")
            return RecipeFile(kind, path, data, source, name=data[kind], description=str(data.get("description") or "").strip(), config=dict(config))
    if "recipe" in data:  # a poisoning run: a poisoning attack recipe and its run-level settings (runs/poisoning.py)
        unknown = [k for k in data if k not in POISONING_RUN_KEYS]
        if unknown:
            raise source.error((unknown[0],), f"unknown key {unknown[0]!r} in a poisoning run recipe; valid keys: {', '.join(POISONING_RUN_KEYS)}")
        if not isinstance(data["recipe"], str) or not data["recipe"]:
            raise source.error(("recipe",), "recipe must be a poisoning attack recipe file (attacks/venomrec.yaml) or its registry name")
        for key in ("config", "run"):
            if not isinstance(data.get(key) or {}, dict):
                raise source.error((key,), f"{key} must be a mapping, got {data[key]!r}")
        if not isinstance(data.get("data", ""), str):
            raise source.error(("data",), f"data must be a dataset spec (toyshop, a folder), got {data['data']!r}")
        return RecipeFile("poisoning", path, data, source, name=str(data.get("name", path.stem)),
                          description=str(data.get("description") or "").strip(), config=dict(data.get("config") or {}))
    return RecipeFile("run", path, data, source, name=str(data.get("name", path.stem)), description=str(data.get("description") or ""))


def checkout_root() -> Path:
    """The folder holding ``attacks/``, ``defenses/`` and ``assets/`` of this venomkit checkout."""
    import venomkit

    return Path(venomkit.__file__).resolve().parent.parent


def find_recipe(ref: str, relative_to: Path | None = None) -> Path:
    """A recipe file named in a recipe or on the command line.

    An absolute path as it is; a relative one in the current folder, else next to the recipe
    that names it (``relative_to``), else in the venomkit checkout (``attacks/pgd.yaml``).
    """
    path = Path(ref).expanduser()
    if path.is_absolute():
        candidates = [path]
    else:
        candidates = [Path.cwd() / path]
        if relative_to is not None:
            candidates.append(relative_to / path)
        candidates.append(checkout_root() / path)
    for candidate in candidates:
        if candidate.is_file():
            return candidate.resolve()
    tried = ", ".join(str(c) for c in dict.fromkeys(candidates))
    raise RecipeError(f"recipe file {ref!r} not found (looked in {tried})")


# ----------------------------------------------------------------------------------------
# Resolution: every attack / defense / victim config checked against its class
# ----------------------------------------------------------------------------------------


@dataclass
class ResolvedAttack:
    """An attack entry checked against its class: the class, its validated config, where it came from."""

    spec: AttackSpec
    cls: type
    config: Any
    recipe: Path | None
    description: str
    explicit: frozenset[str] = frozenset()

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.spec.name,
            "attack": self.cls.name,
            "class": f"{self.cls.__module__}.{self.cls.__qualname__}",
            "recipe": str(self.recipe) if self.recipe else None,
            "description": self.description,
            "config": dataclasses.asdict(self.config),
            "surrogate": self.spec.surrogate,
            "surrogate_victim": self.spec.surrogate_victim,
        }


@dataclass
class ResolvedDefense:
    """A defense entry checked against its class."""

    spec: DefenseSpec
    method: str
    config: Any
    recipe: Path | None
    description: str

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.spec.name, "defense": self.method, "recipe": str(self.recipe) if self.recipe else None, "config": self.config.to_dict()}


@dataclass
class ResolvedRun:
    """A run recipe with every part validated: what the engine executes and run.json records."""

    recipe: RunRecipe
    attacks: list[ResolvedAttack]
    defenses: list[ResolvedDefense]
    path: Path | None = None

    def to_dict(self) -> dict[str, Any]:
        """The resolved settings: everything that changes a result, plus name and description."""
        r = self.recipe
        victims = []
        for v in r.victims:
            entry: dict[str, Any] = {"name": v.name, "attacked": v.attacked}
            if v.given:
                entry["given"] = True
            elif v.kind is not None:
                image, text = v.encoders()
                entry.update(kind=v.kind, image_encoder=image, text_encoder=text, train=dataclasses.asdict(v.train), config=dict(v.config))
            else:
                entry["checkpoint"] = str(Path(v.checkpoint).resolve())  # type: ignore[arg-type]
            victims.append(entry)
        return {
            "name": r.name,
            "description": r.description,
            "recipe": str(self.path) if self.path else None,
            "data": dataclasses.asdict(r.data),
            "victims": victims,
            "defenses": [d.to_dict() for d in self.defenses],
            "attacks": [a.to_dict() for a in self.attacks],
            "targets": dataclasses.asdict(r.targets),
            "seed": r.seed,
            "metrics": dataclasses.asdict(r.metrics),
            "outputs": dataclasses.asdict(r.outputs),
            "shop_transform": r.shop_transform,
            "device": r.device,
            "threads": r.threads,
        }


@dataclass
class _EntryConfig:
    """An attack or defense entry's settings: its recipe file's config, then the entry's own."""

    name: str
    description: str
    recipe: Path | None
    recipe_source: Source | None
    values: dict[str, Any]
    entry: dict[str, Any]
    source: Source
    path: tuple

    def where(self, key: str | None = None) -> str:
        """Where ``config.key`` was set: the entry (file line or command line), else the recipe file."""
        if key is not None and key in self.entry:
            return self.source.where(self.path + ("config", key))
        if self.recipe_source is not None:
            return self.recipe_source.where(("config", key) if key is not None else ("config",))
        return self.source.where(self.path + (("config",) if key is None and self.entry else ()))

    def fail(self, key: str | None, message: str) -> RecipeError:
        """An error about ``config.key``, located where the key was set and labelled with its path."""
        if key is not None and key in self.entry:
            return self.source.error(self.path + ("config", key), message)
        label = f"config.{key}: " if key is not None else ""
        return RecipeError(f"{self.where(key)}: {label}{message}")

    def error(self, name_key: str, message: str) -> RecipeError:
        if self.recipe_source is not None:
            return self.recipe_source.error((name_key,), message)
        return self.source.error(self.path + (name_key,), message)


def _merge_entry(kind: str, recipe_ref: str | None, name: str | None, entry: dict[str, Any], source: Source, path: tuple,
                 relative_to: Path | None) -> _EntryConfig:
    """Find and read an entry's recipe file (``kind`` ``attack`` or ``defense``) and merge its config with the entry's."""
    values: dict[str, Any] = {}
    recipe_path, recipe_source, description = None, None, ""
    if recipe_ref is not None:
        try:
            recipe_path = find_recipe(recipe_ref, relative_to)
        except RecipeError as exc:
            raise source.error(path + ("recipe",), str(exc)) from None
        parsed = read_recipe(recipe_path)
        if parsed.kind != kind:
            raise source.error(path + ("recipe",), f"{recipe_path} is a {parsed.kind} recipe, not an {kind} recipe".replace("an defense", "a defense"))
        name, description, recipe_source = parsed.name, parsed.description, parsed.source
        values.update(parsed.config)
    return _EntryConfig(str(name), description, recipe_path, recipe_source, values, dict(entry), source, path)


def _build_entry_config(merged: _EntryConfig, config_cls: type, label: str, fixed: dict[str, Any], defaults: dict[str, Any]) -> tuple[Any, frozenset[str]]:
    """Check every key against ``config_cls`` (``fixed`` keys are not the user's), coerce, build.

    Returns the config and the keys the recipe or the entry set explicitly.
    """
    fields = config_fields(config_cls)
    valid = [f for f in fields if f not in fixed]
    for key in [*merged.values, *merged.entry]:
        if key not in valid:
            raise merged.fail(key, f"unknown key {key!r} for {label} ({config_cls.__name__}); valid keys: {', '.join(valid)}")
    values = {**merged.values, **merged.entry}
    explicit = frozenset(values)
    kwargs = dict(fixed)
    for key, value in {**{k: v for k, v in defaults.items() if k in fields and k not in values}, **values}.items():
        try:
            kwargs[key] = coerce(value, fields[key], key)
        except ValueError:
            raise merged.fail(key, f"expected {_type_name(fields[key])}, got {value!r}") from None
    try:
        return config_cls(**kwargs), explicit
    except (ValueError, TypeError) as exc:
        bad = next((k for k in merged.entry if re.match(rf"(\w+\.)?{re.escape(k)}\b", str(exc))), None)
        raise merged.fail(bad, f"{label}: {exc}") from None


def resolve_attack_spec(spec: AttackSpec, seed: int, source: Source, path: tuple, relative_to: Path | None) -> ResolvedAttack:
    """Check an attack entry: its recipe's config, then the entry's, then the run's seed (unless set)."""
    from venomkit.attacks import get_attack

    merged = _merge_entry("attack", spec.recipe, spec.attack, spec.config, source, path, relative_to)
    try:
        cls = get_attack(merged.name)
    except ValueError as exc:
        raise merged.error("attack", str(exc)) from None
    config, explicit = _build_entry_config(merged, cls.config_class, f"attack {cls.name}", fixed={}, defaults={"seed": seed})
    return ResolvedAttack(spec, cls, config, merged.recipe, merged.description, explicit)


def resolve_defense_spec(spec: DefenseSpec, seed: int, source: Source, path: tuple, relative_to: Path | None) -> ResolvedDefense:
    """Check a defense entry against :class:`venomkit.defenses.uat_mc.UATConfig`."""
    from venomkit.defenses.uat_mc import UATConfig, normalise_method

    merged = _merge_entry("defense", spec.recipe, spec.defense, spec.config, source, path, relative_to)
    try:
        method = normalise_method(merged.name)
    except ValueError as exc:
        raise merged.error("defense", str(exc)) from None
    config, _ = _build_entry_config(merged, UATConfig, f"defense {method}", fixed={"method": method}, defaults={})
    if not spec.name:
        spec.name = method
    return ResolvedDefense(spec, method, config, merged.recipe, merged.description)


def _entry_from_ref(ref: str | Path, overrides: Sequence[str], cls: type) -> tuple[Any, Source]:
    source = Source(file="command line")
    raw = cls.expand(str(ref))
    config: dict[str, Any] = {}
    for item in overrides:
        (key, value), = parse_overrides([item]).items()
        config[key] = value
        source.overrides[("config", key)] = item
    return build(cls, {**raw, "config": config}, source), source


def resolve_attack(ref: str | Path, overrides: Sequence[str] = (), seed: int = 0) -> ResolvedAttack:
    """One attack from a recipe path or a registry name, with ``key=value`` config overrides."""
    spec, source = _entry_from_ref(ref, overrides, AttackSpec)
    return resolve_attack_spec(spec, seed, source, (), None)


def resolve_defense(ref: str | Path, overrides: Sequence[str] = ()) -> ResolvedDefense:
    """One defense from a recipe path or a name (``uat``, ``uat_mc``), with ``key=value`` config overrides."""
    spec, source = _entry_from_ref(ref, overrides, DefenseSpec)
    return resolve_defense_spec(spec, 0, source, (), None)


def _check_victim_config(spec: VictimSpec, source: Source, path: tuple) -> None:
    if spec.kind is None or not spec.config:
        return
    from venomkit.victims.checkpoint import victim_class

    fields = config_fields(victim_class(spec.kind).config_class)
    managed = {"n_users", "n_items", "visual_dim", "text_dim", "image_encoder", "text_encoder"}
    valid = [f for f in fields if f not in managed]
    for key, value in spec.config.items():
        if key not in valid:
            raise source.error(path + ("config", key), f"unknown key {key!r} for victim {spec.kind}; valid keys: {', '.join(valid)}")
        try:
            spec.config[key] = coerce(value, fields[key], key)
        except ValueError:
            raise source.error(path + ("config", key), f"expected {_type_name(fields[key])}, got {value!r}") from None


def resolve(raw: dict[str, Any], source: Source, path: Path | None = None) -> ResolvedRun:
    """Build and check the whole run (every section, every attack/defense/victim config)."""
    recipe = build(RunRecipe, raw, source)
    relative_to = path.parent if path is not None else None
    attacks = [resolve_attack_spec(a, recipe.seed, source, ("attacks", i), relative_to) for i, a in enumerate(recipe.attacks)]
    defenses = [resolve_defense_spec(d, recipe.seed, source, ("defenses", i), relative_to) for i, d in enumerate(recipe.defenses)]
    for i, v in enumerate(recipe.victims):
        _check_victim_config(v, source, ("victims", i))
    surrogates = {v.name for v in recipe.victims if not v.attacked}
    for i, a in enumerate(recipe.attacks):
        if a.surrogate_victim is not None and a.surrogate_victim not in surrogates:
            raise source.error(("attacks", i, "surrogate_victim"), f"{a.surrogate_victim!r} is not a victim with attacked: false in this run; "
                               f"those are: {', '.join(sorted(surrogates)) or 'none'}")
    if not any(v.attacked for v in recipe.victims):
        raise source.error(("victims",), "every victim has attacked: false: list at least one victim to attack")
    for section, entries in (("victims", recipe.victims), ("attacks", recipe.attacks), ("defenses", recipe.defenses)):
        names = [e.name for e in entries]
        for i, n in enumerate(names):
            if not _SAFE_NAME.fullmatch(n):
                raise source.error((section, i, "name"), f"name {n!r} must be letters, digits, '_', '.', '-', '+'")
            if n in names[:i]:
                raise source.error((section, i), f"two {section} are called {n!r}: give one a name")
    return ResolvedRun(recipe, attacks, defenses, path)


# ----------------------------------------------------------------------------------------
# The one loader: a run from a recipe file (any kind), flags and overrides
# ----------------------------------------------------------------------------------------


@dataclass
class RunFlags:
    """Command-line flags that fill or replace recipe sections (``None``: not given)."""

    victim: str | None = None
    data: str | None = None
    targets: int | None = None
    seed: int | None = None
    batch_size: int | None = None
    max_interactions: int | None = None
    surrogate: str | None = None
    stealth_clip: str | None = None
    shop_transform: str | None = None
    device: str | None = None
    threads: int | None = None
    save_format: str | None = None


def _flag_overrides(flags: RunFlags) -> list[tuple[str, Any]]:
    pairs = [
        ("data.spec", flags.data),
        ("targets.n", flags.targets),
        ("seed", flags.seed),
        ("targets.batch_size", flags.batch_size),
        ("targets.max_interactions", flags.max_interactions),
        ("metrics.stealth_clip", flags.stealth_clip),
        ("shop_transform", flags.shop_transform),
        ("device", flags.device),
        ("threads", flags.threads),
        ("outputs.save_format", flags.save_format),
    ]
    return [(k, v) for k, v in pairs if v is not None]


def load_run(recipe: str | Path, overrides: Sequence[str] = (), flags: RunFlags | None = None) -> ResolvedRun:
    """THE recipe loader: a run recipe, or an attack/defense recipe (or registry name) + flags.

    ``recipe`` is a YAML path or, for convenience, an attack registry name (``pgd``).
    ``overrides`` are ``key.sub=value`` strings (bare ``key=value`` set the config of an
    attack/defense recipe). Every error is a :class:`RecipeError` naming where it is.
    """
    flags = flags or RunFlags()
    ref = str(recipe)
    if ref.endswith(RECIPE_SUFFIXES) or Path(ref).is_file():
        parsed = read_recipe(find_recipe(ref))
    else:
        from venomkit.attacks import get_attack

        try:
            get_attack(ref)
        except ValueError as exc:
            raise RecipeError(f"{ref!r} is neither a recipe file nor an attack name: {exc}") from None
        parsed = RecipeFile("attack", Path(ref), {}, Source(file=f"attack {ref}"), name=ref)

    source = parsed.source
    if parsed.kind == "poisoning":
        raise RecipeError(f"{parsed.path}: a poisoning run recipe (it names a recipe: and run: settings) is run by "
                          f"venomkit run / venomkit attack, not by the engine's loader (venomkit.runs.poisoning.config_from_command_line)")
    if parsed.kind == "run":
        raw = dict(parsed.data)
        single = None
        if flags.victim is not None:
            raw["victims"] = [flags.victim]
            source.overrides[("victims",)] = f"--victim {flags.victim}"
    else:
        if flags.victim is None:
            raise RecipeError(f"{parsed.path}: an {parsed.kind} recipe runs against a victim: give --victim (a checkpoint folder, or a kind to train such as vbpr)")
        entry = {"recipe": str(parsed.path)} if parsed.path.suffix in RECIPE_SUFFIXES else {parsed.kind: parsed.name}
        if parsed.kind == "attack" and flags.surrogate:
            entry["surrogate"] = flags.surrogate
        raw = {"name": parsed.path.stem if parsed.path.suffix in RECIPE_SUFFIXES else parsed.name, "description": parsed.description,
               "victims": [flags.victim], "attacks": [entry] if parsed.kind == "attack" else [],
               "defenses": [entry] if parsed.kind == "defense" else []}
        source = Source(file=str(parsed.path))
        source.overrides[("victims",)] = f"--victim {flags.victim}"
        single = "attacks" if parsed.kind == "attack" else "defenses"
    # (item, origin) pairs; whole sections are set before keys inside them (``defenses=...``
    # before ``defenses.uat_mc.config.lambda_align=10``), whatever their order on the line.
    pending = [(f"{key}={value}", f"--{_FLAG_NAMES[key]} {value}") for key, value in _flag_overrides(flags)]
    for item in overrides:
        key = item.partition("=")[0].strip()
        if single is not None and "=" in item and "." not in key:
            pending.append((f"{single}.0.config.{item.strip()}", item))
        else:
            pending.append((item, item))
    for item, origin in sorted(pending, key=lambda pair: pair[0].partition("=")[0].count(".")):
        apply_override(raw, item, source, origin=origin)
    return resolve(raw, source, parsed.path if parsed.kind == "run" else None)


_FLAG_NAMES = {
    "data.spec": "data",
    "targets.n": "targets",
    "seed": "seed",
    "targets.batch_size": "batch-size",
    "targets.max_interactions": "max-interactions",
    "metrics.stealth_clip": "stealth-clip",
    "shop_transform": "shop-transform",
    "device": "device",
    "threads": "threads",
    "outputs.save_format": "save-format",
}
