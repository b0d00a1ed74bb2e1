"""Sampling a DiT the way facebookresearch/DiT's sample.py does.

Re-exported as ``taylorseer.models.dit.sample``. The loop talks to the model only through a
*guide*: the model call of one step, ``guide(x, t) -> model output`` for the n latents ``x``.
The default one runs ``forward_with_cfg(x, t, y, cfg_scale)`` on the doubled batch (or
``model(x, t, y)`` without guidance), so any module with that interface and a ``num_classes``
attribute (the null label) can be sampled; ``distributed.cfg_parallel.cfg_parallel_dit`` passes
one that runs a single branch per rank. To sample with TaylorSeer, apply it to the model first.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor, nn

from taylorseer.models.gaussian_diffusion import GaussianDiffusion

SAMPLERS = ("ddim", "ddpm")

Guide = Callable[[Tensor, int], Tensor]  # (x (n, C, H, W), timestep) -> guided output (n, C_out, H, W)


def cfg_batch(noise: Tensor, labels: Tensor, null_label: int) -> tuple[Tensor, Tensor]:
    """Doubled batch for classifier-free guidance: (2n, C, H, W) latents [z, z] and
    (2n,) labels [labels, null]."""
    null = torch.full_like(labels, null_label)
    return torch.cat([noise, noise], dim=0), torch.cat([labels, null], dim=0)


def timestep_batch(x: Tensor, t: int) -> Tensor:
    """The timestep ``t`` once per sample of ``x``: (N,) long, on ``x``'s device."""
    return torch.full((x.shape[0],), t, dtype=torch.long, device=x.device)


def batched_guide(model: nn.Module, labels: Tensor, cfg_scale: float) -> Guide:
    """One model call per step: with guidance both branches as one batch of 2n through
    ``model.forward_with_cfg`` (the conditional half kept), else ``model(x, t, labels)``."""
    if cfg_scale == 1.0:
        return lambda x, t: model(x, timestep_batch(x, t), labels)

    def guide(x: Tensor, t: int) -> Tensor:
        batch, y = cfg_batch(x, labels, model.num_classes)  # (2n, C, H, W), (2n,)
        return model.forward_with_cfg(batch, timestep_batch(batch, t), y, cfg_scale)[: x.shape[0]]

    return guide


@torch.no_grad()
def sample(
    model: nn.Module,
    noise: Tensor,
    labels: Tensor,
    steps: int = 50,
    cfg_scale: float = 1.5,
    sampler: str = "ddim",
    generator: torch.Generator | None = None,
    progress: bool = False,
    guide: Guide | None = None,
) -> Tensor:
    """Denoise ``noise`` (n, C, H, W) conditioned on ``labels`` (n,); returns (n, C, H, W) latents.

    The diffusion is ADM respaced to ``steps`` evenly spread timesteps (``str(steps)``, as
    DiT's ``create_diffusion``) for both samplers; the model sees the original timestep indices.
    ``cfg_scale != 1`` runs the guided batch of 2n through ``model.forward_with_cfg`` and keeps
    the conditional half; ``cfg_scale == 1`` runs ``model(x, t, y)`` on the n samples alone.
    ``guide`` replaces that model call (see ``batched_guide``); it must give the same output.
    ``sampler`` is "ddim" (eta=0) or "ddpm" (ancestral; its noise is drawn from ``generator``
    for the whole guided batch of 2n at every step, as ADM does).
    """
    if sampler not in SAMPLERS:
        raise ValueError(f"unknown sampler {sampler!r}; expected one of {SAMPLERS}")
    if noise.ndim != 4 or labels.shape != noise.shape[:1]:
        shapes = f"{tuple(noise.shape)} and {tuple(labels.shape)}"
        raise ValueError(f"expected noise (n, C, H, W) and labels (n,), got {shapes}")
    diffusion = GaussianDiffusion(str(steps))
    guide = guide or batched_guide(model, labels, cfg_scale)
    n = noise.shape[0]
    noise_rows = 2 * n if cfg_scale != 1.0 else n  # ADM draws DDPM noise for the doubled batch
    x = noise
    for i, t in enumerate(_maybe_progress(diffusion.timesteps, progress)):
        model_out = guide(x, t)  # (n, C_out, H, W)
        if sampler == "ddim":
            x = diffusion.ddim_step(model_out, x, i)
        else:
            shape = (noise_rows, *x.shape[1:])
            z = torch.randn(shape, generator=generator, device=x.device, dtype=x.dtype)
            x = diffusion.ddpm_step(model_out, x, i, z[:n])
    return x


def _maybe_progress(timesteps: list[int], progress: bool):
    """The timesteps, wrapped in a tqdm bar when ``progress`` (tqdm imported only then)."""
    if not progress:
        return timesteps
    from tqdm.auto import tqdm

    return tqdm(timesteps, desc="DiT sampling")
