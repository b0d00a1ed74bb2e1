"""Calibrated schedules: where to put a budget of full steps, searched on a few samples.

For a fixed budget of full steps, the search moves one full step at a time to the neighbouring
position that most lowers the error of the cached samples against full compute (run closed
loop: forecast errors feed back into the sampler as they would in use), until no single move
helps. The result is a `TaylorSeerConfig` with an explicit `full_steps` list.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

import torch
from torch import Tensor

from taylorseer.config import TaylorSeerConfig

Sampler = Callable[[TaylorSeerConfig | None], Tensor]  # config (None = full compute) -> samples


def spread(num_steps: int, budget: int, leading: int) -> list[int]:
    """`budget` full steps: the first `leading`, the rest evenly spread up to the last step."""
    if not 1 <= leading <= budget <= num_steps:
        raise ValueError(f"need 1 <= leading ({leading}) <= budget ({budget}) <= num_steps ({num_steps})")
    rest = budget - leading
    if rest == 0:
        return list(range(leading))
    span = (num_steps - 1 - (leading - 1)) / rest
    return list(range(leading)) + [round(leading - 1 + span * (k + 1)) for k in range(rest)]


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
    leading = base.effective_warmup

    def error(steps: list[int]) -> float:
        config = dataclasses.replace(base, full_steps=tuple(steps), num_steps=num_steps)
        return torch.mean((sampler(config).double() - reference.double()) ** 2).item()

    best = spread(num_steps, budget, leading)
    best_error = start_error = error(best)
    evaluations = 1
    while evaluations < max_evaluations:  # first-improvement hill climbing
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
    config = dataclasses.replace(base, full_steps=tuple(best), num_steps=num_steps)
    return config, dict(start_mse=start_error, mse=best_error, evaluations=evaluations)


def calibrate_bundled(
    name: str, base: TaylorSeerConfig, steps: int, budget: int, samples: int, seed: int, held_out_seed: int
) -> tuple[TaylorSeerConfig, list[str]]:
    """Calibrate on `samples` digits from `seed`; report PSNR on others from `held_out_seed`."""
    from taylorseer.metrics import psnr
    from taylorseer.models.bundled import load_bundled

    generator = load_bundled(name)
    labels = torch.arange(samples) % 10

    def sampler(noise_seed: int) -> Sampler:
        noise = generator.noise(samples, noise_seed)
        return lambda config: generator.sample(noise, labels, steps=steps, cache=config)

    config, report = calibrate(sampler(seed), base, steps, budget, log=print)
    even = dataclasses.replace(
        base, full_steps=tuple(spread(steps, budget, base.effective_warmup)), num_steps=steps
    )
    lines = [f"{name}: {budget} of {steps} steps full; calibrated full steps {list(config.full_steps)}"]
    for label, noise_seed in (("calibration seeds", seed), ("held-out seeds", held_out_seed)):
        run = sampler(noise_seed)
        reference = run(None)
        lines.append(
            f"  {label}: PSNR even placement {psnr(run(even), reference):.2f} dB -> calibrated "
            f"{psnr(run(config), reference):.2f} dB"
        )
    return config, lines
