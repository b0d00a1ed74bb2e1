"""A diffusers scheduler as the step clock of a pipeline: `set_timesteps` starts a run, `step()`
ends a step. Every diffusers pipeline calls both, once per run and once per model evaluation."""

from __future__ import annotations

from typing import Any

from taylorseer.core.clock import SchedulerClock
from taylorseer.wiring.forwards import Forward, Undo, wrap_method


def drives_a_clock(scheduler: Any) -> bool:
    """Whether `scheduler` has the two methods the clock listens to."""
    return all(callable(getattr(scheduler, name, None)) for name in ("set_timesteps", "step"))


def run_length(scheduler: Any) -> int | None:
    """Model evaluations per branch in the run just set up: the timesteps from the begin index on
    (img2img and inpainting start part-way), counting Heun's and KDPM2's extra evaluations."""
    timesteps = getattr(scheduler, "timesteps", None)
    if timesteps is None:
        return None
    return len(timesteps) - (getattr(scheduler, "begin_index", None) or 0)


def hook_scheduler(scheduler: Any) -> tuple[SchedulerClock, list[Undo]]:
    """A clock driven by `scheduler`, and the undos of the two wrapped methods."""
    clock = SchedulerClock(lambda: run_length(scheduler))

    def after(effect: Any) -> Any:
        def make(original: Forward) -> Forward:
            def method(*args: Any, **kwargs: Any) -> Any:
                result = original(*args, **kwargs)
                effect()
                return result

            return method

        return make

    undo = [wrap_method(scheduler, "set_timesteps", after(clock.start))]
    undo.append(wrap_method(scheduler, "step", after(clock.advance)))
    return clock, undo
