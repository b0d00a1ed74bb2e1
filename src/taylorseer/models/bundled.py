"""The bundled trained models, by name: load one and sample class-conditional digits."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from taylorseer.models.digits import LATENT_CHANNELS, LATENT_SIZE, to_images
from taylorseer.models.weights import bundled_path, load_safetensors

SampleFunction = Callable[..., Tensor]


@dataclass
class DigitGenerator:
    """A bundled model ready to sample: its transformer (what a cache is applied to)."""

    name: str
    transformer: nn.Module
    cfg_scale: float  # the guidance scale the model is sampled with by default
    _sample: SampleFunction

    def noise(self, count: int, seed: int) -> Tensor:
        """(count, 4, 8, 8) standard normal latents; sample k depends only on (seed, k)."""
        return torch.stack(
            [
                torch.randn(
                    LATENT_CHANNELS,
                    LATENT_SIZE,
                    LATENT_SIZE,
                    generator=torch.Generator().manual_seed(seed + k),
                )
                for k in range(count)
            ]
        )

    def sample(
        self,
        noise: Tensor,
        labels: Tensor,
        steps: int = 50,
        cfg_scale: float | None = None,
        progress: bool = False,
    ) -> Tensor:
        """Images (n, 1, 16, 16) in [-1, 1] for `labels` (n,) from `noise` (n, 4, 8, 8)."""
        scale = self.cfg_scale if cfg_scale is None else cfg_scale
        latents = self._sample(noise, labels, steps=steps, cfg_scale=scale, progress=progress)
        return to_images(latents)


def _load_dit(name: str) -> DigitGenerator:
    from taylorseer.models.dit import DiT, sample

    folder = bundled_path(name)
    model = DiT(**json.loads((folder / "config.json").read_text()))
    model.load_state_dict(load_safetensors(folder / "model.safetensors", model.state_dict()))
    model.eval()

    def run(noise: Tensor, labels: Tensor, **options) -> Tensor:
        return sample(model, noise, labels, sampler="ddim", **options)

    return DigitGenerator(name, model, 4.0, run)


def _load_flux(name: str) -> DigitGenerator:
    from taylorseer.models import flux_digits

    transformer, conditioning = flux_digits.load(bundled_path(name))

    def run(noise: Tensor, labels: Tensor, **options) -> Tensor:
        return flux_digits.sample(transformer, conditioning, noise, labels, **options)

    return DigitGenerator(name, transformer, 3.0, run)


BUNDLED_MODELS: dict[str, Callable[[], DigitGenerator]] = {
    "dit-digits": lambda: _load_dit("dit-digits"),
    "flux-digits": lambda: _load_flux("flux-digits"),
    # A second model of each kind (narrower, another seed): they choose placements with the two above.
    "dit-narrow": lambda: _load_dit("dit-narrow"),
    "flux-narrow": lambda: _load_flux("flux-narrow"),
    # Another depth, width and seed each, same recipe and sampler: they take part in no choice of ours.
    "dit-heldout": lambda: _load_dit("dit-heldout"),
    "flux-heldout": lambda: _load_flux("flux-heldout"),
}


def load_bundled(name: str) -> DigitGenerator:
    if name not in BUNDLED_MODELS:
        raise ValueError(f"unknown bundled model {name!r}; bundled: {sorted(BUNDLED_MODELS)}")
    return BUNDLED_MODELS[name]()
