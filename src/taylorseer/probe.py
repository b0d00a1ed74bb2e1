"""Adaptive refresh: on a forecast call, run the first block for real and compare it with its forecast.

Full calls record the first block's output like any cached feature. On a forecast call the probe
runs the model's own forward only up to the end of its first block (every other hook sees no call
in progress, so nothing is forecast or recorded), stops it there, and measures the relative L2
distance between that real output and the forecast of it. The hook of the whole model reads that
distance together with the finiteness of its forecast as one scalar, and runs the call in full
when the distance is over the config's `error_budget`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor
from torch.utils._pytree import tree_leaves

from taylorseer.discovery import Block
from taylorseer.engine import CallContext, Engine


class _FirstBlockDone(Exception):
    """Raised from the first block's hook to stop a probing forward once the block has run."""

    def __init__(self, output: Any) -> None:
        super().__init__("probe finished")
        self.output = output


def relative_distance(actual: Any, predicted: Any) -> Tensor:
    """||actual - predicted|| / ||actual|| over every tensor of two same-structured outputs (0-dim)."""
    pairs = [
        (a.detach(), p) for a, p in zip(tree_leaves(actual), tree_leaves(predicted)) if isinstance(a, Tensor)
    ]
    error = sum(torch.sum((a.float() - p.float()) ** 2) for a, p in pairs)
    norm = sum(torch.sum(a.float() ** 2) for a, _ in pairs)
    return torch.sqrt(error / norm.clamp_min(torch.finfo(torch.float32).tiny))


class Probe:
    """The first block of the model as a probe of how far off the forecasts are."""

    def __init__(self, block: Block, engine: Engine) -> None:
        self.block = block
        self.engine = engine
        self.feature = engine.new_feature(f"{block.path} (probe)")
        self.probing = False

    def wrap(self, original: Callable[..., Any]) -> Callable[..., Any]:
        """The first block's forward: records on full calls, stops a probing forward."""

        def forward(*args: Any, **kwargs: Any) -> Any:
            output = original(*args, **kwargs)
            if self.probing:
                raise _FirstBlockDone(output)
            context = self.engine.context
            if context is not None and context.full:
                self.feature.record(context.branch, output, context.x, context.order)
            return output

        return forward

    def distance(self, context: CallContext, run_model: Callable[[], Any]) -> Tensor:
        """The relative distance of the first block's forecast from its real output at this call."""
        engine = self.engine
        engine.context, self.probing = None, True  # a plain forward: the other hooks stand aside
        try:
            run_model()
        except _FirstBlockDone as done:
            actual = done.output
        else:
            raise RuntimeError(
                f"adaptive refresh: the model's forward never called its first block {self.block.path!r}"
            )
        finally:
            engine.context, self.probing = context, False
        return relative_distance(actual, self.feature.predict(context.branch, context.x))
