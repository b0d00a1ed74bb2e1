"""`flux-digits`: a small diffusers FluxTransformer2DModel conditioned on a digit class.

The class reaches the model the way a prompt does in FLUX: as text-token embeddings
(`encoder_hidden_states`, (N, 4, 64)) and a pooled embedding (`pooled_projections`, (N, 64)),
here learned per class and shipped next to the transformer (row 10 is the null class for CFG).
Latents are the digits' (N, 4, 8, 8) space-to-depth latents, packed 2x2 into 16 tokens of 16
channels as FLUX packs its VAE latents; sampling is rectified-flow Euler on shifted sigmas.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from taylorseer.models.digits import LATENT_CHANNELS, NUM_CLASSES

TEXT_TOKENS = 4
TRANSFORMER_CONFIG = dict(
    patch_size=1, in_channels=4 * LATENT_CHANNELS, num_layers=2, num_single_layers=4,
    attention_head_dim=32, num_attention_heads=4, joint_attention_dim=64, pooled_projection_dim=64,
    guidance_embeds=False, axes_dims_rope=(8, 12, 12),
)  # fmt: skip
SHIFT = 3.0  # FlowMatchEulerDiscreteScheduler shift used in training and sampling


class ClassConditioning(nn.Module):
    """Learned stand-ins for the text encoders: per class (and null) tokens and a pooled vector."""

    def __init__(self, joint_dim: int = 64, pooled_dim: int = 64) -> None:
        super().__init__()
        self.tokens = nn.Parameter(torch.randn(NUM_CLASSES + 1, TEXT_TOKENS, joint_dim) * 0.5)
        self.pooled = nn.Parameter(torch.randn(NUM_CLASSES + 1, pooled_dim) * 0.5)

    def forward(self, labels: Tensor) -> tuple[Tensor, Tensor]:
        """(N,) labels (10 = null) -> encoder_hidden_states (N, 4, 64), pooled (N, 64)."""
        return self.tokens[labels], self.pooled[labels]


def pack(latents: Tensor) -> Tensor:
    """(N, C, H, W) -> (N, H/2 * W/2 tokens, 4C channels), each token a 2x2 patch (square H = W)."""
    return F.pixel_unshuffle(latents, 2).flatten(2).transpose(1, 2)


def unpack(tokens: Tensor) -> Tensor:
    """(N, G*G, 4C) -> (N, C, 2G, 2G)."""
    grid = math.isqrt(tokens.shape[1])
    return F.pixel_shuffle(tokens.transpose(1, 2).reshape(tokens.shape[0], -1, grid, grid), 2)


def image_ids(tokens: int) -> Tensor:
    """(tokens, 3) rotary position ids (0, row, col) of a square grid of packed tokens."""
    grid = math.isqrt(tokens)
    rows, cols = torch.meshgrid(torch.arange(grid), torch.arange(grid), indexing="ij")
    return torch.stack([torch.zeros_like(rows), rows, cols], dim=-1).reshape(-1, 3).float()


def velocity(transformer: nn.Module, tokens: Tensor, sigma: Tensor, text: Tensor, pooled: Tensor) -> Tensor:
    """The transformer's flow prediction for packed `tokens` (N, T, C) at noise level sigma (N,)."""
    return transformer(
        hidden_states=tokens, timestep=sigma, encoder_hidden_states=text, pooled_projections=pooled,
        img_ids=image_ids(tokens.shape[1]).to(tokens.device),
        txt_ids=torch.zeros(text.shape[1], 3, device=tokens.device),
        return_dict=False,
    )[0]  # fmt: skip


Guide = Callable[[Tensor, Tensor], Tensor]  # (tokens (n, T, C), timestep) -> guided flow (n, T, C)


def sigmas(t: Tensor, tokens: Tensor) -> Tensor:
    """The scheduler's timestep `t` (0-1000) as the noise level of each of `tokens`' samples, (N,)."""
    return (t / 1000).expand(tokens.shape[0]).to(tokens.dtype)


def batched_guide(
    transformer: nn.Module, conditioning: ClassConditioning, labels: Tensor, cfg_scale: float
) -> Guide:
    """One transformer call per step: with guidance both branches as one batch of 2n
    (conditional, then null class), combined as uncond + cfg_scale * (cond - uncond)."""
    guided = cfg_scale != 1.0
    text, pooled = conditioning(
        torch.cat([labels, torch.full_like(labels, NUM_CLASSES)]) if guided else labels
    )

    def guide(tokens: Tensor, t: Tensor) -> Tensor:
        batch = torch.cat([tokens, tokens]) if guided else tokens
        flow = velocity(transformer, batch, sigmas(t, batch), text, pooled)
        if not guided:
            return flow
        cond, uncond = flow.chunk(2)
        return uncond + cfg_scale * (cond - uncond)

    return guide


@torch.no_grad()
def sample(
    transformer: nn.Module,
    conditioning: ClassConditioning,
    noise: Tensor,
    labels: Tensor,
    steps: int = 50,
    cfg_scale: float = 3.0,
    progress: bool = False,
    guide: Guide | None = None,
) -> Tensor:
    """Denoise `noise` (n, 4, 8, 8) toward the classes `labels` (n,); returns (n, 4, 8, 8) latents.

    Euler steps of diffusers' FlowMatchEulerDiscreteScheduler (shift 3); CFG as one batched call
    of 2n (conditional, then null class). `guide` replaces that call (see `batched_guide`;
    `distributed.cfg_parallel.cfg_parallel_flux` runs one branch per rank). To sample with
    TaylorSeer, apply it to the transformer first.
    """
    from diffusers import FlowMatchEulerDiscreteScheduler

    scheduler = FlowMatchEulerDiscreteScheduler(shift=SHIFT)
    scheduler.set_timesteps(steps)
    guide = guide or batched_guide(transformer, conditioning, labels, cfg_scale)
    latents = pack(noise)  # (n, 16, 16)
    timesteps = scheduler.timesteps
    if progress:
        from tqdm.auto import tqdm

        timesteps = tqdm(timesteps, desc="FLUX sampling")
    for t in timesteps:
        latents = scheduler.step(guide(latents, t), t, latents, return_dict=False)[0]
    return unpack(latents)


def load(folder: str | Path) -> tuple[nn.Module, ClassConditioning]:
    """The transformer (diffusers format, `folder/transformer`) and its class embeddings."""
    from diffusers import FluxTransformer2DModel

    from taylorseer.models.weights import load_safetensors

    folder = Path(folder)
    if not (folder / "transformer" / "config.json").is_file():
        raise FileNotFoundError(f"no diffusers transformer in {folder / 'transformer'}")
    transformer = FluxTransformer2DModel.from_pretrained(folder / "transformer").eval()
    conditioning = ClassConditioning()
    conditioning.load_state_dict(
        load_safetensors(folder / "class_embeddings.safetensors", conditioning.state_dict())
    )
    return transformer, conditioning.eval()
