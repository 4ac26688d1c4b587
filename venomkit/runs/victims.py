"""The victims of a run: trained, loaded or hardened once, cached by content hash.

A run names victims as kinds to train (``vbpr``), checkpoint folders, and defenses that
harden each of them (``vbpr+uat_mc``: UAT-MC fine-tuned from the trained ``vbpr``, as the
paper does). The main process builds them all before any attack: a trained or hardened
victim comes from the cache when the same victim (same data, encoders, settings, seed,
device and venomkit code) was built before, by this run or another recipe; otherwise it is
trained and stored there. The code that counts is that of the data, encoders, victims,
defenses and model-loading packages (``fingerprint.TRAINING_CODE``). Each one is also written to the run folder (``victims/<name>/``:
checkpoint + metrics.json), where every process loads it from.

The cache (``$VENOMKIT_CACHE``, default ``~/.cache/venomkit``) holds ``victims/<key>/``
checkpoint folders and ``features/`` (encoded catalogs, ``venomkit.encoders.features``); entries
are written to a temporary folder and renamed, so an interrupted build never leaves half of one.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from venomkit.atomic import TMP_PREFIX
from venomkit.runs.fingerprint import TRAINING_CODE, checkpoint_digest, code_digest, model_digests, sha256_json, state_digest
from venomkit.runs.recipe import ResolvedRun

logger = logging.getLogger(__name__)

CACHE_ENV = "VENOMKIT_CACHE"


def default_cache_dir() -> Path:
    """``$VENOMKIT_CACHE`` or ``~/.cache/venomkit`` (``$XDG_CACHE_HOME/venomkit``)."""
    if os.environ.get(CACHE_ENV):
        return Path(os.environ[CACHE_ENV]).expanduser()
    base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return base / "venomkit"


@dataclass
class RunVictim:
    """One victim of the run: where it loads from, what it reads, how it was made."""

    name: str
    backbone: str
    defense: str
    modalities: tuple[str, ...]
    folder: Path
    metrics: dict[str, Any] = field(default_factory=dict)
    cached: bool = False
    attacked: bool = True

    def summary(self) -> dict[str, Any]:
        """What summary.json says about the victim: figures of the clean test split and provenance."""
        m = self.metrics
        out: dict[str, Any] = {"kind": m.get("kind"), "backbone": self.backbone, "defense": self.defense, "cached": self.cached,
                               "role": "victim" if self.attacked else "attacker's surrogate"}
        after = m.get("test_after") if isinstance(m.get("test_after"), dict) else {}  # a defense's metrics
        for key in ("test", "cold", "popularity"):
            value = m.get(key) if isinstance(m.get(key), dict) else after.get(key)
            if isinstance(value, dict):
                out[key] = value
        if isinstance(m.get("train"), dict):
            out["epochs_run"] = m["train"].get("epochs_run")
            out["best_epoch"] = m["train"].get("best_epoch")
            out["train_seconds"] = m["train"].get("seconds")
        return out


def _checkpoint_modalities(folder: Path) -> tuple[str, ...]:
    from venomkit.victims.checkpoint import read_victim_config

    config = read_victim_config(folder)["config"]
    return tuple(m for m, key in (("visual", "visual_dim"), ("text", "text_dim")) if int(config.get(key, 0) or 0) > 0)


class VictimBuilder:
    """Plans, builds (main process) and loads (every process) a run's victims."""

    def __init__(self, run: ResolvedRun, dataset: Any, data_digest: str, out: Path, cache_dir: Path | None, device: str,
                 progress: bool = True, given: dict[str, Any] | None = None) -> None:
        self.run = run
        self.given = dict(given or {})
        missing = [v.name for v in run.recipe.victims if v.given and v.name not in self.given]
        if missing:
            raise ValueError(f"victims {missing} are given in Python: pass execute(..., victims={{name: victim}})")
        self.dataset = dataset
        self.data_digest = data_digest
        self.out = Path(out)
        self.cache_dir = Path(cache_dir) if cache_dir is not None else None
        self.device = device
        self.progress = progress
        self._encoders: dict[tuple, tuple[Any, Any]] = {}
        self._keys: dict[str, str] = {}

    # -- the list, before anything is trained ----------------------------------------------
    def planned(self) -> list[RunVictim]:
        """Every victim of the run, in order: each listed victim, then its hardened versions."""
        out: list[RunVictim] = []
        for spec in self.run.recipe.victims:
            if spec.given:
                modalities = tuple(self.given[spec.name].modalities)
                folder = self.out / "victims" / spec.name
            elif spec.kind is not None:
                image, text = spec.encoders()
                modalities = tuple(m for m, enc in (("visual", image), ("text", text)) if enc is not None)
                folder = self.out / "victims" / spec.name
            else:
                folder = Path(spec.checkpoint).expanduser()  # type: ignore[arg-type]
                modalities = _checkpoint_modalities(folder)
            out.append(RunVictim(spec.name, spec.name, "none", modalities, folder, attacked=spec.attacked))
            if not spec.defend or not spec.attacked:
                continue
            for defense in self.run.defenses:
                missing = [m for m in defense.config.modalities if m not in modalities]
                if missing:
                    raise ValueError(
                        f"victims.{spec.name}: defense {defense.spec.name} perturbs {', '.join(missing)} features the victim "
                        f"does not read; set defend: false on it (victims.{spec.name}.defend=false)"
                    )
                name = f"{spec.name}+{defense.spec.name}"
                out.append(RunVictim(name, spec.name, defense.spec.name, modalities, self.out / "victims" / name))
        return out

    # -- building (main process) -------------------------------------------------------------
    def build_all(self) -> list[RunVictim]:
        """Train / load / harden every victim (from the cache when possible) into the run folder."""
        victims = self.planned()
        by_name = {v.name: v for v in victims}
        specs = {s.name: s for s in self.run.recipe.victims}
        defenses = {d.spec.name: d for d in self.run.defenses}
        for v in victims:
            if v.defense == "none":
                spec = specs[v.name]
                if spec.given:
                    self._keys[v.name] = "given:" + state_digest(self.given[v.name])
                elif spec.kind is None:
                    v.metrics = self._checkpoint_metrics(v.folder)
                    self._keys[v.name] = "checkpoint:" + checkpoint_digest(v.folder)
                    self._write_metrics_copy(v)
                else:
                    v.metrics, v.cached = self._train(spec, v)
            else:
                base = by_name[v.backbone]
                v.metrics, v.cached = self._harden(base, defenses[v.defense], v)
        return victims

    def _checkpoint_metrics(self, folder: Path) -> dict[str, Any]:
        path = folder / "metrics.json"
        return json.loads(path.read_text()) if path.is_file() else {}

    def _write_metrics_copy(self, v: RunVictim) -> None:
        from venomkit.atomic import write_json

        if v.metrics:
            write_json(self.out / "victims" / v.name / "metrics.json", {**v.metrics, "source_checkpoint": str(v.folder)})

    def _train_seed(self, spec: Any) -> int:
        return self.run.recipe.seed if spec.train.seed is None else spec.train.seed

    def _train_key(self, spec: Any) -> str:
        image, text = spec.encoders()
        return sha256_json({
            "what": "trained victim",
            "kind": spec.kind,
            "encoders": [image, text],
            "models": model_digests({"encoders": [image, text]}),
            "train": spec.train.__dict__,
            "config": spec.config,
            "seed": self._train_seed(spec),
            "data": self.data_digest,
            "device": self.device,
            "code": code_digest(TRAINING_CODE),
        })

    def _cached(self, key: str) -> Path | None:
        if self.cache_dir is None:
            return None
        folder = self.cache_dir / "victims" / key[:32]
        return folder if (folder / "config.json").is_file() and (folder / "metrics.json").is_file() else None

    def _store(self, key: str, victim: Any, metrics: dict[str, Any]) -> None:
        """Save into the cache (temporary folder + rename) and into the run folder."""
        from venomkit.victims.checkpoint import save_victim

        if self.cache_dir is not None:
            final = self.cache_dir / "victims" / key[:32]
            final.parent.mkdir(parents=True, exist_ok=True)
            tmp = Path(tempfile.mkdtemp(prefix=TMP_PREFIX, dir=final.parent))
            save_victim(victim, tmp, metrics=metrics)
            try:
                os.replace(tmp, final)
            except OSError:  # another run stored the same key meanwhile: keep theirs
                shutil.rmtree(tmp, ignore_errors=True)

    def _into_run(self, source: Path | None, victim: Any, metrics: dict[str, Any], v: RunVictim) -> None:
        from venomkit.victims.checkpoint import save_victim

        tmp = Path(tempfile.mkdtemp(prefix=TMP_PREFIX, dir=self.out))
        if source is not None:
            shutil.rmtree(tmp)
            shutil.copytree(source, tmp)
        else:
            save_victim(victim, tmp, metrics=metrics)
        if v.folder.exists():
            shutil.rmtree(v.folder)
        v.folder.parent.mkdir(parents=True, exist_ok=True)
        os.replace(tmp, v.folder)

    def content_key(self, name: str) -> str:
        """The content key of victim ``name`` (its cache key), once :meth:`build_all` has built it."""
        if name not in self._keys:
            raise KeyError(f"victim {name!r} has no content key: build_all() builds it first")
        return self._keys[name]

    def _built(self, v: RunVictim, key: str, build: Any) -> tuple[dict[str, Any], bool]:
        """The victim of cache ``key`` (copied into the run), or ``build()`` -> (victim, metrics) stored there."""
        self._keys[v.name] = key
        hit = self._cached(key)
        if hit is not None:
            logger.info("victim %s: built before with these settings, loaded from the cache (%s)", v.name, hit)
            self._into_run(hit, None, {}, v)
            return json.loads((hit / "metrics.json").read_text()), True
        victim, metrics = build()
        self._store(key, victim, metrics)
        self._into_run(None, victim, metrics, v)
        return metrics, False

    def _train(self, spec: Any, v: RunVictim) -> tuple[dict[str, Any], bool]:
        from venomkit.victims.pipeline import train_victim

        def build() -> tuple[Any, dict[str, Any]]:
            image, text = spec.encoders()
            t = spec.train
            logger.info("victim %s: training %s on %s", v.name, spec.kind, self.dataset.name)
            return train_victim(
                spec.kind, self.dataset, *self.encoders(image, text),
                epochs=t.epochs, lr=t.lr, batch_size=t.batch_size, weight_decay=t.weight_decay, patience=t.patience,
                eval_every=t.eval_every, seed=self._train_seed(spec), device=self.device,
                feature_cache=str(self.cache_dir / "features") if self.cache_dir is not None else None,
                progress=self.progress, **spec.config,
            )

        return self._built(v, self._train_key(spec), build)

    def _harden(self, base: RunVictim, defense: Any, v: RunVictim) -> tuple[dict[str, Any], bool]:
        from venomkit.defenses.uat_mc import adversarial_train

        def build() -> tuple[Any, dict[str, Any]]:
            logger.info("victim %s: %s fine-tuning of %s", v.name, defense.method, base.name)
            return adversarial_train(self.load(base), self.dataset.split, defense.config, progress=self.progress)

        key = sha256_json({"what": "defended victim", "base": self._keys[base.name], "defense": defense.config.to_dict(), "code": code_digest(TRAINING_CODE)})
        return self._built(v, key, build)

    # -- loading (every process) -----------------------------------------------------------
    def encoders(self, image: str | None, text: str | None) -> tuple[Any, Any]:
        """Content encoders by spec, loaded once per run and shared by its victims."""
        key = (image, text)
        if key not in self._encoders:
            from venomkit.encoders.loading import load_content_encoders

            self._encoders[key] = load_content_encoders(image, text, self.device)
        return self._encoders[key]

    def load(self, v: RunVictim) -> Any:
        """The victim ``v`` from its folder, with the run's shared encoders attached."""
        from venomkit.victims.checkpoint import load_victim, read_victim_config

        if v.name in self.given:
            return self.given[v.name]
        config = read_victim_config(v.folder)["config"]
        image = config.get("image_encoder") if "visual" in v.modalities else None
        text = config.get("text_encoder") if "text" in v.modalities else None
        img_enc, txt_enc = self.encoders(image, text)
        return load_victim(v.folder, self.device, load_encoders=False, image_encoder=img_enc, text_encoder=txt_enc)

    def metrics_of(self, v: RunVictim) -> dict[str, Any]:
        """Metrics of a victim from the run folder (non-main processes did not build it)."""
        path = self.out / "victims" / v.name / "metrics.json"
        if path.is_file():
            return json.loads(path.read_text())
        return self._checkpoint_metrics(v.folder)
