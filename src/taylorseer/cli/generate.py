"""`taylorseer generate`: the same seeds with full compute and with TaylorSeer, timed and counted."""

from __future__ import annotations

import dataclasses
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple

import torch
from torch import Tensor
from torch.utils.flop_counter import FlopCounterMode

from taylorseer.api import apply_taylorseer
from taylorseer.cli.checks import rank_zero
from taylorseer.cli.figure import save_video
from taylorseer.config import TaylorSeerConfig

DEFAULT_REPEATS = 3  # timed runs per way of sampling; their median is the latency reported
PIPELINE_PROMPT = "a photo of a cat"  # the prompt of a diffusers pipeline when none is given


@dataclass
class Result:
    """One way of sampling: its images (N, H, W, C) in [0, 1], the median seconds of its timed
    runs, its FLOPs, full steps, the (fastest, slowest) timed run, for a video pipeline the
    frames (F, H, W, C) of its first video, and the cache's config as applied (sampler resolved)."""

    images: Tensor
    seconds: float
    flops: int
    full_steps: int | None = None
    spread: tuple[float, float] | None = None
    video: Tensor | None = None
    config: TaylorSeerConfig | None = None


class Measurement(NamedTuple):
    """What `measure` found: the warm-up run's output, the median and the (fastest, slowest) of
    the timed runs in seconds, and the FLOPs of one run."""

    output: Tensor
    seconds: float
    flops: int
    spread: tuple[float, float]


def measure(
    run: Callable[[], Tensor],
    label: str,
    repeats: int = DEFAULT_REPEATS,
    progress: bool = True,
    describe: Callable[[str], None] | None = None,
) -> Measurement:
    """One warm-up run (first-call costs off the clock; its output is returned), `repeats` timed
    runs, then one more run under torch's FLOP counter, which slows it: it is not timed.

    Each run is named "<label>, warm-up", "<label>, timed run 2/3", "<label>, counting FLOPs":
    on a progress bar of the runs when `progress`, or through `describe(name)` before the run
    (e.g. to name a pipeline's own progress bar over its steps) when that is given.
    """
    if repeats < 1:
        raise ValueError(f"repeats must be >= 1, got {repeats}")
    phases = ["warm-up", *(f"timed run {k}/{repeats}" for k in range(1, repeats + 1)), "counting FLOPs"]
    bar = None
    if progress and describe is None:
        from tqdm.auto import tqdm

        bar = tqdm(total=len(phases), desc=f"{label}, {phases[0]}", unit="run")

    def announce(phase: str) -> None:
        if describe is not None:
            describe(f"{label}, {phase}")
        if bar is not None:
            bar.set_description(f"{label}, {phase}")

    output, seconds, flops = None, [], 0
    for k, phase in enumerate(phases):
        announce(phase)
        if k == len(phases) - 1:
            with FlopCounterMode(display=False) as counter:
                run()
            flops = counter.get_total_flops()
        else:
            start = time.perf_counter()
            result = run()  # the pipelines' outputs are on the CPU: the clock includes the device's work
            if k == 0:
                output = result
            else:
                seconds.append(time.perf_counter() - start)
        if bar is not None:
            bar.update()
    if bar is not None:
        bar.close()
    return Measurement(output, statistics.median(seconds), flops, (min(seconds), max(seconds)))


def run_bundled(
    name: str,
    config: TaylorSeerConfig | None,
    steps: int,
    classes: list[int],
    seed: int,
    repeats: int = DEFAULT_REPEATS,
) -> tuple[Result, Result | None, int]:
    """(full Result, cached Result or None, columns) on a bundled model; images in [0, 1]."""
    from taylorseer.models.bundled import load_bundled

    generator = load_bundled(name)
    labels = torch.tensor(classes * 2)  # two rows of the requested classes
    noise = generator.noise(len(labels), seed)
    lead = rank_zero()

    def sample() -> Tensor:
        images = generator.sample(noise, labels, steps=steps)
        return ((images + 1) / 2).permute(0, 2, 3, 1)  # (N, 16, 16, 1) in [0, 1]

    found = measure(sample, "full compute", repeats, lead)
    full = Result(found.output, found.seconds, found.flops, steps, found.spread)
    if config is None:
        return full, None, len(classes)
    config = dataclasses.replace(config, num_steps=steps)
    with apply_taylorseer(generator.transformer, config) as handle:
        found = measure(sample, "TaylorSeer", repeats, lead)
        full_steps, applied = handle.stats["full_steps"], handle.config
    cached = Result(found.output, found.seconds, found.flops, full_steps, found.spread, config=applied)
    return full, cached, len(classes)


def run_pipeline(
    model: str,
    config: TaylorSeerConfig | None,
    steps: int,
    prompt: str | None,
    seed: int,
    video: Path | None = None,
    prepare: Callable[[Any], None] | None = None,
    repeats: int = DEFAULT_REPEATS,
    **call_kwargs: Any,
) -> tuple[Result, Result | None, int]:
    """The same for a diffusers pipeline (a local folder or a hub id whose weights are present).

    Video pipelines (an output with `.frames`) give the first frame of each video as the images
    and the first video as `Result.video`; when `video` is a path, the first video with full
    compute and TaylorSeer side by side is written there. `prepare(pipe)` runs once the pipeline
    is loaded, before any sampling and before the cache (e.g. `distributed.enable_context_parallel`
    on its transformer). `call_kwargs` go to `pipe(...)` as they are (height, width, num_frames,
    ...). `prompt` None is `PIPELINE_PROMPT`.
    """
    from diffusers import DiffusionPipeline

    device = "cuda" if torch.cuda.is_available() else "cpu"
    dtype = torch.bfloat16 if device == "cuda" else torch.float32
    pipe = DiffusionPipeline.from_pretrained(model, dtype=dtype).to(device)
    if not hasattr(pipe, "transformer"):
        raise ValueError(f"{model!r} is a {type(pipe).__name__}, which has no transformer to cache")
    if prepare is not None:
        prepare(pipe)
    lead = rank_zero()
    prompt = PIPELINE_PROMPT if prompt is None else prompt

    def describe(name: str) -> None:  # the pipeline's own progress bar over the steps
        pipe.set_progress_bar_config(desc=name, disable=not lead)

    def sample() -> Tensor:
        generator = torch.Generator(device).manual_seed(seed)
        output = pipe(
            prompt=prompt, num_inference_steps=steps, generator=generator, output_type="np", **call_kwargs
        )
        frames = getattr(output, "frames", None)  # (N, F, H, W, C) for a video pipeline
        return torch.from_numpy(output.images if frames is None else frames).float()  # in [0, 1]

    def result(found: Measurement, full_steps: int) -> Result:
        output = found.output
        if output.ndim == 5:  # videos: their first frames are the images
            return Result(output[:, 0], found.seconds, found.flops, full_steps, found.spread, output[0])
        return Result(output, found.seconds, found.flops, full_steps, found.spread)

    full = result(measure(sample, "full compute", repeats, describe=describe), steps)
    cached = None
    if config is not None:
        with apply_taylorseer(pipe, config) as handle:  # the scheduler gives the runs and their length
            found = measure(sample, "TaylorSeer", repeats, describe=describe)
            cached = dataclasses.replace(result(found, handle.stats["full_steps"]), config=handle.config)
    save_video(video, [r.video for r in (full, cached) if r is not None and r.video is not None])
    return full, cached, 1
