"""Internal: scale-out on torch.distributed — data-parallel and CFG-parallel sampling, and diffusers'
context (sequence) parallelism, each rank with its own TaylorSeer cache.

Run under torchrun (`torchrun --nproc_per_node K -m taylorseer generate ...`); how the three
kinds combine with the cache, and what they measured: docs/DISTRIBUTED.md. The pieces:

- `group`: the process group, `shard`, `gather`, `exchange`, `reduce_measures`;
- `cfg_parallel`: `cfg_parallel_dit` / `cfg_parallel_flux`, the single-process samplers with a
  guide that runs one guidance branch per rank;
- `data_parallel`: `generate_data_parallel`, `taylorseer generate` on the bundled models;
- `context_parallel`: `enable_context_parallel`, and `generate_context_parallel` for
  `taylorseer generate --context-parallel` on a diffusers pipeline.
"""

from taylorseer.distributed.cfg_parallel import cfg_parallel_dit, cfg_parallel_flux
from taylorseer.distributed.context_parallel import enable_context_parallel, generate_context_parallel
from taylorseer.distributed.data_parallel import generate_data_parallel
from taylorseer.distributed.group import gather, launched, process_group, shard, world_size

__all__ = [
    "cfg_parallel_dit", "cfg_parallel_flux", "enable_context_parallel", "gather",
    "generate_context_parallel", "generate_data_parallel", "launched", "process_group", "shard",
    "world_size",
]  # fmt: skip
