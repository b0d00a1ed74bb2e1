"""Hindsight correction state of one cached model, per guidance branch (math: core.hindsight).

It sees the model's output tensor on every call of a run: each forecast (kept until the next
call gives its step's length), and each full step, which it corrects for the gap before it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import torch
from torch import Tensor

from taylorseer.core import forecast, hindsight
from taylorseer.core.factors import PerBranch

# step of the run -> (alpha, sigma) at that step, (1, 0) past the last: a pipeline's scheduler knows
NoiseByStep = Callable[[int], tuple[float, float]]


@dataclass
class BranchCourse:
    """What one branch's correction remembers of the run so far."""

    factors: list[Tensor] = field(default_factory=list)  # Newton factors of the kept outputs
    abscissae: list[float] = field(default_factory=list)  # their timesteps, newest first
    recent: list[float] = field(default_factory=list)  # timesteps of the last three steps, oldest first
    pending: tuple[int, float, Tensor] | None = None  # the last forecast's (step, timestep, output)
    weighted_forecasts: Tensor | None = None  # sum of w_s * forecast_s over the current gap
    gap: list[tuple[float, float]] = field(default_factory=list)  # (timestep, w_s) per forecast step

    @property
    def nbytes(self) -> int:
        tensors = [*self.factors, self.weighted_forecasts, self.pending[2] if self.pending else None]
        return sum(t.numel() * t.element_size() for t in tensors if t is not None)


class Hindsight(PerBranch):
    """Corrects each full step of a first-order `sampler` ("flow" | "diffusion") for the gap of
    forecasts before it. Noise levels come from `noise_by_step` (a pipeline's scheduler) or else
    from the model's timestep input (`alphas_cumprod`: a diffusion sampler's training schedule),
    the next step's extrapolated."""

    def __init__(
        self, sampler: str, alphas_cumprod: Tensor | None = None, noise_by_step: NoiseByStep | None = None
    ) -> None:
        self.sampler = sampler
        self.alphas_cumprod = alphas_cumprod
        self.noise_by_step = noise_by_step
        self.branches: dict[int, BranchCourse] = {}

    def forecast(self, branch: int, step: int, timestep: float, output: Tensor) -> None:
        """A forecast call's output (counted once the next call of the branch shows it stood)."""
        course = self.branches.setdefault(branch, BranchCourse())
        self._step_to(course, step, timestep)
        course.pending = (step, timestep, output.detach().clone())

    def full(
        self, branch: int, step: int, timestep: float, output: Tensor, last: bool
    ) -> tuple[Tensor, Tensor]:
        """(the output to return, the output to forecast from) for a full call at `step`;
        `last`: the run's last step (nothing after it to correct)."""
        course = self.branches.setdefault(branch, BranchCourse())
        if course.pending is not None and course.pending[0] == step:
            course.pending = None  # this step's forecast did not stand: it runs in full
            course.recent = course.recent[:-1]
        self._step_to(course, step, timestep)
        if timestep in course.abscissae:  # timesteps that collide (bf16): no interpolation through them
            course.factors, course.abscissae = [], []
        value = output.detach().to(torch.promote_types(output.dtype, torch.float32), copy=True)
        returned = kept = value
        if course.gap and not last and (self.noise_by_step or len(course.recent) >= 2):
            factors, abscissae = forecast.update_factors(
                course.factors, course.abscissae, value, timestep, hindsight.INTERPOLATION_ORDER, "newton"
            )
            error = hindsight.course_error(course.weighted_forecasts, course.gap, factors, abscissae)
            (alpha, sigma), following = self._level(step, timestep), self._next_level(course, step)
            own_share = alpha / sigma * sum(w * hindsight.newest_share(abscissae, t) for t, w in course.gap)
            off_course = error * (alpha / sigma / (1 - own_share))  # D
            step_weight = hindsight.output_weight(self.sampler, (alpha, sigma), following)  # B_i
            if step_weight != 0:
                returned = value - (following[1] / step_weight) * off_course
                kept = value - off_course
        course.factors, course.abscissae = forecast.update_factors(
            course.factors, course.abscissae, kept, timestep, hindsight.INTERPOLATION_ORDER, "newton"
        )
        course.weighted_forecasts, course.gap = None, []
        change = (returned - value).to(output.dtype)  # autograd, if any, still flows through output
        return output + change, kept.to(output.dtype)

    def _level(self, step: int, timestep: float | None) -> tuple[float, float]:
        if self.noise_by_step is not None:
            return self.noise_by_step(step)
        return hindsight.noise_level(self.sampler, timestep, self.alphas_cumprod)

    def _next_level(self, course: BranchCourse, step: int) -> tuple[float, float]:
        if self.noise_by_step is not None:
            return self.noise_by_step(step + 1)
        return hindsight.noise_level(
            self.sampler, hindsight.next_timestep(course.recent), self.alphas_cumprod
        )

    def _step_to(self, course: BranchCourse, step: int, timestep: float) -> None:
        """A new step at `timestep`: the pending forecast's step now has its length, and joins the gap."""
        course.recent = [*course.recent[-2:], timestep]
        if course.pending is None:
            return
        before, before_timestep, output = course.pending
        course.pending = None
        now, following = self._level(before, before_timestep), self._level(step, timestep)
        # w_s = B_s / alpha_{s+1}
        weight = hindsight.output_weight(self.sampler, now, following) / following[0]
        term = output.to(torch.promote_types(output.dtype, torch.float32)) * weight
        sum_so_far = course.weighted_forecasts
        course.weighted_forecasts = term if sum_so_far is None else sum_so_far.add_(term)
        course.gap.append((before_timestep, weight))
