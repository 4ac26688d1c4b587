"""AUV-Fusion's perturbation generator: a user group's preference -> a latent perturbation.

AUV-Fusion (arXiv 2507.22880, section 3.2) maps the preference embedding of the users a
target should reach to a perturbation of Stable Diffusion's latent, injected into an
img2img pass (``z~_t = z_t + eta * delta``). Trained once across many items, it is
*amortised*: attacking a new item is one forward of this network plus one img2img pass
(the public port instead optimises every image's delta from scratch).

    x = [e_group ; avgpool_p(z_0)]           (d + C p^2,)   the clean latent pooled, optional
    m = MLP(x)  -> (C, g, g)                  two hidden layers, SiLU
    delta = scale * tanh(m), bilinearly upsampled to the latent's (h, w)

The coarse g x g map upsampled to the latent keeps one network for photos of every size
(the latent is H/8 x W/8 of the working-size photo) and the perturbation smooth, which the
diffusion prior turns into plausible image changes.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class PerturbationMLP(nn.Module):
    """``(preference (B, d), clean latents (B, C, h, w)) -> delta (B, C, h, w)`` (module docstring).

    Args:
        embed_dim: width d of the preference embeddings.
        latent_channels: C of the diffusion latents (4 for Stable Diffusion).
        grid: side g of the coarse perturbation map.
        hidden: width of the two hidden layers.
        pooled: side p of the pooled clean latent fed in (0: the preference alone).
        scale: bound of |delta| (latent units; SD latents have unit variance after scaling).
    """

    def __init__(self, embed_dim: int, latent_channels: int, grid: int = 8, hidden: int = 256, pooled: int = 4, scale: float = 1.0) -> None:
        super().__init__()
        if grid < 1 or hidden < 1 or pooled < 0 or not scale > 0:
            raise ValueError(f"PerturbationMLP: grid and hidden must be >= 1, pooled >= 0, scale > 0; got {grid}, {hidden}, {pooled}, {scale}")
        self.embed_dim, self.latent_channels, self.grid, self.pooled, self.scale = embed_dim, latent_channels, grid, pooled, float(scale)
        width = embed_dim + latent_channels * pooled * pooled
        self.net = nn.Sequential(
            nn.Linear(width, hidden), nn.SiLU(), nn.Linear(hidden, hidden), nn.SiLU(), nn.Linear(hidden, latent_channels * grid * grid),
        )
        nn.init.zeros_(self.net[-1].weight)  # starts as no perturbation: training moves it only where the loss asks
        nn.init.zeros_(self.net[-1].bias)

    def forward(self, preference: torch.Tensor, clean_latents: torch.Tensor) -> torch.Tensor:
        if preference.dim() != 2 or preference.shape[1] != self.embed_dim:
            raise ValueError(f"preference must be (B, {self.embed_dim}), got {tuple(preference.shape)}")
        if clean_latents.dim() != 4 or clean_latents.shape[1] != self.latent_channels or clean_latents.shape[0] != preference.shape[0]:
            raise ValueError(f"clean_latents must be (B={preference.shape[0]}, {self.latent_channels}, h, w), got {tuple(clean_latents.shape)}")
        x = preference
        if self.pooled:
            x = torch.cat([x, F.adaptive_avg_pool2d(clean_latents.float(), self.pooled).flatten(1)], dim=1)
        coarse = self.scale * torch.tanh(self.net(x)).view(-1, self.latent_channels, self.grid, self.grid)
        return F.interpolate(coarse, size=tuple(clean_latents.shape[-2:]), mode="bilinear", align_corners=False)
