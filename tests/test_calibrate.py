"""Schedule calibration on a tiny DiT: the fast calibration and the exhaustive search."""

import math

import pytest
import torch

from taylorseer import TaylorSeerConfig, apply_taylorseer
from taylorseer.api import maybe_applied
from taylorseer.calibrate import (
    _reference,
    calibrate,
    improves_consistently,
    neighbours,
    sample_errors,
    search,
    spread,
    starting_points,
    with_full_steps,
)
from taylorseer.models.dit import sample
from taylorseer.runtime.recording import Trajectory
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


def tiny_sampler(model, seed: int, steps: int = 20, calls: list | None = None):
    """`sampler(config)` over 4 fixed samples of a tiny DiT; `calls` collects the configs it got."""
    noise = torch.randn(4, 4, 8, 8, generator=torch.Generator().manual_seed(seed))
    labels = torch.arange(4)

    def run(config):
        if calls is not None:
            calls.append(config)
        with maybe_applied(model, config, steps):
            return sample(model, noise, labels, steps=steps, cfg_scale=3.0)

    return run


def held_out_error(model, config) -> float:
    run = tiny_sampler(model, seed=1)
    return torch.mean((run(config) - run(None)) ** 2).item()


def test_the_search_lowers_the_error_and_holds_on_other_seeds():
    model = tiny_dit()
    base = TaylorSeerConfig(order=1)
    config, report = search(tiny_sampler(model, 0), base, num_steps=20, budget=6, reach=2, max_evaluations=60)
    assert report["mse"] < report["start_mse"] and report["sampler_calls"] <= 60
    assert len(config.full_steps) == 6 and config.full_steps[:2] == (0, 1) and config.num_steps == 20
    start = TaylorSeerConfig(order=1, full_steps=tuple(spread(20, 6, 2)), num_steps=20)
    assert held_out_error(model, config) < held_out_error(model, start)
    with apply_taylorseer(model, config) as handle:
        tiny_sampler(model, 1)(None)
        assert handle.stats["full_steps"] == 6


def test_the_search_starts_from_the_default_placement_of_the_detected_sampler():
    model = tiny_dit()  # a DiT: apply_taylorseer detects a diffusion sampler
    calls = []
    base = TaylorSeerConfig(order=1)
    sampler = tiny_sampler(model, 0, calls=calls)
    config, report = search(sampler, base, num_steps=20, budget=6, max_evaluations=30)
    assert calls[0].interval == 1 and config.sampler == "diffusion"
    default = TaylorSeerConfig(order=1, sampler="diffusion").spread_placement(20, 6)
    assert calls[1].full_steps == tuple(default)  # the first placement measured is the default
    run = tiny_sampler(model, 0)
    default_mse = torch.mean((run(with_full_steps(config, default, 20)) - run(None)) ** 2).item()
    assert report["start_mse"] == pytest.approx(default_mse) and report["mse"] <= report["start_mse"]


def test_calibrate_in_a_dozen_calls_comes_close_to_the_search_and_beats_the_default_placement():
    model = tiny_dit()
    base = TaylorSeerConfig(order=1)
    calls = []
    config, report = calibrate(tiny_sampler(model, 0, calls=calls), base, num_steps=20, budget=6)
    assert len(calls) == report["sampler_calls"] <= 12
    assert calls[0].interval == 1 and calls[0].granularity == "model"  # the recording run: full compute
    assert report["mse"] <= report["start_mse"] and len(config.full_steps) == 6 and config.full_steps[0] == 0
    searched, _ = search(tiny_sampler(model, 0), base, num_steps=20, budget=6, reach=2, max_evaluations=60)
    fast, slow = held_out_error(model, config), held_out_error(model, searched)
    default = with_full_steps(base, base.spread_placement(20, 6), 20)
    assert fast <= held_out_error(model, default)
    assert 10 * math.log10(fast / slow) < 1.0  # within 1 dB of the exhaustive search


def test_calibrate_refuses_a_sampler_whose_run_does_not_match_num_steps():
    model = tiny_dit()
    with pytest.raises(ValueError, match="not once at each of the 30 steps"):
        calibrate(tiny_sampler(model, 0, steps=20), TaylorSeerConfig(order=1), num_steps=30, budget=6)


def test_calibrate_refuses_a_sampler_that_returns_one_sample():
    run = tiny_sampler(tiny_dit(), 0)
    with pytest.raises(ValueError, match=r"at least 2 samples .* shape \(1, 4, 8, 8\)"):
        calibrate(lambda config: run(config)[:1], TaylorSeerConfig(order=1), num_steps=20, budget=6)


def test_a_recording_keeps_one_stream_per_run_and_branch():
    trajectory = Trajectory(elements=2)
    for run in range(2):
        for step in range(3):
            for branch in (0, 1):
                trajectory.add(run, step, branch, x=float(step), output=torch.full((4,), 10.0 * run + step))
    assert trajectory.steps == {stream: [0, 1, 2] for stream in range(4)}
    assert trajectory.stacked(2)[:, 0].tolist() == [10.0, 11.0, 12.0]  # run 1, branch 0
    assert trajectory.values[2][0].dtype == torch.float32  # kept at half the memory of float64
    assert trajectory.stacked(2).dtype == torch.float64  # what the offline estimates compute in
    trajectory.add(2, 0, 0, x=0.0, output=torch.ones(1))  # a smaller last call (a chunked sampler)
    assert trajectory.steps[4] == [0] and trajectory.values[4][0].tolist() == [1.0]
    dtypes = ((torch.bfloat16, torch.float32), (torch.float64, torch.float64))  # produced, kept
    for run, (produced, kept) in enumerate(dtypes, start=3):
        trajectory.add(run, 0, 0, x=0.0, output=torch.full((4,), 1 / 3, dtype=produced))
        assert trajectory.values[run + 2][0].dtype == kept  # at least float32, else the output's own


def test_a_recording_knows_whether_its_run_corrects_in_hindsight():
    model = tiny_dit()  # a DiT at granularity "model": the correction applies unless turned off
    for correction, corrected in ((None, True), (False, False)):
        config = TaylorSeerConfig(order=1, correction=correction)
        _, _, trajectory = _reference(tiny_sampler(model, 0), config, num_steps=20)
        assert trajectory.corrected is corrected


def test_calibrate_takes_a_sampler_that_runs_the_model_once_per_sample():
    model = tiny_dit()

    def one_at_a_time(config):  # like a pipeline called once per seed inside one apply_taylorseer
        noise = torch.randn(3, 4, 8, 8, generator=torch.Generator().manual_seed(0))
        with maybe_applied(model, config, 20):
            return torch.cat(
                [
                    sample(model, n[None], torch.tensor([k]), steps=20, cfg_scale=3.0)
                    for k, n in enumerate(noise)
                ]
            )

    _, _, trajectory = _reference(one_at_a_time, TaylorSeerConfig(order=1), num_steps=20)
    assert list(trajectory.steps.values()) == [list(range(20))] * 3  # one stream per call
    config, report = calibrate(one_at_a_time, TaylorSeerConfig(order=1), num_steps=20, budget=6, max_calls=4)
    assert (
        report["sampler_calls"] == 4 and len(config.full_steps) == 6 and report["mse"] <= report["start_mse"]
    )


def test_a_placement_must_beat_the_default_consistently_not_just_in_total_or_on_most_samples():
    default = torch.tensor([1.0, 1.0, 1.0, 1.0])
    assert improves_consistently(torch.tensor([0.5, 0.55, 0.6, 0.45]), default)
    assert not improves_consistently(torch.tensor([0.5, 0.5, 0.5, 1.2]), default)  # 3 of 4: too few
    assert improves_consistently(torch.tensor([0.5] * 9 + [1.2] * 3), torch.ones(12))  # 9 of 12: enough
    assert not improves_consistently(torch.tensor([0.2, 0.5]), default[:2])  # 2 samples ask for much more
    assert not improves_consistently(torch.tensor([0.2, 0.9, 0.95, 1.5]), default)  # 3 of 4, scattered
    assert not improves_consistently(torch.tensor([0.01, 1.1, 1.1, 1.1]), default)  # one carries the total
    assert not improves_consistently(torch.tensor([0.0, 1.1, 1.1, 1.1]), default)  # even an exact one
    assert not improves_consistently(default.clone(), default)  # no gain at all
    with pytest.raises(ValueError, match="at least 2 samples, got 1"):
        improves_consistently(torch.tensor([0.5]), torch.tensor([1.0]))
    output, reference = torch.zeros(3, 2, 2), torch.zeros(3, 2, 2)
    output[1] = 2.0
    assert torch.equal(sample_errors(output, reference), torch.tensor([0.0, 4.0, 0.0]))
    assert sample_errors(torch.ones(5), torch.zeros(5)).shape == (1,)  # no batch dim: one sample


def test_calibrate_takes_a_placement_that_gains_on_every_sample():
    run = tiny_sampler(tiny_dit(), 0)
    base = TaylorSeerConfig(order=1, sampler="diffusion")
    default = tuple(base.spread_placement(20, 6))

    def default_off_everywhere(config):  # the default: 0.2 off on every sample; the others 0.1
        if config is None or config.interval == 1:
            return run(config)
        return run(None) + (0.2 if config.full_steps == default else 0.1)

    config, report = calibrate(default_off_everywhere, base, num_steps=20, budget=6)
    assert config.full_steps != default
    assert report["mse"] == pytest.approx(0.01, rel=1e-3) and report["start_mse"] == pytest.approx(
        0.04, rel=1e-3
    )


def test_calibrate_keeps_the_default_when_no_placement_gains_consistently():
    model = tiny_dit()
    run = tiny_sampler(model, 0)
    base = TaylorSeerConfig(order=1, sampler="diffusion")  # what calibrate detects on the DiT
    default = tuple(base.spread_placement(20, 6))

    def one_lucky_sample(config):  # the other placements: far better on sample 0, worse on 1-3
        reference = run(None)
        if config is None or config.interval == 1:
            return run(config)  # full compute, and the recording run
        offsets = (1.0, 0.1) if config.full_steps == default else (0.0, 0.2)
        return reference + torch.tensor([offsets[0], *[offsets[1]] * 3]).view(4, 1, 1, 1)

    config, report = calibrate(one_lucky_sample, base, num_steps=20, budget=6)
    assert config.full_steps == default and report["mse"] == report["start_mse"] > 0.25
    assert report["sampler_calls"] == 12  # it did measure other placements, better in total


def test_the_reference_run_can_learn_the_sampler_without_keeping_the_trajectory():
    run = tiny_sampler(tiny_dit(), 0)
    reference, base, trajectory = _reference(run, TaylorSeerConfig(), num_steps=20, elements=0)
    assert base.sampler == "diffusion" and torch.equal(reference, run(None).double())
    assert trajectory.values and all(v.numel() == 0 for values in trajectory.values.values() for v in values)


def test_the_calibration_seeds_page_gives_each_run_and_the_means_per_model():
    from taylorseer.bench.calibration_seeds import markdown

    runs = ((1, 53.0, 54.0, 100), (2, 51.0, 55.0, 80))  # seed, calibrate, search, search's calls
    common = dict(model="dit-digits", default=50.0, calibrate_calls=12)
    rows = [dict(common, seed=seed, calibrate=c, search=s, search_calls=n) for seed, c, s, n in runs]
    page = markdown(rows, samples=100, seed=1000, seconds=60)
    assert "| dit-digits | 2 | 50.00 | 51.00 (12) | 55.00 (80) | -4.00 |" in page
    assert "| dit-digits | 50.00 | 52.00 | 54.50 | -2.50 |" in page  # means over the two seeds
