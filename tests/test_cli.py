"""`taylorseer generate` end to end on the bundled model, and its argument errors."""

import json
from pathlib import Path

import pytest
import torch

from taylorseer.cli import main

pytestmark = pytest.mark.system


def test_generate_writes_the_side_by_side_png_and_prints_the_comparison(tmp_path, capsys):
    output = tmp_path / "grid.png"
    assert main(["generate", "--output", str(output)]) == 0
    assert output.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert not list(tmp_path.glob(".*partial"))
    printed = capsys.readouterr().out
    for expected in (
        "full compute",
        "TaylorSeer",
        "x latency",
        "x FLOPs",
        "dB vs full compute",
        "/50 full steps",
    ):
        assert expected in printed


@pytest.mark.parametrize(("schedule", "full_steps"), [("calibrated", "12/50"), ("adaptive", "/50")])
def test_calibrated_and_adaptive_schedules_from_the_cli(schedule, full_steps, tmp_path, capsys):
    output = tmp_path / "grid.png"
    arguments = ["generate", "--schedule", schedule, "--classes", "3,8", "--output", str(output)]
    assert main(arguments + (["--order", "1", "--interval", "6"] if schedule == "adaptive" else [])) == 0
    printed = capsys.readouterr().out
    assert f"{full_steps} full steps" in printed and output.is_file()


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        (["--schedule", "calibrated", "--steps", "20"], "num_steps=50, got --steps 20"),
        (["--schedule", "calibrated", "--model", "/some/pipeline"], "unknown bundled model '/some/pipeline'"),
        (
            ["--schedule", "calibrated", "--order", "1"],
            "--order cannot be combined with --schedule calibrated",
        ),
    ],
)
def test_a_calibrated_schedule_needs_its_model_and_step_count(arguments, message, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["generate", *arguments])
    assert exit_info.value.code == 2 and message in capsys.readouterr().err


def test_no_cache_writes_one_grid(tmp_path, capsys):
    output = tmp_path / "full.png"
    assert main(["generate", "--no-cache", "--steps", "10", "--classes", "1,7", "--output", str(output)]) == 0
    assert output.is_file() and "TaylorSeer" not in capsys.readouterr().out


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        (["--steps", "0"], "positive integer"),
        (["--classes", "1,12"], "--classes"),
        (["--interval", "x"], "positive integer"),
        (["--order", "-1"], "order must be"),
        (["--output", "/nonexistent-folder/out.png"], "does not exist"),
        (["bench", "--scorer", "/nonexistent-clip"], "not a local model folder"),
    ],
)
def test_bad_arguments_exit_2_with_a_message(arguments, message, capsys):
    command = [] if arguments[0] == "bench" else ["generate"]
    with pytest.raises(SystemExit) as exit_info:
        main([*command, *arguments])
    assert exit_info.value.code == 2
    error = capsys.readouterr().err
    assert "usage:" in error and message in error


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
