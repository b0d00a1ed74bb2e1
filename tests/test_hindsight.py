"""Hindsight correction: the sampler weights match the real samplers' steps, the course error is
the weighted gap of forecasts against the interpolant, and where it applies it is on by itself."""

import pytest
import torch

from taylorseer import TaylorSeerConfig
from taylorseer.api.pipelines import hindsight_for
from taylorseer.core import hindsight
from taylorseer.core.forecast import forecast_weights, update_factors
from taylorseer.models.gaussian_diffusion import GaussianDiffusion
from taylorseer.runtime.hindsight import Hindsight

pytestmark = pytest.mark.unit
ALPHAS = hindsight.linear_alphas_cumprod(**hindsight.LINEAR_BETAS)


def test_the_diffusion_weight_is_ddims_coefficient_of_the_noise_prediction():
    diffusion = GaussianDiffusion("10")
    x, eps, change = torch.randn(3, 2, 4, 4, 4, dtype=torch.float64)
    for i, timestep in enumerate(diffusion.timesteps):
        following = diffusion.timesteps[i + 1] if i + 1 < len(diffusion.timesteps) else None
        weight = hindsight.output_weight(
            "diffusion",
            hindsight.noise_level("diffusion", timestep, ALPHAS),
            hindsight.noise_level("diffusion", following, ALPHAS),
        )
        moved = diffusion.ddim_step(eps + change, x, i) - diffusion.ddim_step(eps, x, i)
        torch.testing.assert_close(moved, weight * change, rtol=1e-9, atol=1e-9)


def test_the_flow_weight_is_eulers_step_in_sigma():
    from diffusers import FlowMatchEulerDiscreteScheduler

    first, second = (FlowMatchEulerDiscreteScheduler(shift=3.0) for _ in range(2))
    for scheduler in (first, second):
        scheduler.set_timesteps(6)
    x, velocity, change = torch.randn(3, 2, 5)
    timesteps = first.timesteps.tolist()
    for i, timestep in enumerate(timesteps):
        following = timesteps[i + 1] if i + 1 < len(timesteps) else None
        weight = hindsight.output_weight(
            "flow",
            hindsight.noise_level("flow", timestep, None),
            hindsight.noise_level("flow", following, None),
        )
        moved = (
            first.step(velocity + change, timestep, x).prev_sample
            - second.step(velocity, timestep, x).prev_sample
        )
        torch.testing.assert_close(
            moved, weight / 1000 * change, rtol=1e-4, atol=1e-6
        )  # timesteps: 1000 sigma


def test_the_noise_level_ends_clean_and_interpolates_between_timesteps():
    assert hindsight.noise_level("diffusion", None, ALPHAS) == (1.0, 0.0)
    assert hindsight.noise_level("flow", None, None) == (1.0, 0.0)
    low, high = (hindsight.noise_level("diffusion", t, ALPHAS)[1] for t in (500, 501))
    assert low < hindsight.noise_level("diffusion", 500.5, ALPHAS)[1] < high
    with pytest.raises(ValueError, match="alphas_cumprod"):
        hindsight.noise_level("diffusion", 10, None)


def test_the_next_timestep_is_exact_for_even_and_quadratic_spacing():
    assert hindsight.next_timestep([999.0, 979.0]) == 959.0
    quadratic = [1000 - 3 * k - 0.5 * k * k for k in range(5)]
    assert hindsight.next_timestep(quadratic[1:4]) == pytest.approx(quadratic[4])
    with pytest.raises(ValueError, match="two steps"):
        hindsight.next_timestep([1.0])


def test_the_course_error_weighs_each_forecast_against_the_interpolant():
    factors, abscissae = [], []
    for t in (900.0, 800.0, 700.0):
        factors, abscissae = update_factors(
            factors, abscissae, torch.randn(4, dtype=torch.float64), t, 2, "newton"
        )
    gap = [(760.0, 0.3), (730.0, -0.2)]
    forecasts = torch.randn(2, 4, dtype=torch.float64)
    weighted = sum(w * f for (_, w), f in zip(gap, forecasts))
    expected = sum(
        w * (f - sum(c * v for c, v in zip(factors, forecast_weights(abscissae, 3, t, "newton"))))
        for (t, w), f in zip(gap, forecasts)
    )
    torch.testing.assert_close(hindsight.course_error(weighted, gap, factors, abscissae), expected)


def test_forecasts_on_the_interpolant_need_no_correction():
    """Outputs linear in the timestep are forecast exactly: every full step comes back as it ran."""
    correction = Hindsight("flow")
    slope, offset = torch.randn(2, 3, dtype=torch.float64)
    full_steps = {0, 1, 4, 7, 9}
    for step, timestep in enumerate(torch.linspace(1.0, 0.1, 10).tolist()):
        output = offset + slope * timestep
        if step in full_steps:
            returned, kept = correction.full(0, timestep, output, last=step == 9)
            torch.testing.assert_close(returned, output)
            torch.testing.assert_close(kept, output)
        else:
            correction.forecast(0, timestep, output)


def test_a_gap_of_wrong_forecasts_is_corrected_and_the_last_step_is_not():
    correction = Hindsight("flow")
    output = torch.ones(3)
    correction.full(0, 1.0, output, last=False)
    correction.forecast(0, 0.9, output + 1)  # off by one
    returned, kept = correction.full(0, 0.8, output, last=False)
    # w = B = -0.1, E = -0.1; F_i's share at 0.9 is 1/2, g = -0.1 / 2 / 0.8; D = E / 0.8 / (1 - g) = -2/17;
    # kept = F - D; returned = F - sigma' / B_i * D with sigma' = 0.7 (extrapolated), B_i = -0.1
    torch.testing.assert_close(kept, output + 2 / 17)
    torch.testing.assert_close(returned, output - 14 / 17)
    correction.forecast(0, 0.7, output + 1)
    returned, kept = correction.full(0, 0.6, output, last=True)
    assert torch.equal(returned, output) and torch.equal(kept, output)


def test_a_forecast_that_turned_full_is_not_counted():
    correction = Hindsight("diffusion", ALPHAS)
    output = torch.ones(3)
    correction.full(0, 999.0, output, last=False)
    correction.forecast(0, 979.0, output + 5)  # refused (non-finite, probe): the step runs in full
    returned, _ = correction.full(0, 979.0, output, last=False)
    assert torch.equal(returned, output)
    assert correction.branches[0].recent == [999.0, 979.0]


def test_dropping_forgets_a_branch():
    correction = Hindsight("flow")
    correction.full(0, 1.0, torch.ones(3), last=False)
    correction.full(1, 1.0, torch.ones(3), last=False)
    assert correction.nbytes > 0
    correction.drop(1)
    assert set(correction.branches) == {0}
    correction.drop()
    assert correction.nbytes == 0


class _Scheduler:
    """Stands for a diffusers scheduler of the given class name."""

    def __init__(self, name: str, **config) -> None:
        self.__class__ = type(name, (_Scheduler,), {})
        self.config = config
        self.alphas_cumprod = torch.linspace(0.999, 0.01, 1000)


class _Pipeline:
    def __init__(self, scheduler) -> None:
        self.components = {"scheduler": scheduler}


def test_it_applies_by_itself_only_where_its_assumptions_hold():
    model = torch.nn.Linear(2, 2)
    assert hindsight_for(TaylorSeerConfig(sampler="flow"), model).sampler == "flow"
    assert hindsight_for(TaylorSeerConfig(), model) is None  # sampler unknown
    assert hindsight_for(TaylorSeerConfig(sampler="flow", granularity="module"), model) is None
    assert hindsight_for(TaylorSeerConfig(sampler="flow", correction=False), model) is None
    assert hindsight_for(TaylorSeerConfig.official("dit"), model) is None
    unipc = _Pipeline(_Scheduler("UniPCMultistepScheduler"))
    assert hindsight_for(TaylorSeerConfig(sampler="diffusion"), unipc) is None
    ddim = hindsight_for(TaylorSeerConfig(sampler="diffusion"), _Pipeline(_Scheduler("DDIMScheduler")))
    torch.testing.assert_close(ddim.alphas_cumprod, torch.linspace(0.999, 0.01, 1000, dtype=torch.float64))
    assert hindsight_for(TaylorSeerConfig(sampler="diffusion"), model).alphas_cumprod is not None
    v_prediction = _Pipeline(_Scheduler("DDIMScheduler", prediction_type="v_prediction"))
    assert hindsight_for(TaylorSeerConfig(sampler="diffusion"), v_prediction) is None


def test_asking_for_it_where_it_does_not_apply_is_an_error():
    with pytest.raises(ValueError, match="granularity='model'.*'module'"):
        TaylorSeerConfig(correction=True, granularity="module")
    with pytest.raises(ValueError, match="correction must be"):
        TaylorSeerConfig(correction=1)
    with pytest.raises(ValueError, match="unknown kind"):
        hindsight_for(TaylorSeerConfig(correction=True), torch.nn.Linear(2, 2))
    with pytest.raises(ValueError, match="UniPCMultistepScheduler"):
        hindsight_for(
            TaylorSeerConfig(correction=True, sampler="flow"),
            _Pipeline(_Scheduler("UniPCMultistepScheduler")),
        )


def test_the_on_and_off_page_gives_each_settings_difference():
    from taylorseer.bench.correction import markdown

    rows = [dict(model="dit-digits", steps=50, interval=5, full=12, on=50.5, off=49.25)]
    page = markdown(rows, samples=8, seed=3, seconds=60)
    assert "| dit-digits | 50 | 5 | 12 | 50.50 | 49.25 | +1.25 |" in page
    assert "8 samples (noise seed 3)" in page
