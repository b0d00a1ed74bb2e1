"""The cache on a tiny diffusers FluxTransformer2DModel in a 30-step rectified-flow loop."""

import pytest
import torch

pytest.importorskip("diffusers")
from diffusers import FluxTransformer2DModel  # noqa: E402
from torch.utils.flop_counter import FlopCounterMode  # noqa: E402

from taylorseer import TaylorSeerConfig, apply_taylorseer  # noqa: E402

pytestmark = pytest.mark.integration

GRANULARITIES = ["module", "block", "stack", "model"]
TOKENS, TEXT = 64, 8  # an 8x8 latent grid, 8 text tokens


@pytest.fixture(scope="module")
def flux():
    torch.manual_seed(0)
    model = FluxTransformer2DModel(
        patch_size=1, in_channels=8, num_layers=2, num_single_layers=2, attention_head_dim=16,
        num_attention_heads=4, joint_attention_dim=32, pooled_projection_dim=32, axes_dims_rope=(4, 6, 6),
    )  # fmt: skip
    return model.eval()


def inputs(batch=2):
    generator = torch.Generator().manual_seed(0)
    rows, cols = torch.meshgrid(torch.arange(8.0), torch.arange(8.0), indexing="ij")
    return dict(
        noise=torch.randn(batch, TOKENS, 8, generator=generator),
        encoder_hidden_states=torch.randn(batch, TEXT, 32, generator=generator),
        pooled_projections=torch.randn(batch, 32, generator=generator),
        img_ids=torch.stack([torch.zeros(TOKENS), rows.flatten(), cols.flatten()], dim=-1),
        txt_ids=torch.zeros(TEXT, 3),
    )


@torch.no_grad()
def sample(model, steps=30, shift=3.0, cfg_calls=1, **conditioning):
    """Euler sampling on shifted sigmas; `cfg_calls=2` calls the model twice per step."""
    latents = conditioning.pop("noise")
    u = torch.linspace(1.0, 1.0 / steps, steps)
    sigmas = torch.cat([shift * u / (1 + (shift - 1) * u), torch.zeros(1)])
    for sigma, sigma_next in zip(sigmas[:-1], sigmas[1:]):
        timestep = sigma.expand(latents.shape[0])
        velocity = model(hidden_states=latents, timestep=timestep, return_dict=False, **conditioning)[0]
        if cfg_calls == 2:
            uncond = dict(
                conditioning, encoder_hidden_states=torch.zeros_like(conditioning["encoder_hidden_states"])
            )
            uncond_velocity = model(hidden_states=latents, timestep=timestep, return_dict=False, **uncond)[0]
            velocity = uncond_velocity + 2.0 * (velocity - uncond_velocity)
        latents = latents + (sigma_next - sigma) * velocity
    return latents


def flops(function):
    with FlopCounterMode(display=False) as counter:
        function()
    return counter.get_total_flops()


@pytest.mark.parametrize("granularity", GRANULARITIES)
def test_interval_five_cuts_flops_at_least_2_5x(flux, granularity):
    baseline = flops(lambda: sample(flux, **inputs()))
    with apply_taylorseer(flux, TaylorSeerConfig(interval=5, granularity=granularity)) as handle:
        cached = flops(lambda: sample(flux, **inputs()))
        assert handle.stats["forecast_steps"] > 0
    assert baseline / cached >= 2.5


@pytest.mark.parametrize("granularity", GRANULARITIES)
def test_remove_restores_bit_exact_outputs(flux, granularity):
    reference = sample(flux, **inputs())
    handle = apply_taylorseer(flux, TaylorSeerConfig(interval=5, granularity=granularity))
    cached = sample(flux, **inputs())
    assert not torch.equal(cached, reference)
    handle.remove()
    assert torch.equal(sample(flux, **inputs()), reference)


@pytest.mark.parametrize("granularity", GRANULARITIES)
def test_interval_one_is_bit_identical(flux, granularity):
    reference = sample(flux, steps=8, cfg_calls=2, **inputs())
    with apply_taylorseer(flux, TaylorSeerConfig(interval=1, granularity=granularity)):
        assert torch.equal(sample(flux, steps=8, cfg_calls=2, **inputs()), reference)


@pytest.mark.parametrize("granularity", GRANULARITIES)
def test_consecutive_runs_are_identical_and_close_to_full_compute(flux, granularity):
    reference = sample(flux, **inputs())
    with apply_taylorseer(flux, TaylorSeerConfig(interval=3, granularity=granularity)) as handle:
        first = sample(flux, **inputs())
        sample(flux, steps=12, **inputs(batch=3))  # a different run in between
        second = sample(flux, **inputs())
        assert handle.stats["steps"] == 30
    assert torch.equal(first, second)
    relative = ((first - reference).norm() / reference.norm()).item()
    assert relative < 0.1


def test_module_granularity_caches_the_papers_modules(flux):
    with apply_taylorseer(flux, TaylorSeerConfig(granularity="module")) as handle:
        # double blocks: joint attention (image + text outputs), image MLP, text MLP; single: proj_out
        assert handle.stats["cached_modules"] == 2 * 3 + 2 * 1


def test_separate_cfg_calls_keep_branches_isolated(flux):
    """Cond and uncond as two calls per step forecast exactly what each branch cached alone does."""
    conditioning = inputs()
    noise = conditioning.pop("noise")
    uncond = dict(conditioning, encoder_hidden_states=torch.zeros_like(conditioning["encoder_hidden_states"]))
    timesteps = torch.linspace(1.0, 0.05, 20)
    latents = [noise + 0.1 * k * torch.ones_like(noise) for k in range(20)]  # a fixed input per step

    def outputs(branches):
        return [
            [flux(hidden_states=x, timestep=t.expand(2), return_dict=False, **c)[0] for c in branches]
            for x, t in zip(latents, timesteps)
        ]

    config = TaylorSeerConfig(interval=4, granularity="module")
    with torch.no_grad():
        with apply_taylorseer(flux, config) as handle:
            both = outputs([conditioning, uncond])
            assert handle.stats["full_calls"] == 2 * handle.stats["full_steps"]
            assert handle.stats["forecast_calls"] == 2 * handle.stats["forecast_steps"] > 0
        for k, branch in enumerate([conditioning, uncond]):
            with apply_taylorseer(flux, config):
                alone = outputs([branch])
            assert all(torch.equal(a[k], b[0]) for a, b in zip(both, alone))
