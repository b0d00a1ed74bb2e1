"""`taylorseer generate` end to end on the bundled model, and its argument errors."""

import time
from pathlib import Path

import pytest
import torch

from taylorseer.cli import main


def test_generate_writes_the_side_by_side_png_and_prints_the_comparison(tmp_path, capsys):
    output = tmp_path / "grid.png"
    start = time.perf_counter()
    assert main(["generate", "--output", str(output)]) == 0
    assert time.perf_counter() - start < 60
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
    ],
)
def test_bad_arguments_exit_2_with_a_message(arguments, message, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["generate", *arguments])
    assert exit_info.value.code == 2
    error = capsys.readouterr().err
    assert "usage:" in error and message in error


def test_ctrl_c_while_writing_leaves_no_partial_file(tmp_path, monkeypatch):
    import matplotlib.figure

    from taylorseer import generate

    def interrupted(self, *args, **kwargs):
        Path(args[0]).write_bytes(b"half a png")
        raise KeyboardInterrupt

    monkeypatch.setattr(matplotlib.figure.Figure, "savefig", interrupted)
    images = torch.rand(4, 16, 16, 1)
    with pytest.raises(KeyboardInterrupt):
        generate.save_side_by_side(tmp_path / "out.png", [("a", images)], columns=2, title="t")
    assert list(tmp_path.iterdir()) == []
