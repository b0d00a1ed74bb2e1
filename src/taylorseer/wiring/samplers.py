"""Which kind of sampler a model runs under, as data: "flow" (flow matching, rectified flow) or
"diffusion" (DDPM-trained noise or v prediction: DDIM, DPM-Solver, Euler on betas).

The default placement of the full steps depends on it (`config.PLACEMENTS`). A pipeline's
scheduler says it; a bare model is known by its class.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

# Transformer classes by the sampler they are trained for (diffusers' names, and the DiT paper's).
FLOW_MODELS = frozenset({
    "FluxTransformer2DModel", "SD3Transformer2DModel", "WanTransformer3DModel",
    "WanVACETransformer3DModel", "HunyuanVideoTransformer3DModel", "HiDreamImageTransformer2DModel",
    "QwenImageTransformer2DModel", "SanaTransformer2DModel", "AuraFlowTransformer2DModel",
    "LTXVideoTransformer3DModel", "MochiTransformer3DModel", "CogView4Transformer2DModel",
    "Lumina2Transformer2DModel", "ChromaTransformer2DModel", "SkyReelsV2Transformer3DModel",
})  # fmt: skip
DIFFUSION_MODELS = frozenset({
    "DiT", "DiTTransformer2DModel", "PixArtTransformer2DModel", "HunyuanDiT2DModel",
    "CogVideoXTransformer3DModel", "AllegroTransformer3DModel", "LatteTransformer3DModel",
    "CogView3PlusTransformer2DModel",
})  # fmt: skip


def scheduler_sampler(scheduler: Any) -> str | None:
    """The kind of sampler a scheduler drives: "flow" for flow matching (FlowMatch*, or flow sigmas
    / flow prediction in its config, as Wan's UniPC), "diffusion" on a beta schedule, else None."""
    config = getattr(scheduler, "config", None) or {}
    flow_config = config.get("use_flow_sigmas") or config.get("prediction_type") == "flow_prediction"
    if type(scheduler).__name__.startswith("FlowMatch") or flow_config:
        return "flow"
    if getattr(scheduler, "alphas_cumprod", None) is not None:
        return "diffusion"
    return None


def model_sampler(model: Any) -> str | None:
    """The sampler the model's class is trained for, when the class is known."""
    name = type(model).__name__
    return "flow" if name in FLOW_MODELS else "diffusion" if name in DIFFUSION_MODELS else None


# Classes whose timestep input follows the noise level as the hindsight correction reads it: a flow
# model's is sigma (or 1000 sigma) and its output the velocity; a diffusion model's is the index into
# 1000 linear betas and its output (first channels) the noise. Not: Lumina2 (1 - sigma, output
# negated), Mochi (inverted sigmas), HunyuanDiT and CogVideoX (v prediction, other betas).
CORRECTABLE_MODELS = (FLOW_MODELS - {"Lumina2Transformer2DModel", "MochiTransformer3DModel"}) | {
    "DiT", "DiTTransformer2DModel", "PixArtTransformer2DModel",
}  # fmt: skip


def why_not_first_order(scheduler: Any) -> str | None:
    """Why the scheduler's step is not first order in the model's output as the hindsight
    correction takes it (FlowMatch Euler, DDIM on a noise prediction); None when it is."""
    name = type(scheduler).__name__
    config = getattr(scheduler, "config", None) or {}
    if name == "FlowMatchEulerDiscreteScheduler":
        options = [option for option in ("invert_sigmas", "stochastic_sampling") if config.get(option)]
        return f"the scheduler {name} with {options[0]}=True" if options else None
    if name == "DDIMScheduler":
        prediction = config.get("prediction_type", "epsilon")
        return (
            None if prediction == "epsilon" else f"the scheduler {name} with prediction_type={prediction!r}"
        )
    return f"the scheduler {name} (not FlowMatch Euler or DDIM: not a first-order step)"


def scheduler_noise(scheduler: Any, sampler: str) -> Callable[[int], tuple[float, float]]:
    """Step of the run -> (alpha, sigma) as the scheduler set them up (from its begin index: img2img);
    (1, 0) past the last step."""

    def at(step: int) -> tuple[float, float]:
        index = (getattr(scheduler, "begin_index", None) or 0) + step
        if sampler == "flow":
            sigmas = scheduler.sigmas
            return (1.0, float(sigmas[index])) if index < len(sigmas) else (1.0, 0.0)
        if index >= len(scheduler.timesteps):
            return 1.0, 0.0
        alpha_bar = float(scheduler.alphas_cumprod[int(scheduler.timesteps[index])])
        return math.sqrt(alpha_bar), math.sqrt(1 - alpha_bar)

    return at
