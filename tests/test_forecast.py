"""The forecasting math on polynomials: exact where the form is exact, and not beyond."""

import math

import pytest
import torch

from taylorseer.core.forecast import forecast_weights, predict, update_factors

pytestmark = pytest.mark.unit

GRIDS = {
    "uniform-increasing": [0.0, 1.0, 2.0, 3.0, 4.0, 5.0],
    "uniform-decreasing": [49.0, 48.0, 47.0, 46.0, 45.0, 44.0],
    "nonuniform-increasing": [0.0, 0.3, 1.1, 1.5, 2.9, 3.2],
    "nonuniform-decreasing": [999.0, 871.5, 640.0, 402.25, 250.0, 61.0],
}


def polynomial(degree: int, x: float) -> torch.Tensor:
    """A (2, 3) tensor whose entries are fixed polynomials of degree `degree` in x."""
    coefficients = torch.arange(1.0, 7.0, dtype=torch.float64).reshape(2, 3)
    return sum(coefficients * (-0.5) ** k / (k + 1) * x**k for k in range(degree + 1))


def fit(points: list[float], order: int, form: str, degree: int):
    factors, abscissae = [], []
    for x in points:
        factors, abscissae = update_factors(factors, abscissae, polynomial(degree, x), x, order, form)
    return factors, abscissae


@pytest.mark.parametrize("grid", GRIDS)
@pytest.mark.parametrize("order", range(5))
@pytest.mark.parametrize("degree", range(5))
def test_newton_exact_up_to_its_order(grid, order, degree):
    points = GRIDS[grid]
    factors, abscissae = fit(points[: order + 1], order, "newton", degree)
    target = points[order + 1]  # extrapolate one step past the fitted points
    error = (predict(factors, abscissae, target, "newton") - polynomial(degree, target)).abs().max()
    scale = polynomial(degree, target).abs().max()
    if degree <= order:
        assert error <= 1e-9 * scale
    else:
        assert error > 1e-6 * scale  # a lower order cannot follow a higher-degree polynomial


@pytest.mark.parametrize("grid", ["uniform-increasing", "uniform-decreasing"])
@pytest.mark.parametrize("order", range(1, 5))
def test_taylor_exact_for_lines_on_uniform_grids(grid, order):
    points = GRIDS[grid]
    factors, abscissae = fit(points[: order + 1], order, "taylor", degree=1)
    for target in points[order + 1 :]:
        assert torch.allclose(predict(factors, abscissae, target, "taylor"), polynomial(1, target), atol=1e-9)


def test_taylor_is_not_exact_for_a_quadratic_where_newton_is():
    points = GRIDS["uniform-increasing"]
    taylor = fit(points[:3], 2, "taylor", degree=2)
    newton = fit(points[:3], 2, "newton", degree=2)
    truth = polynomial(2, 3.0)
    assert (predict(*taylor, 3.0, "taylor") - truth).abs().max() > 1e-3
    assert (predict(*newton, 3.0, "newton") - truth).abs().max() < 1e-9


def test_taylor_matches_the_papers_recursion_written_out():
    # Full steps 0, 1, 5 with f = x^3: d1 = (F1 - F0)/1, then d1' = (F5 - F1)/4, d2' = (d1' - d1)/4.
    f = {x: torch.tensor([float(x) ** 3]) for x in (0, 1, 5)}
    factors, abscissae = fit_values(f, order=2)
    d1_old = f[1] - f[0]
    d1 = (f[5] - f[1]) / 4
    d2 = (d1 - d1_old) / 4
    assert torch.allclose(factors[1], d1) and torch.allclose(factors[2], d2)
    expected = f[5] + d1 * 2 + d2 * 2**2 / math.factorial(2)
    assert torch.allclose(predict(factors, abscissae, 7.0, "taylor"), expected)


def fit_values(values: dict, order: int):
    factors, abscissae = [], []
    for x, value in values.items():
        factors, abscissae = update_factors(factors, abscissae, value, float(x), order, "taylor")
    return factors, abscissae


def test_order_zero_is_plain_reuse_and_orders_grow_one_per_full_step():
    factors, abscissae = [], []
    for count, x in enumerate([0.0, 1.0, 2.0, 3.0], start=1):
        factors, abscissae = update_factors(factors, abscissae, torch.tensor([x * x]), x, 2, "newton")
        assert len(factors) == min(count, 3) and abscissae[0] == x
    reuse, xs = update_factors([], [], torch.tensor([4.0]), 1.0, 0, "newton")
    assert predict(reuse, xs, 9.0, "newton").item() == 4.0


def test_factors_stored_in_low_precision_and_predicted_in_the_feature_dtype():
    factors, abscissae = [], []
    for x in [0.0, 1.0, 2.0]:
        value = polynomial(2, x).float()
        factors, abscissae = update_factors(factors, abscissae, value, x, 2, "newton", torch.bfloat16)
    assert all(f.dtype == torch.bfloat16 for f in factors)
    out = predict(factors, abscissae, 3.0, "newton", torch.float32)
    assert out.dtype == torch.float32
    assert torch.allclose(out, polynomial(2, 3.0).float(), rtol=3e-2)


def test_newton_weights_are_the_product_of_distances():
    assert forecast_weights([5.0, 3.0, 2.0], 3, 6.0, "newton") == [1.0, 1.0, 3.0]
    assert forecast_weights([5.0, 3.0, 2.0], 3, 6.0, "taylor") == [1.0, 1.0, 0.5]


def test_a_repeated_abscissa_is_rejected():
    factors, abscissae = update_factors([], [], torch.zeros(1), 3.0, 1, "newton")
    with pytest.raises(ValueError, match="3.0"):
        update_factors(factors, abscissae, torch.zeros(1), 3.0, 1, "newton")


def test_gap_ratio_limits_how_far_a_derivative_is_extrapolated():
    from taylorseer.core.forecast import usable_factors

    abscissae = [10.0, 9.0, 5.0]  # newest first: spans 1 (c_1) and 5 (c_2)
    assert usable_factors(abscissae, 11.0, None) == 3
    assert usable_factors(abscissae, 11.0, 1.0) == 3  # 1 step ahead: within both spans
    assert usable_factors(abscissae, 13.0, 1.0) == 1  # 3 ahead: more than c_1's span of 1, reuse only
    assert usable_factors(abscissae, 13.0, 4.0) == 3
    factors = [torch.full((2,), 1.0), torch.full((2,), 2.0), torch.full((2,), 3.0)]
    assert torch.equal(predict(factors, abscissae, 13.0, "newton", gap_ratio=1.0), factors[0])


def test_term_ratio_stops_the_series_at_the_first_growing_term():
    abscissae = [10.0, 9.0, 8.0]  # newton weights at 12: 1, 2, 2 * 3
    factors = [torch.full((2,), 1.0), torch.full((2,), 1.0), torch.full((2,), 0.5)]
    # terms 1, 2 and 3: the order-2 term (3) is 1.5 times the order-1 term (2)
    full = predict(factors, abscissae, 12.0, "newton")
    assert torch.equal(full, torch.full((2,), 6.0))
    assert torch.equal(predict(factors, abscissae, 12.0, "newton", term_ratio=2.0), full)
    assert torch.equal(predict(factors, abscissae, 12.0, "newton", term_ratio=1.0), torch.full((2,), 3.0))
    # at 11 the terms are 1 and 0.5 x 1 x 2 = 1: not growing, kept at ratio 1
    assert torch.equal(predict(factors, abscissae, 11.0, "newton", term_ratio=1.0), torch.full((2,), 3.0))


def test_term_ratio_once_a_term_is_dropped_every_higher_one_is():
    abscissae = [10.0, 9.0, 8.0, 7.0]  # weights at 11: 1, 1, 2, 6
    factors = [torch.zeros(3), torch.ones(3), torch.full((3,), 2.0), torch.full((3,), 0.5)]
    # terms 1, 4 (grows: dropped), 3 (smaller than 4 but follows a dropped term: dropped too)
    out = predict(factors, abscissae, 11.0, "newton", term_ratio=1.0)
    assert torch.equal(out, torch.ones(3))


def test_term_ratio_compares_half_precision_norms_in_float32():
    abscissae = [10.0, 9.0, 8.0]  # weights at 11: 1, 1, 2
    ones = torch.ones(4096, dtype=torch.float16)
    factors = [0 * ones, 2000 * ones, 1500 * ones]  # terms of norm 128000 and 192000: inf in float16
    out = predict(factors, abscissae, 11.0, "newton", term_ratio=1.0)
    assert out.dtype == torch.float16 and torch.equal(out, 2000 * ones)  # the growing term dropped
