"""The hooks of one model at its current granularity; the fallback to a leaner one lives here."""

from __future__ import annotations

import dataclasses
import warnings
from collections.abc import Callable
from typing import Any

from torch import nn

from taylorseer.core.budget import BudgetExceeded
from taylorseer.runtime.calls import CallContext, Runtime
from taylorseer.runtime.probe import Probe
from taylorseer.runtime.recording import record
from taylorseer.wiring.discovery import context_parallel_group, discover_blocks
from taylorseer.wiring.forwards import Undo, wrap_forward
from taylorseer.wiring.granularities import GRANULARITIES, Granularity, StreamsChangeShape

# Leaner granularities to fall back to, in order. "block" is skipped: when every block is forecast,
# the sum of per-block forecasts is the forecast of the stack's update (the forecast is linear), so
# "stack" gives the same output with one block's worth of memory.
LEANER = {"module": ("stack", "model"), "block": ("stack", "model"), "stack": ("model",), "model": ()}


class Installation:
    """The hooks of the current granularity on one model; turns leaner when the memory budget says so."""

    def __init__(self, model: nn.Module, runtime: Runtime) -> None:
        self.model = model
        self.runtime = runtime
        self.undo: list[Undo] = []
        self.exceeded: BudgetExceeded | None = None  # why the granularity turned leaner
        self.strategy: Granularity = GRANULARITIES[runtime.granularity](runtime)

    def install(self, granularity: str) -> None:
        """Replace the hooks by those of `granularity` (ValueError if the model does not allow it)."""
        self.uninstall()
        self.runtime.forget_features()
        # under context parallelism the ranks hold their tokens' shards of every feature but the
        # model's output (gathered): the forecasts' term cuts are decided over the group
        group = context_parallel_group(self.model)
        sharded = group if granularity != "model" else None
        self.runtime.rule = dataclasses.replace(self.runtime.rule, group=sharded)
        self.strategy = GRANULARITIES[granularity](self.runtime)
        self.strategy.install(self.model, self.undo)
        if self.runtime.config.schedule == "adaptive":  # outermost on the first block: its real output
            first = discover_blocks(self.model)[0]
            probe = Probe(first.path, first.module, self.runtime, group)
            self.undo.append(wrap_forward(first.module, probe.wrap))
            self.runtime.probe = probe

    def uninstall(self) -> None:
        for undo in reversed(self.undo):
            undo()
        self.undo.clear()

    def run_full(self, context: CallContext, run_model: Callable[[], Any]) -> Any:
        """Run the model in full and record it; over the memory budget, run the call again with
        the hooks of the next leaner granularity (each fallback is tried at most once)."""
        for _ in range(len(LEANER[self.runtime.granularity]) + 1):
            try:
                output = run_model()
                returned = self.strategy.finish(context, output)
                record(
                    self.runtime.run,
                    context.step,
                    context.branch,
                    context.x,
                    output,
                    self.runtime.config.sampler,
                    corrected=self.runtime.hindsight is not None,
                )
                return returned
            except BudgetExceeded as exceeded:
                self._downgrade(exceeded)
            except StreamsChangeShape:
                if self.exceeded is None:
                    raise  # the user asked for "stack"
                self._downgrade(self.exceeded, "does not apply to this model")  # a fallback: go on
            context.scratch.clear()
        raise AssertionError("unreachable: every fallback either ran or raised")

    def _downgrade(self, exceeded: BudgetExceeded, why: str | None = None) -> None:
        """Install the next leaner granularity that the model allows, or raise ValueError.

        `why` the current granularity fails; by default, that `exceeded` says it needs too much."""
        self.exceeded = exceeded
        runtime = self.runtime
        why = why or f"needs {exceeded.needed} bytes of cache, over memory_budget={exceeded.limit}"
        for leaner in LEANER[runtime.granularity]:
            try:
                self.install(leaner)
            except ValueError:
                continue  # this model's blocks do not allow that granularity
            warnings.warn(
                f"TaylorSeer granularity {runtime.granularity!r} {why}: using granularity {leaner!r}",
                stacklevel=5,
            )
            runtime.granularity = leaner
            return
        raise ValueError(
            f"memory_budget={exceeded.limit} bytes is too small: granularity {runtime.granularity!r}, the "
            f"leanest this model allows, needs {exceeded.needed} bytes"
        ) from exceeded
