"""The public verb: `apply_taylorseer(model_or_pipeline, config)` and the handle it returns."""

from __future__ import annotations

import contextlib
import dataclasses
from collections.abc import Iterator
from typing import Any

from torch import nn

from taylorseer.api.installation import Installation
from taylorseer.api.pipelines import (
    denoisers,
    detected_sampler,
    hindsight_for,
    is_pipeline,
    pipeline_clock,
    warn_if_made_for_another,
)
from taylorseer.config import TaylorSeerConfig
from taylorseer.core.clock import TimestepClock
from taylorseer.runtime.calls import Clock, Runtime
from taylorseer.wiring.discovery import timestep_argument
from taylorseer.wiring.forwards import Undo, is_wrapped
from taylorseer.wiring.model_hook import hook_model


class TaylorSeerHandle:
    """What `apply_taylorseer` returns: `stats`, `reset()`, `run()` and `remove()`."""

    def __init__(self, target: Any, runtimes: list[Runtime], clock: Clock, undo: list[Undo]) -> None:
        self.model = target  # the model or pipeline the cache is applied to
        self.config = runtimes[0].config
        self._runtimes = runtimes
        self._clock = clock
        self._undo: list[Undo] | None = undo

    @property
    def stats(self) -> dict[str, Any]:
        """Counts of the current (or last) run, over every cached model: full_steps, forecast_steps,
        full_calls, forecast_calls, nonfinite_fallbacks (forecasts that overflowed and were
        recomputed), probe_refreshes (adaptive: forecasts the probe turned full), steps,
        granularity, cached_modules, cache_bytes (bytes of factors held now), corrected (whether
        this run's full steps are corrected for their gaps: `TaylorSeerConfig.correction`)."""
        per_model = [runtime.stats for runtime in self._runtimes]

        def merged(key: str) -> Any:
            if key == "steps":  # the models share one clock
                return per_model[0][key]
            if key == "corrected":
                return any(stats[key] for stats in per_model)
            if key == "granularity":
                return ",".join(dict.fromkeys(stats[key] for stats in per_model))
            return sum(stats[key] for stats in per_model)

        return {key: merged(key) for key in per_model[0]}

    def reset(self) -> None:
        """Drop every cached factor; the next call starts a new run (for a pipeline: runs in full)."""
        for runtime in self._runtimes:
            runtime.reset()

    @contextlib.contextmanager
    def run(self, num_steps: int | None = None) -> Iterator[TaylorSeerHandle]:
        """One sampling run of a bare model in a loop of your own: the cache starts afresh at the
        first call inside, takes `num_steps` as the run's length (for `final_full` and negative
        `full_steps`), and a timestep that moves back inside raises instead of starting a new run.
        Pipelines need none of this: their scheduler delimits the runs."""
        if not isinstance(self._clock, TimestepClock):
            raise ValueError(
                "handle.run() is for bare models: a pipeline's scheduler starts and counts its runs"
            )
        if num_steps is not None and (
            isinstance(num_steps, bool) or not isinstance(num_steps, int) or num_steps < 1
        ):
            raise ValueError(f"num_steps must be an integer >= 1, got {num_steps!r}")
        self.reset()
        self._clock.restart(num_steps, explicit=True)
        try:
            yield self
        finally:
            self._clock.restart()

    def remove(self) -> None:
        """Restore the original forwards (and a pipeline's scheduler) and free the cache."""
        if self._undo is None:
            raise RuntimeError("this TaylorSeer handle was already removed")
        for undo in reversed(self._undo):
            undo()
        self._undo = None
        self.reset()

    def __enter__(self) -> TaylorSeerHandle:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.remove()


def _check_model(model: Any) -> None:
    if type(model).__name__ == "OptimizedModule" and hasattr(model, "_orig_mod"):
        raise ValueError(
            "got a torch.compile'd module: apply TaylorSeer first, then compile "
            "(apply_taylorseer(model); model = torch.compile(model)), or pass model._orig_mod"
        )
    if not isinstance(model, nn.Module):
        raise TypeError(
            f"model must be a torch.nn.Module or a diffusers pipeline, got {type(model).__name__}"
        )
    if any(is_wrapped(module) for module in model.modules()):
        raise RuntimeError(
            f"TaylorSeer is already applied to this {type(model).__name__}: remove() its handle first"
        )


def apply_taylorseer(model: Any, config: TaylorSeerConfig | None = None) -> TaylorSeerHandle:
    """Cache a diffusion transformer, or every denoiser of a diffusers pipeline, in place.

    For a pipeline (`apply_taylorseer(pipe)`) the runs and steps come from its scheduler:
    `set_timesteps` starts a run and gives its length, each `step()` ends a step, and the calls
    in between are that step's guidance branches; two-expert pipelines (Wan 2.2) share one clock.
    A bare model reads its steps from its timestep input (see `TaylorSeerHandle.run`).
    Hooks are per instance; `handle.remove()` gives back the untouched model (and scheduler).
    Raises ValueError when nothing cacheable is found, RuntimeError when already cached.
    """
    config = config or TaylorSeerConfig()
    if not isinstance(config, TaylorSeerConfig):
        raise TypeError(f"config must be a TaylorSeerConfig, got {type(config).__name__}")
    models = denoisers(model) if is_pipeline(model) else [model]
    for each in models:
        _check_model(each)
    warn_if_made_for_another(config.calibrated_for, model)
    config = _with_sampler(config, model)
    arguments = [timestep_argument(each) for each in models]
    undo: list[Undo] = []
    try:
        clock, scheduler_undo = pipeline_clock(model) if is_pipeline(model) else (TimestepClock(), [])
        undo += scheduler_undo
        runtimes = []
        for each, timestep in zip(models, arguments):
            runtime = Runtime(config, clock, hindsight_for(config, model))
            installation = Installation(each, runtime)
            undo.append(installation.uninstall)
            installation.install(config.granularity)
            undo.append(hook_model(each, timestep, runtime, installation))
            runtimes.append(runtime)
    except BaseException:
        for each in reversed(undo):
            each()
        raise
    return TaylorSeerHandle(model, runtimes, clock, undo)


def _with_sampler(config: TaylorSeerConfig, target: Any) -> TaylorSeerConfig:
    """`config` with `sampler` filled in, when unset, from the pipeline's scheduler or else the
    model's class (unknown to both: left None, and the defaults for an unknown sampler apply)."""
    found = None if config.sampler is not None else detected_sampler(target)
    return config if found is None else dataclasses.replace(config, sampler=found)


def maybe_applied(
    model: Any, config: TaylorSeerConfig | None, num_steps: int | None = None
) -> contextlib.AbstractContextManager[Any]:
    """Internal, for the tools: `config` applied to `model` for a `with` block (`num_steps` set
    when given); nothing when `config` is None (full compute)."""
    if config is None:
        return contextlib.nullcontext()
    if num_steps is not None:
        config = dataclasses.replace(config, num_steps=num_steps)
    return apply_taylorseer(model, config)
