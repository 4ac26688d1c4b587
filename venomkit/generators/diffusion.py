"""Differentiable Stable Diffusion img2img with latent injection (AUV-Fusion's generator).

AUV-Fusion (arXiv 2507.22880) perturbs an item image by adding a learned latent
perturbation inside an img2img DDIM pass: ``z~_t = z_t + eta * delta`` at one denoising
step, then lets the diffusion prior pull the result back onto the image manifold. The
attack optimises ``delta`` (or the network that produces it) through the whole pass, so the
loop must be differentiable; diffusers' pipelines run ``__call__`` under ``no_grad``.
:class:`DiffusionImg2Img` therefore re-implements the img2img loop of
``diffusers.StableDiffusionImg2ImgPipeline`` over the same components, with the same
timestep/strength semantics:

    z_0 = scaling_factor * E(x).mean                       (VAE posterior mean, no sampling)
    timesteps = scheduler.timesteps[t_start:],  t_start = S - min(int(S * strength), S)
    z_t = sqrt(abar_t) z_0 + sqrt(1 - abar_t) eps,  eps ~ N(0, I) from a seed, t = timesteps[0]
    for k, t in enumerate(timesteps):
        if k == inject_step: z_t <- z_t + eta * delta      (AUV-Fusion injection)
        eps_hat = UNet(z_t, t, text)   (classifier-free guidance when guidance_scale > 1)
        z_t = DDIM step (eta_ddim = 0, deterministic)
    x' = D(z / scaling_factor) mapped from [-1, 1] to [0, 1]

The same code loads ``zoo:toyshop-sd`` (venomkit's tiny offline model), any local folder in
diffusers' Stable Diffusion layout, or a hub id such as ``runwayml/stable-diffusion-v1-5``
from the local Hugging Face cache (there is no network).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import torch
from torch.utils.checkpoint import checkpoint

from venomkit.models.freeze import freeze
from venomkit.models.resolve import resolve_model

__all__ = ["DiffusionImg2Img", "Img2ImgOutput", "img2img_timesteps"]

def img2img_timesteps(scheduler, num_steps: int, strength: float) -> torch.Tensor:
    """The timesteps an img2img pass at ``strength`` runs, as diffusers' img2img pipeline does.

    ``scheduler.set_timesteps(num_steps)`` gives S timesteps from noisy to clean; img2img
    keeps the last ``min(int(S * strength), S)`` of them (``get_timesteps`` in
    ``pipeline_stable_diffusion_img2img.py``). Strength 0 keeps none (the pass is a VAE
    round trip), strength 1 keeps all (pure text-to-image from noise).
    """
    scheduler.set_timesteps(num_steps)
    init_timestep = min(int(num_steps * strength), num_steps)
    t_start = max(num_steps - init_timestep, 0)
    return scheduler.timesteps[t_start * scheduler.order:]


@dataclass
class Img2ImgOutput:
    """Result of one img2img pass.

    images: (B, 3, H, W) in [0, 1]; latents: final clean latents (B, C, h, w), scaled like
    the UNet sees them; init_latents: the VAE-encoded inputs (same shape); timesteps: the
    timesteps run (possibly empty).
    """

    images: torch.Tensor
    latents: torch.Tensor
    init_latents: torch.Tensor
    timesteps: torch.Tensor


NOT_CACHED_HINT = "download them where you have a network and pass the folder path instead (or use zoo:toyshop-sd)"
"""What to pass instead of Stable Diffusion weights that are not on this machine."""


class DiffusionImg2Img(torch.nn.Module):
    """A differentiable img2img pass over Stable Diffusion components.

    All components are frozen (``venomkit.models.freeze.freeze``: eval mode, no parameter grad):
    gradients flow to the inputs (pixels, ``delta``, prompt embeddings), never to weights.
    Build with :meth:`from_pretrained` (``zoo:toyshop-sd``, a folder or a hub id) or
    directly from components.
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
        diffusers' ``from_config`` does).
        """
        from diffusers import AutoencoderKL, DDIMScheduler, UNet2DConditionModel
        from transformers import CLIPTextModel, CLIPTokenizer

        location = str(resolve_model(spec, what="Stable Diffusion model", hint=NOT_CACHED_HINT))
        try:
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
        return next(self.unet.parameters()).dtype

    @property
    def vae_scale_factor(self) -> int:
        """Pixels per latent cell along one side (8 for real SD and toyshop-sd)."""
        return 2 ** (len(self.vae.config.block_out_channels) - 1)

    @property
    def latent_channels(self) -> int:
        return int(self.vae.config.latent_channels)

    def latent_shape(self, batch: int, height: int, width: int) -> tuple[int, int, int, int]:
        """Shape (B, C, h, w) of the latents (and of ``delta``) for (B, 3, height, width) images."""
        f = self.vae_scale_factor
        return (batch, self.latent_channels, height // f, width // f)

    def enable_gradient_checkpointing(self) -> None:
        """Recompute UNet blocks in the backward pass (diffusers' per-block checkpointing)."""
        self.unet.enable_gradient_checkpointing()

    def train(self, mode: bool = True) -> "DiffusionImg2Img":
        # Components stay in eval mode: dropout in a generator would make attacks stochastic.
        super().train(mode)
        for module in (self.vae, self.unet, self.text_encoder):
            module.eval()
        return self

    # ----------------------------------------------------------------------- components
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

    def encode_images(self, images: torch.Tensor) -> torch.Tensor:
        """Scaled VAE latents (B, C, H/f, W/f) of images (B, 3, H, W) in [0, 1] (posterior mean)."""
        x = images.to(device=self.device, dtype=self.vae.dtype) * 2.0 - 1.0
        mean = self.vae.encode(x).latent_dist.mean
        return mean * self.vae.config.scaling_factor

    def decode_latents(self, latents: torch.Tensor) -> torch.Tensor:
        """Images (B, 3, H, W) in [0, 1] from scaled latents (B, C, h, w)."""
        x = self.vae.decode(latents.to(self.vae.dtype) / self.vae.config.scaling_factor).sample
        return (x.float() / 2.0 + 0.5).clamp(0.0, 1.0)

    def make_noise(self, shape: tuple[int, ...], seed: int | Sequence[int]) -> torch.Tensor:
        """Gaussian noise (B, C, h, w), one CPU generator per image so results do not depend on batching.

        An int seed gives every image the noise of that seed; a sequence gives one seed per image.
        """
        seeds = [int(seed)] * shape[0] if isinstance(seed, int) else [int(s) for s in seed]
        if len(seeds) != shape[0]:
            raise ValueError(f"seed: {len(seeds)} seeds for a batch of {shape[0]} images")
        noise = [torch.randn(shape[1:], generator=torch.Generator().manual_seed(s)) for s in seeds]
        return torch.stack(noise).to(device=self.device, dtype=self.dtype)

    # ---------------------------------------------------------------------------- the loop
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
    ) -> Img2ImgOutput:
        """One differentiable img2img pass.

        Args:
            images: (B, 3, H, W) float in [0, 1], H and W multiples of ``vae_scale_factor``.
            texts: one caption per image (a single str is used for all; None = empty prompt).
            strength: in [0, 1]; the fraction of the ``num_steps`` DDIM schedule that is run.
            num_steps: DDIM steps of the full schedule (img2img runs ``int(num_steps*strength)``).
            guidance_scale: classifier-free guidance weight; > 1 also runs the UNet on
                ``negative_texts`` (default empty prompts), as diffusers does.
            delta: latent perturbation (B or 1, C, h, w); may require grad.
            eta: injection scale of AUV-Fusion's ``z~_t = z_t + eta * delta``.
            inject_step: index into the timesteps run: delta is added to the latent right
                before the UNet call of that step; ``inject_step == len(timesteps)`` adds it
                to the final clean latent (the only choice when strength gives no steps).
            seed: noise seed (int for all images, or one per image); ignored if ``noise`` given.
            noise: explicit noise (B, C, h, w) for ``add_noise``.
            prompt_embeds: (B, L, D) text embeddings used instead of encoding ``texts``.
            checkpoint_steps: recompute each denoising step in the backward pass
                (``torch.utils.checkpoint``), trading time for memory.
        """
        images = self._check_images(images)
        batch, _, height, width = images.shape
        if not 0.0 <= strength <= 1.0:
            raise ValueError(f"strength must be in [0, 1], got {strength}")
        if num_steps < 1:
            raise ValueError(f"num_steps must be >= 1, got {num_steps}")
        if guidance_scale < 0:
            raise ValueError(f"guidance_scale must be >= 0, got {guidance_scale}")
        shape = self.latent_shape(batch, height, width)

        from diffusers import DDIMScheduler

        # A private scheduler per pass: set_timesteps mutates state that checkpointed steps
        # re-read during backward, so another pass in between must not change it.
        scheduler = DDIMScheduler.from_config(self.scheduler.config)
        timesteps = img2img_timesteps(scheduler, num_steps, strength).to(self.device)
        if not 0 <= inject_step <= len(timesteps):
            raise ValueError(f"inject_step must be in [0, {len(timesteps)}] for these timesteps, got {inject_step}")
        if delta is not None:
            delta = self._check_delta(delta, shape)

        use_cfg = guidance_scale > 1.0 and len(timesteps) > 0
        cond = None
        if len(timesteps) > 0:
            if prompt_embeds is None:
                prompt_embeds = self.encode_prompts(self._texts(texts, batch, "texts"))
            elif prompt_embeds.shape[0] != batch:
                raise ValueError(f"prompt_embeds: batch {prompt_embeds.shape[0]} != images batch {batch}")
            cond = prompt_embeds.to(self.dtype)
            if use_cfg:
                negative = self.encode_prompts(self._texts(negative_texts, batch, "negative_texts"))
                cond = torch.cat([negative.to(self.dtype), cond])

        init_latents = self.encode_images(images).to(self.dtype)
        latents = init_latents
        if len(timesteps) > 0:
            if noise is None:
                noise = self.make_noise(shape, seed)
            elif tuple(noise.shape) != shape:
                raise ValueError(f"noise: shape {tuple(noise.shape)} != latent shape {shape}")
            latents = scheduler.add_noise(latents, noise.to(latents), timesteps[:1].repeat(batch))

        def step(z: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
            z_in = torch.cat([z, z]) if use_cfg else z
            eps = self.unet(z_in, t, encoder_hidden_states=cond).sample
            if use_cfg:
                eps_uncond, eps_text = eps.chunk(2)
                eps = eps_uncond + guidance_scale * (eps_text - eps_uncond)
            return scheduler.step(eps, t, z, eta=0.0, return_dict=False)[0]

        for k, t in enumerate(timesteps):
            if delta is not None and k == inject_step:
                latents = latents + eta * delta.to(latents.dtype)
            if checkpoint_steps and torch.is_grad_enabled():
                latents = checkpoint(step, latents, t, use_reentrant=False)
            else:
                latents = step(latents, t)
        if delta is not None and inject_step == len(timesteps):
            latents = latents + eta * delta.to(latents.dtype)
        return Img2ImgOutput(self.decode_latents(latents), latents, init_latents, timesteps)

    # -------------------------------------------------------------------------- checking
    def _check_images(self, images: torch.Tensor) -> torch.Tensor:
        if not isinstance(images, torch.Tensor) or images.dim() != 4 or images.shape[1] != 3:
            got = tuple(images.shape) if isinstance(images, torch.Tensor) else type(images).__name__
            raise ValueError(f"images must be a (B, 3, H, W) tensor, got {got}")
        if not images.is_floating_point():
            raise ValueError(f"images must be float in [0, 1], got dtype {images.dtype}")
        f = self.vae_scale_factor
        if images.shape[2] % f or images.shape[3] % f:
            raise ValueError(f"images: height and width must be multiples of {f}, got {tuple(images.shape[2:])}")
        lo, hi = float(images.detach().min()), float(images.detach().max())
        if lo < -1e-4 or hi > 1 + 1e-4:
            raise ValueError(f"images must be in [0, 1], got values in [{lo:.3f}, {hi:.3f}]")
        return images

    @staticmethod
    def _check_delta(delta: torch.Tensor, shape: tuple[int, int, int, int]) -> torch.Tensor:
        if delta.dim() != 4 or tuple(delta.shape[1:]) != shape[1:] or delta.shape[0] not in (1, shape[0]):
            raise ValueError(f"delta must have shape {shape} (or batch 1), got {tuple(delta.shape)}")
        return delta

    @staticmethod
    def _texts(texts: Sequence[str] | str | None, batch: int, name: str) -> list[str]:
        if texts is None:
            return [""] * batch
        if isinstance(texts, str):
            return [texts] * batch
        texts = list(texts)
        if len(texts) != batch:
            raise ValueError(f"{name}: {len(texts)} texts for {batch} images")
        return texts
