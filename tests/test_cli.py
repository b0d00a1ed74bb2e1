"""`taylorseer generate` end to end on the bundled model, and its argument errors."""

import json
import re
from importlib.metadata import version
from pathlib import Path

import pytest
import torch

from taylorseer.cli import main

pytestmark = pytest.mark.system


def _seconds(line: str) -> tuple[float, float, float]:
    """(median, fastest, slowest) from a summary line like 'full compute: 1.23 s (1.10-1.40) ...'."""
    found = re.search(r": +([\d.e-]+) s \(([\d.e-]+)-([\d.e-]+)\)", line)
    assert found, line
    return float(found[1]), float(found[2]), float(found[3])


@pytest.mark.usefixtures("one_thread")  # tiny models: threads only wait for each other
def test_generate_times_repeated_runs_and_writes_the_comparison(tmp_path, capsys):
    output = tmp_path / "grid.png"
    arguments = ["--steps", "10", "--classes", "1", "--repeats", "2", "--output", str(output)]
    assert main(["generate", *arguments]) == 0
    assert output.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert not list(tmp_path.glob(".*partial"))
    captured = capsys.readouterr()
    printed = captured.out
    assert "median (fastest-slowest) of 2 timed runs" in printed and "/10 full steps" in printed
    assert "dB vs full compute" in printed
    lines = printed.splitlines()
    full = _seconds(next(line for line in lines if line.startswith("full compute:")))
    cached = _seconds(next(line for line in lines if line.startswith("TaylorSeer  :")))
    for median, fastest, slowest in (full, cached):
        assert fastest <= median <= slowest
    ranges = r"(; ([\d.]+)-([\d.]+)x between runs)?"
    pattern = rf"speedup: latency ([\d.]+)x \(ratio of the medians{ranges}\), FLOPs [\d.]+x"
    speedup = re.search(pattern, printed)
    assert float(speedup[1]) == pytest.approx(full[0] / cached[0], rel=0.015)  # medians to 3 digits
    if speedup[2]:  # the ratios of the extreme runs
        assert float(speedup[3]) <= float(speedup[1]) <= float(speedup[4])
    for bar in ("full compute, warm-up", "full compute, timed run 2/2", "TaylorSeer, counting FLOPs"):
        assert bar in captured.err  # every progress bar says what it is


def test_measure_warms_up_times_the_repeats_and_counts_flops_apart():
    from taylorseer.cli.generate import measure

    calls, names = [], []
    a, b = torch.ones(8, 16), torch.ones(16, 4)

    def run():
        calls.append(len(names))  # the phase announced before this call
        return a @ b + len(calls)

    found = measure(run, "full compute", repeats=3, describe=names.append)
    assert names == [
        "full compute, warm-up",
        "full compute, timed run 1/3",
        "full compute, timed run 2/3",
        "full compute, timed run 3/3",
        "full compute, counting FLOPs",
    ]
    assert calls == [1, 2, 3, 4, 5]  # each run after its announcement
    assert torch.equal(found.output, a @ b + 1)  # the warm-up's output
    assert found.flops == 2 * 8 * 16 * 4  # one run's matmul, counted once
    assert found.spread[0] <= found.seconds <= found.spread[1]
    with pytest.raises(ValueError, match="repeats must be >= 1, got 0"):
        measure(run, "x", repeats=0)


def test_the_figure_shows_both_results_and_their_amplified_difference(tmp_path, monkeypatch):
    from taylorseer.cli import figure

    assert figure.amplification(torch.full((100,), 0.04)) == 20  # 50 x 0.04 would pass 1
    assert figure.amplification(torch.tensor([0.6] * 99 + [0.0])) == 1
    assert figure.amplification(torch.tensor([0.01] * 199 + [0.9])) == 100  # one outlier may saturate
    shown = []
    monkeypatch.setattr(figure, "_show", lambda axis, grid, colormap: shown.append((grid, colormap)))
    full = torch.rand(4, 16, 16, 1, generator=torch.Generator().manual_seed(0)) * 0.5
    cached = full.clone()
    cached[1] += 0.004  # the first row's second sample
    figure.save_side_by_side(tmp_path / "out.png", [("full", full), ("cached", cached)], columns=2, title="t")
    assert (tmp_path / "out.png").read_bytes()[:4] == b"\x89PNG"
    assert len(shown) == 2 * 3  # two rows of samples, each as full, cached and their difference
    difference, colormap = shown[2]
    assert colormap == "magma" and difference.nan_to_num(0).max().item() == pytest.approx(
        0.004 * 200, abs=1e-4
    )
    assert shown[5][0].nan_to_num(0).max().item() == 0  # the second row of samples: no difference


@pytest.mark.usefixtures("one_thread")  # tiny models: threads only wait for each other
@pytest.mark.parametrize(("schedule", "full_steps"), [("calibrated", "12/50"), ("adaptive", "/50")])
def test_calibrated_and_adaptive_schedules_from_the_cli(schedule, full_steps, tmp_path, capsys):
    output = tmp_path / "grid.png"
    arguments = [
        "generate",
        "--schedule",
        schedule,
        "--classes",
        "3",
        "--repeats",
        "1",
        "--output",
        str(output),
    ]
    assert main(arguments + (["--order", "1", "--interval", "6"] if schedule == "adaptive" else [])) == 0
    printed = capsys.readouterr().out
    assert f"{full_steps} full steps" in printed and output.is_file()


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        (["--schedule", "calibrated", "--steps", "20"], "num_steps=50, got --steps 20"),
        (["--schedule", "calibrated", "--model", "PIPELINE"], "unknown bundled model 'PIPELINE'"),
        (
            ["--schedule", "calibrated", "--order", "1"],
            "--order cannot be combined with --schedule calibrated",
        ),
    ],
)
def test_a_calibrated_schedule_needs_its_model_and_step_count(arguments, message, tmp_path, capsys):
    pipeline = _index_only(tmp_path / "pipeline", "FluxPipeline", "FluxTransformer2DModel")
    arguments = [pipeline if value == "PIPELINE" else value for value in arguments]
    with pytest.raises(SystemExit) as exit_info:
        main(["generate", *arguments, "--output", str(tmp_path / "out.png")])
    assert exit_info.value.code == 2 and message.replace("PIPELINE", pipeline) in capsys.readouterr().err


@pytest.mark.usefixtures("one_thread")  # tiny models: threads only wait for each other
def test_no_cache_writes_one_grid_in_the_format_of_the_extension(tmp_path, capsys):
    output = tmp_path / "full.jpg"
    arguments = ["--no-cache", "--steps", "4", "--classes", "1,7", "--repeats", "1", "--output", str(output)]
    assert main(["generate", *arguments]) == 0
    assert output.read_bytes()[:3] == b"\xff\xd8\xff"  # a JPEG, as the extension says
    printed = capsys.readouterr().out
    assert "TaylorSeer" not in printed and "median (fastest-slowest) of 1 timed run after" in printed


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        (["--steps", "0"], "positive integer"),
        (["--classes", "1,12"], "--classes"),
        (["--interval", "x"], "positive integer"),
        (["--order", "-1"], "order must be"),
        (["--output", "/nonexistent-folder/out.png"], "does not exist"),
        (["--output", "out.bmp"], "the figure cannot be written as '.bmp'; use one of"),
        (["--output", "out"], "no extension, and the extension gives the format; use one of"),
        (
            ["--model", "flux"],
            "'flux': not a bundled model (dit-digits, flux-digits",
        ),
        (["--model", "HERE"], "the folder has no model_index.json"),
        (["--prompt", "a cat"], "--prompt apply to diffusers pipelines only"),
        (["--height", "64", "--frames", "5"], "--height and --frames apply to diffusers pipelines only"),
        (["--model", "PIPELINE", "--classes", "1,2"], "--classes applies to the bundled models only"),
        (["--repeats", "0"], "positive integer"),
        (["bench", "--scorer", "/nonexistent-clip"], "not a local model folder"),
        (["bench", "--out", "HERE"], "already holds files; give a new or empty folder"),
        (["bench", "--out", "FILE"], "is a file; give a folder"),
        (["bench", "--sweep", "--samples", "10"], "it needs --samples 65 or more, got 10"),
        (["calibrate", "--samples", "1"], "2 samples per run (--samples per --prompt) to tell"),
        (["calibrate", "--samples", "0"], "--samples must be >= 1 and --max-calls >= 3, got 0, 12"),
    ],
)
def test_bad_arguments_exit_2_with_a_message(arguments, message, tmp_path, monkeypatch, capsys):
    (tmp_path / "file").write_text("x")
    places = {"HERE": str(tmp_path), "FILE": str(tmp_path / "file")}
    if "PIPELINE" in arguments:
        places["PIPELINE"] = _index_only(tmp_path / "pipeline", "FluxPipeline", "FluxTransformer2DModel")
    arguments = [places.get(value, value) for value in arguments]
    monkeypatch.chdir(tmp_path)
    command = [] if arguments[0] in ("bench", "calibrate") else ["generate"]
    with pytest.raises(SystemExit) as exit_info:
        main([*command, *arguments])
    assert exit_info.value.code == 2
    error = capsys.readouterr().err
    assert "usage:" in error and message in error
    assert not list(tmp_path.glob("*.png")) and not list(tmp_path.glob("bench-*"))  # before any work


def test_a_hub_id_is_left_to_diffusers_and_a_typo_is_not(tmp_path):
    from taylorseer.cli.checks import check_model

    bundled = ("dit-digits", "flux-digits")
    assert check_model("dit-digits", bundled) is True
    assert check_model("black-forest-labs/FLUX.1-dev", bundled) is False  # loaded from the hub cache
    (tmp_path / "model_index.json").write_text("{}")
    assert check_model(str(tmp_path), bundled) is False
    with pytest.raises(ValueError) as error:
        check_model("./not/here", bundled)
    assert str(error.value).startswith(
        "--model './not/here': not a bundled model (dit-digits, flux-digits) and no such folder exists"
    )


def test_a_missing_extra_is_named_before_any_work(monkeypatch, capsys):
    import importlib.util

    find_spec = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name: None if name == "tqdm" else find_spec(name))
    with pytest.raises(SystemExit) as exit_info:
        main(["generate"])
    assert exit_info.value.code == 2
    assert "taylorseer generate needs tqdm: pip install 'taylorseer[cli]'" in capsys.readouterr().err


def test_a_bench_without_the_peer_libraries_says_so_before_any_work(monkeypatch, capsys, tmp_path):
    import importlib.util

    from taylorseer.bench import runner

    find_spec = importlib.util.find_spec
    missing = lambda name: None if name == "cache_dit" else find_spec(name)  # noqa: E731
    monkeypatch.setattr(importlib.util, "find_spec", missing)
    monkeypatch.setattr(runner, "main", lambda args: 0)  # what runs once the checks pass
    with pytest.raises(SystemExit) as exit_info:
        main(["bench", "--out", str(tmp_path / "a")])
    assert exit_info.value.code == 2
    assert "taylorseer bench (its peers; or --no-peers) needs cache-dit" in capsys.readouterr().err
    assert main(["bench", "--no-peers", "--out", str(tmp_path / "b")]) == 0


def test_version_and_help_with_defaults(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["--version"])
    assert (
        exit_info.value.code == 0 and capsys.readouterr().out.strip() == f"taylorseer {version('taylorseer')}"
    )
    for command, defaults in (
        ("generate", ["(default: dit-digits)", "(default: 50)", "(default: 3)", "(default: taylorseer.png)"]),
        ("bench", ["(default: 100)", "(default: 1000)", "bench-<date>-<time>"]),
    ):
        with pytest.raises(SystemExit):
            main([command, "--help"])
        text = "".join(capsys.readouterr().out.split())  # argparse wraps lines, also at hyphens
        assert all(default.replace(" ", "") in text for default in defaults), (command, text)


@pytest.mark.parametrize(("rank", "printed"), [("0", True), ("1", False)])
def test_under_torchrun_only_rank_0_prints_errors(rank, printed, monkeypatch, capsys):
    monkeypatch.setenv("RANK", rank)
    with pytest.raises(SystemExit) as exit_info:
        main(["generate", "--steps", "0"])
    assert exit_info.value.code == 2  # every rank stops
    assert ("positive integer" in capsys.readouterr().err) is printed


def test_bench_writes_into_a_new_folder_by_default(tmp_path, monkeypatch):
    from taylorseer.bench import runner

    seen = []
    monkeypatch.setattr(runner, "main", lambda args: seen.append(args.out) or 0)
    monkeypatch.chdir(tmp_path)
    assert main(["bench", "--models", "dit-digits", "--samples", "2"]) == 0
    (out,) = seen
    assert out.parent == Path(".") and out.name.startswith("bench-") and not out.exists()


def test_ctrl_c_while_writing_leaves_no_partial_file(tmp_path, monkeypatch):
    import matplotlib.figure

    from taylorseer.cli import figure

    def interrupted(self, *args, **kwargs):
        Path(args[0]).write_bytes(b"half a png")
        raise KeyboardInterrupt

    monkeypatch.setattr(matplotlib.figure.Figure, "savefig", interrupted)
    images = torch.rand(4, 16, 16, 1)
    with pytest.raises(KeyboardInterrupt):
        figure.save_side_by_side(tmp_path / "out.png", [("a", images)], columns=2, title="t")
    assert list(tmp_path.iterdir()) == []


def _index_only(folder: Path, pipeline: str, transformer: str) -> str:
    """A pipeline folder holding only its model_index.json: all the checks before loading read."""
    diffusers = pytest.importorskip("diffusers")

    folder.mkdir()
    index = {"_class_name": pipeline, "_diffusers_version": diffusers.__version__}
    (folder / "model_index.json").write_text(json.dumps(index | {"transformer": ["diffusers", transformer]}))
    return str(folder)


ON_CPU = pytest.mark.skipif(torch.cuda.is_available(), reason="ring attention runs with a GPU")


@pytest.mark.parametrize(
    ("world", "arguments", "message"),
    [
        ("2", ["dit-digits", "--context-parallel", "ulysses"], "not the bundled model 'dit-digits'"),
        ("1", ["flux", "--context-parallel", "ulysses"], "launch it with torchrun"),
        ("2", ["hunyuan", "--context-parallel", "ulysses"], "HunyuanVideoTransformer3DModel"),
        ("2", ["flux"], "with --context-parallel ulysses|ring"),
        ("2", ["flux", "--context-parallel", "ulysses", "--cfg-parallel"], "do not combine"),
        ("2", ["flux", "--context-parallel", "sequence"], "invalid choice: 'sequence'"),
        pytest.param("2", ["flux", "--context-parallel", "ring"], "On CPU use", marks=ON_CPU),
    ],
)
def test_cli_refuses_a_bad_context_parallel_launch_with_exit_2(
    world, arguments, message, tmp_path, monkeypatch, capsys
):
    folders = {
        "flux": _index_only(tmp_path / "flux", "FluxPipeline", "FluxTransformer2DModel"),
        "hunyuan": _index_only(
            tmp_path / "hunyuan", "HunyuanVideoPipeline", "HunyuanVideoTransformer3DModel"
        ),
    }
    monkeypatch.setenv("WORLD_SIZE", world)
    model, *rest = arguments
    with pytest.raises(SystemExit) as exit_info:
        main(["generate", "--model", folders.get(model, model), *rest, "--output", str(tmp_path / "out.png")])
    assert exit_info.value.code == 2
    error = capsys.readouterr().err
    assert "usage:" in error and message in error
    assert not torch.distributed.is_initialized() and not (tmp_path / "out.png").exists()  # before any work
