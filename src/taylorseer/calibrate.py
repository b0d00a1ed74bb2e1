"""Calibrated schedules: where to put a budget of full steps, measured on a few samples.

`calibrate` (about a dozen sampler calls): one full-compute run records the model's output at
every step; an offline model (`core.error_model`) predicts, for any placement, the forecast error
at each skipped step on that recorded trajectory and weighs it by the step's position, with
weights fitted to a few closed-loop runs; the placement it predicts best is run closed loop, the
fit updated, and so on until the calls are spent. The best placement measured wins if its gain over
the default is consistent across the samples (`improves_consistently`); else the default stays.
`search` is the exhaustive closed-loop search it replaces (the default placement and a family of
spread ones, then moves of one full step at a time while the measured error falls: one or two
hundred sampler calls), kept as the yardstick. Both return a `TaylorSeerConfig` with schedule
"calibrated" and `full_steps`.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable, Collection

import torch
from torch import Tensor

from taylorseer.config import TaylorSeerConfig
from taylorseer.core.error_model import fit_weights, forecast_errors, predicted_error
from taylorseer.core.schedule import spread
from taylorseer.runtime.recording import Trajectory, recording

Sampler = Callable[[TaylorSeerConfig | None], Tensor]  # config (None = full compute) -> samples


def with_full_steps(base: TaylorSeerConfig, steps: list[int], num_steps: int) -> TaylorSeerConfig:
    """`base` with the calibrated schedule `steps` in a run of `num_steps` steps."""
    return dataclasses.replace(
        base, schedule="calibrated", full_steps=tuple(steps), num_steps=num_steps, error_budget=None,
        density=None,
    )  # fmt: skip


def starting_points(num_steps: int, budget: int) -> list[list[int]]:
    """Distinct `spread` schedules over 1-3 leading steps and a range of late densities."""
    found: list[list[int]] = []
    for leading in range(1, min(3, budget) + 1):
        for density in (1.0, 1.25, 1.5, 1.75, 2.0, 2.5, 3.0):
            steps = spread(num_steps, budget, leading, density)
            if steps not in found:
                found.append(steps)
    return found


def neighbours(steps: list[int], num_steps: int, fixed: int, reach: int) -> list[list[int]]:
    """Schedules that move one full step (not among the first `fixed`) by up to `reach`."""
    taken = set(steps)
    found = []
    for index in range(fixed, len(steps)):
        for shift in range(-reach, reach + 1):
            moved = steps[index] + shift
            if shift and fixed <= moved < num_steps and moved not in taken:
                found.append(sorted(taken - {steps[index]} | {moved}))
    return found


def hill_climb(
    start: list[int],
    cost: Callable[[list[int]], float],
    num_steps: int,
    fixed: int,
    reach: int = 3,
    max_evaluations: int = 400,
    start_cost: float | None = None,
) -> tuple[list[int], float, int]:
    """First-improvement descent over `neighbours`: (best, its cost, evaluations of `cost`)."""
    evaluations = int(start_cost is None)
    best, best_cost = start, cost(start) if start_cost is None else start_cost
    while evaluations < max_evaluations:
        for candidate in neighbours(best, num_steps, fixed, reach):
            candidate_cost = cost(candidate)
            evaluations += 1
            if candidate_cost < best_cost:
                best, best_cost = candidate, candidate_cost
                break
            if evaluations >= max_evaluations:
                break
        else:
            break  # no single move helps
    return best, best_cost, evaluations


def search(
    sampler: Sampler,
    base: TaylorSeerConfig,
    num_steps: int,
    budget: int,
    reach: int = 3,
    max_evaluations: int = 400,
    log: Callable[[str], None] = lambda line: None,
) -> tuple[TaylorSeerConfig, dict[str, float]]:
    """The exhaustive closed-loop search (every evaluation a sampler call); as `calibrate`."""
    start_time = time.perf_counter()
    reference, base, _ = _reference(sampler, base, num_steps, elements=0)  # the sampler only

    def error(steps: list[int]) -> float:
        output = sampler(with_full_steps(base, steps, num_steps)).double()
        return sample_errors(output, reference).mean().item()

    default = base.spread_placement(num_steps, budget)
    family = {tuple(steps): error(steps) for steps in [default, *starting_points(num_steps, budget)]}
    first = list(min(family, key=family.get))
    log(f"{len(family) + 1} calls: mse {family[tuple(first)]:.3e}, full steps {first}")
    leading = next(k for k, step in enumerate(first + [num_steps]) if step != k)  # fixed: 0..leading-1
    budget_left = max_evaluations - len(family) - 1
    best, best_error, climbed = hill_climb(
        first, error, num_steps, leading, reach, budget_left, family[tuple(first)]
    )
    calls = len(family) + climbed + 1  # + the reference
    report = dict(start_mse=family[tuple(default)], mse=best_error, evaluations=calls, sampler_calls=calls)
    return with_full_steps(base, best, num_steps), report | dict(seconds=time.perf_counter() - start_time)


def calibrate(
    sampler: Sampler,
    base: TaylorSeerConfig,
    num_steps: int,
    budget: int,
    max_calls: int = 12,
    log: Callable[[str], None] = lambda line: None,
) -> tuple[TaylorSeerConfig, dict[str, float]]:
    """The placement of `budget` full steps that brings `sampler`'s output closest to full compute,
    in at most `max_calls` calls of `sampler`.

    `sampler(config)` (`None`: full compute) applies `config` to its model with
    `apply_taylorseer`, samples a few fixed seeds and returns the final samples, one per index of
    dim 0: at least 2, and a dozen tell a consistent gain from chance better. Returns
    (config, report) with the report's start_mse (the default placement), mse (the chosen one),
    sampler_calls, seconds."""
    if max_calls < 3:
        raise ValueError(f"max_calls must be >= 3 (a recording and two placements), got {max_calls}")
    start_time = time.perf_counter()
    reference, base, trajectory = _reference(sampler, base, num_steps)
    if reference.dim() < 2 or reference.shape[0] < 2:
        raise ValueError(
            "calibrate needs at least 2 samples per sampler call (dim 0 of its output) to tell a "
            f"consistent gain from chance; the sampler returned output of shape {tuple(reference.shape)}"
        )
    model = _OfflineModel(trajectory, base, num_steps)
    del trajectory  # the offline model keeps its stacked copy
    measured: dict[tuple[int, ...], Tensor] = {}  # placement -> (samples,) errors

    def mse(steps: tuple[int, ...]) -> float:
        return measured[steps].mean().item()

    def measure(steps: list[int]) -> None:
        output = sampler(with_full_steps(base, steps, num_steps)).double()
        measured[tuple(steps)] = sample_errors(output, reference)
        log(f"call {len(measured) + 1}/{max_calls}: mse {mse(tuple(steps)):.3e}, full steps {steps}")

    default = tuple(base.spread_placement(num_steps, budget))
    for steps in (list(default), spread(num_steps, budget, 1, 1.0)):  # two to fit the weights on
        if tuple(steps) not in measured:
            measure(steps)
    proposals = 0
    while len(measured) + 1 < max_calls:
        corrected = model.variants[proposals % len(model.variants)]  # the error models take turns
        proposals += 1
        slope, scale = fit_weights([(model.errors(steps, corrected), mse(steps)) for steps in measured])
        candidate = model.best_unmeasured(budget, slope, scale, measured, corrected)
        if candidate is None:
            break
        measure(candidate)
    trusted = [key for key, errors in measured.items() if improves_consistently(errors, measured[default])]
    best = min([default, *trusted], key=mse)
    report = dict(
        start_mse=mse(default), mse=mse(best), sampler_calls=len(measured) + 1,
        seconds=time.perf_counter() - start_time,
    )  # fmt: skip
    report["evaluations"] = report["sampler_calls"]
    return with_full_steps(base, list(best), num_steps), report


def _reference(
    sampler: Sampler, base: TaylorSeerConfig, num_steps: int, elements: int = 65536
) -> tuple[Tensor, TaylorSeerConfig, Trajectory]:
    """Full compute's samples (through a cache at interval 1: bit for bit, every step's model
    output recorded, `elements` values of it), `base` with the sampler that apply_taylorseer
    detected when `base` names none (the default placement depends on it), and the recorded
    trajectory."""
    record_config = dataclasses.replace(
        base, interval=1, schedule="fixed", full_steps=None, error_budget=None, granularity="model",
        num_steps=num_steps, density=None, calibrated_for=None,
    )  # fmt: skip
    with recording(elements) as trajectory:
        reference = sampler(record_config).double()
    if base.sampler is None:
        base = dataclasses.replace(base, sampler=trajectory.sampler)
    return reference, base, trajectory


def sample_errors(output: Tensor, reference: Tensor) -> Tensor:
    """(samples,) mean squared error of each sample (dim 0 indexes the samples, if there are two)."""
    squared = (output - reference) ** 2
    return squared.reshape(squared.shape[0] if squared.dim() > 1 else 1, -1).mean(1)


# Two-sided 95% quantiles of Student's t for 1-30 degrees of freedom (samples - 1); beyond,
# 1.96 + 2.5 / dof is within 0.003 of it.
_T_QUANTILES = (
    12.71, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228, 2.201, 2.179, 2.160, 2.145,
    2.131, 2.120, 2.110, 2.101, 2.093, 2.086, 2.080, 2.074, 2.069, 2.064, 2.060, 2.056, 2.052, 2.048,
    2.045, 2.042,
)  # fmt: skip


def improves_consistently(errors: Tensor, default_errors: Tensor) -> bool:
    """Whether a placement's errors (samples,) are lower than the default's by more than the
    spread over the samples explains: the mean of the per-sample log error ratios lies below zero
    by more than Student's t quantile (`_T_QUANTILES`) times its standard error, so a placement
    with no real gain passes by chance 2.5% of the time at any sample count. On a dozen
    calibration samples a placement that wins in total, or even on most samples, but not
    consistently, lost to the default on other seeds."""
    count = errors.numel()
    if count < 2:
        raise ValueError(f"telling a consistent gain from chance needs at least 2 samples, got {count}")
    ratios = errors.double().clamp_min(1e-300) / default_errors.double().clamp_min(1e-300)
    log_ratios = torch.log(ratios).clamp(-50.0, 50.0)  # an infinite default error: a clear win
    dof = count - 1
    quantile = _T_QUANTILES[dof - 1] if dof <= len(_T_QUANTILES) else 1.96 + 2.5 / dof
    return bool(log_ratios.mean() < -quantile * log_ratios.std() / count**0.5)


class _OfflineModel:
    """Predicted final error of placements, from the recorded trajectory (per-step errors memoised)."""

    def __init__(self, trajectory: Trajectory, base: TaylorSeerConfig, num_steps: int) -> None:
        self.streams = []  # (recorded outputs (steps, elements), abscissae) per run and branch
        for stream, steps in trajectory.steps.items():
            if steps != list(range(num_steps)):
                raise ValueError(
                    f"a recorded run called the model {len(steps)} times, at steps {steps[:6]}... (stream "
                    f"{stream}), not once at each of the {num_steps} steps: is num_steps the sampler's "
                    "step count?"
                )
            self.streams.append((trajectory.stacked(stream), trajectory.abscissae[stream]))
        self.base, self.num_steps = base, num_steps
        # error models with the correction (if the runs correct) and without it
        self.variants = (True, False) if trajectory.corrected else (False,)
        self._errors: dict[tuple[tuple[int, ...], bool], Tensor] = {}

    def errors(self, steps: tuple[int, ...] | list[int], corrected: bool) -> Tensor:
        key = tuple(steps), corrected
        if key not in self._errors:
            base, full = self.base, set(steps)
            rules = dict(gap_ratio=base.gap_ratio, term_ratio=base.effective_term_ratio, corrected=corrected)
            self._errors[key] = sum(
                forecast_errors(values, x, full, base.order, base.form, **rules) for values, x in self.streams
            )
        return self._errors[key]

    def best_unmeasured(
        self, budget: int, slope: float, scale: float, measured: Collection[tuple[int, ...]], corrected: bool
    ) -> list[int] | None:
        """The placement predicted best (family, then descent), or its best unmeasured neighbour."""

        def cost(steps: list[int]) -> float:
            return predicted_error(self.errors(steps, corrected), slope, scale)

        starts = starting_points(self.num_steps, budget) + [list(steps) for steps in measured]
        best, _, _ = hill_climb(min(starts, key=cost), cost, self.num_steps, fixed=1, max_evaluations=2000)
        if tuple(best) not in measured:
            return best
        fresh = [c for c in neighbours(best, self.num_steps, 1, 3) if tuple(c) not in measured]
        return min(fresh, key=cost) if fresh else None


def calibrated_config(name: str) -> TaylorSeerConfig:
    """The schedule `taylorseer calibrate` found for a bundled model (its folder's schedule.json)."""
    from taylorseer.models.bundled import BUNDLED_MODELS
    from taylorseer.models.weights import bundled_path

    if name not in BUNDLED_MODELS:
        raise ValueError(f"unknown bundled model {name!r}; bundled: {sorted(BUNDLED_MODELS)}")
    return TaylorSeerConfig.from_json(bundled_path(name) / "schedule.json")
