"""Per-call decisions: which step and branch a model call is, and whether it runs in full.

The path of one call: `Runtime.begin` places its timestep on the step clock and applies the
schedule; a forecast call's output goes through `Runtime.accept_forecast` (finite? close enough
to the probe?) and may turn full there; `Runtime.end` closes the call.
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
import warnings
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any, Protocol

import torch
from torch import Tensor
from torch.utils._pytree import tree_leaves

from taylorseer.config import TaylorSeerConfig
from taylorseer.core.budget import MemoryBudget
from taylorseer.core.clock import SchedulerClock, TimestepClock
from taylorseer.core.factors import CachedFeature, ForecastRule
from taylorseer.core.schedule import is_full_step
from taylorseer.runtime.hindsight import Hindsight
from taylorseer.runtime.stats import RunStats

# Shapes, dtypes and devices of a call's tensor inputs: a change means cached state is stale.
InputSignature = tuple[tuple[Any, tuple[int, ...], torch.dtype, torch.device], ...]
Clock = TimestepClock | SchedulerClock


@dataclass
class CallContext:
    """What the hooks inside one top-level model call need to know."""

    step: int
    branch: int
    full: bool  # run the cached units and record them, or forecast them
    x: float  # the abscissa of this call
    timestep: float  # the model's timestep input
    order: int  # the order the factors may grow to on this (full) call
    scratch: dict[str, Any] = field(default_factory=dict)  # per-call notes of a granularity's hooks


class Probe(Protocol):
    """Adaptive refresh: how far off this forecast call's forecasts are (a 0-dim tensor)."""

    def distance(self, context: CallContext, run_model: Any) -> Tensor: ...


def forecast_verdict(output: Any, distance: Tensor | None) -> float:
    """One scalar off the device: the probe's distance (0 without a probe), NaN when `output`
    holds a non-finite value."""
    tensors = [leaf for leaf in tree_leaves(output) if isinstance(leaf, Tensor)]
    if not tensors:
        return 0.0 if distance is None else float(distance)
    finite = torch.stack([torch.isfinite(t).all() for t in tensors]).all()
    if distance is None:
        return 0.0 if bool(finite) else math.nan
    return float(torch.where(finite.to(distance.device), distance, torch.nan))


class Runtime:
    """The state of the cache on one model: cached features, statistics, and the clock it reads
    (the experts of one pipeline share theirs, so that a schedule counts the pipeline's steps)."""

    def __init__(
        self, config: TaylorSeerConfig, clock: Clock | None = None, hindsight: Hindsight | None = None
    ) -> None:
        self.config = config
        self.hindsight = hindsight  # corrects full steps of the model's output for their gaps
        self.clock = clock if clock is not None else TimestepClock()
        self.run: int | None = None  # the clock's run that this state belongs to
        self.num_steps: int | None = None  # the current run's length, when known
        self.spread: frozenset[int] | None = None  # the current run's full steps under "spread"
        dtype = getattr(torch, config.factors_dtype) if config.factors_dtype else None
        self.rule = ForecastRule(
            config.form, config.order, dtype, config.gap_ratio, config.effective_term_ratio
        )
        self.budget = MemoryBudget(config.memory_budget)
        self.granularity = config.granularity  # may turn leaner to fit the memory budget
        self.features: list[CachedFeature] = []
        self.probe: Probe | None = None  # schedule "adaptive": checks each forecast call
        self.context: CallContext | None = None
        self.reset()

    def new_feature(self, path: str, group: Any = None) -> CachedFeature:
        """A cached unit; `group`: the ranks holding its shards, if not those of the current rule."""
        rule = self.rule if group is None else dataclasses.replace(self.rule, group=group)
        feature = CachedFeature(path, rule, self.budget)
        self.features.append(feature)
        return feature

    def forget_features(self) -> None:
        """Forget the cached units (before hooks of another granularity are installed)."""
        self.features.clear()
        self.probe = None
        self.budget.release()
        self.ready.clear()

    def reset(self) -> None:
        """Forget every cached factor; the next call starts a new run (a pipeline's scheduler
        starts its runs itself: there the next call only runs in full)."""
        self.clock.restart()
        self._forget()

    def _forget(self) -> None:
        self.ready: dict[int, InputSignature] = {}  # branch -> inputs of its last full call
        self.last_full: dict[int, int] = {}  # branch -> step of its last full call
        for feature in self.features:
            feature.drop()
        if self.hindsight is not None:
            self.hindsight.drop()
        self.budget.release()
        self.counts = RunStats()

    def begin(self, timestep: float, signature: InputSignature) -> CallContext:
        """Place a top-level call in the run and decide whether it runs in full."""
        if self.context is not None:
            raise RuntimeError("the cached model was called re-entrantly from inside its own forward")
        self.clock.tick(timestep)
        if self.clock.run != self.run:
            self._forget()
            self.run, self.num_steps = self.clock.run, self._run_length()
            self.spread = self._spread_steps()
            if self.hindsight is not None and self.num_steps is None and self.config.correction:
                warnings.warn(
                    "correction=True needs the run's length (its last step is not corrected): give "
                    "TaylorSeerConfig(num_steps=...) or handle.run(num_steps=...); this run is not corrected",
                    stacklevel=3,
                )
        step, branch = self.clock.step, self.clock.branch
        full = self._scheduled_full(step, branch) or self.ready.get(branch) != signature
        if full and branch in self.ready and self.ready[branch] != signature:
            self._drop_branch(branch)  # new shapes, dtype or device: nothing cached is valid
        config = self.config
        quirk = config.official_quirks and step < config.effective_warmup - 1
        self.counts.count_call(full, branch)
        x = float(step) if config.abscissa == "step" else timestep
        self.context = CallContext(step, branch, full, x, timestep, 0 if quirk else config.order)
        self._signature = signature
        return self.context

    def accept_forecast(self, context: CallContext, output: Any, run_model: Any) -> bool:
        """Whether a forecast call's `output` stands: finite, and (adaptive) its probe within the
        error budget. If not, the call turns full (counted) and the caller runs it in full."""
        distance = self.probe.distance(context, run_model) if self.probe else None
        verdict = forecast_verdict(output, distance)
        if verdict <= self.config.effective_error_budget:
            return True
        reason = "nonfinite_fallbacks" if math.isnan(verdict) else "probe_refreshes"
        context.full = True
        context.scratch.clear()
        self.counts.turn_full(context.branch, reason)
        return False

    @contextlib.contextmanager
    def suspended(self) -> Iterator[None]:
        """No call in progress for the duration (every hook stands aside): the probe's plain forward."""
        context, self.context = self.context, None
        try:
            yield
        finally:
            self.context = context

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
        if self.hindsight is not None:
            self.hindsight.drop(branch)
        self.budget.release(branch)

    def _run_length(self) -> int | None:
        """The steps of the run that starts now: from the clock (a pipeline, `handle.run`) or the config."""
        config, counted = self.config, self.clock.num_steps
        if counted is not None and config.num_steps not in (None, counted):
            raise ValueError(
                f"the TaylorSeerConfig is for num_steps={config.num_steps}, but this run has {counted} "
                "steps: use a config made for this step count (or num_steps=None)"
            )
        num_steps = config.num_steps if counted is None else counted
        if num_steps is None and config.needs_num_steps:
            raise ValueError(
                "the schedule counts from the end of the run (final_full or negative full_steps): "
                "set TaylorSeerConfig(num_steps=...), or wrap the loop in handle.run(num_steps=...)"
            )
        return num_steps

    def _spread_steps(self) -> frozenset[int] | None:
        """The "spread" schedule's full steps for this run; None when it does not apply."""
        config = self.config
        if config.schedule != "spread":
            return None
        if self.num_steps is None:
            warnings.warn(
                "TaylorSeer's default schedule 'spread' places the full steps over the run and needs its "
                "length: give TaylorSeerConfig(num_steps=...) or handle.run(num_steps=...); this run "
                "uses the paper's fixed placement",
                stacklevel=5,
            )
            return None
        return frozenset(config.planned_full_steps(self.num_steps))

    def _scheduled_full(self, step: int, branch: int) -> bool:
        config = self.config
        num_steps = self.num_steps
        if num_steps is not None and step >= num_steps:
            raise ValueError(f"sampling step {step} is past num_steps={num_steps} of this run")
        if config.schedule == "adaptive":  # the probe decides, up to interval - 1 forecasts in a row
            since_full = step - self.last_full.get(branch, -config.interval)
            final = num_steps is not None and step >= num_steps - config.final_full
            return step < config.effective_warmup or since_full >= config.interval or final
        if self.spread is not None:
            return step in self.spread
        return is_full_step(
            step, config.interval, config.effective_warmup, config.final_full, num_steps,
            config.full_steps,
        )  # fmt: skip

    @property
    def stats(self) -> dict[str, Any]:
        return dict(
            self.counts.as_dict(),
            steps=self.clock.steps,
            granularity=self.granularity,
            corrected=self.hindsight is not None and self.num_steps is not None,
            cached_modules=len(self.features),
            cache_bytes=sum(feature.nbytes for feature in self.features)
            + (self.hindsight.nbytes if self.hindsight is not None else 0),
        )
