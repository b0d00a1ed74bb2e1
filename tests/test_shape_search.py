"""`bench.shape_search`: a placement shape per interval, scored on several models at 28 and 50 steps."""

import pytest

from taylorseer.bench import shape_search
from taylorseer.bench.placement_score import PlacementScore
from taylorseer.calibrate import starting_points
from taylorseer.config import TaylorSeerConfig
from taylorseer.core.schedule import stretched

pytestmark = pytest.mark.integration


def test_the_search_starts_from_the_shipped_placement_then_the_spread_family():
    found = shape_search.starts("diffusion", 50, 12)
    assert found[0] == TaylorSeerConfig(sampler="diffusion").spread_placement(50, 12)
    assert len({tuple(steps) for steps in found}) == len(found)  # each once
    assert {tuple(steps) for steps in found[1:]} <= {tuple(steps) for steps in starting_points(50, 12)}


def test_a_shape_is_scored_at_its_interval_over_every_step_count(one_thread):
    score = PlacementScore("dit-digits", samples=1, seed=0)
    mean = shape_search.shape_score(score, interval=7, shape_steps=50)
    shipped = TaylorSeerConfig(sampler="diffusion").spread_placement(50, 9)
    front_loaded = list(range(9))  # every full step at the start: the rest of each run forecast
    assert mean(front_loaded) + 10 < mean(shipped) < float("inf")
    stretched_to_28 = stretched(28, 6, [step / 49 for step in shipped])  # interval 7's count at 28 steps
    assert mean(shipped) == (score(28, stretched_to_28) + score(50, shipped)) / 2
    assert score(50, shipped) == score(50, tuple(shipped))  # measured once, the same seeds every time


def test_the_search_moves_full_steps_while_the_worst_chooser_gains(one_thread):
    scores = {name: PlacementScore(name, samples=1, seed=0) for name in ("dit-digits", "dit-narrow")}
    found = shape_search.search("diffusion", scores, interval=7, steps=50, max_evaluations=4)
    assert found["shipped"] == TaylorSeerConfig(sampler="diffusion").spread_placement(50, 9)
    assert len(found["found"]) == 9 and found["found"][0] == 0  # the first step stays full

    def worst(shape: list[int]) -> float:
        return min(shape_search.shape_score(score, 7, 50)(shape) for score in scores.values())

    assert worst(found["found"]) >= worst(found["best start"]) >= worst(found["shipped"])


def test_the_table_names_the_choosers_and_ships_what_carried_over_to_the_held_out_models():
    def row(interval, label, shape, a, b, c, checked_c=30.0):
        return dict(interval=interval, label=label, shape=shape, a=a, b=b, c=c,
                    checked=dict(a=a, b=b, c=checked_c))  # fmt: skip

    rows = [
        row(3, "shipped", [0, 4, 9], 39.0, 41.0, 39.5),
        row(3, "found", [0, 5, 9], 40.0, 41.5, 39.25),  # c loses: not shipped
        row(5, "shipped", [0, 5, 7, 9], 35.0, 35.0, 35.0),
        row(5, "found", [0, 6, 8, 9], 36.0, 36.0, 36.0, checked_c=29.0),  # c loses at other step counts
        row(7, "shipped", [0, 9], 30.0, 30.0, 30.0),
        row(7, "found", [0, 8], 31.0, 31.0, 30.0),  # c ties: the found one ships
    ]
    assert shape_search.to_ship(rows, ["c"]) == {3: [0, 4, 9], 5: [0, 5, 7, 9], 7: [0, 8]}
    assert shape_search.to_ship(rows, []) == {3: [0, 5, 9], 5: [0, 6, 8, 9], 7: [0, 8]}
    table = shape_search.markdown("diffusion", rows, ["a", "b"], ["c"], (20, 36), seconds=120, samples=4)
    assert "chosen by the worst of a, b; c took no part." in table
    assert "| 3 | found: 0, 5, 9 | 40.00 | 41.50 | 39.25 |" in table
    assert (
        "at (20, 36) steps, which no search looked at" in table
        and "| 5 | found | 36.00 | 36.00 | 29.00 |" in table
    )
    assert table.count("| interval | shape (its full steps) | a | b | c |") == 1  # the first table's
    assert table.count("| interval | shape | a | b | c |\n|---:|---|---:|---:|---:|") == 1  # the check's
    assert "- interval 3: 0, 4, 9\n- interval 5: 0, 5, 7, 9\n- interval 7: 0, 8" in table
