"""`taylorseer calibrate` on a bundled model: calibrate on some seeds, report on held-out ones."""

from __future__ import annotations

import torch
from torch import Tensor

from taylorseer.api import maybe_applied
from taylorseer.bench.metrics import psnr
from taylorseer.calibrate import Sampler, calibrate, spread, with_full_steps
from taylorseer.config import TaylorSeerConfig
from taylorseer.models.bundled import load_bundled


def calibrate_bundled(
    name: str, base: TaylorSeerConfig, steps: int, budget: int, samples: int, seed: int, held_out_seed: int
) -> tuple[TaylorSeerConfig, list[str]]:
    """Calibrate on `samples` digits from `seed`; report PSNR on others from `held_out_seed`."""
    generator = load_bundled(name)
    labels = torch.arange(samples) % 10

    def sampler(noise_seed: int) -> Sampler:
        noise = generator.noise(samples, noise_seed)

        def run(config: TaylorSeerConfig | None) -> Tensor:
            with maybe_applied(generator.transformer, config, steps):
                return generator.sample(noise, labels, steps=steps)

        return run

    config, report = calibrate(sampler(seed), base, steps, budget, log=print)
    even = with_full_steps(base, spread(steps, budget, base.effective_warmup), steps)
    lines = [f"{name}: {budget} of {steps} steps full; calibrated full steps {list(config.full_steps)}"]
    for label, noise_seed in (("calibration seeds", seed), ("held-out seeds", held_out_seed)):
        run = sampler(noise_seed)
        reference = run(None)
        lines.append(
            f"  {label}: PSNR even placement {psnr(run(even), reference):.2f} dB -> calibrated "
            f"{psnr(run(config), reference):.2f} dB"
        )
    return config, lines
