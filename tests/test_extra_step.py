"""`bench.extra_step`: one more full step at each forecast step of a placement, on a bundled model."""

import pytest

from taylorseer.bench import extra_step
from taylorseer.config import TaylorSeerConfig

pytestmark = pytest.mark.integration


def test_with_one_more_adds_each_forecast_step_once():
    more = extra_step.with_one_more([0, 3, 7, 9], 10)
    assert [step for step, _ in more] == [1, 2, 4, 5, 6, 8]
    assert more[2] == (4, [0, 3, 4, 7, 9])


def test_placements_are_the_defaults_and_the_papers():
    found = extra_step.placements(TaylorSeerConfig(interval=3, sampler="diffusion"), 28)
    assert found["default"] == TaylorSeerConfig(interval=3, sampler="diffusion").spread_placement(28)
    assert found["paper's fixed"] == [0, 1, 2, 5, 8, 11, 14, 17, 20, 23, 26]
    assert found["default"] != found["paper's fixed"]


def test_each_change_is_measured_against_the_placements_own_psnr(one_thread):
    rows = extra_step.measure("dit-digits", steps=10, interval=3, samples=1, seed=0)
    assert [row["placement"] for row in rows] == ["default", "paper's fixed"]
    for row in rows:
        assert set(row["changes"]) == {step for step in range(10) if step not in row["full_steps"]}
        assert row["psnr"] < float("inf")  # something is forecast
    row = dict(model="m", placement="p", full_steps=[0, 2], psnr=40.0, changes={1: -1.5, 3: 0.5, 4: -0.5})
    table = extra_step.markdown([row], seconds=60, samples=1, steps=5)
    assert "| m | p [0, 2] | 40.00 | 2 of 3 | -0.50 | -1.50 | +0.50 |" in table
    assert "- m, p: 1: -1.50, 3: +0.50, 4: -0.50" in table
