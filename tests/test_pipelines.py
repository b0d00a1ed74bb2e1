"""Whole diffusers pipelines (FLUX, Wan, HunyuanVideo, from `tiny_pipelines`) with the cache
applied to their transformer."""

from __future__ import annotations

from collections.abc import Callable

import pytest
import torch
from torch import Tensor

diffusers = pytest.importorskip("diffusers")
transformers = pytest.importorskip("transformers")
tokenizers = pytest.importorskip("tokenizers")

from taylorseer import TaylorSeerConfig, apply_taylorseer  # noqa: E402
from tiny_pipelines import BUILDERS, TEXT, Case, built_once  # noqa: E402

pytestmark = [pytest.mark.system, pytest.mark.usefixtures("one_thread")]

GRANULARITIES = ("model", "module", "block", "stack")


@pytest.fixture(scope="module")
def cases(tmp_path_factory) -> Callable[[str], Case]:
    return built_once(BUILDERS, tmp_path_factory)


def relative_error(output: Tensor, reference: Tensor) -> float:
    return ((output - reference).norm() / reference.norm()).item()


@pytest.mark.parametrize("granularity", GRANULARITIES)
@pytest.mark.parametrize("name", list(BUILDERS))
def test_two_runs_with_different_step_counts(cases, name, granularity):
    """8 then 6 steps with one handle: forecasts happen, nothing stale carries over, remove() is exact."""
    case = cases(name)
    reference = {steps: case(steps) for steps in (8, 6)}
    config = TaylorSeerConfig(interval=3, granularity=granularity)
    handle = apply_taylorseer(case.pipe.transformer, config)
    try:
        outputs = {}
        for steps in (8, 6):
            outputs[steps] = case(steps)
            stats = handle.stats
            assert stats["steps"] == steps and stats["forecast_steps"] > 0
            assert stats["full_calls"] == case.calls_per_step * stats["full_steps"]
            assert stats["forecast_calls"] == case.calls_per_step * stats["forecast_steps"]
    finally:
        handle.remove()
    with apply_taylorseer(case.pipe.transformer, config):
        assert torch.equal(case(6), outputs[6])  # the second run is what a fresh cache gives
    for steps, output in outputs.items():
        assert torch.isfinite(output).all()
        assert not torch.equal(output, reference[steps])
        assert relative_error(output, reference[steps]) < 0.5
    assert torch.equal(case(8), reference[8])  # removed: the original pipeline, bit for bit


def test_flux_new_resolution_and_two_images_per_prompt(cases):
    """A second run at another resolution with num_images_per_prompt=2 reuses no state of the first."""
    case = cases("flux")
    config = TaylorSeerConfig(interval=3)
    other = dict(height=48, width=32, num_images_per_prompt=2)
    reference = case(6, **other)
    with apply_taylorseer(case.pipe.transformer, config) as handle:
        case(8)
        second = case(6, **other)
        assert handle.stats["steps"] == 6 and handle.stats["forecast_steps"] > 0
    with apply_taylorseer(case.pipe.transformer, config):
        assert torch.equal(case(6, **other), second)
    assert second.shape == (2, 3, 48, 32) and torch.isfinite(second).all()
    assert relative_error(second, reference) < 0.5


def test_generate_writes_a_video_of_a_video_pipeline(cases, tmp_path):
    """`generate.run_pipeline` on a video pipeline: first frames as images, both videos in one file."""
    iio = pytest.importorskip("imageio.v3")
    pytest.importorskip("imageio_ffmpeg", reason="diffusers' export_to_video needs an ffmpeg backend")
    from taylorseer.cli import figure, generate

    case = cases("wan")
    folder = tmp_path / "wan"
    case.pipe.save_pretrained(folder)
    video = tmp_path / "out.mp4"
    sizes = dict(height=64, width=64, num_frames=5, max_sequence_length=TEXT)
    full, cached, _ = generate.run_pipeline(
        str(folder), TaylorSeerConfig(interval=3), 6, "a cat", 0, video, **sizes
    )
    assert full.images.shape == cached.images.shape == (1, 64, 64, 3)
    assert cached.full_steps < 6
    assert video.stat().st_size > 0
    frames = iio.imread(video)  # full compute and TaylorSeer side by side
    assert frames.shape == (5, 64, 2 * 64, 3)
    figure.save_side_by_side(tmp_path / "out.png", [("full", full.images), ("cached", cached.images)], 1, "t")
    assert (tmp_path / "out.png").read_bytes()[:4] == b"\x89PNG"


def test_cli_generate_on_a_video_pipeline_folder(cases, tmp_path, capsys):
    pytest.importorskip("imageio_ffmpeg", reason="diffusers' export_to_video needs an ffmpeg backend")
    from taylorseer.cli import main

    folder = tmp_path / "wan"
    cases("wan").pipe.save_pretrained(folder)
    output = tmp_path / "wan.png"
    arguments = ["generate", "--model", str(folder), "--steps", "6", "--interval", "3", "--height", "64"]
    assert main([*arguments, "--width", "64", "--frames", "5", "--output", str(output)]) == 0
    assert output.read_bytes()[:4] == b"\x89PNG" and output.with_suffix(".mp4").stat().st_size > 0
    assert "the videos side by side" in capsys.readouterr().out


def test_cli_calibrate_on_a_pipeline_folder_records_what_it_was_made_for(cases, tmp_path, capsys):
    from taylorseer.cli import main

    folder = tmp_path / "wan"
    cases("wan").pipe.save_pretrained(folder)
    output = tmp_path / "schedule.json"
    arguments = ["calibrate", "--model", str(folder), "--prompt", "a photo of a cat", "--steps", "8"]
    sizes = ["--height", "64", "--width", "64", "--frames", "5"]
    assert main([*arguments, *sizes, "--samples", "2", "--max-calls", "4", "--output", str(output)]) == 0
    printed = capsys.readouterr()
    assert "4 sampling runs" in printed.out and "held-out seeds: PSNR" in printed.out
    flow_default = TaylorSeerConfig(sampler="flow").spread_placement(8)  # Wan's scheduler: flow matching
    assert f"default full steps {flow_default}," in printed.out
    assert "calibration: sampling runs" in printed.err  # the progress bar, with its total
    config = TaylorSeerConfig.from_json(output)
    assert config.schedule == "calibrated" and config.num_steps == 8 and config.sampler == "flow"
    assert len(config.full_steps) == TaylorSeerConfig().full_step_budget(8)
    made_for = config.calibrated_for
    assert made_for["scheduler"] == "FlowMatchEulerDiscreteScheduler"
    assert made_for["model_class"] == "WanTransformer3DModel" and made_for["model"] == str(folder)
    flux = cases("flux")
    warning = "made for model_class 'WanTransformer3DModel', not 'FluxTransformer2DModel'"
    with pytest.warns(UserWarning, match=warning):
        apply_taylorseer(flux.pipe, config).remove()
