"""Which kind of sampler a model runs under: from a pipeline's scheduler or a bare model's class,
and what apply_taylorseer makes of it."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
from torch import nn

from taylorseer import TaylorSeerConfig, apply_taylorseer
from taylorseer.wiring.samplers import model_sampler, scheduler_sampler
from toy_models import tiny_dit

diffusers = pytest.importorskip("diffusers")


@pytest.mark.unit
@pytest.mark.parametrize(
    ("scheduler", "expected"),
    [
        (lambda: diffusers.FlowMatchEulerDiscreteScheduler(shift=3.0), "flow"),
        (lambda: diffusers.FlowMatchHeunDiscreteScheduler(), "flow"),
        (
            lambda: diffusers.UniPCMultistepScheduler(
                prediction_type="flow_prediction", use_flow_sigmas=True
            ),
            "flow",
        ),
        (lambda: diffusers.DDIMScheduler(), "diffusion"),
        (lambda: diffusers.DPMSolverMultistepScheduler(use_karras_sigmas=True), "diffusion"),
        (lambda: diffusers.EulerDiscreteScheduler(), "diffusion"),
        (lambda: object(), None),
    ],
    ids=["flowmatch-euler", "flowmatch-heun", "unipc-flow", "ddim", "dpm-karras", "euler", "not-a-scheduler"],
)
def test_the_scheduler_tells_flow_from_diffusion(scheduler, expected):
    assert scheduler_sampler(scheduler()) == expected


@pytest.mark.unit
def test_a_bare_model_is_known_by_its_class():
    assert model_sampler(tiny_dit()) == "diffusion"
    assert model_sampler(diffusers.FluxTransformer2DModel(
        patch_size=1, in_channels=4, num_layers=1, num_single_layers=1, attention_head_dim=8,
        num_attention_heads=2, joint_attention_dim=16, pooled_projection_dim=16, axes_dims_rope=(2, 2, 4),
    )) == "flow"  # fmt: skip
    assert model_sampler(nn.Linear(2, 2)) is None


@pytest.mark.integration
def test_apply_fills_in_the_sampler_the_scheduler_wins_and_an_explicit_one_is_kept():
    model = tiny_dit()
    with apply_taylorseer(model) as handle:
        assert handle.config.sampler == "diffusion"
    flow_pipe = SimpleNamespace(
        components={"transformer": model, "scheduler": diffusers.FlowMatchEulerDiscreteScheduler()}
    )
    with apply_taylorseer(flow_pipe) as handle:
        assert handle.config.sampler == "flow"  # the scheduler, not the model's class
        assert handle.config.spread_placement(50) == TaylorSeerConfig(sampler="flow").spread_placement(50)
    with apply_taylorseer(model, TaylorSeerConfig(sampler="flow", order=3)) as handle:
        assert handle.config.sampler == "flow" and handle.config.order == 3


@pytest.mark.integration
def test_an_unknown_model_keeps_no_sampler():
    class Unknown(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.blocks = nn.ModuleList(nn.Linear(4, 4) for _ in range(2))

        def forward(self, x, timestep):
            for block in self.blocks:
                x = x + block(x)
            return x

    with apply_taylorseer(Unknown()) as handle:
        assert handle.config.sampler is None and handle.config == TaylorSeerConfig()
