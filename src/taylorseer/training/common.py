"""Shared pieces of the training scripts: augmentation, batching, logging to a JSON record, and
the one training loop (draw a batch, loss, optimizer step, EMA update, log) they all run."""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import TypeVar

import torch
import torch.nn.functional as F
from torch import Tensor


def augment(images: Tensor, generator: torch.Generator) -> Tensor:
    """Random shifts of up to 1 pixel and mild scaling: (N, 1, 16, 16) -> same."""
    n = images.shape[0]
    scale = 1 + 0.1 * (torch.rand(n, generator=generator) - 0.5)
    shift = (torch.rand(n, 2, generator=generator) - 0.5) * (4 / 16)
    theta = torch.zeros(n, 2, 3)
    theta[:, 0, 0] = theta[:, 1, 1] = scale
    theta[:, :, 2] = shift
    grid = F.affine_grid(theta, list(images.shape), align_corners=False)
    return F.grid_sample(images + 1, grid, padding_mode="zeros", align_corners=False) - 1


def batches(
    images: Tensor, labels: Tensor, batch_size: int, generator: torch.Generator
) -> Iterator[tuple[Tensor, Tensor]]:
    """Endless shuffled batches."""
    while True:
        order = torch.randperm(len(labels), generator=generator)
        for start in range(0, len(order) - batch_size + 1, batch_size):
            chosen = order[start : start + batch_size]
            yield images[chosen], labels[chosen]


class TrainingLog:
    """Timing and loss of a run, written next to the weights as training.json."""

    def __init__(self, name: str, **settings: object) -> None:
        self.record: dict[str, object] = {"model": name, "settings": settings, "losses": []}
        self.start = time.perf_counter()
        self.window: list[float] = []

    def step(self, step: int, loss: float, every: int = 200) -> None:
        self.window.append(loss)
        if (step + 1) % every == 0:
            mean = sum(self.window) / len(self.window)
            self.window.clear()
            self.record["losses"].append([step + 1, round(mean, 5)])
            print(f"step {step + 1}: loss {mean:.4f} ({time.perf_counter() - self.start:.0f} s)", flush=True)

    def save(self, folder: Path, **results: object) -> None:
        self.record["train_seconds"] = round(time.perf_counter() - self.start, 1)
        self.record["final_loss"] = self.record["losses"][-1][1] if self.record["losses"] else None
        self.record.update(results)
        (folder / "training.json").write_text(json.dumps(self.record, indent=2) + "\n")


def optimizer_step(
    loss: Tensor,
    optimizer: torch.optim.Optimizer,
    schedule: torch.optim.lr_scheduler.LRScheduler,
    parameters: Iterable[torch.nn.Parameter],
) -> None:
    """Backward, clip the gradient norm to 1, step the optimizer and its learning-rate schedule."""
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    torch.nn.utils.clip_grad_norm_(parameters, 1.0)
    optimizer.step()
    schedule.step()


@torch.no_grad()
def update_ema(ema: torch.nn.Module, model: torch.nn.Module, step: int, decay: float = 0.999) -> None:
    """Exponential moving average of the weights, with a warm-up of the decay over the first steps."""
    rate = min(decay, (1 + step) / (10 + step))
    for average, parameter in zip(ema.parameters(), model.parameters()):
        average.lerp_(parameter, 1 - rate)


Batch = TypeVar("Batch")


def train_loop(
    model: torch.nn.Module,
    ema: torch.nn.Module,
    loss_fn: Callable[[Batch], Tensor],
    data: Iterable[Batch],
    optimizer: torch.optim.Optimizer,
    schedule: torch.optim.lr_scheduler.LRScheduler,
    steps: int,
    log: TrainingLog,
) -> list[float]:
    """Train `model` on `steps` batches drawn from `data`; return the loss of each step.

    Puts `model` in train mode, then for step = 0 .. steps - 1:
        loss = loss_fn(batch)                 # scalar; the loss draws its own noise, t, sigma
        optimizer_step(loss, optimizer, schedule, model.parameters())  # clip grad norm to 1
        update_ema(ema, model, step)          # ema mirrors model's parameters, in order
        log.step(step, loss.item())
    `data` is advanced exactly `steps` times (the endless `batches` suits), so a seeded generator
    shared by `data` and `loss_fn` is drawn from in the same order as a hand-written loop.
    """
    model.train()
    losses: list[float] = []
    for step, batch in zip(range(steps), data):  # range first: no batch is drawn past the last step
        loss = loss_fn(batch)
        optimizer_step(loss, optimizer, schedule, model.parameters())
        update_ema(ema, model, step)
        losses.append(loss.item())
        log.step(step, losses[-1])
    return losses


def run_script(
    train: Callable[[int, int, Path], None],
    doc: str | None,
    steps: int,
    out: Path,
    seed: int = 0,
    argv: list[str] | None = None,
) -> None:
    """The command line of a generator's training script: --steps, --seed, --threads, --out
    (parsed from `argv`, else the process's arguments)."""
    parser = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=steps)
    parser.add_argument("--seed", type=int, default=seed)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out", type=Path, default=out)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    train(args.steps, args.seed, args.out)
