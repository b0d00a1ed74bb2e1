"""Sampling a DiT the way facebookresearch/DiT's sample.py does, optionally with TaylorSeer.

Re-exported as ``taylorseer.models.dit.sample``. The loop only talks to the model through
``forward_with_cfg(x, t, y, cfg_scale)`` (or ``model(x, t, y)`` without guidance), so any
module with that interface and a ``num_classes`` attribute (the null label) can be sampled.
"""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING

import torch
from torch import Tensor, nn

from taylorseer.models.gaussian_diffusion import GaussianDiffusion

if TYPE_CHECKING:
    from taylorseer import TaylorSeerConfig

SAMPLERS = ("ddim", "ddpm")


def cfg_batch(noise: Tensor, labels: Tensor, null_label: int) -> tuple[Tensor, Tensor]:
    """Doubled batch for classifier-free guidance: (2n, C, H, W) latents [z, z] and
    (2n,) labels [labels, null]."""
    null = torch.full_like(labels, null_label)
    return torch.cat([noise, noise], dim=0), torch.cat([labels, null], dim=0)


@torch.no_grad()
def sample(
    model: nn.Module,
    noise: Tensor,
    labels: Tensor,
    steps: int = 50,
    cfg_scale: float = 1.5,
    sampler: str = "ddim",
    cache: TaylorSeerConfig | None = None,
    generator: torch.Generator | None = None,
    progress: bool = False,
) -> Tensor:
    """Denoise ``noise`` (n, C, H, W) conditioned on ``labels`` (n,); returns (n, C, H, W) latents.

    The diffusion is ADM respaced to ``steps`` evenly spread timesteps (``str(steps)``, as
    DiT's ``create_diffusion``) for both samplers; the model sees the original timestep indices.
    ``cfg_scale != 1`` runs the guided batch of 2n through ``model.forward_with_cfg`` and keeps
    the conditional half; ``cfg_scale == 1`` runs ``model(x, t, y)`` on the n samples alone.
    ``sampler`` is "ddim" (eta=0) or "ddpm" (ancestral; its noise is drawn from ``generator``
    for the whole batch at every step, as ADM does). ``cache``, a TaylorSeerConfig, wraps the
    model with TaylorSeer for the duration of the call (its ``num_steps`` set to ``steps``).
    """
    if sampler not in SAMPLERS:
        raise ValueError(f"unknown sampler {sampler!r}; expected one of {SAMPLERS}")
    if noise.ndim != 4 or labels.shape != noise.shape[:1]:
        shapes = f"{tuple(noise.shape)} and {tuple(labels.shape)}"
        raise ValueError(f"expected noise (n, C, H, W) and labels (n,), got {shapes}")
    diffusion = GaussianDiffusion(str(steps))
    guided = cfg_scale != 1.0
    x, y = cfg_batch(noise, labels, model.num_classes) if guided else (noise, labels)

    handle = None
    if cache is not None:
        from taylorseer import apply_taylorseer  # lazy: no import cycle with the package root

        handle = apply_taylorseer(model, dataclasses.replace(cache, num_steps=steps))
    try:
        for i, t in enumerate(_maybe_progress(diffusion.timesteps, progress)):
            t_batch = torch.full((x.shape[0],), t, dtype=torch.long, device=x.device)  # (2n,)
            model_out = model.forward_with_cfg(x, t_batch, y, cfg_scale) if guided else model(x, t_batch, y)
            if sampler == "ddim":
                x = diffusion.ddim_step(model_out, x, i)
            else:
                z = torch.randn(x.shape, generator=generator, device=x.device, dtype=x.dtype)
                x = diffusion.ddpm_step(model_out, x, i, z)
    finally:
        if handle is not None:
            handle.remove()
    return x[: noise.shape[0]]


def _maybe_progress(timesteps: list[int], progress: bool):
    """The timesteps, wrapped in a tqdm bar when ``progress`` (tqdm imported only then)."""
    if not progress:
        return timesteps
    from tqdm.auto import tqdm

    return tqdm(timesteps, desc="DiT sampling")
