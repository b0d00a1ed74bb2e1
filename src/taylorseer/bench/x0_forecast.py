"""Forecast the denoised estimate instead of the model output? A measurement.

    python -m taylorseer.bench.x0_forecast

With whole-output granularity the cache forecasts what the model returns (a velocity for flow
matching, a noise estimate for DDIM). The alternative forecasts the denoised estimate x0 computed
from it and converts back at each forecast step: x0 = x - sigma * v (flux-digits), x0 = (x -
sqrt(1 - abar) eps) / sqrt(abar) (dit-digits). Both runs wrap the model the same way (an adapter
whose output is cached), at the default config and the paper's fixed placement, orders 1 and 2;
PSNR against full compute on the same seeds.
"""

from __future__ import annotations

import argparse
import dataclasses
import functools

import torch
from torch import Tensor, nn

from taylorseer.api import maybe_applied
from taylorseer.bench.metrics import psnr
from taylorseer.config import TaylorSeerConfig
from taylorseer.models import flux_digits
from taylorseer.models.bundled import load_bundled
from taylorseer.models.digits import NUM_CLASSES, to_images
from taylorseer.models.dit import CFG_CHANNELS
from taylorseer.models.dit_sampling import cfg_batch, sample, timestep_batch
from taylorseer.models.gaussian_diffusion import linear_betas
from taylorseer.models.weights import bundled_path

STEPS = 50


class FlowOutput(nn.Module):
    """flux-digits' transformer as (tokens, sigma) -> velocity, or -> x0 = tokens - sigma * v."""

    def __init__(self, transformer: nn.Module, text: Tensor, pooled: Tensor, x0: bool) -> None:
        super().__init__()
        self.transformer, self.text, self.pooled, self.x0 = transformer, text, pooled, x0

    def forward(self, hidden_states: Tensor, timestep: Tensor) -> Tensor:
        v = flux_digits.velocity(self.transformer, hidden_states, timestep, self.text, self.pooled)
        return hidden_states - timestep[:, None, None] * v if self.x0 else v


class DiTOutput(nn.Module):
    """The DiT as (x, t, y) -> noise estimate, or -> x0 for the guided channels."""

    def __init__(self, model: nn.Module, x0: bool) -> None:
        super().__init__()
        self.model, self.x0 = model, x0
        self.abar = torch.cumprod(1 - linear_betas(1000), 0).float()  # (1000,)

    def forward(self, x: Tensor, timestep: Tensor, y: Tensor) -> Tensor:
        out = self.model(x, timestep, y)
        if not self.x0:
            return out
        abar, channels = self.abar[timestep][:, None, None, None], x.shape[1]
        x0 = (x - (1 - abar).sqrt() * out[:, :channels]) / abar.sqrt()
        return torch.cat([x0, out[:, channels:]], dim=1)

    def eps(self, x: Tensor, timestep: Tensor, out: Tensor) -> Tensor:
        if not self.x0:
            return out
        abar, channels = self.abar[timestep][:, None, None, None], x.shape[1]
        eps = (x - abar.sqrt() * out[:, :channels]) / (1 - abar).sqrt()
        return torch.cat([eps, out[:, channels:]], dim=1)


@functools.cache
def flux_model() -> tuple[nn.Module, nn.Module]:
    return flux_digits.load(bundled_path("flux-digits"))


def flux_images(config: TaylorSeerConfig | None, x0: bool, noise: Tensor, labels: Tensor) -> Tensor:
    transformer, conditioning = flux_model()
    text, pooled = conditioning(torch.cat([labels, torch.full_like(labels, NUM_CLASSES)]))
    adapter = FlowOutput(transformer, text, pooled, x0)

    def guide(tokens: Tensor, t: Tensor) -> Tensor:
        batch = torch.cat([tokens, tokens])  # conditional, then null class
        sigma = flux_digits.sigmas(t, batch)
        out = adapter(batch, sigma)
        flow = (batch - out) / sigma[:, None, None] if x0 else out
        cond, uncond = flow.chunk(2)
        return uncond + 3.0 * (cond - uncond)

    with maybe_applied(adapter, config, STEPS):
        latents = flux_digits.sample(transformer, conditioning, noise, labels, STEPS, 3.0, guide=guide)
    return to_images(latents)


@functools.cache
def dit_model() -> nn.Module:
    return load_bundled("dit-digits").transformer


def dit_images(config: TaylorSeerConfig | None, x0: bool, noise: Tensor, labels: Tensor) -> Tensor:
    model = dit_model()
    adapter = DiTOutput(model, x0)

    def guide(x: Tensor, t: int) -> Tensor:
        batch, y = cfg_batch(x, labels, model.num_classes)
        timesteps = timestep_batch(batch, t)
        out = adapter.eps(batch, timesteps, adapter(batch, timesteps, y))
        cond, uncond = out[:, :CFG_CHANNELS].chunk(2)  # guided channels, as DiT.forward_with_cfg
        guided = uncond + 4.0 * (cond - uncond)
        return torch.cat([guided, out[: x.shape[0], CFG_CHANNELS:]], dim=1)

    with maybe_applied(adapter, config, STEPS):
        latents = sample(model, noise, labels, STEPS, 4.0, "ddim", guide=guide)
    return to_images(latents)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--samples", type=int, default=20)
    parser.add_argument("--seed", type=int, default=3000)
    args = parser.parse_args()
    torch.set_num_threads(1)
    labels = torch.arange(args.samples) % 10
    default = TaylorSeerConfig()
    configs = {
        "default": default,
        "default, order 2": dataclasses.replace(default, order=2),
        "paper's placement, order 1": dataclasses.replace(default, schedule="fixed", gap_ratio=None),
        "paper's placement, order 2": dataclasses.replace(default, schedule="fixed", order=2, gap_ratio=None),
    }
    print("| model | config | model output | x0 |\n|---|---|---:|---:|")
    for name, images in (("dit-digits", dit_images), ("flux-digits", flux_images)):
        noise = load_bundled(name).noise(args.samples, args.seed)
        reference = images(None, False, noise, labels)
        for label, config in configs.items():
            scores = [psnr(images(config, x0, noise, labels), reference) for x0 in (False, True)]
            print(f"| {name} | {label} | {scores[0]:.2f} dB | {scores[1]:.2f} dB |", flush=True)


if __name__ == "__main__":
    main()
