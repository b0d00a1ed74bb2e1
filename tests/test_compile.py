"""torch.compile on a cached model: outputs as in eager mode, graphs bounded by neither depth nor steps."""

import pytest
import torch
from torch._dynamo.utils import counters

from taylorseer import TaylorSeerConfig, apply_taylorseer
from toy_models import ToyDiT, nonuniform_timesteps

pytestmark = [pytest.mark.integration, pytest.mark.usefixtures("one_thread")]


class Stateless(ToyDiT):
    """The toy without its call counter (a Python int attribute recompiles every call)."""

    def forward(self, hidden_states: torch.Tensor, timestep: torch.Tensor) -> torch.Tensor:
        temb = torch.sin(self.t_embedder(timestep[:, None] / 1000))
        for block in self.blocks:
            hidden_states = block(hidden_states, temb, timestep)
        return self.final(hidden_states)


def compiled_run(granularity: str, depth: int, steps: int, schedule: str = "fixed") -> tuple[int, bool]:
    """(graphs compiled, whether the compiled outputs equal eager ones) for one cached run."""
    torch._dynamo.reset()
    counters.clear()
    model = Stateless(depth=depth, modulated=True, mix=0.5)
    timesteps = nonuniform_timesteps(steps)
    x = torch.ones(2, 4, 8)
    config = TaylorSeerConfig(interval=3, granularity=granularity, schedule=schedule)
    with apply_taylorseer(model, config):
        eager = [model(hidden_states=x, timestep=torch.full((2,), t)) for t in timesteps]
    with apply_taylorseer(model, config) as handle:
        compiled = torch.compile(model, backend="eager")
        outputs = [compiled(hidden_states=x, timestep=torch.full((2,), t)) for t in timesteps]
        assert handle.stats["forecast_steps"] > 0
    same = all(torch.allclose(a, b, rtol=1e-5, atol=1e-6) for a, b in zip(outputs, eager))
    return counters["stats"]["unique_graphs"], same


@pytest.mark.parametrize("granularity", ["module", "stack", "model"])
def test_compiled_graphs_do_not_grow_with_depth_or_steps(granularity):
    small_graphs, small_same = compiled_run(granularity, depth=2, steps=10)
    large_graphs, large_same = compiled_run(granularity, depth=4, steps=20)
    assert small_same and large_same
    assert 0 < small_graphs == large_graphs <= 16


def test_adaptive_refresh_compiles_with_bounded_graphs():
    small_graphs, small_same = compiled_run("model", depth=2, steps=10, schedule="adaptive")
    large_graphs, large_same = compiled_run("model", depth=4, steps=20, schedule="adaptive")
    assert small_same and large_same
    assert 0 < small_graphs == large_graphs <= 24  # the probing forward, cut after block 0, adds a few
