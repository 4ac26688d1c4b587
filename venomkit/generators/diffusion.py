"""Differentiable Stable Diffusion img2img with step hooks and latent injection (AUV-Fusion's generator).

AUV-Fusion (arXiv 2507.22880) perturbs an item image by adding a learned latent
perturbation inside an img2img DDIM pass: ``z~_t = z_t + eta * delta`` at one denoising
step, then lets the diffusion prior pull the result back onto the image manifold. The
attack optimises ``delta`` (or the MLP that maps a user-group embedding to it) through the
whole pass, so the loop must be differentiable; diffusers' pipelines run ``__call__`` under
``no_grad``. :class:`DiffusionImg2Img` therefore re-implements the img2img loop of
``diffusers.StableDiffusionImg2ImgPipeline`` over the same components, with the same
timestep/strength semantics, as stages a reader can follow top to bottom (the names are
diffusers'):

    check_inputs      every argument checked once, before any work (ValueError naming it)
    get_timesteps     S = num_steps DDIM steps; img2img runs timesteps[t_start:],
                      t_start = S - min(int(S * strength), S)          -> Img2ImgSchedule
    encode_prompt     text embeddings (B, 77, D); no text = the REAL encoded empty prompt ""
    prepare_latents   z_0 = scaling_factor * E(x).mean                (VAE posterior mean)
                      z_t = sqrt(abar_t) z_0 + sqrt(1 - abar_t) eps,  eps ~ N(0, I) per image seed
    denoise           for k, t in enumerate(timesteps):
                          z_t <- callback(k, t, z_t)           (AUV-Fusion: k == inject_step:
                                                                 z_t + eta * delta)
                          eps_hat = UNet(z_t, t, text)   (classifier-free guidance if > 1)
                          z_t = DDIM step (eta_ddim = 0, deterministic)
                      z_0' = callback(len(timesteps), 0, z_0')  (the final clean latent)
    decode_latents    x' = D(z_0' / scaling_factor) mapped from [-1, 1] to [0, 1]

:meth:`DiffusionImg2Img.run` is the one-call API over these stages (images at sizes that are
multiples of 8); :meth:`DiffusionImg2Img.run_native` takes photos of any size: it runs the pass
at the checkpoint's working size and returns each adversarial photo at its own size (see there).

**Step callback** (diffusers' ``callback_on_step_end`` idea, moved to *before* the UNet call
because that is where AUV-Fusion injects): ``callback(step_index, timestep, latents) ->
latents``. It is called right before the UNet call of every step run, and once more after the
last step with ``step_index == len(timesteps)`` and ``timestep == 0`` on the final clean
latent. What it returns replaces the latents; whatever it adds keeps its autograd graph, so
the gradient of a loss on the images reaches the callback's tensors (``delta``, the weights of
the MLP that produced it). :class:`LatentInjection` is AUV-Fusion's injection as one such
callback; ``run(delta=..., eta=..., inject_step=...)`` uses it. The paper and its public port
count the injection step in the FULL schedule ("20 DDIM steps, injection at step 10"):
:func:`run_step_index` (or :meth:`Img2ImgSchedule.run_index`) maps that to the index among the
timesteps img2img runs at a strength, and says so when that step is not run.

**Precision.** ``from_pretrained(..., dtype=torch.float16 | torch.bfloat16)`` casts the three
networks; the latents stay float32 between them (the UNet gets ``z_t`` cast to its dtype and
its noise prediction is cast back; ``add_noise``, the injection and the DDIM step run in
float32) and images come back float32. That is stricter than diffusers: its DDIM ``step``
indexes a float32 ``alphas_cumprod`` but multiplies it into the sample in the sample's dtype
(0-d tensors do not promote), and its ``add_noise`` casts ``alphas_cumprod`` to the sample's
dtype, so the SD pipeline runs the scheduler in float16 when the model is float16. Keeping
the latents float32 costs nothing measurable (they are 1/48 of the pixels) and keeps a small
``eta * delta`` from being rounded away and its gradient accumulated in float32. Half
precision also runs on CPU (torch 2.14, measured on ``zoo:toyshop-sd``, 64 px, batch 2, 10
img2img steps, forward + backward, one thread): float32 0.32 s, bfloat16 0.55 s, float16
3.1 s (CPU float16 kernels are slow); images differ from float32 by at most 0.05 (bfloat16)
and 0.002 (float16), the gradient of ``delta`` by 2.3% and 1.2% (relative norm). It is
allowed there, but float32 is the setting to use on CPU.

Gradient checkpointing: ``checkpoint_steps=True`` recomputes each denoising step in the
backward pass (``torch.utils.checkpoint``: one latent per step is kept instead of the UNet's
activations of every step); :meth:`DiffusionImg2Img.enable_gradient_checkpointing`
recomputes each UNet block (diffusers' own). Both give the gradient of the plain pass.

The same code loads ``zoo:toyshop-sd`` (venomkit's tiny offline model), any local folder in
diffusers' Stable Diffusion layout, or a hub id such as ``runwayml/stable-diffusion-v1-5``
from the local Hugging Face cache (there is no network).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Literal, Sequence

import torch
import torch.nn.functional as F
from torch.utils.checkpoint import checkpoint

from venomkit.config import check_int, check_number
from venomkit.encoders.base import Images, group_by_size
from venomkit.encoders.preprocess import resize_images
from venomkit.models.freeze import freeze
from venomkit.models.resolve import library_progress_bars_off, resolve_model

__all__ = [
    "DiffusionImg2Img",
    "Img2ImgOutput",
    "Img2ImgSchedule",
    "LatentInjection",
    "NativeImg2ImgOutput",
    "StepCallback",
    "WorkingPass",
    "img2img_timesteps",
    "run_step_index",
]

StepCallback = Callable[[int, torch.Tensor, torch.Tensor], torch.Tensor]
"""``callback(step_index, timestep, latents) -> latents``; see the module docstring."""

SUPPORTED_DTYPES = (torch.float32, torch.float16, torch.bfloat16, torch.float64)


# ------------------------------------------------------------------------------ the schedule
def _img2img_start(num_steps: int, strength: float) -> int:
    """Index in the full ``num_steps`` schedule of the first step img2img runs at ``strength``."""
    return max(num_steps - min(int(num_steps * strength), num_steps), 0)


def img2img_timesteps(scheduler, num_steps: int, strength: float) -> torch.Tensor:
    """The timesteps an img2img pass at ``strength`` runs, as diffusers' img2img pipeline does.

    ``scheduler.set_timesteps(num_steps)`` gives S timesteps from noisy to clean; img2img
    keeps the last ``min(int(S * strength), S)`` of them (``get_timesteps`` in
    ``pipeline_stable_diffusion_img2img.py``). Strength 0 keeps none (the pass is a VAE
    round trip), strength 1 keeps all (pure text-to-image from noise).
    """
    scheduler.set_timesteps(num_steps)
    return scheduler.timesteps[_img2img_start(num_steps, strength) * scheduler.order :]


def run_step_index(num_steps: int, strength: float, schedule_step: int) -> int:
    """Index among the img2img timesteps of step ``schedule_step`` of the full ``num_steps`` schedule.

    The AUV-Fusion port says "20 DDIM steps, injection at step 10": step 10 of the full
    schedule (0 = the noisiest). Img2img at ``strength`` runs only steps ``t_start ..
    num_steps - 1`` (``t_start = num_steps - int(num_steps * strength)``), so step 10 of 20 is
    run index 0 at strength 0.5 and is not run at all at strength 0.3 (ValueError).
    ``schedule_step == num_steps`` means the final clean latent (run index ``len(timesteps)``).
    """
    check_int("num_steps", num_steps)
    check_number("strength", strength, 0, 1)
    start = _img2img_start(num_steps, strength)
    if not isinstance(schedule_step, int) or not 0 <= schedule_step <= num_steps:
        raise ValueError(f"schedule_step must be an int in [0, {num_steps}] for a {num_steps}-step schedule, got {schedule_step!r}")
    if schedule_step < start:
        raise ValueError(
            f"schedule_step {schedule_step} of the {num_steps}-step schedule is not run at strength {strength}: img2img "
            f"runs steps {start}..{num_steps - 1} ({num_steps} = the final clean latent); use a strength >= "
            f"{(num_steps - schedule_step) / num_steps:g} or a step in {start}..{num_steps}"
        )
    return schedule_step - start


@dataclass(frozen=True, eq=False)
class Img2ImgSchedule:
    """The timesteps one pass runs, with the private DDIM scheduler that steps through them.

    scheduler: a ``DDIMScheduler`` after ``set_timesteps(num_steps)`` (private to the pass:
    checkpointed steps re-read its state during backward); timesteps: (T,) int64 on the
    model's device, noisy to clean, ``T = min(int(num_steps * strength), num_steps)``;
    start: index in the full schedule of ``timesteps[0]``.
    """

    scheduler: Any
    timesteps: torch.Tensor
    num_steps: int
    strength: float

    @property
    def start(self) -> int:
        return _img2img_start(self.num_steps, self.strength)

    def __len__(self) -> int:
        return len(self.timesteps)

    def run_index(self, schedule_step: int) -> int:
        """:func:`run_step_index` for this schedule (full-schedule step -> index among ``timesteps``)."""
        return run_step_index(self.num_steps, self.strength, schedule_step)


class LatentInjection:
    """AUV-Fusion's injection ``z~_t = z_t + eta * delta`` as a step callback.

    ``delta``: (B or 1, C, h, w), may require grad (or come out of an MLP: its graph is kept);
    ``at_step``: index among the timesteps run (``len(timesteps)`` = the final clean latent;
    :func:`run_step_index` converts a full-schedule step). ``eta = 0`` or ``delta = 0`` leaves
    the latents bit-identical (``z + 0 == z``), so the pass equals plain img2img exactly.
    """

    def __init__(self, delta: torch.Tensor, eta: float = 1.0, at_step: int = 0) -> None:
        if not isinstance(delta, torch.Tensor) or delta.dim() != 4:
            got = tuple(delta.shape) if isinstance(delta, torch.Tensor) else type(delta).__name__
            raise ValueError(f"delta must be a (B, C, h, w) tensor, got {got}")
        check_int("at_step", at_step, 0)
        self.delta = delta
        self.eta = float(eta)
        self.at_step = at_step

    def __call__(self, step_index: int, timestep: torch.Tensor, latents: torch.Tensor) -> torch.Tensor:
        if step_index != self.at_step:
            return latents
        return latents + self.eta * self.delta.to(device=latents.device, dtype=latents.dtype)

    def __repr__(self) -> str:
        return f"LatentInjection(delta={tuple(self.delta.shape)}, eta={self.eta}, at_step={self.at_step})"


# ---------------------------------------------------------------------------------- outputs
@dataclass
class Img2ImgOutput:
    """Result of one img2img pass.

    images: (B, 3, H, W) float32 in [0, 1]; latents: final clean latents (B, C, h, w), scaled
    like the UNet sees them (after the last callback); init_latents: the VAE-encoded inputs
    (same shape); timesteps: the timesteps run (possibly empty). Latents are float32 (float64
    for a float64 model) whatever the networks' dtype.
    """

    images: torch.Tensor
    latents: torch.Tensor
    init_latents: torch.Tensor
    timesteps: torch.Tensor


@dataclass
class WorkingPass:
    """One img2img pass of :meth:`DiffusionImg2Img.run_native`: the photos sharing a working size.

    indices: positions of these photos in the input; clean: the photos resized to the working
    size (n, 3, h, w) in [0, 1] (the pass's input); output: the pass's :class:`Img2ImgOutput`;
    plain: with ``reference="uninjected"``, the same pass without injection or callbacks
    (n, 3, h, w) in [0, 1], no gradient (what ``plain=`` of a later call takes), else None.
    """

    indices: list[int]
    clean: torch.Tensor
    output: Img2ImgOutput
    plain: torch.Tensor | None = None


@dataclass
class NativeImg2ImgOutput:
    """Result of :meth:`DiffusionImg2Img.run_native`.

    images: the adversarial photos at their own sizes, float32 in [0, 1], on the model's
    device: an (N, 3, H, W) tensor when the input was one, else a list of (3, H_i, W_i);
    passes: one :class:`WorkingPass` per working size, in order of first appearance.
    """

    images: Images
    passes: list[WorkingPass]


NOT_CACHED_HINT = "download them where you have a network and pass the folder path instead (or use zoo:toyshop-sd)"
"""What to pass instead of Stable Diffusion weights that are not on this machine."""


class DiffusionImg2Img(torch.nn.Module):
    """A differentiable img2img pass over Stable Diffusion components.

    All components are frozen (``venomkit.models.freeze.freeze``: eval mode, no parameter grad):
    gradients flow to the inputs (pixels, ``delta``, prompt embeddings, a callback's tensors),
    never to the networks' weights. Build with :meth:`from_pretrained` (``zoo:toyshop-sd``, a
    folder or a hub id) or directly from components.
    """

    def __init__(self, vae, unet, text_encoder, tokenizer, scheduler, *, source: str = "components") -> None:
        super().__init__()
        self.vae = vae
        self.unet = unet
        self.text_encoder = text_encoder
        self.tokenizer = tokenizer
        self.scheduler = scheduler
        self.source = source
        for module in (self.vae, self.unet, self.text_encoder):
            freeze(module)

    # ----------------------------------------------------------------------------- loading
    @classmethod
    def from_pretrained(
        cls,
        spec: str | Path,
        *,
        device: str | torch.device = "cpu",
        dtype: torch.dtype = torch.float32,
    ) -> "DiffusionImg2Img":
        """Load the five components of a Stable Diffusion folder with diffusers/transformers.

        ``spec``: ``zoo:toyshop-sd``, a local folder in diffusers layout (``vae/``,
        ``unet/``, ``text_encoder/``, ``tokenizer/``, ``scheduler/``; ``local-dir:PATH`` too),
        or a hub id read from the local cache only (``venomkit.models.resolve.resolve_model``).
        The scheduler is always DDIM (converted from the folder's scheduler config, as
        diffusers' ``from_config`` does). ``dtype``: the networks' dtype (float32, float16,
        bfloat16 or float64); latents and returned images stay float32 (module docstring,
        "Precision"). Half precision is meant for GPUs; it runs on CPU too, slowly for float16.
        """
        from diffusers import AutoencoderKL, DDIMScheduler, UNet2DConditionModel
        from transformers import CLIPTextModel, CLIPTokenizer

        if dtype not in SUPPORTED_DTYPES:
            raise ValueError(f"dtype must be one of {', '.join(map(str, SUPPORTED_DTYPES))}, got {dtype!r}")
        location = str(resolve_model(spec, what="Stable Diffusion model", hint=NOT_CACHED_HINT))
        try:
            with library_progress_bars_off():
                vae = AutoencoderKL.from_pretrained(location, subfolder="vae", torch_dtype=dtype)
                unet = UNet2DConditionModel.from_pretrained(location, subfolder="unet", torch_dtype=dtype)
                text_encoder = CLIPTextModel.from_pretrained(location, subfolder="text_encoder", torch_dtype=dtype)
            tokenizer = CLIPTokenizer.from_pretrained(location, subfolder="tokenizer")
            scheduler = DDIMScheduler.from_pretrained(location, subfolder="scheduler")
        except (OSError, ValueError) as exc:
            reason = " ".join(str(exc).split())
            raise FileNotFoundError(
                f"{location!r} (from {str(spec)!r}) is not a complete Stable Diffusion folder (needs vae/, unet/, "
                f"text_encoder/, tokenizer/ and scheduler/): {reason}"
            ) from exc
        model = cls(vae, unet, text_encoder, tokenizer, scheduler, source=str(spec))
        return model.to(device)

    # ------------------------------------------------------------------------- properties
    @property
    def device(self) -> torch.device:
        return next(self.unet.parameters()).device

    @property
    def dtype(self) -> torch.dtype:
        """The networks' dtype (UNet parameters)."""
        return next(self.unet.parameters()).dtype

    @property
    def latent_dtype(self) -> torch.dtype:
        """The dtype latents live in between the networks: float32 (float64 for a float64 model)."""
        return torch.promote_types(self.dtype, torch.float32)

    @property
    def vae_scale_factor(self) -> int:
        """Pixels per latent cell along one side (8 for real SD and toyshop-sd)."""
        return 2 ** (len(self.vae.config.block_out_channels) - 1)

    @property
    def latent_channels(self) -> int:
        return int(self.vae.config.latent_channels)

    @property
    def working_size(self) -> int:
        """The checkpoint's native image side: ``unet.config.sample_size * vae_scale_factor``.

        512 for SD 1.5 (sample_size 64), 768 for SD 2.x, 64 for ``zoo:toyshop-sd`` (8 x 8).
        """
        size = self.unet.config.sample_size
        size = min(size) if isinstance(size, (list, tuple)) else size
        return int(size) * self.vae_scale_factor

    def latent_shape(self, batch: int, height: int, width: int) -> tuple[int, int, int, int]:
        """Shape (B, C, h, w) of the latents (and of ``delta``) for (B, 3, height, width) images."""
        f = self.vae_scale_factor
        return (batch, self.latent_channels, height // f, width // f)

    def working_size_for(self, height: int, width: int, working_size: int | None = None) -> tuple[int, int]:
        """(h, w) a ``height`` x ``width`` photo is run at by :meth:`run_native`.

        The shorter side becomes ``working_size`` (default :attr:`working_size`; a multiple of
        ``vae_scale_factor``), the longer keeps the aspect ratio, rounded to the nearest
        multiple of ``vae_scale_factor``. The latent (and ``delta``) shape of that photo is
        ``latent_shape(1, h, w)[1:]``.
        """
        f = self.vae_scale_factor
        size = self.working_size if working_size is None else working_size
        if not isinstance(size, int) or size < f or size % f:
            raise ValueError(f"working_size must be a positive multiple of {f}, got {size!r}")
        scale = size / min(height, width)
        return tuple(max(f, int(math.floor(side * scale / f + 0.5)) * f) for side in (height, width))  # type: ignore[return-value]

    def enable_gradient_checkpointing(self, *, vae: bool = False) -> None:
        """Recompute UNet blocks in the backward pass (diffusers' per-block checkpointing).

        ``vae=True`` also checkpoints the VAE encoder's and decoder's blocks (their
        activations at the working size dominate memory at 512 px).
        """
        self.unet.enable_gradient_checkpointing()
        if vae:
            self.vae.enable_gradient_checkpointing()

    def disable_gradient_checkpointing(self) -> None:
        """Undo :meth:`enable_gradient_checkpointing` (UNet and VAE)."""
        self.unet.disable_gradient_checkpointing()
        self.vae.disable_gradient_checkpointing()

    def train(self, mode: bool = True) -> "DiffusionImg2Img":
        # Components stay in eval mode: dropout in a generator would make attacks stochastic.
        super().train(mode)
        for module in (self.vae, self.unet, self.text_encoder):
            module.eval()
        return self

    # -------------------------------------------------------------------- stage 1: inputs
    def check_inputs(
        self,
        images: torch.Tensor,
        texts: Sequence[str] | str | None = None,
        *,
        strength: float = 0.3,
        num_steps: int = 20,
        guidance_scale: float = 1.0,
        negative_texts: Sequence[str] | str | None = None,
        delta: torch.Tensor | None = None,
        inject_step: int = 0,
        seed: int | Sequence[int] = 0,
        noise: torch.Tensor | None = None,
        prompt_embeds: torch.Tensor | None = None,
        callback: StepCallback | Sequence[StepCallback] | None = None,
    ) -> None:
        """Check every argument of :meth:`run` once, before any work; ValueError names the bad one."""
        self._check_images(images)
        batch, _, height, width = images.shape
        shape = self.latent_shape(batch, height, width)
        check_number("strength", strength, 0, 1)
        check_int("num_steps", num_steps)
        check_number("guidance_scale", guidance_scale, 0)
        n_run = num_steps - _img2img_start(num_steps, strength)
        if not isinstance(inject_step, int) or not 0 <= inject_step <= n_run:
            raise ValueError(
                f"inject_step must be in [0, {n_run}] for these timesteps ({n_run} steps run at strength {strength}), "
                f"got {inject_step!r}; a full-schedule step converts with run_step_index"
            )
        if delta is not None:
            self._check_delta(delta, shape)
        if prompt_embeds is not None:
            if texts is not None:
                raise ValueError("pass either texts or prompt_embeds, not both")
            dim = self.unet.config.cross_attention_dim
            if prompt_embeds.dim() != 3 or prompt_embeds.shape[0] != batch or prompt_embeds.shape[2] != dim:
                raise ValueError(f"prompt_embeds must have shape ({batch}, L, {dim}), got {tuple(prompt_embeds.shape)}")
        else:
            self._texts(texts, batch, "texts")
        if guidance_scale > 1.0:
            self._texts(negative_texts, batch, "negative_texts")
        if noise is not None:
            if tuple(noise.shape) != shape:
                raise ValueError(f"noise: shape {tuple(noise.shape)} != latent shape {shape}")
        else:
            self._seeds(seed, batch)
        self._callbacks(callback)

    # ---------------------------------------------------------------- stage 2: timesteps
    def get_timesteps(self, num_steps: int, strength: float) -> Img2ImgSchedule:
        """The :class:`Img2ImgSchedule` of a pass (a fresh DDIM scheduler of this model's config)."""
        from diffusers import DDIMScheduler

        # A private scheduler per pass: set_timesteps mutates state that checkpointed steps
        # re-read during backward, so another pass in between must not change it.
        scheduler = DDIMScheduler.from_config(self.scheduler.config)
        scheduler.alphas_cumprod = scheduler.alphas_cumprod.to(self.device)  # indexed by timesteps on the device
        timesteps = img2img_timesteps(scheduler, num_steps, strength).to(self.device)
        return Img2ImgSchedule(scheduler, timesteps, num_steps, strength)

    # ------------------------------------------------------------------- stage 3: prompt
    def encode_prompts(self, texts: Sequence[str]) -> torch.Tensor:
        """Text embeddings (B, 77, D) as the SD pipelines compute them (last hidden state)."""
        ids = self.tokenizer(
            list(texts),
            padding="max_length",
            max_length=self.tokenizer.model_max_length,
            truncation=True,
            return_tensors="pt",
        ).input_ids.to(self.device)
        mask = None
        if getattr(self.text_encoder.config, "use_attention_mask", False):
            mask = (ids != self.tokenizer.pad_token_id).long()
        return self.text_encoder(ids, attention_mask=mask)[0]

    def encode_prompt(
        self,
        texts: Sequence[str] | str | None,
        batch: int,
        *,
        guidance_scale: float = 1.0,
        negative_texts: Sequence[str] | str | None = None,
        prompt_embeds: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """The UNet's conditioning (B, 77, D), or (2B, 77, D) = [negative; text] when ``guidance_scale > 1``.

        ``texts``: one caption per image (a str is used for all). ``None`` is the REAL encoded
        empty prompt ``""`` (what diffusers' pipelines encode for an empty prompt and for
        the unconditional half of guidance); the public port of AUV-Fusion passes an all-zero
        tensor instead, which is not what the UNet was trained to see for "no text".
        ``prompt_embeds`` (B, L, D) replaces the encoded texts (and may require grad).
        Negative texts default to empty prompts, as in diffusers. In the networks' dtype.
        """
        cond = prompt_embeds if prompt_embeds is not None else self.encode_prompts(self._texts(texts, batch, "texts"))
        cond = cond.to(device=self.device, dtype=self.dtype)
        if guidance_scale > 1.0:
            negative = self.encode_prompts(self._texts(negative_texts, batch, "negative_texts"))
            cond = torch.cat([negative.to(self.dtype), cond])
        return cond

    # ------------------------------------------------------------------ stage 4: latents
    def encode_images(self, images: torch.Tensor) -> torch.Tensor:
        """Scaled VAE latents (B, C, H/f, W/f) of images (B, 3, H, W) in [0, 1] (posterior mean), in :attr:`latent_dtype`."""
        x = images.to(device=self.device, dtype=self.vae.dtype) * 2.0 - 1.0
        mean = self.vae.encode(x).latent_dist.mean
        return (mean * self.vae.config.scaling_factor).to(self.latent_dtype)

    def make_noise(self, shape: tuple[int, ...], seed: int | Sequence[int]) -> torch.Tensor:
        """Gaussian noise (B, C, h, w), one CPU generator per image so results do not depend on batching.

        An int seed gives every image the noise of that seed; a sequence gives one seed per
        image. The draw is float32 on the CPU (the same numbers as diffusers' ``randn_tensor``
        with one CPU generator per image), then moved to the model's device.
        """
        seeds = self._seeds(seed, shape[0])
        noise = [torch.randn(shape[1:], generator=torch.Generator().manual_seed(s)) for s in seeds]
        return torch.stack(noise).to(device=self.device, dtype=self.latent_dtype)

    def prepare_latents(
        self,
        images: torch.Tensor,
        schedule: Img2ImgSchedule,
        *,
        noise: torch.Tensor | None = None,
        seed: int | Sequence[int] = 0,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """``(z_t, z_0)``: VAE latents of ``images`` noised to the first timestep run, and the latents themselves.

        ``z_0 = scaling_factor * E(x).mean`` (the posterior mean: diffusers samples the
        posterior, which only adds a little noise and costs determinism);
        ``z_t = scheduler.add_noise(z_0, noise, timesteps[0])``, noise from ``seed`` (one
        per image) unless given. With no timesteps (strength 0) ``z_t = z_0``. Both
        (B, C, h, w) in :attr:`latent_dtype`.
        """
        init_latents = self.encode_images(images)
        if len(schedule) == 0:
            return init_latents, init_latents
        if noise is None:
            noise = self.make_noise(tuple(init_latents.shape), seed)
        t0 = schedule.timesteps[:1].repeat(init_latents.shape[0])
        latents = schedule.scheduler.add_noise(init_latents, noise.to(init_latents), t0)
        return latents, init_latents

    # ------------------------------------------------------------------ stage 5: denoise
    def denoise(
        self,
        latents: torch.Tensor,
        schedule: Img2ImgSchedule,
        cond: torch.Tensor | None,
        *,
        guidance_scale: float = 1.0,
        callback: StepCallback | Sequence[StepCallback] | None = None,
        checkpoint_steps: bool = False,
    ) -> torch.Tensor:
        """The DDIM loop over ``schedule.timesteps`` from ``latents`` (B, C, h, w); returns the clean latents.

        ``cond``: :meth:`encode_prompt`'s output (B rows, or 2B with guidance; unused when
        no step runs). ``callback``: one or a sequence of step callbacks, applied in order
        right before each UNet call (``step_index`` 0 .. T-1) and once on the final latent
        (``step_index`` T, ``timestep`` 0). ``checkpoint_steps``: recompute each step (UNet,
        guidance, DDIM update; not the callbacks) in the backward pass.
        """
        callbacks = self._callbacks(callback)
        scheduler = schedule.scheduler
        use_cfg = guidance_scale > 1.0
        if len(schedule) and (cond is None or cond.shape[0] != latents.shape[0] * (2 if use_cfg else 1)):
            got = None if cond is None else tuple(cond.shape)
            raise ValueError(f"cond must have {latents.shape[0] * (2 if use_cfg else 1)} rows for guidance {guidance_scale}, got {got}")

        def step(z: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
            z_in = torch.cat([z, z]) if use_cfg else z
            z_in = scheduler.scale_model_input(z_in, t).to(self.dtype)
            eps = self.unet(z_in, t, encoder_hidden_states=cond).sample.to(z.dtype)
            if use_cfg:
                eps_uncond, eps_text = eps.chunk(2)
                eps = eps_uncond + guidance_scale * (eps_text - eps_uncond)
            return scheduler.step(eps, t, z, eta=0.0, return_dict=False)[0]

        def hooks(k: int, t: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
            for fn in callbacks:
                out = fn(k, t, z)
                if not isinstance(out, torch.Tensor) or out.shape != z.shape:
                    got = tuple(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__
                    raise ValueError(f"callback {fn!r} must return the latents, a tensor of shape {tuple(z.shape)}, got {got}")
                z = out
            return z

        for k, t in enumerate(schedule.timesteps):
            latents = hooks(k, t, latents)
            if checkpoint_steps and torch.is_grad_enabled():
                latents = checkpoint(step, latents, t, use_reentrant=False)
            else:
                latents = step(latents, t)
        final_t = torch.zeros((), dtype=schedule.timesteps.dtype, device=latents.device)
        return hooks(len(schedule), final_t, latents)

    # ------------------------------------------------------------------- stage 6: decode
    def decode_latents(self, latents: torch.Tensor) -> torch.Tensor:
        """Images (B, 3, H, W) float32 in [0, 1] from scaled latents (B, C, h, w)."""
        x = self.vae.decode(latents.to(self.vae.dtype) / self.vae.config.scaling_factor).sample
        return (x.float() / 2.0 + 0.5).clamp(0.0, 1.0)

    # ---------------------------------------------------------------------------- the pass
    def forward(self, images: torch.Tensor, texts: Sequence[str] | str | None = None, **kwargs) -> torch.Tensor:
        """img2img images (B, 3, H, W) in [0, 1]; see :meth:`run` for the arguments."""
        return self.run(images, texts, **kwargs).images

    def run(
        self,
        images: torch.Tensor,
        texts: Sequence[str] | str | None = None,
        *,
        strength: float = 0.3,
        num_steps: int = 20,
        guidance_scale: float = 1.0,
        negative_texts: Sequence[str] | str | None = None,
        delta: torch.Tensor | None = None,
        eta: float = 1.0,
        inject_step: int = 0,
        seed: int | Sequence[int] = 0,
        noise: torch.Tensor | None = None,
        prompt_embeds: torch.Tensor | None = None,
        checkpoint_steps: bool = False,
        callback: StepCallback | Sequence[StepCallback] | None = None,
    ) -> Img2ImgOutput:
        """One differentiable img2img pass: the stages of the module docstring, in order.

        Args:
            images: (B, 3, H, W) float in [0, 1], H and W multiples of ``vae_scale_factor``
                (:meth:`run_native` takes any size).
            texts: one caption per image (a single str is used for all; None = the encoded
                empty prompt, see :meth:`encode_prompt`).
            strength: in [0, 1]; the fraction of the ``num_steps`` DDIM schedule that is run.
            num_steps: DDIM steps of the full schedule (img2img runs ``int(num_steps*strength)``).
            guidance_scale: classifier-free guidance weight; > 1 also runs the UNet on
                ``negative_texts`` (default empty prompts), as diffusers does.
            delta: latent perturbation (B or 1, C, h, w); may require grad.
            eta: injection scale of AUV-Fusion's ``z~_t = z_t + eta * delta``.
            inject_step: index into the timesteps run: delta is added to the latent right
                before the UNet call of that step; ``inject_step == len(timesteps)`` adds it
                to the final clean latent (the only choice when strength gives no steps).
                A step of the full schedule converts with :func:`run_step_index`.
            seed: noise seed (int for all images, or one per image); ignored if ``noise`` given.
            noise: explicit noise (B, C, h, w) for ``add_noise``.
            prompt_embeds: (B, L, D) text embeddings used instead of encoding ``texts``.
            checkpoint_steps: recompute each denoising step in the backward pass
                (``torch.utils.checkpoint``), trading time for memory.
            callback: step callback(s) (:data:`StepCallback`), applied after the injection.
        """
        self.check_inputs(
            images, texts, strength=strength, num_steps=num_steps, guidance_scale=guidance_scale,
            negative_texts=negative_texts, delta=delta, inject_step=inject_step, seed=seed, noise=noise,
            prompt_embeds=prompt_embeds, callback=callback,
        )  # fmt: skip
        batch = images.shape[0]
        schedule = self.get_timesteps(num_steps, strength)
        cond = None
        if len(schedule):
            cond = self.encode_prompt(
                texts, batch, guidance_scale=guidance_scale, negative_texts=negative_texts, prompt_embeds=prompt_embeds
            )
        latents, init_latents = self.prepare_latents(images, schedule, noise=noise, seed=seed)
        callbacks = self._callbacks(callback)
        if delta is not None:
            callbacks = [LatentInjection(delta, eta, inject_step), *callbacks]
        latents = self.denoise(
            latents, schedule, cond, guidance_scale=guidance_scale, callback=callbacks, checkpoint_steps=checkpoint_steps
        )
        return Img2ImgOutput(self.decode_latents(latents), latents, init_latents, schedule.timesteps)

    def run_native(
        self,
        images: Images,
        texts: Sequence[str] | str | None = None,
        *,
        working_size: int | None = None,
        strength: float = 0.3,
        num_steps: int = 20,
        guidance_scale: float = 1.0,
        negative_texts: Sequence[str] | str | None = None,
        delta: torch.Tensor | Sequence[torch.Tensor] | None = None,
        eta: float = 1.0,
        inject_step: int = 0,
        seed: int | Sequence[int] = 0,
        prompt_embeds: torch.Tensor | None = None,
        checkpoint_steps: bool = False,
        callback: StepCallback | Sequence[StepCallback] | None = None,
        reference: Literal["photo", "uninjected"] = "photo",
        plain: Sequence[torch.Tensor] | None = None,
    ) -> NativeImg2ImgOutput:
        """img2img on photos of any size; each adversarial photo comes back at its own size.

        Each photo (3, H_i, W_i) in [0, 1] is resized (antialiased bicubic, differentiable:
        ``venomkit.encoders.preprocess.resize_images``) to :meth:`working_size_for` (shorter
        side ``working_size``, default the checkpoint's :attr:`working_size`, e.g. 512 for SD
        1.5); photos sharing a working size run as one batch (one :meth:`run` per working
        size). The result at the photo's own size is

            x_adv = clamp(x + upsample(adv_work - clean_work), 0, 1)

        with ``clean_work`` the resized photo, ``adv_work`` the pass's output and
        ``upsample`` antialiased bicubic to (H_i, W_i) (it downsamples when the photo is
        smaller than the working size). So the native detail the pass never saw is kept and
        the change the pass made is added; a photo already at its working size gets the
        pass's output itself (bit-identical). Consequence: the change includes the VAE's
        reconstruction error at the working size (its blur of fine texture), not only the
        edit the denoising made; at strength 0 the change is exactly that error. Stealth
        (SSIM etc.) is meant to be measured on these native photos. Differentiable end to end
        with respect to the photos, ``delta``, ``prompt_embeds`` and a callback's tensors.

        ``reference="uninjected"`` keeps only the change the injection made::

            x_adv = clamp(x + upsample(adv_work - plain_work), 0, 1)

        with ``plain_work`` the same pass (same seeds, prompts and noise) without ``delta`` and
        without callbacks, run without gradient. The generator's reconstruction error and its
        denoising drift then cancel, so ``delta = 0`` (or ``eta = 0``) returns the photos
        exactly, at any size: for a generator that cannot reconstruct the photos (a small
        checkpoint, photos unlike its training data). It costs one more pass, without gradient,
        unless ``plain`` gives that pass's images from an earlier call on the same photos,
        prompts, seeds and pass settings (``[p.plain for p in earlier.passes]``, one
        (n_j, 3, h_j, w_j) tensor per pass): a loop that optimises ``delta`` over many steps
        runs the plain pass once. The values are the same either way.

        Per-image arguments are given for the N photos in input order and split per pass:
        ``texts``/``negative_texts`` (str for all or N), ``seed`` (int or N), ``prompt_embeds``
        (N, L, D), ``delta``: one (C, h_i, w_i) tensor per photo (shape
        ``latent_shape(1, *working_size_for(H_i, W_i))[1:]``), or one tensor (N or 1, C, h, w)
        when every photo has the same working size. A ``callback`` is called once per pass on
        that pass's latents (rows = ``passes[j].indices``). The other arguments are
        :meth:`run`'s.
        """
        if reference not in ("photo", "uninjected"):
            raise ValueError(f"reference must be 'photo' or 'uninjected', got {reference!r}")
        groups = group_by_size(images)  # ValueError for anything that is not 3-channel images
        n = sum(len(idx) for idx, _ in groups)
        for idx, batch in groups:
            self._check_pixels(batch, f"images (photo {idx[0]})")
        sizes = {i: self.working_size_for(b.shape[2], b.shape[3], working_size) for idx, b in groups for i in idx}
        texts_n = None if texts is None or isinstance(texts, str) else self._texts(texts, n, "texts")
        negative_n = None if negative_texts is None or isinstance(negative_texts, str) else self._texts(negative_texts, n, "negative_texts")
        seeds = self._seeds(seed, n)
        if prompt_embeds is not None and prompt_embeds.shape[0] != n:
            raise ValueError(f"prompt_embeds: batch {prompt_embeds.shape[0]} != number of photos {n}")
        deltas = self._native_deltas(delta, sizes, n)
        if plain is not None and reference != "uninjected":
            raise ValueError("plain: the plain passes are only used with reference='uninjected'")

        # Resize each same-size group once, then bucket the photos by working size.
        buckets: dict[tuple[int, int], list[tuple[list[int], torch.Tensor, torch.Tensor]]] = {}
        for idx, batch in groups:
            batch = batch.to(device=self.device, dtype=torch.float32)
            size = sizes[idx[0]]
            buckets.setdefault(size, []).append((idx, batch, resize_images(batch, size, "bicubic")))

        if plain is not None:
            plain = list(plain)
            expected = [(len([i for m_idx, _, _ in members for i in m_idx]), 3, *size) for size, members in buckets.items()]
            got = [tuple(p.shape) if isinstance(p, torch.Tensor) else type(p).__name__ for p in plain]
            if got != expected:
                raise ValueError(f"plain: expected one tensor per pass of shapes {expected} (the same photos as the call "
                                 f"that made them), got {got}")
        out: list[torch.Tensor | None] = [None] * n
        passes = []
        for j, (size, members) in enumerate(buckets.items()):
            idx = [i for m_idx, _, _ in members for i in m_idx]
            clean = torch.cat([work for _, _, work in members])
            pick = torch.tensor(idx, device=self.device)
            same = {
                "strength": strength, "num_steps": num_steps, "guidance_scale": guidance_scale,
                "negative_texts": negative_texts if negative_n is None else [negative_n[i] for i in idx],
                "seed": [seeds[i] for i in idx],
                "prompt_embeds": None if prompt_embeds is None else prompt_embeds.to(self.device)[pick],
            }  # fmt: skip
            prompts = texts if texts_n is None else [texts_n[i] for i in idx]
            result = self.run(
                clean, prompts, delta=None if deltas is None else deltas(idx), eta=eta, inject_step=inject_step,
                checkpoint_steps=checkpoint_steps, callback=callback, **same,
            )  # fmt: skip
            base = None
            if reference == "uninjected":
                if plain is not None:
                    base = plain[j].to(self.device)
                else:
                    with torch.no_grad():
                        base = self.run(clean, prompts, **same).images
            passes.append(WorkingPass(idx, clean, result, base))
            row = 0
            for m_idx, native, work in members:
                adv = result.images[row : row + len(m_idx)]
                resized = tuple(native.shape[2:]) != size
                if reference == "uninjected" or resized:
                    change = adv - (base[row : row + len(m_idx)] if reference == "uninjected" else work)
                    if resized:
                        change = F.interpolate(change, size=tuple(native.shape[2:]), mode="bicubic", align_corners=False, antialias=True)
                    adv = (native + change).clamp(0.0, 1.0)
                row += len(m_idx)
                for j, i in enumerate(m_idx):
                    out[i] = adv[j]
        native_images: Images = torch.stack(out) if isinstance(images, torch.Tensor) else out  # type: ignore[arg-type]
        return NativeImg2ImgOutput(native_images, passes)

    # -------------------------------------------------------------------------- checking
    def _check_images(self, images: torch.Tensor) -> torch.Tensor:
        if not isinstance(images, torch.Tensor) or images.dim() != 4 or images.shape[1] != 3:
            got = tuple(images.shape) if isinstance(images, torch.Tensor) else type(images).__name__
            raise ValueError(f"images must be a (B, 3, H, W) tensor, got {got}")
        f = self.vae_scale_factor
        if images.shape[2] % f or images.shape[3] % f:
            raise ValueError(f"images: height and width must be multiples of {f}, got {tuple(images.shape[2:])} (run_native takes any size)")
        return self._check_pixels(images, "images")

    @staticmethod
    def _check_pixels(images: torch.Tensor, name: str) -> torch.Tensor:
        if not images.is_floating_point():
            raise ValueError(f"{name} must be float in [0, 1], got dtype {images.dtype}")
        lo, hi = float(images.detach().min()), float(images.detach().max())
        if lo < -1e-4 or hi > 1 + 1e-4:
            raise ValueError(f"{name} must be in [0, 1], got values in [{lo:.3f}, {hi:.3f}]")
        return images

    @staticmethod
    def _check_delta(delta: torch.Tensor, shape: tuple[int, int, int, int]) -> torch.Tensor:
        if not isinstance(delta, torch.Tensor) or delta.dim() != 4 or tuple(delta.shape[1:]) != shape[1:] or delta.shape[0] not in (1, shape[0]):
            got = tuple(delta.shape) if isinstance(delta, torch.Tensor) else type(delta).__name__
            raise ValueError(f"delta must have shape {shape} (or batch 1), got {got}")
        return delta

    def _native_deltas(
        self, delta: torch.Tensor | Sequence[torch.Tensor] | None, sizes: dict[int, tuple[int, int]], n: int
    ) -> Callable[[list[int]], torch.Tensor] | None:
        """``delta`` of :meth:`run_native` as a function: photo indices of one pass -> that pass's delta."""
        if delta is None:
            return None
        if isinstance(delta, torch.Tensor):
            if len(set(sizes.values())) > 1:
                raise ValueError(
                    f"delta: the photos have different working sizes {sorted(set(sizes.values()))}; pass one (C, h_i, w_i) "
                    "tensor per photo (shape latent_shape(1, *working_size_for(H_i, W_i))[1:])"
                )
            size = next(iter(sizes.values()))
            self._check_delta(delta, self.latent_shape(n, *size))
            if delta.shape[0] == 1:
                return lambda idx: delta
            return lambda idx: delta[torch.tensor(idx, device=delta.device)]
        deltas = list(delta)
        if len(deltas) != n:
            raise ValueError(f"delta: {len(deltas)} tensors for {n} photos")
        for i, d in enumerate(deltas):
            expected = self.latent_shape(1, *sizes[i])[1:]
            if not isinstance(d, torch.Tensor) or tuple(d.shape) != expected:
                got = tuple(d.shape) if isinstance(d, torch.Tensor) else type(d).__name__
                raise ValueError(f"delta[{i}] must have shape {expected} (working size {sizes[i]}), got {got}")
        return lambda idx: torch.stack([deltas[i] for i in idx])

    @staticmethod
    def _callbacks(callback: StepCallback | Sequence[StepCallback] | None) -> list[StepCallback]:
        if callback is None:
            return []
        callbacks = [callback] if callable(callback) else list(callback)
        for fn in callbacks:
            if not callable(fn):
                raise ValueError(f"callback must be a callable (step_index, timestep, latents) -> latents or a sequence of them, got {fn!r}")
        return callbacks

    @staticmethod
    def _seeds(seed: int | Sequence[int], batch: int) -> list[int]:
        seeds = [int(seed)] * batch if isinstance(seed, int) else [int(s) for s in seed]
        if len(seeds) != batch:
            raise ValueError(f"seed: {len(seeds)} seeds for a batch of {batch} images")
        return seeds

    @staticmethod
    def _texts(texts: Sequence[str] | str | None, batch: int, name: str) -> list[str]:
        if texts is None:
            return [""] * batch
        if isinstance(texts, str):
            return [texts] * batch
        texts = list(texts)
        if len(texts) != batch:
            raise ValueError(f"{name}: {len(texts)} texts for {batch} images")
        if not all(isinstance(t, str) for t in texts):
            raise ValueError(f"{name} must be strings, got {[type(t).__name__ for t in texts if not isinstance(t, str)][:3]}")
        return texts
