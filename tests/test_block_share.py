import pytest
import torch

from taylorseer.bench.block_share import FRACTIONS, block_shares
from toy_models import ToyDiT, nonuniform_timesteps, run

pytestmark = pytest.mark.unit


def test_the_share_compares_the_output_with_every_block_passed_through():
    model, latents, timesteps = (
        ToyDiT().double(),
        torch.randn(2, 4, 8, dtype=torch.float64),
        nonuniform_timesteps(5),
    )
    shares = block_shares(model, lambda steps: run(model, nonuniform_timesteps(steps), latents), steps=5)
    assert len(shares) == len(FRACTIONS)
    for fraction, share in zip(FRACTIONS, shares):
        timestep = torch.full((2,), timesteps[round(fraction * 4)], dtype=torch.float64)
        with torch.no_grad():
            full = model(hidden_states=latents, timestep=timestep)
            direct = model.final(latents)  # no block: the latents straight into the final layer
        assert share == pytest.approx(float((full - direct).norm() / full.norm()), rel=1e-12)
    assert "forward" not in vars(model) and not any("forward" in vars(block) for block in model.blocks)


def test_a_model_never_called_is_refused():
    with pytest.raises(ValueError, match="ToyDiT was not called"):
        block_shares(ToyDiT(), lambda steps: None, steps=5)
