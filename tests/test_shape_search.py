"""`bench.shape_search`: one placement shape scored on several models over the sweep's runs."""

import pytest

from taylorseer.bench import shape_search
from taylorseer.calibrate import starting_points
from taylorseer.config import TaylorSeerConfig

pytestmark = pytest.mark.integration


def test_the_search_starts_from_the_shipped_placement_then_the_spread_family():
    found = shape_search.starts("diffusion", 50, 12)
    assert found[0] == TaylorSeerConfig(sampler="diffusion").spread_placement(50, 12)
    assert len({tuple(steps) for steps in found}) == len(found)  # each once
    assert {tuple(steps) for steps in found[1:]} <= {tuple(steps) for steps in starting_points(50, 12)}


def test_a_shape_is_scored_over_every_step_count_and_interval(one_thread):
    score = shape_search.model_score("dit-digits", samples=1, seed=0, shape_steps=50)
    shipped = TaylorSeerConfig(sampler="diffusion").spread_placement(50, 12)
    front_loaded = list(range(12))  # every full step at the start: the rest of each run forecast
    assert score(front_loaded) + 10 < score(shipped) < float("inf")
    assert score(shipped) == score(list(shipped))  # measured once, the same seeds every time


def test_the_table_names_the_choosers_and_the_held_out_models():
    rows = [dict(label="found", shape=[0, 5, 9], a=40.0, b=41.5, c=39.25)]
    table = shape_search.markdown("diffusion", rows, ["a", "b"], ["c"], seconds=120, samples=4)
    assert "chosen by the worst of a, b; c took no part." in table
    assert "| found: 0, 5, 9 | 40.00 | 41.50 | 39.25 |" in table
