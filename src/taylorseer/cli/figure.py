"""What `taylorseer generate` writes and prints: the side-by-side PNG, the video, the summary."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import torch
from torch import Tensor

from taylorseer.bench.metrics import psnr

if TYPE_CHECKING:
    from taylorseer.cli.generate import Result


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


def save_video(path: Path | None, videos: list[Tensor], fps: int = 8) -> None:
    """Write `videos` (each (F, H, W, C) in [0, 1]) side by side as one video file at `path`."""
    if path is None or not videos:
        return
    from diffusers.utils import export_to_video

    frames = torch.cat(videos, dim=2).clamp(0, 1)  # (F, H, len(videos) * W, C)
    export_to_video(list(frames.numpy()), str(path), fps=fps)
