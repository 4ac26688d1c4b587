"""toyshop-sd: a tiny Stable Diffusion trained here, saved in diffusers' native layout.

No pretrained weights can be downloaded, yet AUV-Fusion (arXiv 2507.22880) needs a latent
diffusion prior to inject its perturbation into. This module trains the same four
components real Stable Diffusion 1.x has, at toy scale, and writes them with
``save_pretrained`` so that ``StableDiffusionImg2ImgPipeline.from_pretrained(folder)`` and
:class:`venomkit.generators.diffusion.DiffusionImg2Img` load them exactly as they load
``runwayml/stable-diffusion-v1-5``:

- ``vae/``: :class:`diffusers.AutoencoderKL` with 8x downsampling (four resolution levels,
  3 downsamplings) and 4 latent channels, like SD: 64 px -> (4, 8, 8). Trained for
  reconstruction (L1 + (1 - SSIM) + a small KL); then its decoder alone is fine-tuned with a
  perceptual term (cosine distance of ``zoo:toyshop-cnn`` features, the role LPIPS's VGG plays
  for SD's VAE), which restores the fine patterns a 4x8x8 latent blurs; the encoder, and so
  the latents the UNet learns, stay fixed. ``scaling_factor`` is set to 1 / std of the
  training latents, as SD's 0.18215 was.
- ``text_encoder/`` + ``tokenizer/``: :class:`transformers.CLIPTextModel` (small hidden size)
  and a :class:`transformers.CLIPTokenizer` written from the BPE vocabulary that open_clip
  ships (the same 49,408-token vocabulary as SD's tokenizer; ids match open_clip's).
- ``unet/``: :class:`diffusers.UNet2DConditionModel` (~3M parameters, cross-attention on the
  text encoder's last hidden state), trained jointly with the text encoder with the DDPM
  noise-prediction loss ``|| eps - eps_theta(sqrt(abar_t) z_0 + sqrt(1 - abar_t) eps, t, c) ||^2``
  (Ho et al. 2020, Eq. 14) on VAE latents, 10% of captions dropped for classifier-free guidance.
- ``scheduler/``: :class:`diffusers.DDIMScheduler` with SD 1.x's configuration
  (scaled-linear betas 0.00085 -> 0.012 over 1,000 steps, epsilon prediction).

Weights are stored in float16 (halves the folder; every quality figure is measured on the
float16 folder loaded back in float32). ``build`` returns the quality figures for the zoo
manifest; tests build a random-weight folder of the same layout with :func:`build_random`.
"""

from __future__ import annotations

import copy
import gzip
import json
import math
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
import torch.nn.functional as F

from venomkit.config import check_int, check_number
from venomkit.models.freeze import freeze
from venomkit.progress import progress as progress_bar
from venomkit.zoo.images import fitted_images

__all__ = [
    "FAST_TRAINING",
    "FULL_TRAINING",
    "SDArchitecture",
    "SDTraining",
    "TINY_ARCHITECTURE",
    "TOYSHOP_ARCHITECTURE",
    "build",
    "build_random",
    "evaluate_folder",
    "finetune_decoder",
    "make_components",
    "make_scheduler",
    "save_sd_folder",
    "write_clip_tokenizer",
]

START_TOKEN = "<|startoftext|>"
END_TOKEN = "<|endoftext|>"
MODEL_MAX_LENGTH = 77


# ------------------------------------------------------------------------------ configs
@dataclass(frozen=True)
class SDArchitecture:
    """Sizes of the four components (validated on construction; ValueError names the field).

    Attributes:
        image_size: training resolution in pixels (multiple of 8); the UNet's sample_size is
            image_size // 8.
        vae_channels: AutoencoderKL ``block_out_channels``; four entries = 8x downsampling.
        vae_layers: resnet layers per VAE block.
        vae_norm_groups: GroupNorm groups in the VAE (must divide every VAE channel count).
        latent_channels: 4, as in SD 1.x.
        text_hidden, text_layers, text_heads: CLIPTextModel width, depth and attention heads.
        unet_channels: UNet ``block_out_channels`` (one CrossAttn block per level but the last).
        unet_layers: resnet layers per UNet block.
        unet_head_dim: attention head dimension of the UNet.
        unet_norm_groups: GroupNorm groups in the UNet.
    """

    image_size: int = 64
    vae_channels: tuple[int, ...] = (32, 64, 64, 64)
    vae_layers: int = 1
    vae_norm_groups: int = 16
    latent_channels: int = 4
    text_hidden: int = 64
    text_layers: int = 3
    text_heads: int = 4
    unet_channels: tuple[int, ...] = (64, 128)
    unet_layers: int = 1
    unet_head_dim: int = 8
    unet_norm_groups: int = 32

    def __post_init__(self) -> None:
        if len(self.vae_channels) != 4:
            raise ValueError(f"SDArchitecture.vae_channels needs 4 entries (8x downsampling), got {self.vae_channels}")
        if self.image_size < 8 or self.image_size % 8:
            raise ValueError(f"SDArchitecture.image_size must be a positive multiple of 8, got {self.image_size}")
        if any(c % self.vae_norm_groups for c in self.vae_channels):
            raise ValueError(f"SDArchitecture.vae_norm_groups={self.vae_norm_groups} must divide vae_channels {self.vae_channels}")
        if any(c % self.unet_norm_groups for c in self.unet_channels):
            raise ValueError(
                f"SDArchitecture.unet_norm_groups={self.unet_norm_groups} must divide unet_channels {self.unet_channels}"
            )
        if any(c % self.unet_head_dim for c in self.unet_channels):
            raise ValueError(f"SDArchitecture.unet_head_dim={self.unet_head_dim} must divide unet_channels {self.unet_channels}")
        if not 1 <= len(self.unet_channels) <= 4:
            raise ValueError(f"SDArchitecture.unet_channels needs 1-4 entries, got {self.unet_channels}")
        if self.text_hidden % self.text_heads:
            raise ValueError(f"SDArchitecture.text_heads={self.text_heads} must divide text_hidden={self.text_hidden}")
        for name in ("vae_layers", "latent_channels", "text_layers", "unet_layers"):
            check_int(f"SDArchitecture.{name}", getattr(self, name), 1)


#: The shipped toyshop-sd (64 px, ~1.3M VAE, ~3.2M text encoder mostly token table, ~3M UNet).
TOYSHOP_ARCHITECTURE = SDArchitecture()

#: A random-weight model for tests: same layout, seconds to build and run.
TINY_ARCHITECTURE = SDArchitecture(
    image_size=32,
    vae_channels=(8, 8, 16, 16),
    vae_norm_groups=4,
    text_hidden=16,
    text_layers=1,
    text_heads=2,
    unet_channels=(16, 32),
    unet_head_dim=8,
    unet_norm_groups=8,
)


@dataclass(frozen=True)
class SDTraining:
    """Training budget and data settings of :func:`build` (validated; ValueError names the field).

    Attributes:
        extra_items: extra toyshop items (fresh seed) added to the training images when the
            dataset is toyshop: more pictures of the same world, never of the held-out items.
        eval_items: held-out catalog items used for the quality figures (never trained on).
        vae_steps, vae_batch, vae_lr: VAE optimisation (AdamW, cosine decay).
        kl_weight: weight of the KL term (mean over latent elements).
        ssim_weight: weight of (1 - SSIM) next to the L1 loss.
        colour_weight: weight of an L1 loss between 8x8 average-pooled images (the colour
            of each latent cell): SSIM rewards structure, and without this term a small VAE
            spends its 4x8x8 latent on patterns and loses the hue.
        unet_steps, unet_batch, unet_lr, text_lr: UNet + text encoder optimisation.
        uncond_prob: fraction of captions replaced by "" (classifier-free guidance).
        low_noise_fraction, low_noise_max: that fraction of each batch draws t from
            [0, low_noise_max) instead of [0, 1000): img2img for AUV-Fusion starts at
            strength <= ~0.5, so extra training goes to the steps it runs; all t stay covered.
        autocast_bf16: run VAE training forward passes in bfloat16 (CPU autocast; about 1.7x
            faster on AVX-512 CPUs); evaluation is always float32.
        decoder_steps, decoder_lr: decoder-only fine-tuning with the perceptual term (0 skips it).
        perceptual_encoder: image encoder spec whose features the perceptual term compares
            (any ``load_image_encoder`` spec); never the CLIP the quality figures use.
        perceptual_weight: weight of ``1 - cos(phi(D(z)), phi(x))`` next to L1 and 1 - SSIM.
    """

    extra_items: int = 4000
    eval_items: int = 128
    vae_steps: int = 1500
    vae_batch: int = 32
    vae_lr: float = 2e-3
    kl_weight: float = 1e-4
    ssim_weight: float = 1.0
    colour_weight: float = 1.0
    unet_steps: int = 1500
    unet_batch: int = 64
    unet_lr: float = 2e-3
    text_lr: float = 1e-3
    uncond_prob: float = 0.1
    low_noise_fraction: float = 0.5
    low_noise_max: int = 400
    autocast_bf16: bool = True
    decoder_steps: int = 400
    decoder_lr: float = 5e-4
    perceptual_encoder: str = "zoo:toyshop-cnn"
    perceptual_weight: float = 1.0

    def __post_init__(self) -> None:
        for name in ("decoder_steps", "extra_items"):
            check_int(f"SDTraining.{name}", getattr(self, name), 0)
        for name in ("vae_steps", "vae_batch", "unet_steps", "unet_batch", "eval_items"):
            check_int(f"SDTraining.{name}", getattr(self, name), 1)
        check_int("SDTraining.low_noise_max", self.low_noise_max, 1, "a DDPM timestep", maximum=1000)
        for name in ("decoder_lr", "vae_lr", "unet_lr", "text_lr"):
            check_number(f"SDTraining.{name}", getattr(self, name), 0, low_open=True)
        for name in ("perceptual_weight", "kl_weight", "ssim_weight", "colour_weight"):
            check_number(f"SDTraining.{name}", getattr(self, name), 0)
        for name in ("uncond_prob", "low_noise_fraction"):
            check_number(f"SDTraining.{name}", getattr(self, name), 0, 1)


FULL_TRAINING = SDTraining()
FAST_TRAINING = SDTraining(extra_items=96, eval_items=8, vae_steps=12, vae_batch=8, decoder_steps=4, unet_steps=12, unet_batch=16)


# --------------------------------------------------------------------------- components
def write_clip_tokenizer(folder: str | Path):
    """Write SD's CLIP tokenizer from the BPE merges open_clip ships, and load it back.

    Reproduces how the CLIP vocabulary is derived from ``bpe_simple_vocab_16e6.txt.gz``
    (open_clip's ``SimpleTokenizer``: 256 byte symbols, the same with ``</w>``, 48,894
    merges, then the two specials), with the specials renamed to Hugging Face's
    ``<|startoftext|>`` / ``<|endoftext|>`` (ids 49406 / 49407, as in SD's tokenizer).
    Writes ``vocab.json``, ``merges.txt`` and ``tokenizer_config.json`` into ``folder`` (the
    files SD's ``tokenizer/`` folder has) and returns ``CLIPTokenizer.from_pretrained(folder)``:
    transformers 5.x ignores file arguments to the constructor, so the folder is the route.
    """
    from transformers import CLIPTokenizer

    _write_clip_tokenizer_files(Path(folder))
    return CLIPTokenizer.from_pretrained(str(folder))


def _write_clip_tokenizer_files(folder: Path) -> None:
    from open_clip.tokenizer import bytes_to_unicode, default_bpe

    folder.mkdir(parents=True, exist_ok=True)
    lines = gzip.open(default_bpe()).read().decode("utf-8").split("\n")
    merges = [tuple(line.split()) for line in lines[1 : 49152 - 256 - 2 + 1]]
    symbols = list(bytes_to_unicode().values())
    vocab = symbols + [s + "</w>" for s in symbols] + ["".join(m) for m in merges] + [START_TOKEN, END_TOKEN]
    (folder / "vocab.json").write_text(json.dumps({tok: i for i, tok in enumerate(vocab)}, ensure_ascii=False), "utf-8")
    (folder / "merges.txt").write_text("#version: 0.2\n" + "\n".join(" ".join(m) for m in merges) + "\n", "utf-8")
    config = {
        "tokenizer_class": "CLIPTokenizer",
        "model_max_length": MODEL_MAX_LENGTH,
        "bos_token": START_TOKEN,
        "eos_token": END_TOKEN,
        "unk_token": END_TOKEN,
        "pad_token": END_TOKEN,  # SD 1.x pads with <|endoftext|>
        "do_lower_case": True,
        "errors": "replace",
        "clean_up_tokenization_spaces": True,
    }
    (folder / "tokenizer_config.json").write_text(json.dumps(config, indent=2), "utf-8")


def make_scheduler():
    """DDIMScheduler with Stable Diffusion 1.x's configuration (what its folders ship, as DDIM)."""
    from diffusers import DDIMScheduler

    return DDIMScheduler(
        num_train_timesteps=1000,
        beta_start=0.00085,
        beta_end=0.012,
        beta_schedule="scaled_linear",
        clip_sample=False,
        set_alpha_to_one=False,
        steps_offset=1,
        prediction_type="epsilon",
        timestep_spacing="leading",
    )


def make_components(arch: SDArchitecture, seed: int) -> dict:
    """Randomly initialised ``vae``, ``unet``, ``text_encoder`` plus ``tokenizer`` and ``scheduler``.

    Deterministic given ``seed``; the tokenizer comes from :func:`write_clip_tokenizer`
    (through a temporary folder).
    """
    import tempfile

    from diffusers import AutoencoderKL, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel

    with tempfile.TemporaryDirectory(prefix="venomkit-clip-tokenizer-") as scratch:
        tokenizer = write_clip_tokenizer(scratch)
    torch.manual_seed(seed)
    vae = AutoencoderKL(
        in_channels=3,
        out_channels=3,
        down_block_types=("DownEncoderBlock2D",) * 4,
        up_block_types=("UpDecoderBlock2D",) * 4,
        block_out_channels=tuple(arch.vae_channels),
        layers_per_block=arch.vae_layers,
        latent_channels=arch.latent_channels,
        norm_num_groups=arch.vae_norm_groups,
        sample_size=arch.image_size,
    )
    text_encoder = CLIPTextModel(
        CLIPTextConfig(
            vocab_size=len(tokenizer),
            hidden_size=arch.text_hidden,
            intermediate_size=4 * arch.text_hidden,
            num_hidden_layers=arch.text_layers,
            num_attention_heads=arch.text_heads,
            max_position_embeddings=MODEL_MAX_LENGTH,
            projection_dim=arch.text_hidden,
            bos_token_id=tokenizer.bos_token_id,
            eos_token_id=tokenizer.eos_token_id,
            pad_token_id=tokenizer.pad_token_id,
        )
    )
    n = len(arch.unet_channels)
    unet = UNet2DConditionModel(
        sample_size=arch.image_size // 8,
        in_channels=arch.latent_channels,
        out_channels=arch.latent_channels,
        down_block_types=("CrossAttnDownBlock2D",) * (n - 1) + ("DownBlock2D",),
        up_block_types=("UpBlock2D",) + ("CrossAttnUpBlock2D",) * (n - 1),
        block_out_channels=tuple(arch.unet_channels),
        layers_per_block=arch.unet_layers,
        cross_attention_dim=arch.text_hidden,
        attention_head_dim=arch.unet_head_dim,
        norm_num_groups=arch.unet_norm_groups,
    )
    return {"vae": vae, "unet": unet, "text_encoder": text_encoder, "tokenizer": tokenizer, "scheduler": make_scheduler()}


def save_sd_folder(components: dict, out_dir: str | Path, dtype: torch.dtype = torch.float16) -> Path:
    """Write the components as a Stable Diffusion folder (``model_index.json`` + subfolders).

    The pipeline class recorded is ``StableDiffusionPipeline`` with no safety checker, like
    SD 1.x folders; ``StableDiffusionImg2ImgPipeline.from_pretrained(out_dir,
    safety_checker=None, requires_safety_checker=False)`` loads it. Model weights are cast
    to ``dtype`` (copies; the given modules are untouched). ``tokenizer/`` holds SD's
    ``vocab.json`` + ``merges.txt`` + ``tokenizer_config.json``.
    """
    from diffusers import StableDiffusionPipeline

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    models = {k: copy.deepcopy(components[k]) for k in ("vae", "unet", "text_encoder")}
    for name, model in models.items():
        # Cast parameters only: diffusers' ``.to(dtype)`` warns about keep-in-fp32 modules
        # (none here), and float16 is only the storage format.
        for p in model.parameters():
            p.data = p.data.to(dtype)
        for b in model.buffers():
            if b.is_floating_point():
                b.data = b.data.to(dtype)
    pipe = StableDiffusionPipeline(
        **models,
        tokenizer=components["tokenizer"],
        scheduler=components["scheduler"],
        safety_checker=None,
        feature_extractor=None,
        requires_safety_checker=False,
    )
    pipe.save_pretrained(out_dir, safe_serialization=True)
    # SD's own tokenizer files instead of transformers' tokenizer.json: 3.6 MB smaller, read
    # by every transformers version, and faster to load than the 49k-merge tokenizer.json.
    _remove_tree(out_dir / "tokenizer")
    _write_clip_tokenizer_files(out_dir / "tokenizer")
    return out_dir


def build_random(out_dir: str | Path, arch: SDArchitecture = TINY_ARCHITECTURE, seed: int = 0) -> Path:
    """A random-weight SD folder in the toyshop-sd layout (for tests); float32 weights, seconds."""
    return save_sd_folder(make_components(arch, seed), out_dir, dtype=torch.float32)


def _remove_tree(path: Path) -> None:
    import shutil

    shutil.rmtree(path, ignore_errors=True)


# ------------------------------------------------------------------------------- data
@dataclass
class _Data:
    train_images: torch.Tensor  # (N, 3, S, S) uint8
    train_captions: list[list[str]]  # per image: the prompts it may be trained with
    eval_images: torch.Tensor  # (M, 3, S, S) float in [0, 1]
    eval_captions: list[str]
    eval_index: list[int]  # catalog indices of the held-out items


def _captions_of(catalog, index: int) -> list[str]:
    """The prompts an item is trained with: its short caption (toyshop) and its description."""
    prompts = []
    if all(k in catalog.attributes for k in ("category", "colour", "pattern", "material")):
        from venomkit.data import toyshop

        prompts.append(toyshop.caption(toyshop.item_attributes(catalog, index)))
    elif "title" in catalog.attributes:
        prompts.append(str(catalog.attributes["title"][index]))
    prompts.append(catalog.texts[index])
    return prompts


def _prepare_data(dataset, training: SDTraining, seed: int, image_size: int) -> _Data:
    """Held-out catalog items for the figures; the rest (plus extra toyshop items) for training.

    Photos of other sizes (e.g. ML-100K posters) are resized and centre-cropped to ``image_size``
    (``venomkit.zoo.images.fitted_images``).
    """
    catalog = dataset.catalog
    n = len(catalog)
    if n < 2:
        raise ValueError(f"dataset {dataset.name!r} has {n} items; toyshop-sd needs at least 2")
    order = torch.randperm(n, generator=torch.Generator().manual_seed(seed)).tolist()
    n_eval = min(training.eval_items, max(1, n // 5))
    eval_index, train_index = sorted(order[:n_eval]), order[n_eval:]
    images = [fitted_images(catalog, train_index[s : s + 512], image_size, uint8=True) for s in range(0, len(train_index), 512)]
    captions = [_captions_of(catalog, i) for i in train_index]
    if training.extra_items and dataset.name.startswith("toyshop"):
        from venomkit.data import toyshop

        # More pictures of the same world from an unrelated seed; the catalog stays held out.
        extra = toyshop.make(n_users=20, n_items=training.extra_items, image_size=image_size, seed=seed + 7919)
        images.append(fitted_images(extra.catalog, range(len(extra.catalog)), image_size, uint8=True))
        captions += [_captions_of(extra.catalog, i) for i in range(len(extra.catalog))]
    eval_images = fitted_images(catalog, eval_index, image_size)
    eval_captions = [_captions_of(catalog, i)[0] for i in eval_index]
    return _Data(torch.cat(images), captions, eval_images, eval_captions, eval_index)


# ----------------------------------------------------------------------------- training
def _cosine_lr(step: int, total: int, warmup: int) -> float:
    if step < warmup:
        return (step + 1) / warmup
    progress = (step - warmup) / max(1, total - warmup)
    return 0.05 + 0.95 * 0.5 * (1 + math.cos(math.pi * progress))


def train_vae(vae, images: torch.Tensor, training: SDTraining, seed: int) -> list[float]:
    """Train ``vae`` in place for reconstruction; ``images`` (N, 3, S, S) uint8. Returns losses.

    Loss per batch: L1(x, D(mu)) + ssim_weight * (1 - SSIM(x, D(mu))) + colour_weight *
    L1(pool8(x), pool8(D(mu))) + kl_weight * KL, with
    the decoder fed the posterior mean (img2img encodes with the mean too) and random
    horizontal flips as augmentation. SSIM is venomkit's 11x11 Gaussian SSIM.
    """
    from venomkit.eval.stealth import ssim

    gen = torch.Generator().manual_seed(seed)
    vae.train()
    opt = torch.optim.AdamW(vae.parameters(), lr=training.vae_lr, weight_decay=0.0)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: _cosine_lr(s, training.vae_steps, max(1, training.vae_steps // 20)))
    losses = []
    for _ in progress_bar(range(training.vae_steps), desc="toyshop-sd vae", unit="step", leave=False):
        idx = torch.randint(len(images), (training.vae_batch,), generator=gen)
        x = images[idx].float().div_(255.0)
        flip = torch.rand(len(idx), generator=gen) < 0.5
        x = torch.where(flip[:, None, None, None], x.flip(-1), x)
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=training.autocast_bf16 and x.device.type == "cpu"):
            posterior = vae.encode(x * 2 - 1).latent_dist
            y = vae.decode(posterior.mean).sample
        # No clamp here: a clamped pixel has zero gradient, and a channel that overshoots [0, 1]
        # early would stay stuck there (the reconstructions lose their hue).
        y = y.float() / 2 + 0.5
        mean, logvar = posterior.mean.float(), posterior.logvar.float()
        kl = 0.5 * (mean.pow(2) + logvar.exp() - 1.0 - logvar).mean()
        loss = (
            (y - x).abs().mean()
            + training.ssim_weight * (1 - ssim(y, x).mean())
            + training.colour_weight * (F.avg_pool2d(y, 8) - F.avg_pool2d(x, 8)).abs().mean()
            + training.kl_weight * kl
        )
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(vae.parameters(), 1.0)
        opt.step()
        sched.step()
        losses.append(loss.item())
    vae.eval()
    return losses


def finetune_decoder(vae, images: torch.Tensor, perceptual: torch.nn.Module, training: SDTraining, seed: int) -> list[float]:
    """Fine-tune ``vae.decoder`` (and its post-quant conv) in place; returns the losses.

    Loss: L1(x, D(mu)) + (1 - SSIM(x, D(mu))) + perceptual_weight * (1 - cos(phi(D(mu)), phi(x)))
    with ``phi = perceptual`` ((N, 3, S, S) in [0, 1] -> (N, D) features, frozen) and ``mu``
    the frozen encoder's posterior mean, so the latent space the UNet is trained on does not
    move. This is the perceptual part of SD's VAE loss (LPIPS on VGG features, Rombach et al.
    2022, section 3) with a zoo network in place of VGG; without it the 8x8 latent decodes to
    blurred patterns that a CLIP tells apart from the original.
    """
    from venomkit.eval.stealth import ssim

    gen = torch.Generator().manual_seed(seed)
    freeze(perceptual)
    params = list(vae.decoder.parameters()) + list(vae.post_quant_conv.parameters())
    opt = torch.optim.AdamW(params, lr=training.decoder_lr, weight_decay=0.0)
    losses = []
    vae.train()
    for _ in progress_bar(range(training.decoder_steps), desc="toyshop-sd decoder", unit="step", leave=False):
        idx = torch.randint(len(images), (training.vae_batch,), generator=gen)
        x = images[idx].float().div_(255.0)
        with torch.no_grad():
            z = vae.encode(x * 2 - 1).latent_dist.mean
        y = vae.decode(z).sample.float() / 2 + 0.5
        distance = 1 - F.cosine_similarity(perceptual(y), perceptual(x), dim=1)
        loss = (y - x).abs().mean() + (1 - ssim(y, x).mean()) + training.perceptual_weight * distance.mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        losses.append(loss.item())
    vae.eval()
    return losses


@torch.no_grad()
def encode_latents(vae, images: torch.Tensor, batch: int = 256) -> torch.Tensor:
    """Unscaled VAE posterior means (N, C, h, w) of uint8 images (N, 3, S, S)."""
    out = []
    for start in range(0, len(images), batch):
        x = images[start : start + batch].float().div_(255.0)
        out.append(vae.encode(x * 2 - 1).latent_dist.mean)
    return torch.cat(out)


def train_unet(
    unet, text_encoder, tokenizer, scheduler, latents: torch.Tensor, captions: Sequence[Sequence[str]], training: SDTraining, seed: int
) -> list[float]:
    """Train ``unet`` and ``text_encoder`` jointly with the DDPM epsilon loss; returns losses.

    ``latents``: scaled clean latents (N, C, h, w); ``captions[i]``: the prompts image i may
    be paired with (one is drawn per step). A fraction ``uncond_prob`` of prompts is the
    empty string so classifier-free guidance has an unconditional model to contrast.
    """
    gen = torch.Generator().manual_seed(seed)
    prompts = sorted({p for options in captions for p in options} | {""})
    prompt_index = {p: k for k, p in enumerate(prompts)}
    ids = tokenizer(prompts, padding="max_length", max_length=MODEL_MAX_LENGTH, truncation=True, return_tensors="pt").input_ids
    options = [[prompt_index[p] for p in opts] for opts in captions]
    empty = prompt_index[""]
    alphas = scheduler.alphas_cumprod.float()
    n_train = scheduler.config.num_train_timesteps
    unet.train()
    text_encoder.train()
    opt = torch.optim.AdamW(
        [
            {"params": list(unet.parameters()), "lr": training.unet_lr},
            {"params": list(text_encoder.parameters()), "lr": training.text_lr},
        ],
        weight_decay=0.0,
    )
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: _cosine_lr(s, training.unet_steps, max(1, training.unet_steps // 20)))
    losses = []
    b = training.unet_batch
    for _ in progress_bar(range(training.unet_steps), desc="toyshop-sd unet", unit="step", leave=False):
        idx = torch.randint(len(latents), (b,), generator=gen)
        z0 = latents[idx]
        choice = torch.rand(b, generator=gen)
        which = [options[int(i)][int(c * len(options[int(i)]))] for i, c in zip(idx, choice)]
        drop = torch.rand(b, generator=gen) < training.uncond_prob
        token_rows = torch.tensor([empty if d else w for w, d in zip(which, drop.tolist())])
        low = torch.rand(b, generator=gen) < training.low_noise_fraction
        t = torch.where(
            low,
            torch.randint(training.low_noise_max, (b,), generator=gen),
            torch.randint(n_train, (b,), generator=gen),
        )
        noise = torch.randn(z0.shape, generator=gen)
        a = alphas[t].view(-1, 1, 1, 1)
        zt = a.sqrt() * z0 + (1 - a).sqrt() * noise
        cond = text_encoder(ids[token_rows])[0]
        loss = F.mse_loss(unet(zt, t, encoder_hidden_states=cond).sample, noise)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(list(unet.parameters()) + list(text_encoder.parameters()), 1.0)
        opt.step()
        sched.step()
        losses.append(loss.item())
    unet.eval()
    text_encoder.eval()
    return losses


# ---------------------------------------------------------------------------- evaluation
def _quantise(images: torch.Tensor) -> torch.Tensor:
    """Round to 8-bit levels, as saved PNGs are (stealth figures are computed on PNGs)."""
    return images.clamp(0, 1).mul(255).round().div(255)


def evaluate_folder(
    folder: str | Path,
    images: torch.Tensor,
    captions: Sequence[str],
    *,
    strength: float = 0.3,
    num_steps: int = 20,
    seed: int = 0,
    clip_spec: str | None = "zoo:toyshop-clip",
    batch: int = 64,
) -> dict:
    """Quality figures of an SD folder on held-out images (B, 3, S, S) in [0, 1].

    Loads the folder with :class:`DiffusionImg2Img` (float32) and measures: VAE
    reconstruction SSIM; img2img (``strength``, ``num_steps`` DDIM steps, guidance 1) SSIM
    and CLIP image cosine similarity to the input (CLIP = ``clip_spec`` through
    ``venomkit.encoders.loading.load_image_encoder``; ``None`` when it cannot be loaded);
    and the gradient norm reaching a latent perturbation injected at the first step and
    reaching the input pixels. SSIM: 11x11 Gaussian window, sigma 1.5, data_range 1, on
    8-bit-rounded outputs; values are means over images.
    """
    from venomkit.eval.stealth import SSIM_SETTINGS, clip_image_similarity, ssim
    from venomkit.generators.diffusion import DiffusionImg2Img

    model = DiffusionImg2Img.from_pretrained(folder)
    recon, edited = [], []
    with torch.no_grad():
        for start in range(0, len(images), batch):
            x = images[start : start + batch]
            recon.append(_quantise(model.decode_latents(model.encode_images(x))))
            out = model(x, list(captions[start : start + batch]), strength=strength, num_steps=num_steps, seed=seed)
            edited.append(_quantise(out))
    recon, edited = torch.cat(recon), torch.cat(edited)
    figures: dict = {
        "ssim_settings": SSIM_SETTINGS,
        "eval_images": len(images),
        "vae_recon_ssim": float(ssim(recon, images).mean()),
        "vae_recon_psnr": float((10 * torch.log10(1 / (recon - images).pow(2).flatten(1).mean(1))).mean()),
        "img2img_strength": strength,
        "img2img_steps": num_steps,
        "img2img_ssim": float(ssim(edited, images).mean()),
        "img2img_ssim_to_recon": float(ssim(edited, recon).mean()),
    }
    figures["img2img_clip_similarity"] = None
    figures["clip_encoder"] = None
    if clip_spec is not None:
        try:
            from venomkit.encoders.loading import load_image_encoder

            encoder = load_image_encoder(clip_spec)
        except (ImportError, FileNotFoundError, OSError, ValueError) as exc:
            figures["clip_note"] = f"not measured: {clip_spec} could not be loaded ({exc})"
        else:
            with torch.no_grad():
                sims = torch.cat(
                    [clip_image_similarity(encoder, edited[s : s + batch], images[s : s + batch]) for s in range(0, len(images), batch)]
                )
            figures["img2img_clip_similarity"] = float(sims.mean())
            figures["clip_encoder"] = clip_spec

    # Gradient reaches the injected latent perturbation and the pixels through every step.
    x = images[:4].clone().requires_grad_(True)
    b, _, h, w = x.shape
    delta = torch.zeros(model.latent_shape(b, h, w), requires_grad=True)
    out = model(x, list(captions[:4]), strength=strength, num_steps=num_steps, delta=delta, inject_step=0, seed=seed)
    out.mean().backward()
    figures["grad_norm_delta"] = float(delta.grad.norm())
    figures["grad_norm_pixels"] = float(x.grad.norm())
    return figures


def _folder_size(folder: Path) -> int:
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())


# ------------------------------------------------------------------------------- build
def build(out_dir: Path, dataset, *, fast: bool, seed: int) -> dict:
    """Train toyshop-sd on ``dataset`` (plus extra toyshop items) and write it to ``out_dir``.

    ``fast`` uses :data:`FAST_TRAINING` (a few steps: checks the whole path, figures are
    meaningless); otherwise :data:`FULL_TRAINING` (about 35 minutes on 2 idle CPU cores). Returns the
    quality figures of :func:`evaluate_folder` plus sizes, timings and settings, for the
    zoo manifest. Deterministic given ``seed`` (and the number of threads).
    """
    from diffusers import StableDiffusionImg2ImgPipeline

    out_dir = Path(out_dir)
    arch = TOYSHOP_ARCHITECTURE
    training = FAST_TRAINING if fast else FULL_TRAINING
    started = time.time()
    data = _prepare_data(dataset, training, seed, arch.image_size)
    t_data = time.time() - started

    components = make_components(arch, seed)
    vae, unet, text_encoder = components["vae"], components["unet"], components["text_encoder"]

    t0 = time.time()
    vae_losses = train_vae(vae, data.train_images, training, seed + 1)
    vae.float()
    decoder_losses: list[float] = []
    if training.decoder_steps:
        from venomkit.encoders.loading import load_image_encoder

        perceptual = load_image_encoder(training.perceptual_encoder)
        decoder_losses = finetune_decoder(vae, data.train_images, perceptual, training, seed + 3)
    t_vae = time.time() - t0
    raw = encode_latents(vae, data.train_images)
    scaling = float(1.0 / raw.std())
    vae.register_to_config(scaling_factor=scaling)
    t0 = time.time()
    unet_losses = train_unet(
        unet, text_encoder, components["tokenizer"], components["scheduler"], raw * scaling, data.train_captions, training, seed + 2
    )
    t_unet = time.time() - t0

    save_sd_folder(components, out_dir, dtype=torch.float16)
    t0 = time.time()
    figures = evaluate_folder(out_dir, data.eval_images, data.eval_captions, seed=seed)
    # The folder must load like real SD through diffusers' own pipeline class.
    StableDiffusionImg2ImgPipeline.from_pretrained(out_dir, safety_checker=None, requires_safety_checker=False)
    figures["pipeline_loads"] = True
    t_eval = time.time() - t0

    params = {name: sum(p.numel() for p in m.parameters()) for name, m in (("vae", vae), ("unet", unet), ("text_encoder", text_encoder))}
    figures.update(
        {
            "fast": fast,
            "seed": seed,
            "train_images": len(data.train_images),
            "heldout_catalog_items": len(data.eval_index),
            "vae_scaling_factor": scaling,
            "vae_final_loss": float(np.mean(vae_losses[-20:])),
            "decoder_final_loss": float(np.mean(decoder_losses[-20:])) if decoder_losses else None,
            "unet_final_loss": float(np.mean(unet_losses[-20:])),
            "parameters": params,
            "architecture": asdict(arch),
            "training": asdict(training),
            "dtype": "float16",
            "folder_bytes": _folder_size(out_dir),
            "seconds": {
                "data": round(t_data, 1),
                "vae": round(t_vae, 1),
                "unet": round(t_unet, 1),
                "eval": round(t_eval, 1),
                "total": round(time.time() - started, 1),
            },
        }
    )
    return figures
