"""Unit tests of the offline placement error model used by fast calibration."""

import math

import pytest
import torch

from taylorseer.core.error_model import fit_weights, forecast_errors, positions, predicted_error

pytestmark = pytest.mark.unit


def trajectory(degree: int, steps: int = 12, elements: int = 5) -> tuple[torch.Tensor, list[float]]:
    """Recorded outputs that are a polynomial of `degree` in the step, (steps, elements)."""
    torch.manual_seed(0)
    coefficients = torch.randn(degree + 1, elements, dtype=torch.float64)
    x = torch.arange(steps, dtype=torch.float64)
    values = sum(c * x[:, None] ** k for k, c in enumerate(coefficients))
    return values, x.tolist()


def test_forecasts_of_a_low_degree_trajectory_are_exact_and_higher_degrees_are_not():
    values, x = trajectory(degree=2)
    full = {0, 1, 2, 6, 11}
    assert torch.all(forecast_errors(values, x, full, order=2, form="newton") < 1e-18)
    errors = forecast_errors(values, x, full, order=1, form="newton")
    assert torch.all(errors[[3, 4, 5, 7, 8]] > 1e-8)  # order 1 misses the curvature
    assert torch.all(errors[sorted(full)] == 0)  # full steps cost nothing


def test_corrected_gaps_cost_their_interpolation_miss_and_the_last_gap_its_forecast_miss():
    values, x = trajectory(degree=2)  # the interpolation through three full steps is exact
    full = {0, 1, 3, 6, 9}  # gaps 2, 4-5, 7-8 are corrected at 3, 6, 9; 10-11 follow the last full step
    errors = forecast_errors(values, x, full, order=1, form="newton", corrected=True)
    assert torch.all(errors[:10] < 1e-18) and torch.all(errors[10:] > 1e-8)
    slope = (values[9] - values[6]) / 3
    forecast_misses = torch.stack([values[9] + slope * k - values[9 + k] for k in (1, 2)])
    shared = torch.mean(forecast_misses.sum(0) ** 2) / 2  # the last gap: its summed misses, shared
    assert torch.allclose(errors[10:], shared.expand(2))
    uncorrected = forecast_errors(values, x, full, order=1, form="newton")
    assert torch.allclose(uncorrected[10:], torch.mean(forecast_misses**2, dim=1))  # per step


def test_corrected_misses_that_cancel_over_a_gap_cost_nothing():
    x = [float(step) for step in range(7)]
    values = torch.zeros(7, 3, dtype=torch.float64)
    values[1], values[2] = 1.0, -1.0  # off the interpolant (zero) by +1 and -1
    errors = forecast_errors(values, x, {0, 3, 6}, order=1, form="newton", corrected=True)
    assert torch.all(errors[[1, 2]] == 0)
    assert torch.all(forecast_errors(values, x, {0, 3, 6}, order=1, form="newton")[[1, 2]] == 1.0)


def test_forecast_errors_need_step_zero_full():
    values, x = trajectory(degree=1)
    with pytest.raises(ValueError, match="step 0 must be a full step"):
        forecast_errors(values, x, {1, 5}, order=1, form="newton")


def test_fit_weights_recovers_a_known_weighting():
    torch.manual_seed(1)
    placements = [torch.rand(20, dtype=torch.float64) for _ in range(4)]
    measured = [(errors, predicted_error(errors, 6.0, 0.3)) for errors in placements]
    slope, scale = fit_weights(measured)
    assert slope == 6.0 and math.isclose(scale, 0.3, rel_tol=1e-9)


def test_fit_weights_with_one_measurement_prefers_a_flat_weighting():
    errors = torch.rand(10, dtype=torch.float64)
    slope, scale = fit_weights([(errors, 2.0)])
    assert slope == 0.0 and math.isclose(predicted_error(errors, slope, scale), 2.0)
    assert positions(5).tolist() == [0.0, 0.25, 0.5, 0.75, 1.0]
