"""Schedule calibration on a tiny DiT: the searched placement beats the even one it starts from."""

import pytest
import torch

from taylorseer import TaylorSeerConfig, apply_taylorseer
from taylorseer.api import maybe_applied
from taylorseer.calibrate import calibrate, neighbours, spread, starting_points
from taylorseer.models.dit import sample
from toy_models import tiny_dit

pytestmark = pytest.mark.integration


def test_spread_and_neighbours():
    assert spread(50, 12, 3) == [0, 1, 2, 7, 12, 18, 23, 28, 33, 39, 44, 49]
    assert spread(10, 2, 2) == [0, 1]
    late = spread(50, 12, 2, density=2.0)
    assert late == [0, 1, 10, 18, 25, 32, 37, 41, 45, 47, 48, 49]  # gaps shrink toward the end
    assert spread(10, 9, 1, density=3.0) == [0, 2, 3, 4, 5, 6, 7, 8, 9]  # crowded: still distinct
    points = starting_points(50, 12)
    assert spread(50, 12, 3) in points and late in points and len(points) == len(set(map(tuple, points)))
    with pytest.raises(ValueError, match="budget"):
        spread(10, 11, 2)
    moves = neighbours([0, 1, 5, 9], 10, fixed=2, reach=1)
    assert [0, 1, 4, 9] in moves and [0, 1, 6, 9] in moves and [0, 1, 5, 8] in moves
    assert all(len(set(m)) == 4 and m[:2] == [0, 1] and max(m) < 10 for m in moves)


def test_calibrated_schedule_lowers_the_error_and_holds_on_other_seeds():
    model = tiny_dit()

    def sampler(seed):
        noise = torch.randn(4, 4, 8, 8, generator=torch.Generator().manual_seed(seed))
        labels = torch.arange(4)

        def run(config):
            with maybe_applied(model, config, 20):
                return sample(model, noise, labels, steps=20, cfg_scale=3.0)

        return run

    base = TaylorSeerConfig(order=1)
    config, report = calibrate(sampler(0), base, num_steps=20, budget=6, reach=2, max_evaluations=60)
    assert report["mse"] < report["start_mse"]
    assert len(config.full_steps) == 6 and config.full_steps[:2] == (0, 1) and config.num_steps == 20
    held_out = sampler(1)
    reference = held_out(None)
    start = TaylorSeerConfig(order=1, full_steps=tuple(spread(20, 6, 2)), num_steps=20)

    def error(c):
        return torch.mean((held_out(c) - reference) ** 2).item()

    assert error(config) < error(start)
    with apply_taylorseer(model, config) as handle:
        held_out(None)
        assert handle.stats["full_steps"] == 6
