"""`taylorseer generate` on the bundled models spread over the ranks: data-parallel shards of the
samples, optionally with each shard's guidance branches on a pair of ranks (CFG-parallel).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import torch
import torch.distributed as dist
from torch import Tensor, nn

from taylorseer.distributed.cfg_parallel import cfg_parallel_dit, cfg_parallel_flux
from taylorseer.distributed.group import gather, reduce_measures, shard

if TYPE_CHECKING:
    from taylorseer.cli.generate import Result
    from taylorseer.config import TaylorSeerConfig
    from taylorseer.models.bundled import DigitGenerator

SampleImages = Callable[[Tensor, Tensor, int, bool], Tensor]  # (noise, labels, steps, progress)


def _dit_branches(generator: DigitGenerator, group: Any) -> tuple[nn.Module, SampleImages]:
    from taylorseer.models.digits import to_images

    model = generator.transformer

    def sample(noise: Tensor, labels: Tensor, steps: int, progress: bool) -> Tensor:
        latents = cfg_parallel_dit(model, noise, labels, steps, generator.cfg_scale, group, progress)
        return to_images(latents)

    return model, sample


def _flux_branches(generator: DigitGenerator, group: Any) -> tuple[nn.Module, SampleImages]:
    from taylorseer.models import flux_digits
    from taylorseer.models.digits import to_images
    from taylorseer.models.weights import bundled_path

    # the class embeddings live inside the generator's closure: load the pair again (small)
    transformer, conditioning = flux_digits.load(bundled_path(generator.name))

    def sample(noise: Tensor, labels: Tensor, steps: int, progress: bool) -> Tensor:
        latents = cfg_parallel_flux(
            transformer, conditioning, noise, labels, steps, generator.cfg_scale, group, progress
        )
        return to_images(latents)

    return transformer, sample


CFG_PARALLEL_SAMPLERS: dict[str, Callable[[DigitGenerator, Any], tuple[nn.Module, SampleImages]]] = {
    "dit-digits": _dit_branches,
    "flux-digits": _flux_branches,
}


@dataclasses.dataclass(frozen=True)
class Layout:
    """Where this rank sits: which data shard it samples and, CFG-parallel, which branch."""

    data_rank: int
    data_world: int
    branch: int = 0  # 0 conditional (or no CFG split), 1 unconditional
    group: Any = None  # this rank's CFG pair; None without CFG-parallel


def layout(cfg_parallel: bool) -> Layout:
    """Data-parallel over all ranks, or over pairs of ranks (2p, 2p+1) that split CFG."""
    rank, world = dist.get_rank(), dist.get_world_size()
    if not cfg_parallel:
        return Layout(rank, world)
    if world % 2:
        raise ValueError(f"CFG-parallel puts the two guidance branches on two ranks: world {world} is odd")
    pairs = [dist.new_group([2 * p, 2 * p + 1]) for p in range(world // 2)]  # every rank makes all
    return Layout(rank // 2, world // 2, rank % 2, pairs[rank // 2])


def _measure_everywhere(
    run: Callable[[], Tensor], full_steps: Callable[[], int], label: str, repeats: int
) -> Result | None:
    """Every rank runs `run` (`generate.measure`); on rank 0: the gathered images, the slowest
    rank's median seconds and fastest and slowest runs, the FLOPs of all ranks and the most full
    steps any rank took. None elsewhere."""
    from taylorseer.cli.generate import Result, measure

    dist.barrier()  # start the clocks together
    found = measure(run, label, repeats, progress=dist.get_rank() == 0)
    measures = reduce_measures(found.seconds, found.flops, full_steps())
    spread = (reduce_measures(found.spread[0], 0, 0)[0], reduce_measures(found.spread[1], 0, 0)[0])
    gathered = gather(found.output)
    return None if gathered is None else Result(gathered, *measures, spread)


def generate_data_parallel(
    model: str | DigitGenerator,
    config: TaylorSeerConfig | None,
    steps: int,
    classes: list[int],
    seed: int,
    cfg_parallel: bool = False,
    repeats: int = 3,
) -> tuple[Result, Result | None, int] | None:
    """`generate.run_bundled` spread over the ranks of the process group (`process_group()`).

    The samples (two rows of `classes`) are split into contiguous shards, one per rank (or per
    CFG pair with `cfg_parallel`); each rank samples its shard from the same noise as a single
    process would, with its own cache, timed over `repeats` runs after a warm-up. On rank 0:
    (full Result, cached Result or None, columns), seconds = the slowest rank's, FLOPs = all
    ranks' sum. None on the other ranks.
    """
    from taylorseer.api import apply_taylorseer
    from taylorseer.models.bundled import load_bundled

    generator = load_bundled(model) if isinstance(model, str) else model
    where = layout(cfg_parallel)
    labels = torch.tensor(classes * 2)  # two rows of the requested classes, as run_bundled
    noise = generator.noise(len(labels), seed)
    mine = torch.tensor(shard(range(len(labels)), where.data_rank, where.data_world), dtype=torch.long)
    if where.group is None:
        transformer = generator.transformer

        def sample(noise: Tensor, labels: Tensor, steps: int, progress: bool) -> Tensor:
            return generator.sample(noise, labels, steps=steps, progress=progress)
    else:
        if generator.name not in CFG_PARALLEL_SAMPLERS:
            known = sorted(CFG_PARALLEL_SAMPLERS)
            raise ValueError(f"no CFG-parallel sampler for {generator.name!r}; available: {known}")
        transformer, sample = CFG_PARALLEL_SAMPLERS[generator.name](generator, where.group)

    def run() -> Tensor:
        if len(mine) == 0:
            return torch.empty(0, 0, 0, 0)
        images = ((sample(noise[mine], labels[mine], steps, False) + 1) / 2).permute(0, 2, 3, 1)
        return images if where.branch == 0 else images[:0]  # the pair's images, once

    full = _measure_everywhere(run, lambda: steps, "full compute", repeats)
    if config is None:
        return None if full is None else (full, None, len(classes))
    with apply_taylorseer(transformer, dataclasses.replace(config, num_steps=steps)) as handle:
        cached = _measure_everywhere(
            run, lambda: handle.stats["full_steps"] if len(mine) else 0, "TaylorSeer", repeats
        )
    return None if full is None else (full, cached, len(classes))
