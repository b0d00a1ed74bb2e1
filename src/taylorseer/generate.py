"""`taylorseer generate`: the same seeds with full compute and with TaylorSeer, side by side."""

from __future__ import annotations

import dataclasses
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor
from torch.utils.flop_counter import FlopCounterMode

from taylorseer.api import apply_taylorseer
from taylorseer.config import TaylorSeerConfig
from taylorseer.metrics import psnr


@dataclass
class Result:
    """One way of sampling: its images (N, H, W, C) in [0, 1], seconds, FLOPs, full steps."""

    images: Tensor
    seconds: float
    flops: int
    full_steps: int | None = None


def measure(run: Callable[[], Tensor]) -> tuple[Tensor, float, int]:
    """(output, seconds of a plain run, FLOPs counted on a second run)."""
    start = time.perf_counter()
    output = run()
    seconds = time.perf_counter() - start
    with FlopCounterMode(display=False) as counter:
        run()
    return output, seconds, counter.get_total_flops()


def check_writable(path: Path) -> None:
    """Fail before any compute when `path` cannot be written."""
    folder = path.parent if str(path.parent) else Path(".")
    if path.is_dir():
        raise ValueError(f"--output {str(path)!r} is a directory; give a .png file path")
    if not folder.is_dir():
        raise ValueError(f"--output {str(path)!r}: the folder {str(folder)!r} does not exist")
    if not os.access(folder, os.W_OK):
        raise ValueError(f"--output {str(path)!r}: the folder {str(folder)!r} is not writable")


def image_grid(images: Tensor, columns: int) -> Tensor:
    """(N, H, W, C) in [0, 1] -> one (rows*(H+1)+1, columns*(W+1)+1, C) grid on a light border."""
    n, h, w, c = images.shape
    rows = -(-n // columns)
    grid = torch.full((rows * (h + 1) + 1, columns * (w + 1) + 1, c), 0.85)
    for k, image in enumerate(images):
        r, col = divmod(k, columns)
        grid[1 + r * (h + 1) : (r + 1) * (h + 1), 1 + col * (w + 1) : (col + 1) * (w + 1)] = image
    return grid


def save_side_by_side(path: Path, panels: list[tuple[str, Tensor]], columns: int, title: str) -> None:
    """A PNG with one labelled image grid per panel, written atomically (no partial file)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    grids = [(label, image_grid(images, columns)) for label, images in panels]
    aspect = grids[0][1].shape[0] / grids[0][1].shape[1]  # height / width of one grid
    figure, axes = plt.subplots(1, len(grids), figsize=(5.2 * len(grids), 5.2 * aspect + 1.0), squeeze=False)
    for axis, (label, grid) in zip(axes[0], grids):
        axis.imshow(grid.squeeze(-1).numpy(), cmap="gray", vmin=0, vmax=1, interpolation="nearest")
        axis.set_title(label, fontsize=10)
        axis.axis("off")
    figure.suptitle(title, fontsize=11)
    figure.tight_layout()
    partial = path.with_name(f".{path.name}.partial")
    try:
        figure.savefig(partial, format="png", dpi=110)
        partial.replace(path)
    finally:
        plt.close(figure)
        partial.unlink(missing_ok=True)


def summary(full: Result, cached: Result | None, steps: int) -> str:
    if cached is None:
        return f"full compute: {full.seconds:.2f} s, {full.flops / 1e9:.1f} GFLOPs"
    data_range = 1.0
    lines = [
        f"full compute : {full.seconds:6.2f} s  {full.flops / 1e9:8.1f} GFLOPs  {steps}/{steps} full steps",
        f"TaylorSeer   : {cached.seconds:6.2f} s  {cached.flops / 1e9:8.1f} GFLOPs  "
        f"{cached.full_steps}/{steps} full steps",
        f"speedup {full.seconds / cached.seconds:.2f}x latency, {full.flops / cached.flops:.2f}x FLOPs; "
        f"PSNR {psnr(cached.images, full.images, data_range):.2f} dB vs full compute",
    ]
    return "\n".join(lines)


def run_bundled(name: str, config: TaylorSeerConfig | None, steps: int, classes: list[int], seed: int) -> Any:
    """(full Result, cached Result or None, columns) on a bundled model; images in [0, 1]."""
    from taylorseer.models.bundled import load_bundled

    generator = load_bundled(name)
    labels = torch.tensor(classes * 2)  # two rows of the requested classes
    noise = generator.noise(len(labels), seed)

    def sample() -> Tensor:
        images = generator.sample(noise, labels, steps=steps, progress=True)
        return ((images + 1) / 2).permute(0, 2, 3, 1)  # (N, 16, 16, 1) in [0, 1]

    generator.sample(noise[:1], labels[:1], steps=2)  # warm-up: first-call costs off the clock
    full = Result(*measure(sample), steps)
    if config is None:
        return full, None, len(classes)
    config = dataclasses.replace(config, num_steps=steps)
    with apply_taylorseer(generator.transformer, config) as handle:
        images, seconds, flops = measure(sample)
        full_steps = handle.stats["full_steps"]
    return full, Result(images, seconds, flops, full_steps), len(classes)


def run_pipeline(
    model: str,
    config: TaylorSeerConfig | None,
    steps: int,
    prompt: str,
    seed: int,
    video: Path | None = None,
    prepare: Callable[[Any], None] | None = None,
    **call_kwargs: Any,
) -> Any:
    """The same for a diffusers pipeline (a local folder or a hub id whose weights are present).

    Video pipelines (an output with `.frames`) give the first frame of each video as the images,
    and, when `video` is a path, the first video with full compute and TaylorSeer side by side
    there. `prepare(pipe)` runs once the pipeline is loaded, before any sampling and before the
    cache (e.g. `distributed.enable_context_parallel` on its transformer). `call_kwargs` go to
    `pipe(...)` as they are (height, width, num_frames, ...).
    """
    from diffusers import DiffusionPipeline

    device = "cuda" if torch.cuda.is_available() else "cpu"
    dtype = torch.bfloat16 if device == "cuda" else torch.float32
    pipe = DiffusionPipeline.from_pretrained(model, torch_dtype=dtype).to(device)
    if not hasattr(pipe, "transformer"):
        raise ValueError(f"{model!r} is a {type(pipe).__name__}, which has no transformer to cache")
    if prepare is not None:
        prepare(pipe)
    videos: list[Tensor] = []  # the frames (F, H, W, C) of the first video of each way of sampling

    def sample() -> Tensor:
        generator = torch.Generator(device).manual_seed(seed)
        output = pipe(
            prompt=prompt, num_inference_steps=steps, generator=generator, output_type="np", **call_kwargs
        )
        if not hasattr(output, "frames"):
            return torch.from_numpy(output.images).float()  # (N, H, W, C) in [0, 1]
        frames = torch.from_numpy(output.frames).float()  # (N, F, H, W, C) in [0, 1]
        videos.append(frames[0])
        return frames[:, 0]

    full = Result(*measure(sample), steps)
    if config is None:
        save_video(video, videos[:1])
        return full, None, 1
    config = dataclasses.replace(config, num_steps=steps)
    with apply_taylorseer(pipe.transformer, config) as handle:
        images, seconds, flops = measure(sample)
        full_steps = handle.stats["full_steps"]
    save_video(video, videos[::2])  # measure() samples twice: keep the first of each pair
    return full, Result(images, seconds, flops, full_steps), 1


def save_video(path: Path | None, videos: list[Tensor], fps: int = 8) -> None:
    """Write `videos` (each (F, H, W, C) in [0, 1]) side by side as one video file at `path`."""
    if path is None or not videos:
        return
    from diffusers.utils import export_to_video

    frames = torch.cat(videos, dim=2).clamp(0, 1)  # (F, H, len(videos) * W, C)
    export_to_video(list(frames.numpy()), str(path), fps=fps)
