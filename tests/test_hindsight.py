"""Hindsight correction: the sampler weights match the real samplers' steps, the course error is
the weighted gap of forecasts against the interpolant, and where it applies it is on by itself."""

import pytest
import torch

from taylorseer import TaylorSeerConfig, apply_taylorseer
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
            returned, kept = correction.full(0, step, timestep, output, last=step == 9)
            torch.testing.assert_close(returned, output)
            torch.testing.assert_close(kept, output)
        else:
            correction.forecast(0, step, timestep, output)


def test_a_gap_of_wrong_forecasts_is_corrected_and_the_last_step_is_not():
    correction = Hindsight("flow")
    output = torch.ones(3)
    correction.full(0, 0, 1.0, output, last=False)
    correction.forecast(0, 1, 0.9, output + 1)  # off by one
    returned, kept = correction.full(0, 2, 0.8, output, last=False)
    # w = B = -0.1, E = -0.1; F_i's share at 0.9 is 1/2, g = -0.1 / 2 / 0.8; D = E / 0.8 / (1 - g) = -2/17;
    # kept = F - D; returned = F - sigma' / B_i * D with sigma' = 0.7 (extrapolated), B_i = -0.1
    torch.testing.assert_close(kept, output + 2 / 17)
    torch.testing.assert_close(returned, output - 14 / 17)
    correction.forecast(0, 3, 0.7, output + 1)
    returned, kept = correction.full(0, 4, 0.6, output, last=True)
    assert torch.equal(returned, output) and torch.equal(kept, output)


def test_a_forecast_that_turned_full_is_not_counted():
    correction = Hindsight("diffusion", ALPHAS)
    output = torch.ones(3)
    correction.full(0, 0, 999.0, output, last=False)
    correction.forecast(0, 1, 979.0, output + 5)  # refused (non-finite, probe): the step runs in full
    returned, _ = correction.full(0, 1, 979.0, output, last=False)
    assert torch.equal(returned, output)
    assert correction.branches[0].recent == [999.0, 979.0]


def test_dropping_forgets_a_branch():
    correction = Hindsight("flow")
    correction.full(0, 0, 1.0, torch.ones(3), last=False)
    correction.full(1, 0, 1.0, torch.ones(3), last=False)
    assert correction.nbytes > 0
    correction.drop(1)
    assert set(correction.branches) == {0}
    correction.drop()
    assert correction.nbytes == 0


def _module(name: str) -> torch.nn.Module:
    """A module whose class is called `name`."""
    return type(name, (torch.nn.Module,), {})()


class _Scheduler:
    """Stands for a diffusers scheduler of the given class name."""

    def __init__(self, name: str, **config) -> None:
        self.__class__ = type(name, (_Scheduler,), {})
        self.config = config
        self.alphas_cumprod = torch.linspace(0.999, 0.01, 1000)
        self.timesteps = torch.tensor([999, 500, 1])


class _Pipeline:
    def __init__(self, scheduler, transformer="FluxTransformer2DModel") -> None:
        self.components = {"scheduler": scheduler, "transformer": _module(transformer)}


def test_it_applies_by_itself_only_where_its_assumptions_hold():
    flux, dit = _module("FluxTransformer2DModel"), _module("DiT")
    assert hindsight_for(TaylorSeerConfig(sampler="flow"), flux).sampler == "flow"
    assert hindsight_for(TaylorSeerConfig(sampler="diffusion"), dit).alphas_cumprod is not None
    assert hindsight_for(TaylorSeerConfig(), flux) is None  # sampler unknown
    assert hindsight_for(TaylorSeerConfig(sampler="flow"), torch.nn.Linear(2, 2)) is None  # class unknown
    assert hindsight_for(TaylorSeerConfig(sampler="flow", correction=True), torch.nn.Linear(2, 2)) is not None
    assert hindsight_for(TaylorSeerConfig(sampler="flow", granularity="module"), flux) is None
    assert hindsight_for(TaylorSeerConfig(sampler="flow", correction=False), flux) is None
    assert hindsight_for(TaylorSeerConfig.official("dit"), dit) is None
    assert hindsight_for(TaylorSeerConfig(sampler="diffusion", official_quirks=True), dit) is None
    for scheduler, transformer in [
        (_Scheduler("UniPCMultistepScheduler"), "FluxTransformer2DModel"),
        (_Scheduler("DDIMScheduler", prediction_type="v_prediction"), "PixArtTransformer2DModel"),
        (_Scheduler("FlowMatchEulerDiscreteScheduler", invert_sigmas=True), "FluxTransformer2DModel"),
        (_Scheduler("FlowMatchEulerDiscreteScheduler"), "Lumina2Transformer2DModel"),
    ]:
        sampler = "diffusion" if transformer.startswith("PixArt") else "flow"
        assert hindsight_for(TaylorSeerConfig(sampler=sampler), _Pipeline(scheduler, transformer)) is None
    ddim = _Pipeline(_Scheduler("DDIMScheduler"), "PixArtTransformer2DModel")
    levels = hindsight_for(TaylorSeerConfig(sampler="diffusion"), ddim).noise_by_step
    alpha_bar = float(ddim.components["scheduler"].alphas_cumprod[500])  # step 1 is timestep 500
    assert levels(1) == pytest.approx((alpha_bar**0.5, (1 - alpha_bar) ** 0.5))
    assert levels(3) == (1.0, 0.0)


def test_a_pipeline_reads_the_noise_levels_from_its_scheduler_from_its_begin_index():
    from diffusers import FlowMatchEulerDiscreteScheduler

    scheduler = FlowMatchEulerDiscreteScheduler(shift=3.0)
    scheduler.set_timesteps(10)
    scheduler.set_begin_index(4)  # img2img: the run starts at the fifth sigma
    levels = hindsight_for(TaylorSeerConfig(sampler="flow"), _Pipeline(scheduler)).noise_by_step
    assert levels(0) == (1.0, pytest.approx(float(scheduler.sigmas[4])))
    assert levels(6) == (1.0, 0.0)


def test_asking_for_it_where_it_does_not_apply_is_an_error():
    with pytest.raises(ValueError, match="granularity='model'.*'module'"):
        TaylorSeerConfig(correction=True, granularity="module")
    with pytest.raises(ValueError, match="correction must be"):
        TaylorSeerConfig(correction=1)
    with pytest.raises(ValueError, match="unknown kind for Linear"):
        hindsight_for(TaylorSeerConfig(correction=True), torch.nn.Linear(2, 2))
    with pytest.raises(ValueError, match="UniPCMultistepScheduler"):
        hindsight_for(
            TaylorSeerConfig(correction=True, sampler="flow"),
            _Pipeline(_Scheduler("UniPCMultistepScheduler")),
        )
    with pytest.raises(ValueError, match="prediction_type='v_prediction'"):
        scheduler = _Scheduler("DDIMScheduler", prediction_type="v_prediction")
        hindsight_for(TaylorSeerConfig(correction=True, sampler="diffusion"), _Pipeline(scheduler))


def test_the_on_and_off_page_gives_each_settings_difference():
    from taylorseer.bench.correction import markdown

    rows = [dict(model="dit-digits", steps=50, interval=5, full=12, on=50.5, off=49.25)]
    page = markdown(rows, samples=8, seed=3, seconds=60)
    assert "| dit-digits | 50 | 5 | 12 | 50.50 | 49.25 | +1.25 |" in page
    assert "8 samples (noise seed 3)" in page


class _AnswersItsCourse(torch.nn.Module):
    """output = F*(t) + (x - x*(t)) / sigma(t): F* linear in the timestep t, x* the latents of full
    compute. A forecast misses the second part; the correction's model of it is exact here."""

    def __init__(
        self, coefficients: torch.Tensor, sigma_at, reference: dict[float, torch.Tensor], as_tuple: bool
    ) -> None:
        super().__init__()
        self.coefficients, self.sigma_at, self.reference = coefficients, sigma_at, reference
        self.as_tuple = as_tuple  # (output, 0): the corrected tensor in a structure, beside a non-tensor

    def on_course(self, t: float) -> torch.Tensor:
        offset, slope = self.coefficients
        return offset + slope * t

    def forward(self, hidden_states: torch.Tensor, timestep: torch.Tensor) -> torch.Tensor:
        t = float(timestep.max())
        output = self.on_course(t) + (hidden_states - self.reference[t]) / self.sigma_at(t)
        return (output, 0) if self.as_tuple else output


@pytest.mark.parametrize(
    "sampler, branches, as_tuple", [("flow", 1, False), ("diffusion", 1, False), ("flow", 2, True)]
)
def test_each_corrected_full_step_puts_the_latents_back_on_course(sampler, branches, as_tuple):
    """Exact on this model, for each sampler; with two guidance branches called in turn (each
    keeps its own course) and an output that is a tuple."""
    steps, full_steps = 10, (0, 3, 6, 9)
    if sampler == "flow":  # Euler on the velocity; the timestep is sigma
        timesteps = [1 - s / steps for s in range(steps)]
        level = lambda t: hindsight.noise_level("flow", t, None)  # noqa: E731
    else:  # DDIM on the noise; the timestep indexes 1000 linear betas
        timesteps = [999.0 - 111 * s for s in range(steps)]
        level = lambda t: hindsight.noise_level("diffusion", t, ALPHAS)  # noqa: E731

    def step(x, output, s):
        (alpha, sigma), after = level(timesteps[s]), level(timesteps[s + 1] if s + 1 < steps else None)
        return after[0] / alpha * x + hindsight.output_weight(sampler, (alpha, sigma), after) * output

    torch.manual_seed(0)
    coefficients = torch.randn(2, 2, 6, dtype=torch.float64)
    if sampler == "diffusion":  # per timestep, not per sigma
        coefficients[1] /= 1000
    model = _AnswersItsCourse(coefficients, lambda t: level(t)[1], {}, as_tuple)
    x = torch.randn(2, 6, dtype=torch.float64)
    for s, t in enumerate(timesteps):  # full compute: on course
        model.reference[t] = x
        x = step(x, model.on_course(t), s)
    for correction in (True, False):
        config = TaylorSeerConfig(
            sampler=sampler, correction=correction, full_steps=full_steps, num_steps=steps, term_ratio=None
        )
        latents = []  # at each step, before it
        with apply_taylorseer(model, config):
            x = model.reference[timesteps[0]]
            for s, t in enumerate(timesteps):
                latents.append(x)
                timestep = torch.full((2,), t, dtype=torch.float64)
                outputs = [model(hidden_states=x, timestep=timestep) for _ in range(branches)]
                if as_tuple:
                    assert all(isinstance(o, tuple) and o[1] == 0 for o in outputs)
                    outputs = [o[0] for o in outputs]
                torch.testing.assert_close(outputs[-1], outputs[0])  # the branches keep alike courses
                x = step(x, outputs[-1], s)
        after_full = [i + 1 for i in full_steps[1:-1]]  # the steps after the corrected full steps 3, 6
        off_course = max((latents[s] - model.reference[timesteps[s]]).abs().max().item() for s in after_full)
        assert off_course < 1e-9 if correction else off_course > 1e-4
