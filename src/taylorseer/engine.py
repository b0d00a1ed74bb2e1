"""Per-call decisions: which step and branch a model call is, and whether it runs in full."""

from __future__ import annotations

import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import torch
from torch import Tensor

from taylorseer.config import TaylorSeerConfig
from taylorseer.discovery import Argument
from taylorseer.schedule import is_full_step
from taylorseer.state import BudgetExceeded, CachedFeature, ForecastRule, MemoryBudget, StepClock

if TYPE_CHECKING:
    from taylorseer.probe import Probe

# Leaner granularities to fall back to, in order. "block" is skipped: when every block is forecast,
# the sum of per-block forecasts is the forecast of the stack's update (the forecast is linear), so
# "stack" gives the same output with one block's worth of memory.
LEANER = {"module": ("stack", "model"), "block": ("stack", "model"), "stack": ("model",), "model": ()}

InputSignature = tuple[tuple[Any, tuple[int, ...], torch.dtype, torch.device], ...]


@dataclass
class CallContext:
    """What the hooks inside one top-level model call need to know."""

    step: int
    branch: int
    full: bool  # run the cached units and record them, or forecast them
    x: float  # the abscissa of this call
    order: int  # the order the factors may grow to on this (full) call
    scratch: dict[str, Any] = field(default_factory=dict)  # per-call notes of a granularity's hooks


def _timestep_value(value: Any, argument: Argument) -> float:
    if value is None:
        raise ValueError(f"the model was called without its {argument.name!r} input")
    if isinstance(value, Tensor):
        # the largest: per-token timesteps give conditioning tokens 0 (one scalar leaves the device)
        return float(value.max())
    return float(value)


def _input_signature(args: tuple[Any, ...], kwargs: dict[str, Any]) -> InputSignature:
    """Shapes, dtypes and devices of the tensor inputs: a change means cached state is stale."""
    named = list(enumerate(args)) + sorted(kwargs.items())
    return tuple(
        (key, tuple(value.shape), value.dtype, value.device)
        for key, value in named
        if isinstance(value, Tensor)
    )


class Engine:
    """The runtime state of one applied cache: step clock, cached features, statistics."""

    def __init__(self, config: TaylorSeerConfig, timestep: Argument) -> None:
        self.config = config
        self.timestep = timestep
        dtype = getattr(torch, config.factors_dtype) if config.factors_dtype else None
        self.rule = ForecastRule(config.form, config.order, dtype)
        self.budget = MemoryBudget(config.memory_budget)
        self.granularity = config.granularity  # may turn leaner to fit the memory budget
        self.exceeded: BudgetExceeded | None = None  # why it turned leaner
        self.features: list[CachedFeature] = []
        self.model_feature: CachedFeature | None = None  # granularity "model": the output itself
        self.on_full_call_end: list[Callable[[CallContext], None]] = []
        self.probe: Probe | None = None  # schedule "adaptive": checks each forecast call
        self.install: Callable[[str], None] = lambda granularity: None  # set by apply_taylorseer
        self.context: CallContext | None = None
        self.reset()

    def new_feature(self, path: str) -> CachedFeature:
        feature = CachedFeature(path, self.rule, self.budget)
        self.features.append(feature)
        return feature

    def clear_features(self) -> None:
        """Forget the cached units (before hooks of another granularity are installed)."""
        self.features.clear()
        self.on_full_call_end.clear()
        self.model_feature = None
        self.probe = None
        self.budget.release()
        self.ready.clear()

    def downgrade(self, exceeded: BudgetExceeded, why: str | None = None) -> None:
        """Install the next leaner granularity that can hold the factors, or raise.

        `why` the current granularity fails; by default, that `exceeded` says it needs too much."""
        self.exceeded = exceeded
        why = why or f"needs {exceeded.needed} bytes of cache, over memory_budget={exceeded.limit}"
        for leaner in LEANER[self.granularity]:
            try:
                self.install(leaner)
            except ValueError:
                continue  # this model's blocks do not allow that granularity
            warnings.warn(
                f"TaylorSeer granularity {self.granularity!r} {why}: using granularity {leaner!r}",
                stacklevel=3,
            )
            self.granularity = leaner
            return
        raise ValueError(
            f"memory_budget={exceeded.limit} bytes is too small: granularity {self.granularity!r}, the "
            f"leanest this model allows, needs {exceeded.needed} bytes"
        ) from exceeded

    def reset(self) -> None:
        """Forget every cached factor and start counting a new run."""
        self.clock = StepClock()
        self.ready: dict[int, InputSignature] = {}  # branch -> inputs of its last full call
        self.last_full: dict[int, int] = {}  # branch -> step of its last full call
        for feature in self.features:
            feature.drop()
        self.budget.release()
        self.counts = dict(
            full_steps=0, forecast_steps=0, full_calls=0, forecast_calls=0, nonfinite_fallbacks=0,
            probe_refreshes=0,
        )  # fmt: skip

    def begin(self, args: tuple[Any, ...], kwargs: dict[str, Any]) -> CallContext:
        """Place a top-level call in the run and decide whether it runs in full."""
        if self.context is not None:
            raise RuntimeError("the cached model was called re-entrantly from inside its own forward")
        timestep = _timestep_value(self.timestep.get(args, kwargs), self.timestep)
        if self.clock.tick(timestep):
            self.reset()
            self.clock.tick(timestep)
        step, branch = self.clock.step, self.clock.branch
        signature = _input_signature(args, kwargs)
        full = self._scheduled_full(step, branch) or self.ready.get(branch) != signature
        if full and branch in self.ready and self.ready[branch] != signature:
            self._drop_branch(branch)  # new shapes, dtype or device: nothing cached is valid
        config = self.config
        quirk = config.official_quirks and step < config.effective_warmup - 1
        kind = "full" if full else "forecast"
        self.counts[f"{kind}_calls"] += 1
        if branch == 0:
            self.counts[f"{kind}_steps"] += 1
        x = float(step) if config.abscissa == "step" else timestep
        self.context = CallContext(step, branch, full, x, 0 if quirk else config.order)
        self._signature = signature
        return self.context

    def fall_back_to_full(self, context: CallContext, reason: str = "nonfinite_fallbacks") -> None:
        """Turn a forecast call into a full call: its output was not finite, or (reason
        "probe_refreshes") the adaptive probe found the forecast too far off."""
        context.full = True
        context.scratch.clear()
        self.counts[reason] += 1
        self.counts["forecast_calls"] -= 1
        self.counts["full_calls"] += 1
        if context.branch == 0:
            self.counts["forecast_steps"] -= 1
            self.counts["full_steps"] += 1

    def record_call(self, context: CallContext) -> None:
        """After a full call's forward: let the hooks that record at the end of a call do so."""
        for record in self.on_full_call_end:
            record(context)

    def end(self, succeeded: bool) -> None:
        """Close the call: a full call that finished makes its branch ready to forecast."""
        context, self.context = self.context, None
        if not succeeded:
            self.reset()  # the run is broken: half-recorded factors are never reused
        elif context.full:
            self.ready[context.branch] = self._signature
            self.last_full[context.branch] = context.step

    def _drop_branch(self, branch: int) -> None:
        self.ready.pop(branch, None)
        for feature in self.features:
            feature.drop(branch)
        self.budget.release(branch)

    def _scheduled_full(self, step: int, branch: int) -> bool:
        config = self.config
        num_steps = config.num_steps
        if num_steps is not None and step >= num_steps:
            raise ValueError(f"sampling step {step} is past num_steps={num_steps} of the TaylorSeerConfig")
        if config.schedule == "adaptive":  # the probe decides, up to interval - 1 forecasts in a row
            since_full = step - self.last_full.get(branch, -config.interval)
            final = num_steps is not None and step >= num_steps - config.final_full
            return step < config.effective_warmup or since_full >= config.interval or final
        return is_full_step(
            step, config.interval, config.effective_warmup, config.final_full, num_steps,
            config.full_steps,
        )  # fmt: skip

    @property
    def stats(self) -> dict[str, Any]:
        return dict(
            self.counts,
            steps=self.clock.step + 1,
            granularity=self.granularity,
            cached_modules=len(self.features),
            cache_bytes=sum(feature.nbytes for feature in self.features),
        )
