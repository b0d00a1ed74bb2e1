"""`taylorseer generate`: the same seeds with full compute and with TaylorSeer, side by side."""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor
from torch.utils.flop_counter import FlopCounterMode

from taylorseer.api import apply_taylorseer
from taylorseer.cli.figure import save_video
from taylorseer.config import TaylorSeerConfig


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
    with apply_taylorseer(pipe, config) as handle:  # the scheduler gives the runs and their length
        images, seconds, flops = measure(sample)
        full_steps = handle.stats["full_steps"]
    save_video(video, videos[::2])  # measure() samples twice: keep the first of each pair
    return full, Result(images, seconds, flops, full_steps), 1
