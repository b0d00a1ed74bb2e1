"""Unit tests of the core's state: the step clock, the memory budget and a cached feature's factors."""

import pytest
import torch

from taylorseer.core.budget import BudgetExceeded, MemoryBudget
from taylorseer.core.clock import SchedulerClock, TimestepClock
from taylorseer.core.factors import CachedFeature, ForecastRule

pytestmark = pytest.mark.unit


def ticks(clock, timesteps: list[float]) -> list[tuple[int, int, int]]:
    """(run, step, branch) after each timestep."""
    placed = []
    for t in timesteps:
        clock.tick(t)
        placed.append((clock.run, clock.step, clock.branch))
    return placed


def test_clock_steps_on_new_values_and_branches_on_repeats():
    assert ticks(TimestepClock(), [999, 999, 800, 800, 600]) == [
        (1, 0, 0), (1, 0, 1), (1, 1, 0), (1, 1, 1), (1, 2, 0),
    ]  # fmt: skip


def test_clock_follows_either_direction_and_restarts_when_it_turns_back():
    clock = TimestepClock()
    assert ticks(clock, [0.0, 0.5, 1.0]) == [(1, 0, 0), (1, 1, 0), (1, 2, 0)]  # increasing
    assert ticks(clock, [0.2]) == [(2, 0, 0)]  # moved back toward the start: a new run
    assert ticks(clock, [0.1]) == [(2, 1, 0)]  # its direction is set by its own second step


def test_an_explicit_run_refuses_a_jump_back_and_restart_opens_a_new_run():
    clock = TimestepClock()
    clock.restart(num_steps=3, explicit=True)
    assert ticks(clock, [9, 8]) == [(1, 0, 0), (1, 1, 0)] and clock.num_steps == 3
    with pytest.raises(ValueError, match="moved back from 8 to 9 inside handle.run"):
        clock.tick(9)
    clock.restart()
    assert ticks(clock, [9]) == [(2, 0, 0)] and clock.num_steps is None


def test_scheduler_clock_counts_steps_by_advance_and_branches_in_between():
    lengths = iter([5, 3])
    clock = SchedulerClock(lambda: next(lengths))
    clock.start()
    placed = ticks(clock, [7, 7])  # the same value twice: branches of step 0, whatever the values
    clock.advance()
    placed += ticks(clock, [7])  # a repeated value after a step is the next step (bf16, DPM-Solver)
    assert placed == [(1, 0, 0), (1, 0, 1), (1, 1, 0)] and clock.num_steps == 5
    clock.start()  # a new run (interrupted or not), its length read at its first call
    assert ticks(clock, [1]) == [(2, 0, 0)] and clock.num_steps == 3


def test_budget_counts_each_key_once_and_raises_before_going_over():
    budget = MemoryBudget(limit=100)
    budget.reserve((1, 0), 60)
    budget.reserve((1, 0), 70)  # the same unit and branch again replaces its reservation
    with pytest.raises(BudgetExceeded) as raised:
        budget.reserve((2, 0), 40)
    assert (raised.value.needed, raised.value.limit) == (110, 100)
    assert budget.reserved == {(1, 0): 70}  # the refused reservation left nothing behind


def test_budget_releases_one_branch_or_all():
    budget = MemoryBudget(limit=1000)
    for key in ((1, 0), (1, 1), (2, 0)):
        budget.reserve(key, 10)
    budget.release(branch=0)
    assert budget.reserved == {(1, 1): 10}
    budget.release()
    assert budget.reserved == {}


def test_budget_without_limit_reserves_nothing():
    budget = MemoryBudget(limit=None)
    budget.reserve((1, 0), 10**15)
    assert budget.reserved == {}


def feature(order: int = 2, limit: int | None = None, dtype=None) -> CachedFeature:
    return CachedFeature("unit", ForecastRule("newton", order, dtype), MemoryBudget(limit))


def test_feature_forecasts_a_nested_output_exactly_and_keeps_its_structure_and_dtypes():
    unit = feature(order=2)
    a, b = torch.randn(2, 3, dtype=torch.float64), torch.randn(4, dtype=torch.float64)

    def output(x: float):  # quadratic in x; a tuple with a non-tensor leaf and a float32 tensor
        return (a + x * a * a, {"skip": None, "value": (b * x * x).float()})

    for x in (0.0, 1.0, 3.0):
        unit.record(0, output(x), x, order=2)
    predicted = unit.predict(0, 6.0)
    expected = output(6.0)
    torch.testing.assert_close(predicted[0], expected[0])
    assert predicted[1]["skip"] is None and predicted[1]["value"].dtype == torch.float32
    torch.testing.assert_close(predicted[1]["value"], expected[1]["value"])


def test_feature_order_grows_one_per_full_step_up_to_the_rule():
    unit = feature(order=2)
    for count, x in enumerate((0.0, 1.0, 2.0, 3.0), start=1):
        unit.record(0, torch.full((2,), x * x), x, order=2)
        assert len(unit.branches[0].factors[0]) == min(count, 3)


def test_feature_restarts_when_the_output_changes_shape_and_drops_per_branch():
    unit = feature(order=1)
    unit.record(0, torch.zeros(3), 0.0, order=1)
    unit.record(1, torch.zeros(3), 0.0, order=1)
    unit.record(0, torch.ones(5), 1.0, order=1)  # new shape: no difference against the old one
    assert len(unit.branches[0].factors[0]) == 1
    unit.drop(0)
    assert not unit.has(0) and unit.has(1)
    unit.drop()
    assert unit.nbytes == 0


def test_feature_reserves_its_full_order_in_the_storage_dtype_before_storing():
    unit = feature(order=2, limit=3 * 8 * 2 - 1, dtype=torch.float16)  # 3 factors of 8 halves: 48 bytes
    with pytest.raises(BudgetExceeded):
        unit.record(0, torch.zeros(8), 0.0, order=2)
    assert not unit.has(0)
    roomy = feature(order=2, limit=48, dtype=torch.float16)
    roomy.record(0, torch.zeros(8), 0.0, order=2)
    assert roomy.branches[0].factors[0][0].dtype == torch.float16 and roomy.nbytes == 16
