"""Hindsight correction of a gap's forecasts: pure math on tensors and host floats.

Between two full steps a and i the model's output F was forecast (extrapolated from the full
steps up to a). Once step i has run, F over the gap is better known by interpolation, and the
difference says how far the forecasts have pushed the latents off course. The sampler is taken as
first order in the output: x_{s+1} = (alpha_{s+1} / alpha_s) x_s + B_s F_s, with x = alpha x_0 +
sigma noise (DDIM on a noise prediction; Euler on a flow velocity, whose x keeps alpha = 1).

Forecast steps do not look at the latents, so an output error e_s reaches step i as
(alpha_i / alpha_{s+1}) B_s e_s. The full step's output answers the latent error dx_i it meets:
F_i = F_i* + dx_i / sigma_i, F_i* being the output on course, when the denoised estimate does not
follow the error. With P the interpolant through F_i and the outputs kept at the full steps
before, and l_i(tau) the share of F_i in it at timestep tau:

    dx_i / sigma_i = D = (alpha_i / sigma_i) E / (1 - g),   E = sum_s w_s (forecast_s - P(tau_s)),
    g = (alpha_i / sigma_i) sum_s w_s l_i(tau_s),            w_s = B_s / alpha_{s+1},

over the gap's forecast steps s. Step i returns F_i - (sigma_{i+1} / B_i) D, which puts the
latents back on course at step i + 1, and keeps F_i - D = F_i* to forecast and interpolate from.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import Tensor

from taylorseer.core.forecast import forecast_weights

INTERPOLATION_ORDER = 2  # the interpolant through the newest full step and the two before it
# The training noise schedule of DDPM-trained transformers (DiT, PixArt): betas linear over 1000 steps.
LINEAR_BETAS = dict(start=1e-4, end=0.02, steps=1000)


def linear_alphas_cumprod(start: float, end: float, steps: int) -> Tensor:
    """(steps,) float64 cumulative products of 1 - beta for betas linear from `start` to `end`."""
    return torch.cumprod(1 - torch.linspace(start, end, steps, dtype=torch.float64), dim=0)


def noise_level(sampler: str, timestep: float | None, alphas_cumprod: Tensor | None) -> tuple[float, float]:
    """(alpha, sigma) at the model's `timestep` input; None is the end of the run (clean latents).

    "flow": sigma is the timestep itself, at whatever scale the model takes it (only ratios of
    sigmas are used for it); "diffusion": from `alphas_cumprod` (per training timestep),
    interpolated between whole timesteps."""
    if sampler == "flow":
        return 1.0, max(timestep, 0.0) if timestep is not None else 0.0
    if alphas_cumprod is None:
        raise ValueError("a diffusion sampler's noise levels need its alphas_cumprod")
    if timestep is None or timestep < 0:
        return 1.0, 0.0
    position = min(timestep, len(alphas_cumprod) - 1)
    below = int(position)
    above = min(below + 1, len(alphas_cumprod) - 1)
    share = position - below
    alpha_bar = float(alphas_cumprod[below]) * (1 - share) + float(alphas_cumprod[above]) * share
    return math.sqrt(alpha_bar), math.sqrt(1 - alpha_bar)


def output_weight(sampler: str, now: tuple[float, float], after: tuple[float, float]) -> float:
    """B: the weight of the model's output in the step from noise level `now` to `after`
    ((alpha, sigma) each): sigma' - sigma for a flow velocity, sigma' - (alpha'/alpha) sigma for a
    noise prediction."""
    (alpha, sigma), (alpha_after, sigma_after) = now, after
    if sampler == "flow":
        return sigma_after - sigma
    return sigma_after - alpha_after / alpha * sigma


def next_timestep(recent: Sequence[float]) -> float:
    """The next step's timestep, extrapolated from the last (up to three) steps' (oldest first):
    exact for timesteps evenly spaced or quadratic in the step index."""
    if len(recent) >= 3:
        return 3 * recent[-1] - 3 * recent[-2] + recent[-3]
    if len(recent) == 2:
        return 2 * recent[-1] - recent[-2]
    raise ValueError("extrapolating the next timestep needs at least two steps")


def course_error(
    weighted_forecasts: Tensor,
    gap: Sequence[tuple[float, float]],
    factors: Sequence[Tensor],
    abscissae: Sequence[float],
) -> Tensor:
    """E = sum_s w_s (forecast_s - P(tau_s)), given `weighted_forecasts` = sum_s w_s forecast_s and
    the gap's (tau_s, w_s); P is the Newton interpolant of `factors` (newest first, on `abscissae`)."""
    per_factor = [0.0] * len(factors)
    for timestep, weight in gap:
        for j, w in enumerate(forecast_weights(list(abscissae), len(factors), timestep, "newton")):
            per_factor[j] += weight * w
    error = weighted_forecasts.clone()
    for weight, factor in zip(per_factor, factors):
        error.sub_(factor.to(error.dtype), alpha=weight)
    return error


def newest_share(abscissae: Sequence[float], x: float) -> float:
    """The weight of the newest point (abscissae[0]) in the interpolant through all `abscissae` at `x`."""
    share = 1.0
    for other in abscissae[1:]:
        share *= (x - other) / (abscissae[0] - other)
    return share
