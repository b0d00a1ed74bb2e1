"""Context (sequence) parallelism: diffusers' own, under a per-rank TaylorSeer cache, from Python
(`enable_context_parallel`) or from `taylorseer generate --context-parallel ulysses|ring` on a
diffusers pipeline (`generate_context_parallel`).
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
import torch.distributed as dist
from torch import nn

from taylorseer.distributed.group import CONTEXT_PARALLEL, reduce_measures

if TYPE_CHECKING:
    from taylorseer.cli.generate import Result
    from taylorseer.config import TaylorSeerConfig

RING_ATTENTION = "_native_cudnn"  # torch's cuDNN attention: returns the log-sum-exp ring merges with


def enable_context_parallel(
    model: nn.Module, ulysses_degree: int | None = None, ring_degree: int | None = None
) -> None:
    """Split `model`'s tokens across the ranks with diffusers' context parallelism (default:
    Ulysses over every rank). Call it before `apply_taylorseer`: the cached blocks then see this
    rank's tokens only, so each rank's cache holds 1/world of the factors.

    With an accelerator this is `model.enable_parallelism(config=ContextParallelConfig(...))`. On
    CPU (gloo) that call fails in diffusers (`rank % torch.accelerator.device_count()` with no
    device: ZeroDivisionError), so the same set-up is done here with a CPU device mesh.
    """
    from diffusers import ContextParallelConfig, ParallelConfig
    from diffusers.hooks.context_parallel import apply_context_parallel
    from torch.distributed.device_mesh import init_device_mesh

    from taylorseer.wiring.forwards import is_wrapped

    if getattr(model, "_cp_plan", None) is None:
        raise ValueError(f"diffusers has no context-parallel plan (_cp_plan) for {type(model).__name__}")
    if any(is_wrapped(module) for module in model.modules()):
        raise RuntimeError("enable context parallelism before apply_taylorseer, not after")
    world = dist.get_world_size()
    config = ContextParallelConfig(
        ulysses_degree=ulysses_degree or (world if ring_degree is None else 1), ring_degree=ring_degree or 1
    )
    accelerator = getattr(torch, "accelerator", None)
    if accelerator is not None and accelerator.device_count() > 0:
        model.enable_parallelism(config=config)
        return
    mesh = init_device_mesh("cpu", config.mesh_shape, mesh_dim_names=config.mesh_dim_names)
    parallel = ParallelConfig(context_parallel_config=config)
    parallel.setup(dist.get_rank(), world, torch.device("cpu"), mesh=mesh)
    model._parallel_config = parallel
    for module in model.modules():
        processor = getattr(module, "processor", None)
        if hasattr(processor, "_parallel_config"):
            processor._parallel_config = parallel  # the attention runs Ulysses / ring over the mesh
    apply_context_parallel(model, config, model._cp_plan)


def _report(result: Result) -> Result:
    """`result` of this rank with the seconds (median, fastest and slowest run), FLOPs and full
    steps of all ranks (reduce_measures)."""
    seconds, flops, full_steps = reduce_measures(result.seconds, result.flops, result.full_steps or 0)
    spread = result.spread and tuple(reduce_measures(bound, 0, 0)[0] for bound in result.spread)
    return dataclasses.replace(result, seconds=seconds, flops=flops, full_steps=full_steps, spread=spread)


def generate_context_parallel(
    model: str,
    kind: str,
    config: TaylorSeerConfig | None,
    steps: int,
    prompt: str | None,
    seed: int,
    video: Path | None = None,
    repeats: int = 3,
    **call_kwargs: Any,
) -> tuple[Result, Result | None, int] | None:
    """`generate.run_pipeline` with the transformer's tokens split over the ranks of the process
    group (`process_group()`), by `kind` "ulysses" or "ring" over all of them.

    Every rank loads the pipeline, runs the same seed and gets the same images; each caches its
    own tokens. On rank 0: (full Result, cached Result or None, 1) with the slowest rank's
    seconds and all ranks' FLOPs (the text encoders and the VAE run on every rank); rank 0 alone
    writes `video`. None on the other ranks.
    """
    from taylorseer.cli.generate import run_pipeline

    if kind not in CONTEXT_PARALLEL:
        raise ValueError(f"unknown context parallelism {kind!r}; expected one of {CONTEXT_PARALLEL}")
    rank, world = dist.get_rank(), dist.get_world_size()

    def prepare(pipe: Any) -> None:
        if kind == "ring":
            pipe.transformer.set_attention_backend(RING_ATTENTION)
            enable_context_parallel(pipe.transformer, ring_degree=world)
        else:
            enable_context_parallel(pipe.transformer, ulysses_degree=world)
        if rank != 0:
            pipe.set_progress_bar_config(disable=True)
        dist.barrier()  # start the clocks together

    lead = rank == 0
    full, cached, columns = run_pipeline(
        model,
        config,
        steps,
        prompt,
        seed,
        video if lead else None,
        prepare=prepare,
        repeats=repeats,
        **call_kwargs,
    )
    full, cached = _report(full), cached if cached is None else _report(cached)
    return (full, cached, columns) if lead else None
