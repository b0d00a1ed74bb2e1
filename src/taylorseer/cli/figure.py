"""What `taylorseer generate` writes and prints: the comparison figure, the video, the summary."""

from __future__ import annotations

import math
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from torch import Tensor

from taylorseer.bench.metrics import psnr

if TYPE_CHECKING:
    from taylorseer.cli.generate import Result

BORDER = 1.0  # the gap between images: white
AMPLIFICATIONS = (1, 2, 5, 10, 20, 50, 100, 200, 500, 1000)


def image_grid(images: Tensor, columns: int, border: float = BORDER) -> Tensor:
    """(N, H, W, C) -> one (rows*(H+1)+1, columns*(W+1)+1, C) grid, the images on a `border` frame."""
    n, h, w, c = images.shape
    rows = -(-n // columns)
    grid = torch.full((rows * (h + 1) + 1, columns * (w + 1) + 1, c), border, dtype=images.dtype)
    for k, image in enumerate(images):
        r, col = divmod(k, columns)
        grid[1 + r * (h + 1) : (r + 1) * (h + 1), 1 + col * (w + 1) : (col + 1) * (w + 1)] = image
    return grid


def amplification(difference: Tensor) -> int:
    """The largest of 1, 2, 5, 10, 20, ... that keeps 99 % of the pixels of `difference` within
    [0, 1] (the brightest 1 % may saturate, so that one outlier does not hide the rest)."""
    import numpy as np

    typical = float(np.percentile(difference.numpy(), 99)) if difference.numel() else 0.0
    fitting = [a for a in AMPLIFICATIONS if a * typical <= 1.0]
    return fitting[-1] if fitting else 1


def _bands(panels: list[tuple[str, Tensor]]) -> list[tuple[str, Tensor, str | None]]:
    """(label, images, colormap) per band: the panels, and for two panels of equal shape their
    absolute difference (mean over channels), amplified to show, labelled with the factor."""
    bands: list[tuple[str, Tensor, str | None]] = [(label, images, None) for label, images in panels]
    if len(panels) == 2 and panels[0][1].shape == panels[1][1].shape:
        difference = (panels[1][1].double() - panels[0][1].double()).abs().mean(-1, keepdim=True)
        factor = amplification(difference)
        label = f"|difference| x {factor}" if float(difference.max()) > 0 else "|difference|: none"
        bands.append((label, (difference * factor).clamp(0, 1).float(), "magma"))
    return bands


def _border(colormap: str | None) -> float:
    """The frame of a band: white; NaN in a colour-mapped band, which matplotlib leaves blank."""
    return math.nan if colormap else BORDER


def _show(axis: Any, grid: Tensor, colormap: str | None) -> None:
    if grid.shape[-1] == 1:
        axis.imshow(grid[..., 0].numpy(), cmap=colormap or "gray", vmin=0, vmax=1, interpolation="nearest")
    else:
        axis.imshow(grid.clamp(0, 1).numpy(), interpolation="nearest")
    axis.set_xticks([])
    axis.set_yticks([])
    for spine in axis.spines.values():
        spine.set_visible(False)


def save_side_by_side(path: Path, panels: list[tuple[str, Tensor]], columns: int, title: str) -> None:
    """One figure of the panels' images (each (N, H, W, C) in [0, 1], the same samples in the
    same order), written atomically (no partial file) in the format of `path`'s extension.

    Two panels (full compute, TaylorSeer) get a third band: their amplified absolute difference.
    With one column (a pipeline's few large images) the bands stand side by side, one sample per
    row; with several (the bundled models' grids) each row of samples is shown once per band, one
    above the other, so that each sample's versions line up. `title` may have several lines.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    bands = _bands(panels)
    n, h, w, _ = panels[0][1].shape
    if columns == 1:
        figure, axes = plt.subplots(
            1,
            len(bands),
            figsize=(max(8.5, 3.6 * len(bands)), 3.6 * n * h / w + 1.2),
            squeeze=False,
            layout="constrained",
        )
        for axis, (label, images, colormap) in zip(axes[0], bands):
            _show(axis, image_grid(images, 1, _border(colormap)), colormap)
            axis.set_title(label, fontsize=10)
    else:
        rows = -(-n // columns)
        strip = 0.6 * h / w + 0.08  # inches of height of one strip of images 0.6 in wide
        ratios = ([1.0] * len(bands) + [0.35]) * rows  # each row of samples, then a gap
        figure, axes = plt.subplots(
            len(ratios) - 1, 1, figsize=(max(8.5, 0.6 * columns + 1.9), strip * sum(ratios) + 0.9),
            squeeze=False, layout="constrained", gridspec_kw=dict(height_ratios=ratios[:-1]),
        )  # fmt: skip
        for r in range(rows):
            for b, (label, images, colormap) in enumerate(bands):
                axis = axes[r * (len(bands) + 1) + b, 0]
                row = images[r * columns : (r + 1) * columns]
                _show(axis, image_grid(row, columns, _border(colormap)), colormap)
                axis.set_ylabel(label, rotation=0, ha="right", va="center", fontsize=9)
            if r < rows - 1:
                axes[r * (len(bands) + 1) + len(bands), 0].axis("off")
    figure.suptitle(title, fontsize=9)
    partial = path.with_name(f".{path.name}.partial")
    try:
        figure.savefig(partial, format=path.suffix.lstrip(".").lower(), dpi=110)
        partial.replace(path)
    finally:
        plt.close(figure)
        partial.unlink(missing_ok=True)


def _number(seconds: float) -> str:
    """Three significant digits, whole seconds from 100 s up: '0.0213', '3.40', '52.3', '1234'."""
    if seconds < 1:
        return f"{seconds:.3g}"
    return f"{seconds:.{max(0, 2 - int(math.log10(seconds)))}f}"


def _seconds(result: Result) -> str:
    """'3.40 s (3.38-3.45)': the median latency, and the fastest and slowest timed runs."""
    low, high = result.spread or (result.seconds, result.seconds)
    return f"{_number(result.seconds)} s" + ("" if low == high else f" ({_number(low)}-{_number(high)})")


def _runs(repeats: int) -> str:
    return f"{repeats} timed run{'s' * (repeats > 1)}"


def latency_ratio(full: Result, cached: Result) -> tuple[str, str]:
    """('3.91x', '; 3.50-4.41x between runs'): the ratio of the median latencies, and the ratios of
    the fastest full run to the slowest cached one and of the slowest to the fastest ('' if equal)."""
    text = f"{full.seconds / cached.seconds:.2f}x"
    if full.spread is None or cached.spread is None:
        return text, ""
    low, high = full.spread[0] / cached.spread[1], full.spread[1] / cached.spread[0]
    return text, "" if f"{low:.2f}" == f"{high:.2f}" else f"; {low:.2f}-{high:.2f}x between runs"


def frame_psnr(full: Tensor, cached: Tensor) -> list[float]:
    """PSNR in dB of each frame of `cached` (F, H, W, C) in [0, 1] against `full`."""
    return [psnr(c, f, data_range=1.0) for f, c in zip(full, cached)]


def headline(full: Result, cached: Result | None, repeats: int) -> str:
    """The figure's lines on the comparison: PSNR, FLOPs ratio, latency ratio (median, range)."""
    if cached is None:
        return f"full compute: {_seconds(full)}, median of {_runs(repeats)}; {full.flops / 1e9:.1f} GFLOPs"
    flops = full.flops / cached.flops
    ratio, runs = latency_ratio(full, cached)
    lines = [
        f"PSNR {psnr(cached.images, full.images, 1.0):.2f} dB vs full compute  |  FLOPs {flops:.2f}x fewer "
        f"({cached.full_steps}/{full.full_steps} steps in full)",
        f"latency {ratio} lower: {_number(full.seconds)} s vs {_number(cached.seconds)} s "
        f"(median of {_runs(repeats)}{runs})",
    ]
    if full.video is not None and cached.video is not None:
        frames = frame_psnr(full.video, cached.video)
        worst = min(range(len(frames)), key=frames.__getitem__)
        lines.append(
            f"per-frame PSNR of the first video: mean {sum(frames) / len(frames):.2f} dB, "
            f"lowest {frames[worst]:.2f} dB (frame {worst})"
        )
    return "\n".join(lines)


def summary(full: Result, cached: Result | None, steps: int, repeats: int) -> str:
    """What `generate` prints: latencies (median and range of the timed runs), FLOPs, full steps,
    the speedups as ratios, PSNR (and per frame for a video)."""
    note = f"latency: median (fastest-slowest) of {_runs(repeats)} after a warm-up; FLOPs: one more run"
    ways = [("full compute", full)] + ([("TaylorSeer", cached)] if cached is not None else [])
    width = max(len(_seconds(result)) for _, result in ways)
    lines = [
        f"{name:12s}: {_seconds(result):>{width}}  {result.flops / 1e9:8.1f} GFLOPs  "
        f"{result.full_steps}/{steps} full steps"
        for name, result in ways
    ]
    lines.append(f"  ({note})")
    if cached is not None:
        flops = full.flops / cached.flops
        ratio, runs = latency_ratio(full, cached)
        lines.append(f"speedup: latency {ratio} (ratio of the medians{runs}), FLOPs {flops:.2f}x")
        lines.append(f"PSNR {psnr(cached.images, full.images, 1.0):.2f} dB vs full compute")
    if full.video is not None and cached is not None and cached.video is not None:
        frames = " ".join(f"{value:.1f}" for value in frame_psnr(full.video, cached.video))
        lines.append(f"per-frame PSNR of the first video (dB): {frames}")
    return "\n".join(lines)


def save_video(path: Path | None, videos: list[Tensor], fps: int = 8) -> None:
    """Write `videos` (each (F, H, W, C) in [0, 1]) side by side as one video file at `path`."""
    if path is None or not videos:
        return
    from diffusers.utils import export_to_video

    frames = torch.cat(videos, dim=2).clamp(0, 1)  # (F, H, len(videos) * W, C)
    export_to_video(list(frames.numpy()), str(path), fps=fps)
