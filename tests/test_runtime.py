"""Unit tests of the per-call decision (`Runtime`), without any model."""

import json
import math
from pathlib import Path

import pytest
import torch

from taylorseer import TaylorSeerConfig
from taylorseer.bench import shape_search
from taylorseer.config import DIFFUSION_SHAPES, FLOW_SHAPES, Placement
from taylorseer.core.schedule import full_step_indices, spread, stretched
from taylorseer.runtime.calls import Runtime, forecast_verdict

pytestmark = pytest.mark.unit

SIGNATURE = (("x", (1, 4), torch.float32, torch.device("cpu")),)


def call(runtime: Runtime, timestep: float, signature=SIGNATURE, succeeded: bool = True):
    """One complete call; returns its context."""
    context = runtime.begin(timestep, signature)
    if context.full:
        runtime.features[0].record(context.branch, torch.full((4,), timestep), context.x, context.order)
    runtime.end(succeeded)
    return context


def with_feature(config: TaylorSeerConfig) -> Runtime:
    runtime = Runtime(config)
    runtime.new_feature("unit")
    return runtime


def test_the_schedule_decides_full_and_forecast_calls_per_step():
    runtime = with_feature(TaylorSeerConfig(interval=3, order=1))
    full = [call(runtime, t).full for t in range(20, 12, -1)]
    assert full == [True, True, False, False, True, False, False, True]  # warm-up 2, then every 3rd
    stats = runtime.stats
    assert (stats["full_steps"], stats["forecast_steps"], stats["steps"]) == (4, 4, 8)
    assert (stats["full_calls"], stats["forecast_calls"]) == (4, 4)


def test_cfg_branches_are_counted_once_per_step_and_forecast_alike():
    runtime = with_feature(TaylorSeerConfig(interval=2, order=0, warmup=1))
    contexts = [call(runtime, t) for t in (9, 9, 8, 8, 7, 7)]
    assert [(c.step, c.branch, c.full) for c in contexts] == [
        (0, 0, True), (0, 1, True), (1, 0, False), (1, 1, False), (2, 0, True), (2, 1, True),
    ]  # fmt: skip
    assert (runtime.stats["full_steps"], runtime.stats["full_calls"]) == (2, 4)


def test_new_input_shapes_run_in_full_and_drop_that_branch_only():
    runtime = with_feature(TaylorSeerConfig(interval=5, order=0, warmup=1))
    call(runtime, 9)
    call(runtime, 9)  # branch 1
    other = (("x", (2, 4), torch.float32, torch.device("cpu")),)
    assert call(runtime, 8, other).full  # scheduled forecast, but the inputs changed
    assert not call(runtime, 8).full  # branch 1 is untouched and still ready
    assert not call(runtime, 7, other).full  # branch 0 is ready for the new shapes now


def test_a_failed_call_resets_the_run():
    runtime = with_feature(TaylorSeerConfig(interval=5, order=0, warmup=1))
    call(runtime, 9)
    call(runtime, 8, succeeded=False)
    assert runtime.stats["steps"] == 0 and not runtime.features[0].has(0)
    assert call(runtime, 7).full  # nothing is ready: the next call runs in full


def test_a_forecast_that_is_not_finite_turns_full_and_is_counted():
    runtime = with_feature(TaylorSeerConfig(interval=5, order=0, warmup=1))
    call(runtime, 9)
    context = runtime.begin(8, SIGNATURE)
    assert not context.full
    assert not runtime.accept_forecast(context, (torch.tensor([1.0, math.inf]),), run_model=None)
    assert context.full
    runtime.end(True)
    stats = runtime.stats
    assert (stats["nonfinite_fallbacks"], stats["full_steps"], stats["forecast_steps"]) == (1, 2, 0)


class FixedProbe:
    def __init__(self, distance: float) -> None:
        self.value = torch.tensor(distance)

    def distance(self, context, run_model):
        return self.value


@pytest.mark.parametrize(("distance", "accepted"), [(0.05, True), (0.2, False)])
def test_the_probe_distance_against_the_error_budget_decides(distance, accepted):
    config = TaylorSeerConfig(schedule="adaptive", interval=4, order=0, warmup=1, error_budget=0.1)
    runtime = with_feature(config)
    runtime.probe = FixedProbe(distance)
    call(runtime, 9)
    context = runtime.begin(8, SIGNATURE)
    assert runtime.accept_forecast(context, torch.ones(2), run_model=None) is accepted
    runtime.end(True)
    assert runtime.stats["probe_refreshes"] == (0 if accepted else 1)


def test_adaptive_runs_in_full_after_interval_minus_one_forecasts_in_a_row():
    runtime = with_feature(TaylorSeerConfig(schedule="adaptive", interval=3, order=0, warmup=1))
    assert [call(runtime, t).full for t in range(9, 2, -1)] == [True, False, False, True, False, False, True]


def test_a_step_past_num_steps_and_reentrant_calls_raise():
    runtime = with_feature(TaylorSeerConfig(num_steps=2))
    call(runtime, 9)
    call(runtime, 8)
    with pytest.raises(ValueError, match="sampling step 2 is past num_steps=2"):
        runtime.begin(7, SIGNATURE)
    runtime = with_feature(TaylorSeerConfig())
    runtime.begin(9, SIGNATURE)
    with pytest.raises(RuntimeError, match="re-entrantly"):
        runtime.begin(9, SIGNATURE)


def test_official_quirk_stores_order_zero_before_the_end_of_warm_up():
    runtime = with_feature(TaylorSeerConfig.official(interval=4, order=2, first_enhance=3))
    orders = [runtime.begin(t, SIGNATURE).order for t in (9,)]
    runtime.end(True)
    orders += [call(runtime, t).order for t in (8, 7, 6)]
    assert orders == [0, 0, 2, 2]


def test_verdict_is_one_scalar_nan_when_not_finite():
    assert forecast_verdict(torch.ones(3), None) == 0.0
    assert math.isnan(forecast_verdict([torch.ones(3), torch.tensor([math.nan])], None))
    assert forecast_verdict(torch.ones(3), torch.tensor(0.25)) == 0.25
    assert math.isnan(forecast_verdict(torch.tensor([math.inf]), torch.tensor(0.25)))


@pytest.mark.parametrize("sampler", [None, "flow", "diffusion"])
def test_the_default_spread_schedule_runs_the_papers_count_and_ends_full(sampler):
    expected = TaylorSeerConfig(sampler=sampler).spread_placement
    runtime = with_feature(TaylorSeerConfig(interval=5, num_steps=50, sampler=sampler))
    full = [step for step, t in enumerate(range(50, 0, -1)) if call(runtime, t).full]
    assert len(full) == len(full_step_indices(50, 5, 3)) == 12  # no more than the paper's schedule
    assert full == expected(50) and full[-1] == 49
    assert TaylorSeerConfig(interval=3).full_step_budget(28) == 11
    runtime = with_feature(TaylorSeerConfig(interval=5, num_steps=28, final_full=2, sampler=sampler))
    full = [step for step, t in enumerate(range(28, 0, -1)) if call(runtime, t).full]
    budget = len(full_step_indices(28, 5, 3))
    assert set(full) == set(expected(28, budget)) | {26, 27} and len(expected(28, budget)) == budget


def test_each_sampler_has_its_placement_and_warmup_or_density_turn_a_shape_into_a_spread():
    flow, diffusion, unknown = (TaylorSeerConfig(sampler=s) for s in ("flow", "diffusion", None))
    for config, shapes in ((flow, FLOW_SHAPES), (diffusion, DIFFUSION_SHAPES)):
        for interval, shape in shapes.items():  # at 50 steps, each interval's count: the shape itself
            budget = TaylorSeerConfig(interval=interval).full_step_budget(50)
            assert config.spread_placement(50, budget) == [round(f * 49) for f in shape]
    assert flow.spread_placement(50, 14) == spread(50, 14, 1, 1.75)  # interval 4's count: no flow shape's
    assert diffusion.spread_placement(50, 14) == stretched(50, 14, DIFFUSION_SHAPES[5])  # the nearest
    # a sampler not known runs the diffusion shapes
    assert unknown.spread_placement(50) == diffusion.spread_placement(50) != flow.spread_placement(50)
    given = TaylorSeerConfig(sampler="diffusion", warmup=3)
    assert given.spread_placement(50, 12) == spread(50, 12, 3, 1.5)
    assert TaylorSeerConfig(sampler="flow", density=1.0).spread_placement(50, 12) == spread(50, 12, 1, 1.0)
    with pytest.raises(ValueError, match="sampler must be one of flow, diffusion; got 'ddpm'"):
        TaylorSeerConfig(sampler="ddpm")


def test_without_the_runs_length_spread_warns_and_uses_the_papers_placement():
    runtime = with_feature(TaylorSeerConfig(interval=5))
    with pytest.warns(UserWarning, match="needs its length.*paper's fixed placement"):
        full = [step for step, t in enumerate(range(20, 0, -1)) if call(runtime, t).full]
    assert full == full_step_indices(20, 5, TaylorSeerConfig().effective_warmup)


def test_a_run_takes_the_shape_of_the_interval_with_the_nearest_count_of_full_steps():
    sparse, dense = (0.0, 0.5, 1.0), (0.0, 0.25, 0.5, 0.75, 1.0)
    placement = Placement(leading=1, density=1.0, shapes={3: dense, 7: sparse})
    assert placement.shape_for(50, 18) == dense  # interval 3's count at 50 steps
    assert (
        placement.shape_for(50, 9) == placement.shape_for(50, 12) == sparse
    )  # 7's count, and nearer 9 than 18
    assert placement.shape_for(28, 10) == dense  # 11 at interval 3, 6 at 7
    assert Placement(leading=1, density=1.0).shape_for(50, 12) is None
    own_counts_only = Placement(leading=1, density=1.0, shapes={3: dense, 7: sparse}, stretch_shapes=False)
    assert own_counts_only.shape_for(50, 18) == dense and own_counts_only.shape_for(28, 6) == sparse
    assert own_counts_only.shape_for(50, 12) is None and own_counts_only.shape_for(28, 10) is None


@pytest.mark.parametrize(("sampler", "held_out"), [("flow", "flux-heldout"), ("diffusion", "dit-heldout")])
def test_each_interval_runs_the_shape_the_shape_search_says_to_ship(sampler, held_out):
    rows = json.loads((Path(__file__).parents[1] / "docs" / f"SHAPE-{sampler}.json").read_text())
    to_ship = shape_search.to_ship(rows, [held_out])
    assert set(to_ship) == {3, 5, 7}
    for interval, shape in to_ship.items():
        assert TaylorSeerConfig(interval=interval, sampler=sampler).spread_placement(50) == shape
