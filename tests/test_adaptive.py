"""Adaptive refresh: the first block probes each forecast step, and drifting steps run in full."""

import pytest
import torch
from torch import nn

from taylorseer import TaylorSeerConfig, apply_taylorseer
from toy_models import ToyDiT, nonuniform_timesteps, run

pytestmark = pytest.mark.integration

GRANULARITIES = ["module", "block", "stack", "model"]


def hidden(batch=2):
    return torch.randn(batch, 4, 8, generator=torch.Generator().manual_seed(1), dtype=torch.float64)


def adaptive(**fields):
    return TaylorSeerConfig(schedule="adaptive", abscissa="timestep", gap_ratio=None, **fields)


@pytest.mark.parametrize("granularity", GRANULARITIES)
def test_exact_forecasts_are_never_refreshed_and_the_cap_holds(granularity):
    """Unmodulated toy: every feature is quadratic in the timestep, so order 2 forecasts are exact."""
    model = ToyDiT().double()
    timesteps = nonuniform_timesteps(30)
    reference = run(model, timesteps, hidden())
    with apply_taylorseer(model, adaptive(interval=4, order=2, granularity=granularity)) as handle:
        outputs = run(model, timesteps, hidden())
        stats = handle.stats
    assert all(((o[0] - r[0]).norm() / r[0].norm()) < 1e-6 for o, r in zip(outputs, reference))
    assert stats["probe_refreshes"] == 0
    assert stats["full_steps"] == 9  # 0, 1, 2, then every 4th as the cap forces: 6, 10, ..., 26


def test_final_full_steps_run_in_full_under_adaptive_refresh():
    model = ToyDiT().double()
    timesteps = nonuniform_timesteps(30)
    config = adaptive(interval=4, order=2, final_full=3, num_steps=30)
    with apply_taylorseer(model, config) as handle:
        run(model, timesteps, hidden())
        stats = handle.stats
    assert stats["probe_refreshes"] == 0  # exact forecasts: only the cap and final_full force steps
    assert stats["full_steps"] == 9 + 3  # 0, 1, 2, 6, ..., 26 as without it, then 27, 28, 29


@pytest.mark.parametrize("granularity", GRANULARITIES)
def test_a_tiny_budget_refreshes_every_forecast_and_equals_full_compute(granularity):
    model = ToyDiT(modulated=True, mix=0.5).double()
    timesteps = nonuniform_timesteps(12)
    reference = run(model, timesteps, hidden())
    config = adaptive(interval=4, order=1, granularity=granularity, error_budget=1e-12)
    with apply_taylorseer(model, config) as handle:
        outputs = run(model, timesteps, hidden())
        stats = handle.stats
    assert all(torch.equal(o[0], r[0]) for o, r in zip(outputs, reference))
    assert stats["forecast_steps"] == 0 and stats["probe_refreshes"] == 12 - 2  # warm-up: order + 1


def test_the_probe_runs_only_the_first_block_and_refreshes_where_features_move():
    model = ToyDiT(depth=3, modulated=True, mix=0.5).double()
    timesteps = nonuniform_timesteps(30)
    reference = run(model, timesteps, hidden())
    later_blocks = []
    for block in model.blocks[1:]:
        block.register_forward_hook(lambda *_: later_blocks.append(1))
    budget = 1e-2
    with apply_taylorseer(model, adaptive(interval=30, order=1, error_budget=budget)) as handle:
        model.calls = 0
        outputs = run(model, timesteps, hidden())
        stats = handle.stats
    assert 0 < stats["probe_refreshes"] < stats["forecast_steps"]  # some steps drift, some do not
    assert model.calls == stats["full_calls"] + stats["forecast_calls"] + stats["probe_refreshes"]
    assert len(later_blocks) == 2 * stats["full_calls"]  # a probe stops after the first block
    errors = [((o[0] - r[0]).norm() / r[0].norm()).item() for o, r in zip(outputs, reference)]
    assert max(errors) < 2 * budget  # the block probe bounds the output's error here


def test_adaptive_needs_blocks_to_probe():
    class NoBlocks(nn.Module):
        def forward(self, hidden_states, timestep):
            return hidden_states * timestep[:, None, None]

    with pytest.raises(ValueError, match="no block list found"):
        apply_taylorseer(NoBlocks(), adaptive())


def test_adaptive_beats_an_even_schedule_with_as_many_full_steps_on_the_bundled_dit(one_thread):
    from taylorseer.bench.metrics import psnr
    from taylorseer.calibrate import spread, with_full_steps
    from taylorseer.models.bundled import load_bundled

    generator = load_bundled("dit-digits")
    noise, labels = generator.noise(8, seed=100), torch.arange(8)
    reference = generator.sample(noise, labels)
    config = TaylorSeerConfig(schedule="adaptive", order=1, interval=6, error_budget=0.1)
    with apply_taylorseer(generator.transformer, config) as handle:
        images = generator.sample(noise, labels)
        full_steps = handle.stats["full_steps"]
    even = with_full_steps(TaylorSeerConfig(order=1), spread(50, full_steps, 2), 50)
    assert 8 <= full_steps <= 16
    with apply_taylorseer(generator.transformer, even):
        evenly = generator.sample(noise, labels)
    assert psnr(images, reference) > psnr(evenly, reference) + 1.0
