"""Calibrated schedules: where to put a budget of full steps, searched on a few samples.

For a fixed budget of full steps, the search first tries a small family of placements (1-3
leading full steps, the rest evenly spaced or denser toward the end, where samplers are most
sensitive), then moves one full step at a time to a neighbouring position whenever that lowers
the error of the cached samples against full compute (run closed loop: forecast errors feed
back into the sampler as they would in use), until no single move helps. The result is a
`TaylorSeerConfig` with schedule "calibrated" and an explicit `full_steps` list.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

import torch
from torch import Tensor

from taylorseer.config import TaylorSeerConfig

Sampler = Callable[[TaylorSeerConfig | None], Tensor]  # config (None = full compute) -> samples


def with_full_steps(base: TaylorSeerConfig, steps: list[int], num_steps: int) -> TaylorSeerConfig:
    """`base` with the calibrated schedule `steps` in a run of `num_steps` steps."""
    return dataclasses.replace(
        base, schedule="calibrated", full_steps=tuple(steps), num_steps=num_steps, error_budget=None
    )


def spread(num_steps: int, budget: int, leading: int, density: float = 1.0) -> list[int]:
    """`budget` full steps: the first `leading`, the rest spread up to the last step.

    `density` 1 spaces the rest evenly; above 1 the gaps shrink toward the end of the run
    (position = 1 - (1 - u) ** density of the remaining span, for u evenly spaced in (0, 1]).
    """
    if not 1 <= leading <= budget <= num_steps:
        raise ValueError(f"need 1 <= leading ({leading}) <= budget ({budget}) <= num_steps ({num_steps})")
    if density < 1:
        raise ValueError(f"density must be >= 1, got {density}")
    rest = budget - leading
    span = num_steps - leading  # positions leading .. num_steps - 1
    steps = list(range(leading))
    for k in range(1, rest + 1):
        position = leading - 1 + round(span * (1 - (1 - k / rest) ** density))
        lowest, highest = steps[-1] + 1, num_steps - 1 - (rest - k)  # keep room for the others
        steps.append(min(max(position, lowest), highest))
    return steps


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


def calibrate(
    sampler: Sampler,
    base: TaylorSeerConfig,
    num_steps: int,
    budget: int,
    reach: int = 3,
    max_evaluations: int = 400,
    log: Callable[[str], None] = lambda line: None,
) -> tuple[TaylorSeerConfig, dict[str, float]]:
    """The `full_steps` placement of `budget` full steps minimising the squared error of
    `sampler` against full compute; returns (config, {"start_mse", "mse", "evaluations"})."""
    reference = sampler(None)

    def error(steps: list[int]) -> float:
        config = with_full_steps(base, steps, num_steps)
        return torch.mean((sampler(config).double() - reference.double()) ** 2).item()

    start_error = error(spread(num_steps, budget, min(base.effective_warmup, budget)))
    best, best_error = [], float("inf")
    evaluations = 1
    for steps in starting_points(num_steps, budget):  # a coarse look at the whole family first
        candidate_error = error(steps)
        evaluations += 1
        if candidate_error < best_error:
            best, best_error = steps, candidate_error
    log(f"{evaluations} evaluations: mse {best_error:.3e}, full steps {best}")
    leading = next(k for k, step in enumerate(best + [num_steps]) if step != k)  # fixed: 0..leading-1
    while evaluations < max_evaluations:  # then first-improvement hill climbing
        for candidate in neighbours(best, num_steps, leading, reach):
            candidate_error = error(candidate)
            evaluations += 1
            if candidate_error < best_error:
                best, best_error = candidate, candidate_error
                log(f"{evaluations} evaluations: mse {best_error:.3e}, full steps {best}")
                break
            if evaluations >= max_evaluations:
                break
        else:
            break  # no single move helps
    config = with_full_steps(base, best, num_steps)
    return config, dict(start_mse=start_error, mse=best_error, evaluations=evaluations)


def calibrated_config(name: str) -> TaylorSeerConfig:
    """The schedule `taylorseer calibrate` found for a bundled model (its folder's schedule.json)."""
    from taylorseer.models.bundled import BUNDLED_MODELS
    from taylorseer.models.weights import bundled_path

    if name not in BUNDLED_MODELS:
        raise ValueError(f"unknown bundled model {name!r}; bundled: {sorted(BUNDLED_MODELS)}")
    return TaylorSeerConfig.from_json(bundled_path(name) / "schedule.json")
