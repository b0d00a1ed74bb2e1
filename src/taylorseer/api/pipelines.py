"""What `apply_taylorseer` caches in a diffusers pipeline: its denoisers, on its scheduler's clock."""

from __future__ import annotations

import warnings
from typing import Any

from torch import nn

from taylorseer.config import TaylorSeerConfig
from taylorseer.core.clock import SchedulerClock, TimestepClock
from taylorseer.core.hindsight import LINEAR_BETAS, linear_alphas_cumprod
from taylorseer.runtime.hindsight import Hindsight
from taylorseer.wiring.forwards import Undo, is_wrapped
from taylorseer.wiring.samplers import (
    CORRECTABLE_MODELS,
    model_sampler,
    scheduler_noise,
    scheduler_sampler,
    why_not_first_order,
)
from taylorseer.wiring.scheduler_hook import drives_a_clock, hook_scheduler

# The denoisers a pipeline may call, in the order it calls them (Wan 2.2: two experts, the
# high-noise `transformer` first, then `transformer_2`).
DENOISERS = ("transformer", "transformer_2")


def is_pipeline(target: Any) -> bool:
    """A diffusers DiffusionPipeline, or anything with its `components` dict (duck-typed: no import)."""
    return not isinstance(target, nn.Module) and isinstance(getattr(target, "components", None), dict)


def denoisers(pipe: Any) -> list[nn.Module]:
    """The transformers the pipeline denoises with; ValueError when it has none."""
    components = pipe.components
    found = [components[name] for name in DENOISERS if isinstance(components.get(name), nn.Module)]
    if not found:
        raise ValueError(
            f"{type(pipe).__name__} has no transformer to cache: looked for the components {DENOISERS}, "
            f"it has {sorted(name for name, value in components.items() if value is not None)}"
        )
    return found


def detected_sampler(target: Any) -> str | None:
    """The kind of sampler `target` (a pipeline or a model) runs under: the pipeline's scheduler
    says it, else the class of its (first) denoiser; None when neither is known."""
    if not is_pipeline(target):
        return model_sampler(target)
    return scheduler_sampler(target.components.get("scheduler")) or model_sampler(denoisers(target)[0])


def hindsight_for(config: TaylorSeerConfig, target: Any) -> Hindsight | None:
    """The hindsight correction of the denoisers of `target`, where `config.correction` asks for
    it or (None) where it applies; ValueError when it is asked for and does not apply."""
    if config.granularity != "model" or config.official_quirks:
        return None  # correction=True refuses these in TaylorSeerConfig itself
    scheduler = target.components.get("scheduler") if is_pipeline(target) else None
    model = denoisers(target)[0] if is_pipeline(target) else target
    reasons = []
    if config.sampler is None:
        reasons.append(
            f"a sampler of unknown kind for {type(model).__name__} (give sampler='flow' or 'diffusion')"
        )
    unsuited = why_not_first_order(scheduler) if scheduler is not None else None
    if unsuited:
        reasons.append(unsuited)
    if config.correction is False or (config.correction is None and reasons):
        return None
    if reasons:
        raise ValueError(f"correction=True does not apply here: {'; '.join(reasons)}")
    if config.correction is None and type(model).__name__ not in CORRECTABLE_MODELS:
        return None  # its timestep input may not be the noise level (correction=True says it is)
    if scheduler is not None:
        return Hindsight(config.sampler, noise_by_step=scheduler_noise(scheduler, config.sampler))
    alphas_cumprod = linear_alphas_cumprod(**LINEAR_BETAS) if config.sampler == "diffusion" else None
    return Hindsight(config.sampler, alphas_cumprod)


def pipeline_clock(pipe: Any) -> tuple[SchedulerClock | TimestepClock, list[Undo]]:
    """The clock the pipeline's denoisers share: its scheduler's, or (with a warning) the timestep
    clock when the scheduler lacks `set_timesteps` / `step`."""
    scheduler = pipe.components.get("scheduler")
    if not drives_a_clock(scheduler):
        warnings.warn(
            f"{type(pipe).__name__}'s scheduler {type(scheduler).__name__} has no set_timesteps/step: "
            "TaylorSeer reads the steps from the timestep values instead (repeated values are taken "
            "for guidance branches)",
            stacklevel=3,
        )
        return TimestepClock(), []
    if is_wrapped(scheduler, "step"):
        raise RuntimeError(
            f"TaylorSeer is already applied to this {type(pipe).__name__}: remove() its handle first"
        )
    return hook_scheduler(scheduler)


def describe(target: Any) -> dict[str, str]:
    """What a calibrated schedule is specific to: the denoiser's class and, for a pipeline, the
    scheduler's class (`TaylorSeerConfig.calibrated_for` keys "model_class" and "scheduler")."""
    if not is_pipeline(target):
        return {"model_class": type(target).__name__}
    return {
        "model_class": type(denoisers(target)[0]).__name__,
        "scheduler": type(target.components.get("scheduler")).__name__,
    }


def warn_if_made_for_another(calibrated_for: dict[str, Any] | None, target: Any) -> None:
    """Warn when a calibrated schedule is applied to another kind of model or scheduler."""
    if not calibrated_for:
        return
    here = describe(target)
    differing = [f"{key} {calibrated_for[key]!r}, not {value!r}" for key, value in here.items()
                 if key in calibrated_for and calibrated_for[key] != value]  # fmt: skip
    if differing:
        warnings.warn(
            f"this calibrated schedule was made for {'; '.join(differing)}: its placement may not suit "
            "this model (run taylorseer calibrate for it)",
            stacklevel=3,
        )
