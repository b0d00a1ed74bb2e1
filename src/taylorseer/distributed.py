"""Scale-out on torch.distributed: data-parallel and CFG-parallel sampling, and diffusers' context
(sequence) parallelism, each rank with its own TaylorSeer cache.

Run under torchrun (`torchrun --nproc_per_node K -m taylorseer generate ...`); how the three
kinds combine with the cache, and what they measured: docs/DISTRIBUTED.md. This module is the
public face; the pieces live beside it:

- `distributed_group`: the process group, `shard`, `gather`, `exchange`, `reduce_measures`;
- `distributed_cfg`: `cfg_parallel_dit` / `cfg_parallel_flux`, the single-process samplers with
  a guide that runs one guidance branch per rank;
- `distributed_data`: `generate_data_parallel`, `taylorseer generate` on the bundled models;
- `distributed_context`: `enable_context_parallel`, and `generate_context_parallel` for
  `taylorseer generate --context-parallel` on a diffusers pipeline.
"""

from __future__ import annotations

import torch

from taylorseer.distributed_cfg import cfg_parallel_dit, cfg_parallel_flux
from taylorseer.distributed_context import (
    CONTEXT_PARALLEL,
    check_plan,
    enable_context_parallel,
    generate_context_parallel,
)
from taylorseer.distributed_data import CFG_PARALLEL_SAMPLERS, Layout, generate_data_parallel, layout
from taylorseer.distributed_group import (
    exchange,
    gather,
    init_from_env,
    launched,
    process_group,
    reduce_measures,
    shard,
    world_size,
)

__all__ = [
    "CFG_PARALLEL_SAMPLERS", "CONTEXT_PARALLEL", "Layout", "cfg_parallel_dit", "cfg_parallel_flux",
    "check_launch", "check_plan", "enable_context_parallel", "exchange", "gather",
    "generate_context_parallel", "generate_data_parallel", "init_from_env", "launched", "layout",
    "process_group", "reduce_measures", "shard", "world_size",
]  # fmt: skip


def check_launch(
    model: str, bundled: bool, cfg_parallel: bool = False, context_parallel: str | None = None
) -> None:
    """ValueError for a `generate` launch that cannot be spread over the ranks, before any work.

    Bundled models spread data-parallel, with `cfg_parallel` over pairs of ranks; a diffusers
    pipeline spreads only with `context_parallel` ("ulysses" or "ring"), which needs a launcher
    with 2 or more ranks (and, for ring, a GPU).
    """
    world = world_size()
    if cfg_parallel and world % 2:
        raise ValueError(
            f"--cfg-parallel puts the two guidance branches on two ranks: it needs an even number of "
            f"ranks (torchrun --nproc_per_node 2, 4, ...), got {world}"
        )
    if context_parallel is None:
        if (launched() or cfg_parallel) and not bundled:
            raise ValueError(
                f"--model {model!r}: under torchrun, generate spreads the bundled models only (data- and "
                "CFG-parallel); spread a diffusers pipeline with --context-parallel ulysses|ring"
            )
        return
    flag = f"--context-parallel {context_parallel}"
    if context_parallel not in CONTEXT_PARALLEL:
        raise ValueError(f"{flag}: unknown kind; expected one of {', '.join(CONTEXT_PARALLEL)}")
    if bundled:
        raise ValueError(
            f"{flag} splits the tokens of a diffusers pipeline's transformer, not the bundled model "
            f"{model!r}: spread that with torchrun alone (data-parallel) or --cfg-parallel"
        )
    if cfg_parallel:
        raise ValueError(
            f"{flag} and --cfg-parallel do not combine: --cfg-parallel is for the bundled models"
        )
    if not launched():
        raise ValueError(
            f"{flag} splits the tokens over the ranks: launch it with torchrun --nproc_per_node 2 (or "
            f"more); this process is a world of {world}"
        )
    if context_parallel == "ring" and not torch.cuda.is_available():
        raise ValueError(
            f"{flag} needs an attention that returns its log-sum-exp (cuDNN, flash, sage: GPU only); "
            "diffusers' CPU attention does not. On CPU use --context-parallel ulysses"
        )
