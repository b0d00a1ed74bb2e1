"""Adaptive refresh: on a forecast call, run the first block for real and compare it with its forecast.

Full calls record the first block's output like any cached feature. On a forecast call the probe
runs the model's own forward only up to the end of its first block (every other hook sees no call
in progress, so nothing is forecast or recorded), stops it there, and measures the relative L2
distance between that real output and the forecast of it. `Runtime.accept_forecast` reads that
distance together with the finiteness of the forecast as one scalar, and turns the call full
when the distance is over the config's `error_budget`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor, nn
from torch.utils._pytree import tree_leaves

from taylorseer.runtime.calls import CallContext, Runtime


class _FirstBlockDone(Exception):
    """Raised from the first block's hook to stop a probing forward once the block has run."""

    def __init__(self, output: Any) -> None:
        super().__init__("probe finished")
        self.output = output


def relative_distance(actual: Any, predicted: Any, group: Any = None) -> Tensor:
    """||actual - predicted|| / ||actual|| over every tensor of two same-structured outputs (0-dim).

    With a process `group` (context parallelism: each rank holds a shard of the tokens) both sums
    are added over the group first, so that every rank gets the same distance and decision."""
    pairs = [
        (a.detach(), p) for a, p in zip(tree_leaves(actual), tree_leaves(predicted)) if isinstance(a, Tensor)
    ]
    error = sum(torch.sum((a.float() - p.float()) ** 2) for a, p in pairs)
    norm = sum(torch.sum(a.float() ** 2) for a, _ in pairs)
    sums = torch.stack([error, norm])  # (2,)
    if group is not None:
        torch.distributed.all_reduce(sums, group=group)
    return torch.sqrt(sums[0] / sums[1].clamp_min(torch.finfo(torch.float32).tiny))


class Probe:
    """The first block of the model as a probe of how far off the forecasts are."""

    def __init__(self, path: str, block: nn.Module, runtime: Runtime, group: Any = None) -> None:
        self.path = path
        self.block = block
        self.runtime = runtime
        self.group = group  # the context-parallel group whose ranks share the decision
        self.feature = runtime.new_feature(f"{path} (probe)", group)  # the first block's shards
        self.probing = False

    def wrap(self, original: Callable[..., Any]) -> Callable[..., Any]:
        """The first block's forward: records on full calls, stops a probing forward."""

        def forward(*args: Any, **kwargs: Any) -> Any:
            output = original(*args, **kwargs)
            if self.probing:
                raise _FirstBlockDone(output)
            context = self.runtime.context
            if context is not None and context.full:
                self.feature.record(context.branch, output, context.x, context.order)
            return output

        return forward

    def distance(self, context: CallContext, run_model: Callable[[], Any]) -> Tensor:
        """The relative distance of the first block's forecast from its real output at this call."""
        self.probing = True
        try:
            with self.runtime.suspended():  # a plain forward: the other hooks stand aside
                run_model()
        except _FirstBlockDone as done:
            actual = done.output
        else:
            raise RuntimeError(
                f"adaptive refresh: the model's forward never called its first block {self.path!r}"
            )
        finally:
            self.probing = False
        return relative_distance(actual, self.feature.predict(context.branch, context.x), self.group)
