"""`TaylorSeerConfig.official` on the native DiT against the official TaylorSeer-DiT procedure,
traced by hand here: a counter schedule, steps counted down (49..0) as the official code does,
per-module dicts of finite-difference factors, and the Taylor series at negative distances."""

import dataclasses
import math

import pytest
import torch

from taylorseer import TaylorSeerConfig, apply_taylorseer
from taylorseer.models.dit import DiT, sample
from taylorseer.models.gaussian_diffusion import GaussianDiffusion
from toy_models import tiny_dit

pytestmark = pytest.mark.integration

STEPS = 20


def official_reference(model: DiT, noise, labels, interval: int, order: int, first_enhance: int, cfg_scale):
    """The official DiT cache, written out: returns (latents, full steps in sampling order)."""
    factors: dict[tuple[int, str], dict[int, torch.Tensor]] = {}
    activated: list[int] = []  # official step numbers (counting down) of the full steps
    state = {"full": True, "step": 0}

    def cached(layer: int, name: str, original):
        def forward(x):
            key, step = (layer, name), state["step"]
            if state["full"]:
                output = original(x)
                new = {0: output}
                old = factors.get(key, {})
                for j in range(order):
                    # derivatives only once the first step is past (the official DiT quirk)
                    if j in old and step < STEPS - 1 - (first_enhance - 2):
                        distance = activated[-1] - activated[-2]
                        new[j + 1] = (new[j] - old[j]) / distance
                factors[key] = new
                return output
            x_distance = step - activated[-1]
            return sum(f * x_distance**j / math.factorial(j) for j, f in factors[key].items())

        return forward

    for layer, block in enumerate(model.blocks):
        block.attn.forward = cached(layer, "attn", block.attn.forward)
        block.mlp.forward = cached(layer, "mlp", block.mlp.forward)
    diffusion = GaussianDiffusion(str(STEPS))
    x = torch.cat([noise, noise])
    y = torch.cat([labels, torch.full_like(labels, model.num_classes)])
    counter, full_positions = 0, []
    try:
        for i, t in enumerate(diffusion.timesteps):
            step = STEPS - 1 - i
            if i < first_enhance or counter == interval - 1:
                state["full"], counter = True, 0
                activated.append(step)
                full_positions.append(i)
            else:
                state["full"], counter = False, counter + 1
            state["step"] = step
            out = model.forward_with_cfg(x, torch.full((len(x),), t, dtype=torch.long), y, cfg_scale)
            x = diffusion.ddim_step(out, x, i)
    finally:
        for block in model.blocks:
            del block.attn.forward, block.mlp.forward
    return x[: len(noise)], full_positions


@pytest.mark.parametrize(
    ("interval", "order", "first_enhance"), [(4, 2, 2), (5, 1, 2), (3, 3, 2), (6, 0, 2), (4, 2, 3)]
)
def test_official_preset_reproduces_the_official_dit_cache(interval, order, first_enhance):
    model = tiny_dit(perturbation=0.1).double()
    noise = torch.randn(2, 4, 8, 8, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    labels = torch.tensor([3, 7])
    reference, full_positions = official_reference(
        model, noise, labels, interval, order, first_enhance, cfg_scale=4.0
    )
    expected = [*range(first_enhance - 1), *range(first_enhance - 1, STEPS, interval)]
    assert full_positions == expected  # the hand-traced counter gives the documented pattern
    config = TaylorSeerConfig.official(interval=interval, order=order, first_enhance=first_enhance)
    with apply_taylorseer(model, dataclasses.replace(config, num_steps=STEPS)):
        ours = sample(model, noise, labels, steps=STEPS, cfg_scale=4.0)
    uncached = sample(model, noise, labels, steps=STEPS, cfg_scale=4.0)
    torch.testing.assert_close(ours, reference, rtol=1e-9, atol=1e-9)
    assert (ours - uncached).abs().max() > 1e-4  # the cache really forecast something
