"""An offline model of what a placement of full steps costs, from one recorded full-compute run.

For a placement, each forecast step's error is what the forecast would miss on the recorded
trajectory: the whole-model output predicted (with the cache's own math) from the full steps
before it, against the recorded output. The error of the final sample is modelled as a weighted
sum of those, with weights exp(slope * position) (position = step / (steps - 1)) and a scale
fitted to a few closed-loop measurements: later steps weigh more in most samplers, by how much
is the model's and the sampler's own.

With the hindsight correction (`core.hindsight`), a full step before the last puts the latents
back on course for the gap before it, up to how far the interpolation through that step and the
two full steps before misses the outputs over the gap.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from taylorseer.core.forecast import predict, update_factors
from taylorseer.core.hindsight import INTERPOLATION_ORDER

# Candidate slopes of the log-weight, -4 .. 12, flattest first (ties go to the flattest).
SLOPES = tuple(sorted((x / 2 for x in range(-8, 25)), key=abs))


def forecast_errors(
    values: Tensor,
    abscissae: list[float],
    full: set[int],
    order: int,
    form: str,
    gap_ratio: float | None = None,
    term_ratio: float | None = None,
    corrected: bool = False,
) -> Tensor:
    """(steps,) modelled error at each step of a recorded branch (0 at full steps). `values`
    (steps, elements) are the recorded outputs of consecutive steps 0, 1, ...; step 0 must be
    full. `order`, `form`, `gap_ratio` and `term_ratio` as in the config.

    Without correction, a step's error is the mean squared miss of its forecast. With it
    (`corrected`), a gap costs the mean square of its summed misses (the latents take them as a
    sum, and a correction leaves misses that cancel), shared evenly by its steps; a gap closed by
    a full step before the last misses by the interpolation through that step and the full steps
    before it."""
    if 0 not in full:
        raise ValueError("step 0 must be a full step: nothing is cached before it")
    errors = torch.zeros(values.shape[0], dtype=torch.float64)
    factors: list[Tensor] = []  # the forecast's
    points: list[float] = []
    through: list[Tensor] = []  # the interpolation's, through the latest full steps
    through_points: list[float] = []
    gap: list[tuple[int, Tensor]] = []  # (step, miss (elements,)) since the last full step

    def settle(misses: list[tuple[int, Tensor]]) -> None:
        if not corrected:
            for step, miss in misses:
                errors[step] = torch.mean(miss**2)
            return
        shared = torch.mean(sum(miss for _, miss in misses) ** 2) / len(misses)
        for step, _ in misses:
            errors[step] = shared

    for step, (value, x) in enumerate(zip(values, abscissae)):
        if step not in full:
            forecast = predict(factors, points, x, form, gap_ratio=gap_ratio, term_ratio=term_ratio)
            gap.append((step, forecast - value))
            continue
        factors, points = update_factors(factors, points, value, x, order, form)
        if corrected:
            through, through_points = update_factors(
                through, through_points, value, x, INTERPOLATION_ORDER, "newton"
            )
            if gap and step < len(values) - 1:  # a correction: the interpolation's misses instead
                interpolated = [predict(through, through_points, abscissae[s], "newton") for s, _ in gap]
                gap = [(s, guess - values[s]) for (s, _), guess in zip(gap, interpolated)]
        if gap:
            settle(gap)
        gap = []
    if gap:
        settle(gap)
    return errors


def positions(steps: int) -> Tensor:
    """(steps,) position of each step in the run, 0 .. 1."""
    return torch.linspace(0.0, 1.0, steps, dtype=torch.float64)


def predicted_error(errors: Tensor, slope: float, scale: float) -> float:
    """The modelled final error of a placement whose per-step forecast errors are `errors`."""
    return scale * float(torch.sum(torch.exp(slope * positions(len(errors))) * errors))


def fit_weights(measured: list[tuple[Tensor, float]]) -> tuple[float, float]:
    """(slope, scale) that best fit closed-loop final errors to per-step errors in log space.

    `measured`: (per-step forecast errors of a placement, its measured final error) pairs."""
    usable = [(errors, error) for errors, error in measured if error > 0 and float(errors.sum()) > 0]
    if not usable:
        return 0.0, 1.0
    best = (math.inf, 0.0, 1.0)
    for slope in SLOPES:
        logs = [math.log(error) - math.log(predicted_error(errors, slope, 1.0)) for errors, error in usable]
        offset = sum(logs) / len(logs)
        residual = sum((value - offset) ** 2 for value in logs)
        if residual < best[0] - 1e-12:
            best = (residual, slope, math.exp(offset))
    return best[1], best[2]
