"""Which kind of sampler a model runs under, as data: "flow" (flow matching, rectified flow) or
"diffusion" (DDPM-trained noise or v prediction: DDIM, DPM-Solver, Euler on betas).

The default placement of the full steps depends on it (`config.PLACEMENTS`). A pipeline's
scheduler says it; a bare model is known by its class.
"""

from __future__ import annotations

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


def first_order(scheduler: Any) -> bool:
    """Whether the scheduler's step is first order in the model's output, as the hindsight
    correction takes it: FlowMatch Euler, or DDIM on a noise prediction."""
    name = type(scheduler).__name__
    prediction = (getattr(scheduler, "config", None) or {}).get("prediction_type", "epsilon")
    return name == "FlowMatchEulerDiscreteScheduler" or (name == "DDIMScheduler" and prediction == "epsilon")
