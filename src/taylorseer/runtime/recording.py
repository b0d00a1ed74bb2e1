"""Recording a run's model outputs, for offline estimates of what a schedule would cost.

Inside `with recording(elements) as trajectory:`, every full call of a cached model adds the
output of the whole model (a fixed random subset of at most `elements` of its values, the same
subset at every step and call of that output size) to `trajectory`, with its step and abscissa,
and the sampler the run's config was resolved to. Outputs are kept per stream: one for each run
(as the cache's step clock counts them) and guidance branch, so a sampler that runs a pipeline
once per prompt or seed records one stream per call and branch.
"""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Iterator
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor
from torch.utils._pytree import tree_leaves


@dataclass
class Trajectory:
    """Per stream (a run's guidance branch): the steps, their abscissae and the recorded output
    values (steps, elements)."""

    elements: int
    seed: int = 0
    steps: dict[int, list[int]] = field(default_factory=dict)
    abscissae: dict[int, list[float]] = field(default_factory=dict)
    values: dict[int, list[Tensor]] = field(default_factory=dict)
    sampler: str | None = None  # the recorded run's config.sampler ("flow", "diffusion", None)
    corrected: bool = False  # whether the recorded run corrects its full steps in hindsight
    _subsets: dict[int, Tensor] = field(default_factory=dict)  # output size -> recorded indices
    _streams: dict[tuple[int, int], int] = field(default_factory=dict)  # (run, branch) -> stream

    def add(self, run: int, step: int, branch: int, x: float, output: Any) -> None:
        tensors = [leaf for leaf in tree_leaves(output) if isinstance(leaf, Tensor)]
        # the outputs' own precision, at least float32: half the memory of float64 for most models
        dtype = functools.reduce(torch.promote_types, (t.dtype for t in tensors), torch.float32)
        flat = torch.cat([t.detach().reshape(-1).to("cpu", dtype) for t in tensors])
        size = flat.numel()
        if size not in self._subsets:
            generator = torch.Generator().manual_seed(self.seed)
            self._subsets[size] = torch.randperm(size, generator=generator)[: self.elements].sort().values
        stream = self._streams.setdefault((run, branch), len(self._streams))
        self.steps.setdefault(stream, []).append(step)
        self.abscissae.setdefault(stream, []).append(x)
        self.values.setdefault(stream, []).append(flat[self._subsets[size]])

    def stacked(self, stream: int) -> Tensor:
        """(recorded steps, elements) of one stream, in float64 for the offline error estimates."""
        return torch.stack(self.values[stream]).double()


_ACTIVE: ContextVar[Trajectory | None] = ContextVar("taylorseer_recording", default=None)


@contextlib.contextmanager
def recording(elements: int = 65536, seed: int = 0) -> Iterator[Trajectory]:
    """Record the model outputs of every full call made inside the block."""
    trajectory = Trajectory(elements, seed)
    token = _ACTIVE.set(trajectory)
    try:
        yield trajectory
    finally:
        _ACTIVE.reset(token)


def record(
    run: int, step: int, branch: int, x: float, output: Any, sampler: str | None, corrected: bool = False
) -> None:
    """Called after each full call of a cached model: adds it to the active recording, if any.
    `sampler` and `corrected`: the run's config.sampler and whether it corrects in hindsight."""
    trajectory = _ACTIVE.get()
    if trajectory is not None:
        trajectory.add(run, step, branch, x, output)
        trajectory.sampler, trajectory.corrected = sampler, corrected
