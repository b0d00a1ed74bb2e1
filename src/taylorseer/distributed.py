"""Scale-out on torch.distributed: data-parallel and CFG-parallel sampling, and diffusers' context
(sequence) parallelism, each rank with its own TaylorSeer cache.

Run under torchrun (`torchrun --nproc_per_node K -m taylorseer generate ...`); how the three
kinds combine with the cache, and what they measured: docs/DISTRIBUTED.md.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
from collections.abc import Callable, Iterator, Sequence
from typing import TYPE_CHECKING, Any

import torch
import torch.distributed as dist
from torch import Tensor, nn

if TYPE_CHECKING:
    from taylorseer.config import TaylorSeerConfig
    from taylorseer.generate import Result
    from taylorseer.models.bundled import DigitGenerator

# --- the process group ----------------------------------------------------------------------


def launched() -> bool:
    """Whether a launcher (torchrun) started this process as one rank of several."""
    return int(os.environ.get("WORLD_SIZE", "1")) > 1


def check_launch(bundled: bool, cfg_parallel: bool) -> None:
    """ValueError for a `generate` launch that cannot be spread over the ranks (before any work)."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if cfg_parallel and world % 2:
        raise ValueError(
            f"--cfg-parallel puts the two guidance branches on two ranks: it needs an even number of "
            f"ranks (torchrun --nproc_per_node 2, 4, ...), got {world}"
        )
    if (launched() or cfg_parallel) and not bundled:
        raise ValueError(
            "under torchrun, generate spreads the bundled models only; for a diffusers pipeline use "
            "distributed.enable_context_parallel from Python (docs/DISTRIBUTED.md)"
        )


def init_from_env() -> tuple[int, int]:
    """Join the process group that torchrun's environment describes; returns (rank, world).

    gloo carries CPU tensors; with a GPU, nccl carries CUDA tensors (one device per LOCAL_RANK).
    Without a launcher this process is a world of one. Joining again is a no-op.
    """
    if not dist.is_initialized():
        backend = "gloo"
        if torch.cuda.is_available():
            torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
            backend = "cpu:gloo,cuda:nccl"
        if "RANK" in os.environ:
            dist.init_process_group(backend)  # env://: RANK, WORLD_SIZE, MASTER_ADDR, MASTER_PORT
        else:
            dist.init_process_group(backend, store=dist.HashStore(), rank=0, world_size=1)
    return dist.get_rank(), dist.get_world_size()


@contextlib.contextmanager
def process_group() -> Iterator[tuple[int, int]]:
    """`init_from_env()` for the duration of a block; leaves a group it did not create alone."""
    created = not dist.is_initialized()
    rank_world = init_from_env()
    try:
        yield rank_world
    finally:
        if created:
            dist.destroy_process_group()


# --- sharding and gathering -----------------------------------------------------------------


def shard(indices: Sequence[int], rank: int, world: int) -> list[int]:
    """This rank's contiguous share of `indices`; the first len % world ranks take one more.
    The shares, concatenated in rank order, give `indices` back."""
    if world < 1 or not 0 <= rank < world:
        raise ValueError(f"rank must be in [0, world) with world >= 1, got rank={rank}, world={world}")
    base, extra = divmod(len(indices), world)
    start = rank * base + min(rank, extra)
    return list(indices[start : start + base + int(rank < extra)])


def gather(tensor: Tensor, dst: int = 0, group: Any = None) -> Tensor | None:
    """Every rank's `tensor`, concatenated along dim 0 in rank order, on rank `dst`; None elsewhere.

    Row counts may differ and may be 0; ranks must agree on ndim and dtype (an empty part may
    have any trailing shape). Parts are padded to the largest one for `dist.gather`.
    """
    world = dist.get_world_size(group)
    shape = torch.tensor(tensor.shape, dtype=torch.long, device=tensor.device)
    shapes = [torch.empty_like(shape) for _ in range(world)]
    dist.all_gather(shapes, shape, group=group)
    rows = [int(s[0]) for s in shapes]
    trailing = next((tuple(s[1:].tolist()) for s in shapes if s[0] > 0), tuple(tensor.shape[1:]))
    padded = tensor.new_zeros((max(rows), *trailing))
    if len(tensor):
        padded[: len(tensor)] = tensor
    is_dst = dist.get_rank() == dst
    parts = [torch.empty_like(padded) for _ in range(world)] if is_dst else None
    dist.gather(padded, parts, dst=dst, group=group)
    return torch.cat([part[:n] for part, n in zip(parts, rows)]) if parts is not None else None


def exchange(output: Tensor, group: Any = None) -> list[Tensor]:
    """Every rank's `output` (same shape everywhere), in group-rank order."""
    parts = [torch.empty_like(output) for _ in range(dist.get_world_size(group))]
    dist.all_gather(parts, output.contiguous(), group=group)
    return parts


# --- CFG-parallel samplers: one guidance branch per rank, predictions exchanged each step ---


def _branch(group: Any, cfg_scale: float) -> int:
    """0 (conditional) or 1 (unconditional): this rank's place in its CFG pair."""
    if cfg_scale == 1.0:
        raise ValueError("CFG-parallel splits the guidance branches: it needs cfg_scale != 1")
    if dist.get_world_size(group) != 2:
        raise ValueError(f"a CFG-parallel group has 2 ranks, got {dist.get_world_size(group)}")
    return dist.get_rank(group)


@contextlib.contextmanager
def _cached(model: nn.Module, cache: TaylorSeerConfig | None, steps: int) -> Iterator[None]:
    """This rank's own TaylorSeer cache on `model` for the block, when `cache` is given."""
    if cache is None:
        yield
        return
    from taylorseer.api import apply_taylorseer

    with apply_taylorseer(model, dataclasses.replace(cache, num_steps=steps)):
        yield


def _progress(items: Any, progress: bool, what: str) -> Any:
    if not progress:
        return items
    from tqdm.auto import tqdm

    return tqdm(items, desc=what)


@torch.no_grad()
def cfg_parallel_dit(
    model: nn.Module,
    noise: Tensor,
    labels: Tensor,
    steps: int = 50,
    cfg_scale: float = 1.5,
    cache: TaylorSeerConfig | None = None,
    group: Any = None,
    progress: bool = False,
) -> Tensor:
    """`dit.sample(..., sampler="ddim")` with its branches on the 2 ranks of `group`: rank 0 runs
    the model on `labels`, rank 1 on the null class, each on n samples only, each forecasting its
    own branch. Returns the same (n, C, H, W) latents on both ranks."""
    from taylorseer.models.dit import CFG_CHANNELS
    from taylorseer.models.gaussian_diffusion import GaussianDiffusion

    branch = _branch(group, cfg_scale)
    diffusion = GaussianDiffusion(str(steps))
    y = labels if branch == 0 else torch.full_like(labels, model.num_classes)
    x = noise
    with _cached(model, cache, steps):
        for i, t in enumerate(_progress(diffusion.timesteps, progress, "DiT CFG-parallel")):
            t_batch = torch.full((len(x),), t, dtype=torch.long, device=x.device)
            cond, uncond = exchange(model(x, t_batch, y), group)  # (n, C_out, H, W) each
            eps_cond, eps_uncond = cond[:, :CFG_CHANNELS], uncond[:, :CFG_CHANNELS]
            guided = eps_uncond + cfg_scale * (eps_cond - eps_uncond)  # as DiT.forward_with_cfg
            x = diffusion.ddim_step(torch.cat([guided, cond[:, CFG_CHANNELS:]], dim=1), x, i)
    return x


@torch.no_grad()
def cfg_parallel_flux(
    transformer: nn.Module,
    conditioning: nn.Module,
    noise: Tensor,
    labels: Tensor,
    steps: int = 50,
    cfg_scale: float = 3.0,
    cache: TaylorSeerConfig | None = None,
    group: Any = None,
    progress: bool = False,
) -> Tensor:
    """`flux_digits.sample` with its branches on the 2 ranks of `group` (rank 0 conditional,
    rank 1 the null class), each forecasting its own branch; (n, 4, 8, 8) latents on both."""
    from diffusers import FlowMatchEulerDiscreteScheduler

    from taylorseer.models.digits import NUM_CLASSES
    from taylorseer.models.flux_digits import SHIFT, pack, unpack, velocity

    branch = _branch(group, cfg_scale)
    scheduler = FlowMatchEulerDiscreteScheduler(shift=SHIFT)
    scheduler.set_timesteps(steps)
    text, pooled = conditioning(labels if branch == 0 else torch.full_like(labels, NUM_CLASSES))
    latents = pack(noise)  # (n, 16, 16)
    with _cached(transformer, cache, steps):
        for t in _progress(scheduler.timesteps, progress, "FLUX CFG-parallel"):
            sigma = (t / 1000).expand(len(latents)).to(latents.dtype)
            cond, uncond = exchange(velocity(transformer, latents, sigma, text, pooled), group)
            flow = uncond + cfg_scale * (cond - uncond)
            latents = scheduler.step(flow, t, latents, return_dict=False)[0]
    return unpack(latents)


# --- `taylorseer generate` spread over the ranks --------------------------------------------

SampleImages = Callable[[Tensor, Tensor, int, bool], Tensor]  # (noise, labels, steps, progress)


def _dit_branches(generator: DigitGenerator, group: Any) -> tuple[nn.Module, SampleImages]:
    from taylorseer.models.digits import to_images

    model = generator.transformer

    def sample(noise: Tensor, labels: Tensor, steps: int, progress: bool) -> Tensor:
        latents = cfg_parallel_dit(model, noise, labels, steps, generator.cfg_scale, None, group, progress)
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
            transformer, conditioning, noise, labels, steps, generator.cfg_scale, None, group, progress
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


def _measure_everywhere(run: Callable[[], Tensor], full_steps: Callable[[], int]) -> Result | None:
    """Every rank runs `run`; on rank 0: the gathered images, the slowest rank's seconds, the
    FLOPs of all ranks and the most full steps any rank took. None elsewhere."""
    from taylorseer.generate import Result, measure

    dist.barrier()  # start the clocks together
    images, seconds, flops = measure(run)
    slowest = torch.tensor([seconds], dtype=torch.float64)
    total_flops = torch.tensor([flops], dtype=torch.long)
    most_full = torch.tensor([full_steps()], dtype=torch.long)
    dist.all_reduce(slowest, op=dist.ReduceOp.MAX)
    dist.all_reduce(total_flops, op=dist.ReduceOp.SUM)
    dist.all_reduce(most_full, op=dist.ReduceOp.MAX)
    gathered = gather(images)
    if gathered is None:
        return None
    return Result(gathered, float(slowest), int(total_flops), int(most_full))


def generate_data_parallel(
    model: str | DigitGenerator,
    config: TaylorSeerConfig | None,
    steps: int,
    classes: list[int],
    seed: int,
    cfg_parallel: bool = False,
) -> tuple[Result, Result | None, int] | None:
    """`generate.run_bundled` spread over the ranks of the process group (`process_group()`).

    The samples (two rows of `classes`) are split into contiguous shards, one per rank (or per
    CFG pair with `cfg_parallel`); each rank samples its shard from the same noise as a single
    process would, with its own cache. On rank 0: (full Result, cached Result or None, columns),
    seconds = the slowest rank's, FLOPs = all ranks' sum. None on the other ranks.
    """
    from taylorseer.api import apply_taylorseer
    from taylorseer.models.bundled import load_bundled

    generator = load_bundled(model) if isinstance(model, str) else model
    where = layout(cfg_parallel)
    lead = dist.get_rank() == 0
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
        images = ((sample(noise[mine], labels[mine], steps, lead) + 1) / 2).permute(0, 2, 3, 1)
        return images if where.branch == 0 else images[:0]  # the pair's images, once

    if len(mine):
        sample(noise[mine[:1]], labels[mine[:1]], 2, False)  # warm-up: first-call costs off the clock
    full = _measure_everywhere(run, lambda: steps)
    if config is None:
        return None if full is None else (full, None, len(classes))
    with apply_taylorseer(transformer, dataclasses.replace(config, num_steps=steps)) as handle:
        cached = _measure_everywhere(run, lambda: handle.stats["full_steps"] if len(mine) else 0)
    return None if full is None else (full, cached, len(classes))


# --- context (sequence) parallelism: diffusers' own, under a per-rank cache ----------------


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

    from taylorseer import hooks

    if getattr(model, "_cp_plan", None) is None:
        raise ValueError(f"diffusers has no context-parallel plan (_cp_plan) for {type(model).__name__}")
    if any(hooks.is_wrapped(module) for module in model.modules()):
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
