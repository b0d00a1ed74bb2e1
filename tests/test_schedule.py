"""Schedules against the full-step patterns of the official code (shared/ALGORITHM.md)."""

import pytest

from taylorseer.core.schedule import full_step_indices, is_full_step, stretched

pytestmark = pytest.mark.unit


@pytest.mark.parametrize(
    ("interval", "warmup", "expected"),
    [
        (6, 3, [0, 1, 2, 8, 14, 20, 26, 32, 38, 44]),  # FLUX / diffusers / xDiT scripts
        (5, 1, [0, 5, 10, 15, 20, 25, 30, 35, 40, 45]),  # HunyuanVideo / Wan2.1
        (4, 1, list(range(0, 49, 4))),  # HiDream: 0 4 8 ... 48
        (3, 2, [0, *range(1, 50, 3)]),  # DiT: 0 1 4 7 ... 46 49
        (4, 2, [0, *range(1, 50, 4)]),  # DiT: 0 1 5 9 ... 45 49
        (5, 2, [0, *range(1, 47, 5)]),  # DiT: 0 1 6 11 ... 41 46
        (6, 2, [0, *range(1, 50, 6)]),  # DiT: 0 1 7 13 ... 43 49
    ],
)
def test_official_patterns(interval, warmup, expected):
    assert full_step_indices(50, interval, warmup) == expected


@pytest.mark.parametrize(
    ("interval", "warmup", "count"), [(6, 3, 10), (5, 1, 10), (4, 1, 13), (3, 2, 18), (5, 2, 11)]
)
def test_official_counts(interval, warmup, count):
    assert len(full_step_indices(50, interval, warmup)) == count


def test_final_full_forces_the_last_steps():
    assert full_step_indices(20, 5, 1, final_full=3) == [0, 5, 10, 15, 17, 18, 19]
    assert full_step_indices(20, 5, 1, final_full=0) == [0, 5, 10, 15]


def test_final_full_needs_the_run_length():
    with pytest.raises(ValueError, match="final_full=2"):
        is_full_step(3, 5, 1, final_full=2)


def test_explicit_list_with_negative_indices():
    steps = (0, 1, 7, 13, -3, -1)
    assert full_step_indices(20, 5, 1, full_steps=steps) == [0, 1, 7, 13, 17, 19]
    assert is_full_step(7, 5, 1, full_steps=(0, 7)) and not is_full_step(8, 5, 1, full_steps=(0, 7))
    with pytest.raises(ValueError, match="num_steps"):
        is_full_step(2, 5, 1, full_steps=(0, -1))


def test_interval_one_is_always_full():
    assert full_step_indices(12, 1, 1) == list(range(12))


def test_a_stretched_placement_gives_its_reference_back_and_keeps_its_shape_at_other_counts():
    reference = [0, 4, 11, 16, 21, 26, 31, 36, 40, 44, 47, 49]  # 12 of 50
    fractions = [step / 49 for step in reference]
    assert stretched(50, 12, fractions) == reference
    for num_steps, budget in ((28, 11), (28, 6), (50, 18), (100, 12), (12, 12), (20, 1)):
        steps = stretched(num_steps, budget, fractions)
        assert len(steps) == budget == len(set(steps)) and steps == sorted(steps)
        assert steps[0] == 0 and (budget == 1 or steps[-1] == num_steps - 1)
    assert stretched(100, 12, fractions) == [round(f * 99) for f in fractions]  # same shape, twice as long
    with pytest.raises(ValueError, match="fractions must increase"):
        stretched(50, 12, [0.0, 0.5, 0.4, 1.0])
    with pytest.raises(ValueError, match="budget \\(13\\)"):
        stretched(12, 13, fractions)
