"""CFG-parallel sampling: the two guidance branches on the two ranks of a group.

Each sampler is the single-process sampler (`models.dit_sampling.sample`,
`models.flux_digits.sample`) with another guide: the rank runs the model on its own branch only
(rank 0 the conditional labels, rank 1 the null class), the two predictions are exchanged, and
both ranks combine them as the batched call does. Each rank forecasts its own branch with its
own cache (applied to the model by the caller); both return the same latents.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.distributed as dist
from torch import Tensor, nn

from taylorseer.distributed.group import exchange


def _branch(group: Any, cfg_scale: float) -> int:
    """0 (conditional) or 1 (unconditional): this rank's place in its CFG pair."""
    if cfg_scale == 1.0:
        raise ValueError("CFG-parallel splits the guidance branches: it needs cfg_scale != 1")
    if dist.get_world_size(group) != 2:
        raise ValueError(f"a CFG-parallel group has 2 ranks, got {dist.get_world_size(group)}")
    return dist.get_rank(group)


@torch.no_grad()
def cfg_parallel_dit(
    model: nn.Module,
    noise: Tensor,
    labels: Tensor,
    steps: int = 50,
    cfg_scale: float = 1.5,
    group: Any = None,
    progress: bool = False,
) -> Tensor:
    """`dit.sample(..., sampler="ddim")` with its branches on the 2 ranks of `group`, each on n
    samples only. Returns the same (n, C, H, W) latents on both ranks."""
    from taylorseer.models.dit import CFG_CHANNELS
    from taylorseer.models.dit_sampling import sample, timestep_batch

    branch = _branch(group, cfg_scale)
    y = labels if branch == 0 else torch.full_like(labels, model.num_classes)

    def guide(x: Tensor, t: int) -> Tensor:
        cond, uncond = exchange(model(x, timestep_batch(x, t), y), group)  # (n, C_out, H, W) each
        eps_cond, eps_uncond = cond[:, :CFG_CHANNELS], uncond[:, :CFG_CHANNELS]
        guided = eps_uncond + cfg_scale * (eps_cond - eps_uncond)  # as DiT.forward_with_cfg
        return torch.cat([guided, cond[:, CFG_CHANNELS:]], dim=1)

    return sample(model, noise, labels, steps, cfg_scale, "ddim", progress=progress, guide=guide)


@torch.no_grad()
def cfg_parallel_flux(
    transformer: nn.Module,
    conditioning: nn.Module,
    noise: Tensor,
    labels: Tensor,
    steps: int = 50,
    cfg_scale: float = 3.0,
    group: Any = None,
    progress: bool = False,
) -> Tensor:
    """`flux_digits.sample` with its branches on the 2 ranks of `group`; the same (n, 4, 8, 8)
    latents on both ranks."""
    from taylorseer.models.digits import NUM_CLASSES
    from taylorseer.models.flux_digits import sample, sigmas, velocity

    branch = _branch(group, cfg_scale)
    text, pooled = conditioning(labels if branch == 0 else torch.full_like(labels, NUM_CLASSES))

    def guide(tokens: Tensor, t: Tensor) -> Tensor:
        flow = velocity(transformer, tokens, sigmas(t, tokens), text, pooled)
        cond, uncond = exchange(flow, group)  # (n, T, C) each
        return uncond + cfg_scale * (cond - uncond)

    return sample(transformer, conditioning, noise, labels, steps, cfg_scale, progress=progress, guide=guide)
