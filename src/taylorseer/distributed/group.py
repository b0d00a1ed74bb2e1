"""The process group and the few collectives the distributed samplers share.

`init_from_env` / `process_group` join the group torchrun describes; `shard` and `gather` split
samples over the ranks and bring them back; `exchange` swaps per-step outputs; `reduce_measures`
turns each rank's timing and FLOPs into one report. Public through `taylorseer.distributed`.
"""

from __future__ import annotations

import contextlib
import gc
import os
from collections.abc import Iterator, Sequence
from typing import Any

import torch
import torch.distributed as dist
from torch import Tensor

CONTEXT_PARALLEL = ("ulysses", "ring")  # the kinds `generate --context-parallel` takes


def world_size() -> int:
    """The number of ranks the launcher (torchrun) started, from the environment; 1 without one."""
    return int(os.environ.get("WORLD_SIZE", "1"))


def launched() -> bool:
    """Whether a launcher (torchrun) started this process as one rank of several."""
    return world_size() > 1


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
    """`init_from_env()` for the duration of a block; leaves a group it did not create alone.

    Before destroying the group it collects garbage: a DeviceMesh (context parallelism) holds its
    gloo groups, and one still alive at exit aborts the interpreter ("terminate called without an
    active exception") when the groups' threads outlive Python.
    """
    created = not dist.is_initialized()
    rank_world = init_from_env()
    try:
        yield rank_world
    finally:
        if created:
            gc.collect()  # free unreachable models and their device meshes while the group lives
            dist.destroy_process_group()


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


def reduce_measures(seconds: float, flops: int, full_steps: int) -> tuple[float, int, int]:
    """One report for all ranks, on every rank: the slowest rank's seconds, the FLOPs of all
    ranks together and the most full steps any rank took."""
    slowest = torch.tensor([seconds], dtype=torch.float64)
    total_flops = torch.tensor([flops], dtype=torch.long)
    most_full = torch.tensor([full_steps], dtype=torch.long)
    dist.all_reduce(slowest, op=dist.ReduceOp.MAX)
    dist.all_reduce(total_flops, op=dist.ReduceOp.SUM)
    dist.all_reduce(most_full, op=dist.ReduceOp.MAX)
    return float(slowest), int(total_flops), int(most_full)
