"""PSNR of a placement of full steps on one bundled model, against full compute on fixed seeds.

What the placement tools share (`placement_sweep`, `shape_search`, `extra_step`): the model, its
seeds and its full-compute reference of each step count are made once, and each (step count,
placement, settings) is sampled once.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor

from taylorseer.api import maybe_applied
from taylorseer.api.pipelines import detected_sampler
from taylorseer.bench.metrics import psnr
from taylorseer.calibrate import with_full_steps
from taylorseer.config import TaylorSeerConfig
from taylorseer.models.bundled import load_bundled


class PlacementScore:
    """`score(steps, full_steps, **settings)`: PSNR (dB) of `samples` images of the bundled model
    `name` (labels 0-9 in turn, noise from `seed`) against full compute on the same noise."""

    def __init__(self, name: str, samples: int, seed: int) -> None:
        self.generator = load_bundled(name)
        self.sampler = detected_sampler(self.generator.transformer)  # "flow" | "diffusion"
        self.labels = torch.arange(samples) % 10
        self.noise = self.generator.noise(samples, seed)
        self._references: dict[int, Tensor] = {}
        self._measured: dict[tuple, float] = {}

    def reference(self, steps: int) -> Tensor:
        """The full-compute images of a run of `steps`."""
        if steps not in self._references:
            self._references[steps] = self.generator.sample(self.noise, self.labels, steps=steps)
        return self._references[steps]

    def __call__(self, steps: int, full_steps: Sequence[int], **settings: Any) -> float:
        """A run of `steps` that computes `full_steps` in full, at the config's defaults for the
        model's sampler, with `settings` (other `TaylorSeerConfig` fields: order, term_ratio, ...)."""
        key = (steps, tuple(full_steps), tuple(sorted(settings.items())))
        if key not in self._measured:
            base = TaylorSeerConfig(sampler=self.sampler, **settings)
            with maybe_applied(self.generator.transformer, with_full_steps(base, list(full_steps), steps)):
                images = self.generator.sample(self.noise, self.labels, steps=steps)
            self._measured[key] = psnr(images, self.reference(steps))
        return self._measured[key]
